"""The ``calls:`` entries of a scenario: :class:`CallSpec` and its parts (documented in docs/calls.md).

A superset of the first ``CallSpec`` (``name``, ``from``, ``to``, ``duration``,
``connect_timeout``, ``media``): every older file still loads.  Validation errors are raised
from field validators wherever one key is at fault, so the loader points at that key's line.
Checks that need the rest of the scenario (node names, the relay's settings) are in
:func:`call_reference_problems`, which ``model.reference_problems`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from testbed.scenario.common import NAME_PATTERN, Duration, Rate, Timeout, _Frozen

__all__ = [
    "AudioCodec",
    "CallEngine",
    "EngineSpec",
    "AudioSpec",
    "CallSpec",
    "DataSpec",
    "IcePolicy",
    "IceSpec",
    "IceTransport",
    "Media",
    "VideoCodec",
    "VideoSpec",
    "call_reference_problems",
    "PROFILE_NAMES",
]

# Kept in step with testbed/data/profiles/*.yaml by a unit test; a literal list here keeps the
# schema importable without reading package data.
PROFILE_NAMES = ("telegram", "webrtc", "whatsapp")


class Media(str, Enum):
    AUDIO = "audio"
    VIDEO = "video"
    DATA = "data"


class AudioCodec(str, Enum):
    OPUS = "opus"
    """48 kHz clock (RFC 7587), 20 ms frames."""
    PCMU = "pcmu"
    """G.711 mu-law, 8 kHz clock (RFC 3551), 20 ms frames: 64 kbit/s."""


class CallEngine(str, Enum):
    """Which WebRTC stack runs an end of the call (``testbed.calls.engine``)."""

    AIORTC = "aiortc"
    CHROMIUM = "chromium"
    """Headless Chromium (libwebrtc), Debian package ``chromium``."""


# App profiles whose wire signature needs aiortc's hooks (STUN messages from the TURN
# allocation's socket): a browser cannot send them.
_AIORTC_ONLY_PROFILES = ("whatsapp", "telegram")


class EngineSpec(_Frozen):
    """``engine: chromium`` (both ends) or ``engine: {caller: chromium, callee: aiortc}``."""

    caller: CallEngine = CallEngine.AIORTC
    callee: CallEngine = CallEngine.AIORTC

    @property
    def uses_chromium(self) -> bool:
        return CallEngine.CHROMIUM in (self.caller, self.callee)


class VideoCodec(str, Enum):
    VP8 = "vp8"
    H264 = "h264"


class AudioSpec(_Frozen):
    codec: AudioCodec = AudioCodec.OPUS
    bitrate: Rate | None = None
    """Opus target at the start (throughout without ``adapt``); default the profile's (aiortc's
    96 kbit/s without one)."""

    @field_validator("bitrate")
    @classmethod
    def _opus_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return value
        if info.data.get("codec") is not AudioCodec.OPUS:
            raise ValueError("bitrate is for opus (pcmu has one rate, 64 kbit/s); drop it or use codec: opus")
        if not 6000 <= value <= 510000:
            raise ValueError(f"Opus runs at 6kbit..510kbit, got {value:g} bit/s")
        return value


class VideoSpec(_Frozen):
    codec: VideoCodec = VideoCodec.VP8
    width: int = Field(320, ge=16, le=1920)
    height: int = Field(240, ge=16, le=1080)
    fps: int = Field(15, ge=1, le=60)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (4:2:0 video)")
        return value


class DataSpec(_Frozen):
    rate: Rate = 8000.0
    """Bits per second each side sends (message payload bytes x 8 / interval)."""
    message_bytes: int = Field(100, ge=16, le=65536)
    reliable: bool = True
    """``false``: an unordered channel without retransmissions (maxRetransmits 0), so lost
    messages stay lost and ``message_loss_pct`` measures the path."""

    @field_validator("message_bytes")
    @classmethod
    def _not_too_fast(cls, value: int, info: ValidationInfo) -> int:
        rate = info.data.get("rate")
        if rate is not None and rate / (8 * value) > 2000:
            raise ValueError(f"{rate:g} bit/s in {value}-byte messages is over 2000 messages/s; use bigger messages")
        return value

    @property
    def interval_s(self) -> float:
        return self.message_bytes * 8.0 / self.rate


class IceTransport(str, Enum):
    """How an endpoint reaches its TURN relay (RFC 8656): UDP, TCP, or TLS over TCP (RFC 7065 turns:)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class IcePolicy(str, Enum):
    ALL = "all"
    RELAY = "relay"


class IceSpec(_Frozen):
    stun: str | None = None
    """A node with a ``turn`` service, used as STUN server (server-reflexive candidates)."""
    turn: str | None = None
    """A node with a ``turn`` service, used as TURN relay (relay candidates)."""
    transport: IceTransport | None = None
    """How to reach the relay; default udp (or the profile's).  ``tls`` uses the service's
    ``tls_port`` (443 if you set it so)."""
    policy: IcePolicy | None = None
    """``relay``: relay candidates only (iceTransportPolicy); default all (or the profile's)."""
    restart: bool = False
    """If the call stops working (no media for ``verdict.dead_after``, or its connection
    fails), start a new ICE session once, as an app reconnecting would."""

    @field_validator("transport")
    @classmethod
    def _transport_needs_turn(cls, value: IceTransport | None, info: ValidationInfo) -> IceTransport | None:
        if value is not None and info.data.get("turn") is None:
            raise ValueError("ice.transport is how to reach the relay: set ice.turn too")
        return value

    @field_validator("policy")
    @classmethod
    def _policy_needs_turn(cls, value: IcePolicy | None, info: ValidationInfo) -> IcePolicy | None:
        if value is IcePolicy.RELAY and info.data.get("turn") is None:
            raise ValueError("policy: relay needs a relay: set ice.turn to a node with a turn service")
        return value


class CallSpec(_Frozen):
    """One ``calls:`` entry (see docs/calls.md for every key)."""

    name: str = Field(pattern=NAME_PATTERN)
    caller: str = Field("caller", alias="from")
    callee: str = Field("callee", alias="to")
    duration: Duration = 5.0
    connect_timeout: Timeout = 15.0
    media: tuple[Media, ...] | None = None
    """Default: audio and data, plus video if ``video:`` is given."""
    audio: AudioSpec | None = None
    video: VideoSpec | None = None
    data: DataSpec | None = None
    ice: IceSpec = Field(default_factory=IceSpec)
    profile: str | None = None
    adapt: bool | None = None
    """Adapt the Opus bitrate to the peer's RTCP receiver reports (docs/calls.md, "Adaptive
    audio"); default the profile's: on for whatsapp/telegram, off for webrtc and no profile."""
    start: Duration = 0.0
    """Seconds after the calls phase begins that this call (its first instance) is placed."""
    count: int = Field(1, ge=1, le=1000)
    """Place this call ``count`` times; instances are named ``<name>#1`` .. ``<name>#<count>``."""
    concurrency: int | None = Field(None, ge=1, le=1000)
    """At most this many instances at once (default: all ``count`` at once)."""
    stagger: Duration = 0.0
    """Delay between the starts of successive instances."""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    """The WebRTC stack at each end (default aiortc at both; docs/calls.md, "Engines")."""

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_shorthand(cls, value: Any) -> Any:
        return {"caller": value, "callee": value} if isinstance(value, str) else value

    @field_validator("engine")
    @classmethod
    def _engine_supports(cls, value: EngineSpec, info: ValidationInfo) -> EngineSpec:
        if not value.uses_chromium:
            return value
        ice = info.data.get("ice")
        if ice is not None and ice.restart:
            raise ValueError("ice.restart is not supported with engine chromium (aiortc only); remove one of them")
        profile = info.data.get("profile")
        if profile in _AIORTC_ONLY_PROFILES:
            raise ValueError(
                f"the {profile} profile's STUN signature needs the aiortc engine; use engine: aiortc or profile: webrtc"
            )
        if CallEngine.AIORTC not in (value.caller, value.callee):
            # Both are aiortc's encoder settings; a browser at both ends would ignore them silently
            # (libwebrtc picks its own Opus rate and always runs its congestion control).
            audio = info.data.get("audio")
            if info.data.get("adapt") is not None:
                raise ValueError("adapt is aiortc's; libwebrtc always runs its own congestion control: remove adapt")
            if audio is not None and audio.bitrate is not None:
                raise ValueError("audio.bitrate sets aiortc's Opus encoder; Chromium picks its own: remove it")
        return value

    @field_validator("audio", mode="before")
    @classmethod
    def _audio_shorthand(cls, value: Any) -> Any:
        return {"codec": value} if isinstance(value, str) else value

    @field_validator("video", mode="before")
    @classmethod
    def _video_shorthand(cls, value: Any) -> Any:
        return {"codec": value} if isinstance(value, str) else value

    @field_validator("media")
    @classmethod
    def _media_ok(cls, value: tuple[Media, ...] | None) -> tuple[Media, ...] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("a call needs at least one of: audio, video, data")
        if len(set(value)) != len(value):
            raise ValueError("each media kind may be listed once")
        return value

    @field_validator("audio", "video", "data")
    @classmethod
    def _block_in_media(cls, value: Any, info: ValidationInfo) -> Any:
        media = info.data.get("media")
        if value is not None and media is not None and Media(info.field_name) not in media:
            raise ValueError(f"{info.field_name} settings given but media does not list {info.field_name}")
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILE_NAMES:
            raise ValueError(f"unknown app profile {value!r}; choose one of: {', '.join(PROFILE_NAMES)}")
        return value

    @field_validator("adapt")
    @classmethod
    def _adapt_needs_opus(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if not value:
            return value
        media, audio = info.data.get("media"), info.data.get("audio")
        if media is not None and Media.AUDIO not in media:
            raise ValueError("adapt adjusts the audio bitrate: add audio to media, or drop adapt")
        if audio is not None and audio.codec is not AudioCodec.OPUS:
            raise ValueError("adapt adjusts the Opus bitrate (pcmu has one rate): use codec: opus, or drop adapt")
        return value

    @field_validator("concurrency")
    @classmethod
    def _concurrency_le_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        count = info.data.get("count", 1)
        if value is not None and value > count:
            raise ValueError(f"concurrency {value} is more than count {count}")
        return value

    # -- derived ----------------------------------------------------------------------------------

    @property
    def kinds(self) -> tuple[Media, ...]:
        if self.media is not None:
            return self.media
        out = [Media.AUDIO, Media.DATA]
        if self.video is not None:
            out.insert(1, Media.VIDEO)
        return tuple(out)

    @property
    def instance_names(self) -> tuple[str, ...]:
        if self.count == 1:
            return (self.name,)
        return tuple(f"{self.name}#{i}" for i in range(1, self.count + 1))

    def latest_end(self) -> float:
        """Seconds after the calls phase begins by which the last instance should be over."""
        waves = -(-self.count // (self.concurrency or self.count))
        per_call = self.connect_timeout + self.duration + 10.0  # start-up and hang-up
        return self.start + self.stagger * (self.count - 1) + waves * per_call


def call_reference_problems(
    calls: tuple[CallSpec, ...] | list[CallSpec], nodes: Mapping[str, Any]
) -> list[tuple[tuple[str | int, ...], str, list[str]]]:
    """Checks across keys, as ``model.reference_problems`` returns them: (path, message, choices).

    Nodes named under ``from``/``to``/``ice.stun``/``ice.turn`` exist, the ICE ones have a
    ``turn`` service, ``tls`` has a ``tls_port``, and a profile's relay requirements hold.
    """
    from testbed.calls.profiles import load_profile  # data files; only read when checking

    out: list[tuple[tuple[str | int, ...], str, list[str]]] = []
    names = sorted(nodes)
    relays = sorted(n for n, spec in nodes.items() if _turn_of(spec) is not None)
    seen: set[str] = set()
    for i, call in enumerate(calls):
        # ``#`` cannot appear in a name, so instances of different entries never collide.
        if call.name in seen:
            out.append((("calls", i, "name"), f"call name {call.name!r} is used twice", []))
        seen.add(call.name)
        for key, node in (("from", call.caller), ("to", call.callee)):
            if node not in nodes:
                out.append((("calls", i, key), f"unknown node {node!r}", names))
        if call.caller == call.callee:
            out.append((("calls", i, "to"), "a call needs two different nodes", names))
        for key in ("stun", "turn"):
            node = getattr(call.ice, key)
            if node is None:
                continue
            if node not in nodes:
                out.append((("calls", i, "ice", key), f"unknown node {node!r}", relays or names))
            elif _turn_of(nodes[node]) is None:
                out.append(
                    (("calls", i, "ice", key), f"node {node!r} has no turn service (add `services: [turn]`)", relays)
                )
        turn = _turn_of(nodes[call.ice.turn]) if call.ice.turn is not None and call.ice.turn in nodes else None
        if turn is not None and call.ice.transport is IceTransport.TLS and not turn.tls_port:
            out.append((("calls", i, "ice", "transport"), f"the turn service on {call.ice.turn!r} has no tls_port", []))
        if call.profile is not None:
            profile = load_profile(call.profile)
            where = ("calls", i, "profile")
            if profile.relay.required and call.ice.turn is None:
                out.append((where, f"a {call.profile} call goes through its relay: set ice.turn", relays))
            elif turn is not None:
                port = relay_port(call.ice, turn, profile.relay.transport)
                if not profile.relay_port_ok(port):
                    lo, hi = profile.relay.ports or (port, port)
                    want = str(lo) if lo == hi else f"{lo}-{hi}"
                    out.append(
                        (
                            where,
                            f"{call.profile}'s relay listens on port {want}; the turn service on "
                            f"{call.ice.turn!r} uses {port} (set the service's port)",
                            [],
                        )
                    )
                if not profile.realm_ok(turn.realm):
                    out.append(
                        (
                            where,
                            f"{call.profile}'s relay has a REALM containing "
                            f"{profile.relay.realm_contains!r}; set `realm:` of the turn service on "
                            f"{call.ice.turn!r} (e.g. {profile.relay.realm_contains}.org)",
                            [],
                        )
                    )
    return out


def _turn_of(node: Any) -> Any:
    for svc in getattr(node, "services", ()) or ():
        turn = getattr(svc, "turn", None)
        if turn is not None:
            return turn
    return None


def relay_port(ice: IceSpec, turn: Any, default_transport: str | None = None) -> int:
    """The relay port a call uses: the service's ``tls_port`` for tls, else its ``port``."""
    transport = ice.transport.value if ice.transport is not None else (default_transport or "udp")
    if transport == "tls":
        return int(turn.tls_port)
    return int(turn.port)

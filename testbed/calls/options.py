"""What a scenario says about one call: :class:`CallOptions`, a frozen, validated value.

It travels to the endpoint processes as JSON (``to_json``/``from_json``), so every field is a plain
JSON value.  New fields get defaults, so older scenario files and configs keep working.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from testbed.records.json import JsonObject

# Call names end up in file names (endpoint logs) and in result JSON keys.
# ``#<i>``: the instance number of a call placed ``count`` times.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(#[0-9]{1,4})?$")
# RFC 7064 (stun:) and RFC 7065 (turn:) URIs, with the host as an IP literal.
_ICE_URL_RE = re.compile(
    r"^(?P<scheme>stun|stuns|turn|turns):(?P<host>\[[0-9A-Fa-f:.]+\]|[0-9.]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?$"
)


# mimeType as aiortc names the codec, by the scenario's name for it.
AUDIO_CODECS = {"opus": "audio/opus", "pcmu": "audio/PCMU"}
VIDEO_CODECS = {"vp8": "video/VP8", "h264": "video/H264"}


class IceTransportPolicy(StrEnum):
    """RTCIceTransportPolicy: ``relay`` uses TURN relay candidates only (RFC 8828 mode 4)."""

    ALL = "all"
    RELAY = "relay"


@dataclass(frozen=True, slots=True)
class IceServer:
    """One RTCIceServer.  Hosts must be IP literals: endpoints never resolve names, so a typo
    cannot send a lookup (or a STUN request) anywhere outside the sandbox."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in self.urls:
            match = _ICE_URL_RE.match(url)
            if match is None:
                raise ValueError(
                    f"ICE server URL {url!r} must look like turn:198.18.0.1:3478?transport=udp "
                    "or stun:198.18.0.1 (the host an IP address, not a name)"
                )
            try:
                ipaddress.ip_address(match["host"].strip("[]"))
            except ValueError:
                raise ValueError(f"ICE server URL {url!r}: {match['host']} is not an IP address") from None
            if match["port"] is not None and not 0 < int(match["port"]) < 65536:
                raise ValueError(f"ICE server URL {url!r}: port out of range")
            if match["scheme"].startswith("stun") and match["transport"]:
                raise ValueError(f"ICE server URL {url!r}: stun URLs take no transport (RFC 7064)")
            if match["scheme"].startswith("turn") and (self.username is None or self.credential is None):
                raise ValueError(f"TURN server {url!r} needs a username and a credential")

    @property
    def is_turn(self) -> bool:
        return any(url.startswith("turn") for url in self.urls)

    def to_json(self) -> JsonObject:
        return {"urls": list(self.urls), "username": self.username, "credential": self.credential}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IceServer:
        urls = data.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise ValueError("ICE server 'urls' must be a string or a list of strings")
        unknown = set(data) - {"urls", "username", "credential"}
        if unknown:
            raise ValueError(f"unknown ICE server key(s): {', '.join(sorted(unknown))}")
        return cls(urls=tuple(urls), username=data.get("username"), credential=data.get("credential"))


@dataclass(frozen=True, slots=True)
class CallOptions:
    """One call of a scenario.

    ``duration_s`` is media time counted from the moment both endpoints report connectionState
    "connected"; set-up and hang-up come on top of it.
    """

    name: str
    duration_s: float
    audio: bool = True
    """Synthetic Opus tone each way, 20 ms frames paced in real time (RFC 7587: 48 kHz clock)."""
    video: bool = False
    """Synthetic VP8 frames each way, ``video_width`` x ``video_height`` at ``video_fps``."""
    data_channel: bool = True
    """An ordered, reliable data channel; each side sends a message every ``data_interval_s``."""
    connect_timeout_s: float = 15.0
    """From the moment the caller is told to dial until both endpoints must be connected."""
    data_interval_s: float = 0.1
    data_message_bytes: int = 100
    video_width: int = 320
    video_height: int = 240
    video_fps: int = 15
    drain_s: float = 0.2
    """After media stops at hang-up, how long an endpoint waits for in-flight packets before it
    reads its final statistics (so sent and received counts describe the same packets)."""
    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers both endpoints use; empty means host candidates only.  (aiortc uses the
    first STUN and the first TURN URL it is given.)"""
    ice_transport_policy: IceTransportPolicy = IceTransportPolicy.ALL
    audio_codec: str = "opus"
    """``opus`` (48 kHz clock) or ``pcmu`` (G.711 mu-law, 8 kHz clock)."""
    video_codec: str = "vp8"
    """``vp8`` or ``h264``."""
    data_reliable: bool = True
    """``False``: unordered, no retransmissions (maxRetransmits 0): lost messages stay lost."""
    sample_interval_s: float = 1.0
    """Endpoints snapshot their statistics this often (the result's per-second timeline)."""
    stun_prelude: tuple[str, ...] = ()
    """App profile: STUN-framed messages (hex) each endpoint sends to its TURN server from its
    allocation's socket, once the allocation exists and then every ``stun_prelude_every_s``."""
    stun_prelude_every_s: float = 2.0
    ice_restart: bool = False
    """If media stops (nothing received for ``ice_restart_after_s``) or the connection fails
    after it worked, both endpoints start a new ICE session once; the caller re-offers."""
    ice_restart_after_s: float = 3.0
    profile: str | None = None
    audio_bitrate_bps: int = 96000
    """Opus target bit/s at the start (throughout without ``adapt``); the defaults of the audio
    fields are aiortc's own encoder, which a call then uses unchanged."""
    audio_min_bitrate_bps: int = 6000
    audio_max_bitrate_bps: int = 96000
    audio_frame_ms: int = 20
    """Opus frame (= RTP packet) duration: 10, 20, 40 or 60 ms."""
    audio_fec: bool = False
    """Opus in-band FEC (the encoder told to expect 10 % loss, so it spends bits on it)."""
    adapt: bool = False
    """Adapt the Opus bitrate to the peer's RTCP receiver reports (testbed.calls.adapt)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"call name {self.name!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
                " and start with a letter or digit (then optionally #<instance>)"
            )
        _positive("duration_s", self.duration_s, allow_zero=True)
        _positive("connect_timeout_s", self.connect_timeout_s)
        _positive("data_interval_s", self.data_interval_s)
        _positive("drain_s", self.drain_s, allow_zero=True)
        if not 16 <= self.data_message_bytes <= 65536:
            raise ValueError(f"data_message_bytes must be 16..65536, got {self.data_message_bytes}")
        # VP8 needs even dimensions for 4:2:0 chroma subsampling.
        for key, value, low, high in (
            ("video_width", self.video_width, 16, 1920),
            ("video_height", self.video_height, 16, 1080),
            ("video_fps", self.video_fps, 1, 60),
        ):
            if not low <= value <= high:
                raise ValueError(f"{key} must be {low}..{high}, got {value}")
        if self.video_width % 2 or self.video_height % 2:
            raise ValueError("video_width and video_height must be even (4:2:0 chroma)")
        if self.audio_codec not in AUDIO_CODECS:
            raise ValueError(f"audio_codec must be one of {sorted(AUDIO_CODECS)}")
        if self.video_codec not in VIDEO_CODECS:
            raise ValueError(f"video_codec must be one of {sorted(VIDEO_CODECS)}")
        _positive("sample_interval_s", self.sample_interval_s)
        _positive("stun_prelude_every_s", self.stun_prelude_every_s)
        _positive("ice_restart_after_s", self.ice_restart_after_s)
        for message in self.stun_prelude:
            try:
                if len(bytes.fromhex(message)) < 20:
                    raise ValueError
            except ValueError:
                raise ValueError("stun_prelude entries are STUN messages in hex (>= 20 bytes)") from None
        if self.audio_frame_ms not in (10, 20, 40, 60):
            raise ValueError(f"audio_frame_ms must be 10, 20, 40 or 60, got {self.audio_frame_ms}")
        if not 6000 <= self.audio_min_bitrate_bps <= self.audio_bitrate_bps <= self.audio_max_bitrate_bps <= 510000:
            raise ValueError(
                "Opus bitrates need 6000 <= audio_min_bitrate_bps <= audio_bitrate_bps <= "
                f"audio_max_bitrate_bps <= 510000, got {self.audio_min_bitrate_bps} <= "
                f"{self.audio_bitrate_bps} <= {self.audio_max_bitrate_bps}"
            )
        if self.adapt and not (self.audio and self.audio_codec == "opus"):
            raise ValueError("adapt adjusts the Opus bitrate: it needs audio with audio_codec 'opus'")
        if not (self.audio or self.video or self.data_channel):
            raise ValueError("a call needs at least one of audio, video, data_channel")
        if not isinstance(self.ice_servers, tuple) or not all(isinstance(s, IceServer) for s in self.ice_servers):
            raise ValueError("ice_servers must be a tuple of IceServer")
        if not isinstance(self.ice_transport_policy, IceTransportPolicy):
            raise ValueError(f"ice_transport_policy must be one of {[p.value for p in IceTransportPolicy]}")
        if self.ice_transport_policy is IceTransportPolicy.RELAY and not any(s.is_turn for s in self.ice_servers):
            raise ValueError("ice_transport_policy 'relay' needs a TURN server in ice_servers")

    @property
    def app_audio(self) -> bool:
        """Whether the Opus encoder differs from aiortc's own (so the endpoint installs its own)."""
        return (
            self.audio
            and self.audio_codec == "opus"
            and (self.adapt or self.audio_fec or self.audio_frame_ms != 20 or self.audio_bitrate_bps != 96000)
        )

    @property
    def turn_transport(self) -> str | None:
        """How the endpoints reach their TURN server: udp, tcp or tls (None: no TURN)."""
        for server in self.ice_servers:
            for url in server.urls:
                match = _ICE_URL_RE.match(url)
                if match is None or not match["scheme"].startswith("turn"):
                    continue
                if match["scheme"] == "turns":
                    return "tls"
                return match["transport"] or "udp"
        return None

    def to_json(self) -> JsonObject:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ice_servers"] = [s.to_json() for s in self.ice_servers]
        out["stun_prelude"] = list(self.stun_prelude)
        out["ice_transport_policy"] = self.ice_transport_policy.value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown call option(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "ice_servers" in values:
            servers = values["ice_servers"]
            if not isinstance(servers, list | tuple) or not all(isinstance(s, Mapping) for s in servers):
                raise ValueError("ice_servers must be a list of {urls, username, credential}")
            values["ice_servers"] = tuple(IceServer.from_json(s) for s in servers)
        if "stun_prelude" in values:
            values["stun_prelude"] = tuple(values["stun_prelude"])
        if "ice_transport_policy" in values:
            try:
                values["ice_transport_policy"] = IceTransportPolicy(values["ice_transport_policy"])
            except ValueError:
                raise ValueError(
                    f"ice_transport_policy must be one of {[p.value for p in IceTransportPolicy]}"
                ) from None
        return cls(**values)


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

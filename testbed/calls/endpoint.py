"""One end of a call: ``python -m testbed.calls.endpoint --config FILE`` (runs inside a namespace).

The config file is JSON: ``{"role": "caller"|"callee", "socket": PATH, "options": CallOptions}``.
The process connects to the relay's unix socket, says Hello, and then follows the relay:

* caller: on Dial, make an offer (audio/video transceivers, a data channel) and send it;
  on Answer, apply it.  callee: on Offer, add its tracks, answer.
* both: report every state change (see ``signalling.Layer``) with CLOCK_MONOTONIC timestamps,
  send media and data-channel messages once connected.
* on HangUp (from the relay) or Bye (from the peer): stop media, say Bye (if not the one who got
  it), wait ``drain_s``, send Stats, close the peer connection, send Done, exit 0.
* on EOF from the relay or SIGTERM/SIGINT: close the peer connection and exit, without stats.

ICE never contacts a server that the options do not name: ``iceServers`` is always an explicit
list (aiortc would otherwise add stun.l.google.com, see ``RTCIceGatherer.getDefaultIceServers``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioice.turn
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import SessionDescription

from testbed.calls.media import FrameSink, MovingBarTrack, ToneTrack
from testbed.calls.metrics import Arrivals
from testbed.calls.options import AUDIO_CODECS, VIDEO_CODECS, CallOptions
from testbed.calls.profiles import with_transaction_id
from testbed.calls.quality import FreezeDetector, GapRecorder
from testbed.calls.signalling import (
    Answer,
    Bye,
    Decoder,
    Dial,
    Done,
    Failure,
    HangUp,
    Hello,
    Layer,
    Message,
    Offer,
    Restart,
    Role,
    SignallingProtocolError,
    StateChange,
    Stats,
    encode,
)

# Different tones per side make a capture easy to read (and would show a loop-back).
TONE_HZ = {Role.CALLER: 440, Role.CALLEE: 660}
CLOSE_TIMEOUT_S = 2.0
STATS_TIMEOUT_S = 2.0
MAX_DELAY_SAMPLES = 20000
DATA_CHANNEL_LABEL = "testbed"
AUDIO_GAP_THRESHOLD_S = 0.060  # 3 x 20 ms packets: a jitter buffer hides shorter holes
SILENCE_THRESHOLD_S = 1.0  # nothing at all arrived: the shortest "dead_after" worth recording
MAX_SNAPSHOTS = 7200  # two hours of one-per-second samples


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointConfig:
    role: Role
    socket: Path
    options: CallOptions
    t0: float | None = None
    """CLOCK_MONOTONIC start of the call (shared by all processes): origin of per-second counts."""

    @classmethod
    def load(cls, path: Path) -> EndpointConfig:
        raw = json.loads(path.read_text())
        return cls(
            role=Role(raw["role"]),
            socket=Path(raw["socket"]),
            options=CallOptions.from_json(raw["options"]),
            t0=float(raw["t0"]) if raw.get("t0") is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role.value,
            "socket": str(self.socket),
            "options": self.options.to_json(),
            "t0": self.t0,
        }


class Endpoint:
    def __init__(self, config: EndpointConfig, send: Callable[[Message], Awaitable[None]]) -> None:
        self.role = config.role
        self.options = config.options
        self._send = send
        # Always an explicit list (empty: host candidates only): never aiortc's default STUN server.
        self.pc = self._new_peer_connection()
        self._tracks: list[ToneTrack | MovingBarTrack] = []
        self._old_tracks: list[ToneTrack | MovingBarTrack] = []  # of earlier ICE sessions
        self._sinks: dict[str, FrameSink] = {}
        self._frames_in_before: dict[str, int] = {}  # decoded in earlier ICE sessions
        self._freezes: dict[str, FreezeDetector] = {"video": FreezeDetector()}
        self._tasks: set[asyncio.Task[None]] = set()
        # By kind, not SSRC: a restarted session has new SSRCs, the stream goes on.
        self._arrivals: dict[str, Arrivals] = {}
        self._ssrc_kind: dict[int, str] = {}
        self._carry: dict[str, dict[str, dict[str, int]]] = {}
        """pc counters of earlier ICE sessions, added to the current session's."""
        self._stalled = False
        self._watching = False
        self._t0 = config.t0
        self._data_arrivals = Arrivals(config.t0)
        self._hooked: set[int] = set()
        self._data = {
            "messages_sent": 0,
            "bytes_sent": 0,
            "messages_received": 0,
            "bytes_received": 0,
        }
        self._delays_ms: list[float] = []
        self._gaps: dict[str, GapRecorder] = {}  # received media by kind
        self._silences = GapRecorder(SILENCE_THRESHOLD_S)  # nothing of any kind arrived
        self._snapshots: list[dict[str, Any]] = []
        self._sampling = False
        self._hanging_up = False
        self._closed = False
        _TURN_HOOK.endpoint = self

    def _new_peer_connection(self) -> RTCPeerConnection:
        # Always an explicit list (empty: host candidates only): never aiortc's default STUN server.
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                    for s in self.options.ice_servers
                ],
                iceTransportPolicy=RTCIceTransportPolicy(self.options.ice_transport_policy.value),
            )
        )
        self._wire_peer_connection(pc)
        return pc

    # -- ICE restart ----------------------------------------------------------------------------

    async def restart(self) -> None:
        """Drop this ICE session and start another (aiortc has no restartIce, so a new peer
        connection, as an app reconnecting would).  Counters carry over; the caller re-offers."""
        self._emit(Layer.SIGNALLING, "restart")
        old = self.pc
        with contextlib.suppress(Exception):
            raw = _pc_counters(await old.getStats())
            for kind, dirs in raw.items():
                for direction, values in dirs.items():
                    into = self._carry.setdefault(kind, {}).setdefault(direction, {})
                    for key, value in values.items():
                        into[key] = into.get(key, 0) + value
        old.remove_all_listeners()  # its closing is not this call's state any more
        for track in self._tracks:
            track.stop()
        self._old_tracks += self._tracks
        self._tracks = []
        for kind, sink in self._sinks.items():
            self._frames_in_before[kind] = self._frames_in_before.get(kind, 0) + sink.frames
        self._sinks = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await old.close()
        self.pc = self._new_peer_connection()
        if self.role is Role.CALLER:
            await self.dial()

    def _start_stall_watch(self) -> None:
        if self.options.ice_restart and not self._watching:
            self._watching = True
            self._spawn(self._stall_watch())

    async def _stall_watch(self) -> None:
        """Tell the relay when nothing at all has arrived for ``ice_restart_after_s`` (it may
        restart ICE), and when media comes back."""
        limit = self.options.ice_restart_after_s
        while not self._hanging_up and not self._closed:
            await asyncio.sleep(0.25)
            lasts = [a.last for a in (*self._arrivals.values(), self._data_arrivals) if a.last is not None]
            if not lasts:
                continue
            silent = time.monotonic() - max(lasts)
            if silent >= limit and not self._stalled:
                self._stalled = True
                self._emit(Layer.MEDIA, "stalled")
            elif silent < limit and self._stalled:
                self._stalled = False
                self._emit(Layer.MEDIA, "resumed")

    # -- TURN allocations (for app-profile messages) ------------------------------------------

    def on_turn_allocation(self, inner: Any) -> None:
        """aioice made a TURN allocation; ``inner`` is its client protocol (UDP or TCP)."""
        if self.options.stun_prelude:
            self._spawn(self._send_prelude(inner))

    async def _send_prelude(self, inner: Any) -> None:
        messages = [bytes.fromhex(m) for m in self.options.stun_prelude]
        while not self._hanging_up and not self._closed:
            transport = getattr(inner, "transport", None)
            if transport is None or transport.is_closing():
                return
            for message in messages:
                inner._send(with_transaction_id(message, secrets.token_bytes(12)))
            await asyncio.sleep(self.options.stun_prelude_every_s)

    # -- statistics snapshots -----------------------------------------------------------------

    def start_sampling(self) -> None:
        if not self._sampling:
            self._sampling = True
            self._spawn(self._sample_loop())

    async def _sample_loop(self) -> None:
        # Aligned to the call's t0, so both endpoints' samples cover the same seconds.
        interval = self.options.sample_interval_s
        origin = self._t0 if self._t0 is not None else time.monotonic()
        while not self._hanging_up and not self._closed and len(self._snapshots) < MAX_SNAPSHOTS:
            k = int((time.monotonic() - origin) / interval) + 1
            await asyncio.sleep(max(0.0, origin + k * interval - time.monotonic()))
            if self._hanging_up or self._closed:
                return
            self._snapshots.append(await self.snapshot())

    async def snapshot(self) -> dict[str, Any]:
        """Cumulative counters now, per kind: ``{"t", "<kind>": {"out": {...}, "in": {...},
        "rtt"}}`` (``quality.build_samples`` turns them into per-second samples)."""
        t = time.monotonic()
        stats = await self.pc.getStats()
        snap: dict[str, Any] = {"t": t}
        counters = _pc_counters(stats)
        for kind in set(counters) | set(self._carry):
            entry = snap.setdefault(kind, {})
            for direction in ("out", "in"):
                now_values = counters.get(kind, {}).get(direction, {})
                before = self._carry.get(kind, {}).get(direction, {})
                if now_values or before:
                    entry[direction] = {
                        key: now_values.get(key, 0) + before.get(key, 0) for key in {*now_values, *before}
                    }
        for st in stats.values():
            kind = getattr(st, "kind", None)
            if kind not in ("audio", "video"):
                continue
            entry = snap.setdefault(kind, {})
            if st.type == "inbound-rtp":
                entry.setdefault("in", {})["jitter"] = st.jitter
            elif st.type == "remote-inbound-rtp":
                entry.setdefault("out", {})["jitter"] = st.jitter
                entry["rtt"] = st.roundTripTime
        for kind, arrivals in self._arrivals.items():
            snap.setdefault(kind, {}).setdefault("in", {"packets": 0})["bytes"] = arrivals.bytes
        for kind, frames in self._frames_sent().items():
            snap.setdefault(kind, {}).setdefault("out", {"packets": 0, "bytes": 0})["frames"] = frames
        for kind, frames in self._frames_received().items():
            snap.setdefault(kind, {}).setdefault("in", {"packets": 0, "bytes": 0})["frames"] = frames
        if self.options.data_channel:
            d = self._data
            snap["data"] = {
                "out": {"packets": d["messages_sent"], "bytes": d["bytes_sent"], "messages": d["messages_sent"]},
                "in": {"packets": d["messages_received"], "bytes": d["bytes_received"],
                       "messages": d["messages_received"]},
            }  # fmt: skip
        return snap

    def _frames_sent(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for track in (*self._old_tracks, *self._tracks):
            out[track.kind] = out.get(track.kind, 0) + track.frames_sent
        return out

    def _frames_received(self) -> dict[str, int]:
        out = dict(self._frames_in_before)
        for kind, sink in self._sinks.items():
            out[kind] = out.get(kind, 0) + sink.frames
        return out

    # -- events -> relay ------------------------------------------------------------------------

    def _emit(self, layer: Layer, state: str) -> None:
        self._spawn(self._send(StateChange(t=time.monotonic(), layer=layer, state=state)))

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            # If the relay went away, the read loop sees EOF and ends the process.
            with contextlib.suppress(ConnectionError, OSError):
                await coro

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wire_peer_connection(self, pc: RTCPeerConnection) -> None:
        def on_connection_state() -> None:
            self._emit(Layer.CONNECTION, pc.connectionState)
            if pc.connectionState == "connected":
                self._start_stall_watch()

        pc.on("connectionstatechange", on_connection_state)
        pc.on(
            "iceconnectionstatechange",
            lambda: self._emit(Layer.ICE_CONNECTION, pc.iceConnectionState),
        )
        pc.on(
            "icegatheringstatechange", lambda: self._emit(Layer.ICE_GATHERING, pc.iceGatheringState)
        )
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)

    def _hook_transports(self) -> None:
        """Follow DTLS state and count received RTP payload bytes, once transports exist."""
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.sender.transport
            self._hook_dtls(dtls)
            receiver = transceiver.receiver
            if id(receiver) not in self._hooked:
                self._hooked.add(id(receiver))
                kind = receiver.track.kind if receiver.track is not None else "audio"
                gaps = None
                if kind == "audio":
                    gaps = self._gaps.setdefault("audio", GapRecorder(AUDIO_GAP_THRESHOLD_S))
                arrivals = self._arrivals.setdefault(kind, Arrivals(self._t0))
                _track_arrivals(receiver, arrivals, self._ssrc_kind, kind, gaps, self._silences)
        if self.pc.sctp is not None:
            self._hook_dtls(self.pc.sctp.transport)

    def _hook_dtls(self, dtls: Any) -> None:
        if dtls is None or id(dtls) in self._hooked:
            return
        self._hooked.add(id(dtls))
        dtls.on("statechange", lambda: self._emit(Layer.DTLS, dtls.state))

    def _on_track(self, track: MediaStreamTrack) -> None:
        sink = FrameSink(track, freezes=self._freezes.get(track.kind))
        self._sinks[track.kind] = sink

        async def first() -> None:
            await sink.first_frame.wait()
            self._emit(Layer.MEDIA, f"first-{track.kind}-received")

        self._spawn(sink.run())
        self._spawn(first())

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self._wire_channel(channel)
        # The callee learns of the channel when it is already open.
        if channel.readyState == "open":
            self._on_channel_open(channel)

    def _wire_channel(self, channel: RTCDataChannel) -> None:
        channel.on("open", lambda: self._on_channel_open(channel))
        channel.on("close", lambda: self._emit(Layer.DATA_CHANNEL, "closed"))
        channel.on("message", self._on_message)

    def _on_channel_open(self, channel: RTCDataChannel) -> None:
        self._emit(Layer.DATA_CHANNEL, "open")
        self._spawn(self._send_data(channel))

    def _on_message(self, message: str | bytes) -> None:
        now = time.monotonic()
        data = message.encode() if isinstance(message, str) else message
        self._data["messages_received"] += 1
        self._data["bytes_received"] += len(data)
        self._data_arrivals.add(now, len(data))
        self._silences.add(now)
        # "<seq> <monotonic send time> xxxx...": both endpoints share CLOCK_MONOTONIC.
        with contextlib.suppress(ValueError, IndexError):
            sent_at = float(data.split(b" ", 2)[1])
            if len(self._delays_ms) < MAX_DELAY_SAMPLES:
                self._delays_ms.append(round((now - sent_at) * 1000.0, 3))

    async def _send_data(self, channel: RTCDataChannel) -> None:
        size = self.options.data_message_bytes
        interval = self.options.data_interval_s
        start = time.monotonic()
        seq = 0
        while not self._hanging_up and channel.readyState == "open":
            head = f"{seq} {time.monotonic():.6f} ".encode()
            payload = head + b"x" * max(0, size - len(head))
            channel.send(payload.decode())
            self._data["messages_sent"] += 1
            self._data["bytes_sent"] += len(payload)
            seq += 1
            await asyncio.sleep(max(0.0, start + seq * interval - time.monotonic()))

    # -- call flow -----------------------------------------------------------------------------

    def _add_media(self) -> None:
        """Add our tracks.  On the callee, addTrack reuses the transceivers the offer created."""
        if self.options.audio:
            self._add_track(ToneTrack(TONE_HZ[self.role]), AUDIO_CODECS[self.options.audio_codec])
        if self.options.video:
            o = self.options
            self._add_track(
                MovingBarTrack(o.video_width, o.video_height, o.video_fps, seed=TONE_HZ[self.role]),
                VIDEO_CODECS[o.video_codec],
            )

    def _add_track(self, track: ToneTrack | MovingBarTrack, mime: str) -> None:
        self._tracks.append(track)
        sender = self.pc.addTrack(track)
        if self.role is Role.CALLER:
            # Offer exactly one codec (plus its RTX), so the negotiated clock rate is known.
            codecs = [
                c
                for c in RTCRtpSender.getCapabilities(track.kind).codecs
                if c.mimeType.lower() in (mime.lower(), f"{track.kind}/rtx")
            ]
            for transceiver in self.pc.getTransceivers():
                if transceiver.sender is sender:
                    transceiver.setCodecPreferences(codecs)

    async def dial(self) -> None:
        self.start_sampling()
        self._add_media()
        if self.options.data_channel:
            reliable = self.options.data_reliable
            self._wire_channel(
                self.pc.createDataChannel(
                    DATA_CHANNEL_LABEL, ordered=reliable, maxRetransmits=None if reliable else 0
                )
            )
        self._hook_transports()
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers all candidates
        await self._send(Offer(sdp=self.pc.localDescription.sdp))
        self._emit(Layer.SIGNALLING, "offer-sent")

    async def on_offer(self, sdp: str) -> None:
        self.start_sampling()
        self._emit(Layer.SIGNALLING, "offer-received")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._add_media()
        self._hook_transports()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._send(Answer(sdp=self.pc.localDescription.sdp))
        self._emit(Layer.SIGNALLING, "answer-sent")

    async def on_answer(self, sdp: str) -> None:
        self._emit(Layer.SIGNALLING, "answer-received")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._hook_transports()

    async def on_bye(self, reason: str) -> None:
        self._emit(Layer.SIGNALLING, "bye-received")
        await self.hang_up(say_bye=False, reason=reason)

    async def hang_up(self, *, say_bye: bool, reason: str) -> None:
        if self._hanging_up:
            return
        if self._sampling and len(self._snapshots) < MAX_SNAPSHOTS:
            # The last partial interval, up to the moment media stops.
            with contextlib.suppress(Exception):
                self._snapshots.append(await self.snapshot())
        self._hanging_up = True
        for track in self._tracks:
            track.stop()
        self._emit(Layer.MEDIA, "stopped")
        if say_bye:
            await self._send(Bye(reason=reason))
            self._emit(Layer.SIGNALLING, "bye-sent")
        # Let packets already on the wire arrive, so both sides count the same packets.
        await asyncio.sleep(self.options.drain_s)
        try:
            async with asyncio.timeout(STATS_TIMEOUT_S):
                report = await self.report()
        except Exception as exc:
            await self._send(Failure(f"getStats failed: {type(exc).__name__}: {exc}"))
            report = {}
        await self._send(Stats(t=time.monotonic(), report=report))
        await self.close()
        await self._send(Done())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for track in self._tracks:
            track.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.pc.close()
        # Let the last state-change reports go out; sinks end when pc.close() ends their tracks.
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=0.2)
            for task in still:
                task.cancel()

    async def report(self) -> dict[str, Any]:
        stats = await self.pc.getStats()
        by_ssrc = {
            ssrc: self._arrivals[kind] for ssrc, kind in self._ssrc_kind.items() if kind in self._arrivals
        }
        return {
            "stats": [self._with_carry(_stats_json(s)) for s in stats.values()],
            "codecs": self._negotiated_codecs(),
            "received_bytes": {str(k): a.bytes for k, a in by_ssrc.items()},
            "arrivals": {str(k): a.to_json() for k, a in by_ssrc.items()},
            "frames": {"sent": self._frames_sent(), "received": self._frames_received()},
            "data": {
                **self._data,
                "delays_ms": self._delays_ms,
                "arrivals": self._data_arrivals.to_json(),
            }
            if self.options.data_channel
            else None,
            "candidate_pair": self._candidate_pair(),
            "snapshots": self._snapshots,
            "gaps": {kind: g.gaps for kind, g in self._gaps.items()},
            "silences": self._silences.gaps,
            "last_arrival": self._silences.last,
            "freezes": {kind: f.freezes for kind, f in self._freezes.items() if kind in self._frames_received()},
        }

    def _with_carry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A stats entry with the counts of earlier ICE sessions added (after a restart)."""
        carry = self._carry.get(entry.get("kind") or "", {})
        keys = _CARRIED.get(entry.get("type") or "")
        if not carry or keys is None:
            return entry
        direction, fields = keys
        for stat, counter in fields:
            if isinstance(entry.get(stat), int):
                entry[stat] += carry.get(direction, {}).get(counter, 0)
        return entry

    def _negotiated_codecs(self) -> dict[str, dict[str, Any]]:
        # The answer decides: its first codec per m-line is the one both sides use.
        answer = self.pc.remoteDescription if self.role is Role.CALLER else self.pc.localDescription
        if answer is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for media in SessionDescription.parse(answer.sdp).media:
            if media.kind in ("audio", "video") and media.rtp.codecs:
                codec = media.rtp.codecs[0]
                out[media.kind] = {"mimeType": codec.mimeType, "clockRate": codec.clockRate}
        return out

    def _candidate_pair(self) -> dict[str, Any] | None:
        """The nominated pair.  aiortc has no public API for it (no candidate-pair stats), so this
        reads aioice's ``Connection._nominated``; any change there just yields ``None``."""
        try:
            if self.pc.sctp is not None:
                ice = self.pc.sctp.transport.transport
            else:
                ice = self.pc.getTransceivers()[0].sender.transport.transport
            pair = ice._connection._nominated.get(1)
            if pair is None:
                return None
            local, remote = pair.local_candidate, pair.remote_candidate
            return {
                "protocol": local.transport.lower(),
                "local_address": local.host,
                "local_port": local.port,
                "local_type": local.type,
                "remote_address": remote.host,
                "remote_port": remote.port,
                "remote_type": remote.type,
            }
        except (AttributeError, IndexError, KeyError):
            return None


# aiortc stats entry type -> (direction in _pc_counters, [(stats field, counter)]).
_CARRIED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "outbound-rtp": ("out", [("packetsSent", "packets"), ("bytesSent", "bytes")]),
    "inbound-rtp": ("in", [("packetsReceived", "packets"), ("packetsLost", "lost")]),
    "remote-inbound-rtp": ("out", [("packetsLost", "lost"), ("packetsReceived", "reported_received")]),
}


def _pc_counters(stats: Any) -> dict[str, dict[str, dict[str, int]]]:
    """The cumulative counters of one peer connection's stats, by kind and direction."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for st in stats.values():
        kind = getattr(st, "kind", None)
        spec = _CARRIED.get(st.type)
        if kind not in ("audio", "video") or spec is None:
            continue
        direction, fields = spec
        into = out.setdefault(kind, {}).setdefault(direction, {})
        for stat, counter in fields:
            value = getattr(st, stat, None)
            if isinstance(value, int):
                into[counter] = into.get(counter, 0) + value
    return out


def _track_arrivals(
    receiver: Any,
    stream: Arrivals,
    ssrc_kind: dict[int, str],
    kind: str,
    gaps: GapRecorder | None = None,
    silences: GapRecorder | None = None,
) -> None:
    """Count RTP payload bytes and arrival times per SSRC (aiortc's inbound-rtp stats have no byte
    count and no timing).  Wraps the receiver's ``_handle_rtp_packet``, which aiortc's RTP router
    calls for each packet after SRTP decryption."""
    original = getattr(receiver, "_handle_rtp_packet", None)
    if original is None:
        return

    async def tracking(packet: Any, arrival_time_ms: int) -> None:
        ssrc_kind.setdefault(packet.ssrc, kind)
        now = time.monotonic()
        stream.add(now, len(packet.payload))
        if gaps is not None:
            gaps.add(now)
        if silences is not None:
            silences.add(now)
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = tracking


def _stats_json(stats: Any) -> dict[str, Any]:
    out = dataclasses.asdict(stats)
    for key, value in out.items():
        if isinstance(value, datetime.datetime):
            out[key] = value.timestamp()
    return out


# -- TURN hook --------------------------------------------------------------------------------------


class _TurnHook:
    """aioice creates TURN allocations deep inside ICE gathering; this wraps its factory once per
    process to (1) reach each allocation's client protocol, for app-profile messages sent on the
    same 5-tuple as the media, and (2) accept the relay's certificate for ``turns:`` (aioice
    passes ``ssl=True``, which would verify it against the system CAs; testbed's relays have
    per-run self-signed certificates, and a censor sees the same handshake either way)."""

    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None
        self._installed = False

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        original = aioice.turn.create_turn_endpoint

        async def create_turn_endpoint(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl") is True:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                kwargs["ssl"] = context
            transport, protocol = await original(*args, **kwargs)
            inner = getattr(transport, "_TurnTransport__inner_protocol", None)
            if inner is not None and self.endpoint is not None:
                self.endpoint.on_turn_allocation(inner)
            return transport, protocol

        aioice.turn.create_turn_endpoint = create_turn_endpoint


_TURN_HOOK = _TurnHook()


# -- process ------------------------------------------------------------------------------------


async def run(config: EndpointConfig) -> int:
    reader, writer = await asyncio.open_unix_connection(str(config.socket))
    lock = asyncio.Lock()

    async def send(message: Message) -> None:
        async with lock:
            writer.write(encode(message))
            await writer.drain()

    _TURN_HOOK.install()
    endpoint = Endpoint(config, send)
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main.cancel)
    # The offer/answer step in progress.  It runs beside the read loop, so a HangUp is heard even
    # while aiortc is still busy (a slow gathering, say), and cancels it.
    negotiation: asyncio.Task[None] | None = None
    try:
        await send(Hello(role=config.role, pid=os.getpid()))
        decoder = Decoder()
        while True:
            data = await reader.read(65536)
            if not data:
                return 0  # the relay went away: close and exit
            for message in decoder.feed(data):
                if isinstance(message, Bye | HangUp):
                    if negotiation is not None:
                        negotiation.cancel()
                        await asyncio.wait([negotiation])
                    await _hang_up(endpoint, message, send)
                    return 0
                negotiation = asyncio.ensure_future(
                    _negotiate(endpoint, message, send, after=negotiation)
                )
    except asyncio.CancelledError:
        return 0  # SIGTERM/SIGINT is a normal way to end an endpoint
    except SignallingProtocolError as exc:
        print(f"endpoint {config.role}: bad message from relay: {exc}", file=sys.stderr)
        return 3
    finally:
        if negotiation is not None:
            negotiation.cancel()
        await endpoint.close()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _negotiate(
    endpoint: Endpoint,
    message: Message,
    send: Callable[[Message], Awaitable[None]],
    *,
    after: asyncio.Task[None] | None,
) -> None:
    """Carry out one offer/answer step, in order after the previous one; report what fails (the
    relay then hangs up, and the hang-up still reports statistics)."""
    if after is not None:
        await asyncio.wait([after])
    try:
        match message:
            case Dial() if endpoint.role is Role.CALLER:
                await endpoint.dial()
            case Offer(sdp=sdp) if endpoint.role is Role.CALLEE:
                await endpoint.on_offer(sdp)
            case Answer(sdp=sdp) if endpoint.role is Role.CALLER:
                await endpoint.on_answer(sdp)
            case Restart():
                await endpoint.restart()
            case _:
                await send(Failure(f"{endpoint.role} cannot handle {message.type} here"))
    except (ConnectionError, OSError):
        pass  # the relay went away: the read loop sees EOF
    except Exception as exc:
        with contextlib.suppress(ConnectionError, OSError):
            await send(Failure(f"{type(exc).__name__}: {exc}"))


async def _hang_up(
    endpoint: Endpoint, message: Bye | HangUp, send: Callable[[Message], Awaitable[None]]
) -> None:
    try:
        if isinstance(message, Bye):
            await endpoint.on_bye(message.reason)
        else:
            await endpoint.hang_up(say_bye=True, reason=message.reason)
    except (ConnectionError, OSError):
        pass  # the relay went away half-way: nobody is left to tell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.calls.endpoint")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = EndpointConfig.load(args.config)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())

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

Concurrency: an :class:`Endpoint` is an async context manager that owns one ``asyncio.TaskGroup``;
every task it starts (state reports, media sinks, sampling, data-channel and STUN-prelude senders)
is a child of that group, so none outlives the endpoint and an unexpected error in any of them
ends the process with exit 1 and a Failure to the relay, instead of vanishing.  Everything that
touches aiortc's or aioice's internals is in ``aiortc_glue``; the final report is an
``endpoint_report.EndpointReport``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

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

from testbed.calls import aiortc_glue
from testbed.calls.adapt import AdaptConfig, BitrateController
from testbed.calls.endpoint_config import EndpointConfig
from testbed.calls.endpoint_report import (
    Codec,
    Counters,
    DataCounts,
    EndpointReport,
    KindSnapshot,
    RtpStats,
    Snapshot,
    StatsType,
    busiest_transport,
)
from testbed.calls.media import FrameSink, MovingBarTrack, OpusToneTrack, ToneTrack, tone_second
from testbed.calls.metrics import Arrivals
from testbed.calls.options import AUDIO_CODECS, VIDEO_CODECS
from testbed.calls.opus_cache import OpusSetting, ToneCache
from testbed.calls.quality import FreezeDetector, GapRecorder, audio_gap_threshold_s
from testbed.calls.result import Kind
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
from testbed.calls.stun_txid import with_transaction_id

# Different tones per side make a capture easy to read (and would show a loop-back).
TONE_HZ = {Role.CALLER: 440, Role.CALLEE: 660}
CLOSE_TIMEOUT_S = 2.0
STATS_TIMEOUT_S = 2.0
MAX_DELAY_SAMPLES = 20000
DATA_CHANNEL_LABEL = "testbed"
SILENCE_THRESHOLD_S = 1.0  # nothing at all arrived: the shortest "dead_after" worth recording
MAX_SNAPSHOTS = 7200  # two hours of one-per-second samples
LIVE_OPUS_ENV = "TESTBED_LIVE_OPUS"
DRAIN_TASKS_S = 0.2  # at close: time for the last state reports to go out before cancelling


CounterTable = dict[Kind, dict[str, dict[str, int]]]
"""Cumulative counters by kind, direction ("out"/"in") and counter name (``Counters`` fields)."""


class Endpoint:
    """One end of a call.  Use as ``async with Endpoint(config, send) as endpoint:``: entering
    starts its task group and its TURN hook, leaving closes the peer connection and waits for (or
    cancels) every task it started."""

    def __init__(self, config: EndpointConfig, send: Callable[[Message], Awaitable[None]]) -> None:
        self.role = config.role
        self.options = config.options
        self._send = send
        self.pc = self._new_peer_connection()
        self._tracks: list[ToneTrack | OpusToneTrack | MovingBarTrack] = []
        self._old_tracks: list[ToneTrack | OpusToneTrack | MovingBarTrack] = []  # of earlier ICE sessions
        self._sinks: dict[str, FrameSink] = {}
        self._frames_in_before: dict[str, int] = {}  # decoded in earlier ICE sessions
        self._freezes: dict[str, FreezeDetector] = {"video": FreezeDetector()}
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        """The group's tasks still running: what close() drains."""
        self._finished = False
        # By kind, not SSRC: a restarted session has new SSRCs, the stream goes on.
        self._arrivals: dict[str, Arrivals] = {}
        self._ssrc_kind: dict[int, str] = {}
        self._carry: CounterTable = {}
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
        self._snapshots: list[Snapshot] = []
        self._sampling = False
        self._hanging_up = False
        # One controller for the whole call, so an ICE restart keeps what it learnt.
        self._bitrate: BitrateController | None = None
        self._bitrate_shown = 0
        self._bitrate_encoder: aiortc_glue.AppOpusEncoder | OpusToneTrack | None = None
        self._feedback_watch = False
        self._closed = False

    async def __aenter__(self) -> Endpoint:
        self._group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.enter_context(aiortc_glue.turn_hook(self._on_turn_allocation))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await self.close()
        finally:
            self._finished = True
            # The task group waits for what close() left (nothing, or tasks it cancelled) and
            # raises what any child raised; the TURN hook is removed.
            result = await self._stack.__aexit__(exc_type, exc, tb)
        return result

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

    # -- tasks ----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start ``coro`` as a child of the endpoint's task group."""
        if self._group is None:
            coro.close()
            raise RuntimeError("Endpoint used outside 'async with Endpoint(...)'")
        guarded = self._guarded(coro)
        try:
            if self._finished:
                raise RuntimeError("endpoint finished")
            task = self._group.create_task(guarded)
        except RuntimeError:
            # The group is shutting down (a child failed: that error surfaces) or has finished,
            # and aiortc still fired an event (a transport closing late): nothing is left to
            # run it or to report it to.
            guarded.close()
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
        # If the relay went away, the read loop sees EOF and ends the process; any other error
        # propagates to the task group, which ends the endpoint with it.
        with contextlib.suppress(ConnectionError, OSError):
            await coro

    # -- ICE restart ----------------------------------------------------------------------------

    async def restart(self) -> None:
        """Drop this ICE session and start another (aiortc has no restartIce, so a new peer
        connection, as an app reconnecting would).  Counters carry over; the caller re-offers."""
        self._emit(Layer.SIGNALLING, "restart")
        old = self.pc
        with contextlib.suppress(Exception):
            rtp, _ = aiortc_glue.read_stats(await old.getStats())
            for media, dirs in _pc_counters(rtp).items():
                for direction, values in dirs.items():
                    into = self._carry.setdefault(media, {}).setdefault(direction, {})
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

    def _on_turn_allocation(self, allocation: aiortc_glue.TurnAllocation) -> None:
        """aioice made a TURN allocation (called by the glue's hook while the endpoint runs)."""
        if self.options.stun_prelude:
            self._spawn(self._send_prelude(allocation))

    async def _send_prelude(self, allocation: aiortc_glue.TurnAllocation) -> None:
        messages = [bytes.fromhex(m) for m in self.options.stun_prelude]
        while not self._hanging_up and not self._closed:
            if allocation.closed:
                return
            for message in messages:
                allocation.send(with_transaction_id(message, secrets.token_bytes(12)))
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

    async def snapshot(self) -> Snapshot:
        """Cumulative counters now, per kind (``quality.build_samples`` turns a series of them
        into per-second samples)."""
        t = time.monotonic()
        rtp, _ = aiortc_glue.read_stats(await self.pc.getStats())
        table: CounterTable = {}
        rtts: dict[Kind, float] = {}
        counters = _pc_counters(rtp)
        for kind in set(counters) | set(self._carry):
            entry = table.setdefault(kind, {})
            for direction in ("out", "in"):
                now_values = counters.get(kind, {}).get(direction, {})
                before = self._carry.get(kind, {}).get(direction, {})
                if now_values or before:
                    entry[direction] = {
                        key: now_values.get(key, 0) + before.get(key, 0) for key in {*now_values, *before}
                    }
        for st in rtp:
            entry = table.setdefault(st.kind, {})
            if st.type is StatsType.INBOUND_RTP and st.jitter is not None:
                entry.setdefault("in", {})["jitter"] = st.jitter
            elif st.type is StatsType.REMOTE_INBOUND_RTP:
                if st.jitter is not None:
                    entry.setdefault("out", {})["jitter"] = st.jitter
                if st.round_trip_time is not None:
                    rtts[st.kind] = st.round_trip_time
        for name, arrivals in self._arrivals.items():
            table.setdefault(Kind(name), {}).setdefault("in", {"packets": 0})["bytes"] = arrivals.bytes
        for name, frames in self._frames_sent().items():
            table.setdefault(Kind(name), {}).setdefault("out", {"packets": 0, "bytes": 0})["frames"] = frames
        for name, frames in self._frames_received().items():
            table.setdefault(Kind(name), {}).setdefault("in", {"packets": 0, "bytes": 0})["frames"] = frames
        if self.options.data_channel:
            d = self._data
            table[Kind.DATA] = {
                "out": {"packets": d["messages_sent"], "bytes": d["bytes_sent"], "messages": d["messages_sent"]},
                "in": {"packets": d["messages_received"], "bytes": d["bytes_received"],
                       "messages": d["messages_received"]},
            }  # fmt: skip
        kinds = {
            kind: KindSnapshot(
                out=Counters(**dirs["out"]) if "out" in dirs else None,
                in_=Counters(**dirs["in"]) if "in" in dirs else None,
                rtt=rtts.get(kind),
            )
            for kind, dirs in table.items()
        }
        return Snapshot(t=t, kinds=kinds)

    def _frames_sent(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for track in (*self._old_tracks, *self._tracks):
            out[track.kind] = out.get(track.kind, 0) + track.frames_sent
        return out

    def _frames_due(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for track in (*self._old_tracks, *self._tracks):
            out[track.kind] = out.get(track.kind, 0) + track.frames_due()
        return out

    def _frames_received(self) -> dict[str, int]:
        out = dict(self._frames_in_before)
        for kind, sink in self._sinks.items():
            out[kind] = out.get(kind, 0) + sink.frames
        return out

    # -- events -> relay ------------------------------------------------------------------------

    def _emit(self, layer: Layer, state: str) -> None:
        self._spawn(self._tell(StateChange(t=time.monotonic(), layer=layer, state=state)))

    async def _tell(self, message: Message) -> None:
        await self._send(message)

    def _wire_peer_connection(self, pc: RTCPeerConnection) -> None:
        def on_connection_state() -> None:
            self._emit(Layer.CONNECTION, pc.connectionState)
            if pc.connectionState == "connected":
                self._start_stall_watch()
                self._start_feedback_watch()

        pc.on("connectionstatechange", on_connection_state)
        pc.on(
            "iceconnectionstatechange",
            lambda: self._emit(Layer.ICE_CONNECTION, pc.iceConnectionState),
        )
        pc.on("icegatheringstatechange", lambda: self._emit(Layer.ICE_GATHERING, pc.iceGatheringState))
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
                # The transceiver's kind: the caller hooks before the answer, when aiortc has not
                # made the receiver's track yet (its video was counted as audio before).
                kind = transceiver.kind
                aiortc_glue.on_rtp_packet(receiver, self._rtp_counter(kind))
                if kind == "audio" and not _live_opus():
                    aiortc_glue.count_instead_of_decoding(receiver, self._frame_counter(kind))
        if self.pc.sctp is not None:
            self._hook_dtls(self.pc.sctp.transport)

    def _rtp_counter(self, kind: str) -> Callable[[int, int], None]:
        """Count RTP payload bytes and arrival times per kind (aiortc's inbound-rtp stats have no
        byte count and no timing)."""
        # Both ends of a call send the call's frame size (its app profile's).
        threshold = audio_gap_threshold_s(self.options.audio_frame_ms)
        gaps = self._gaps.setdefault("audio", GapRecorder(threshold)) if kind == "audio" else None
        arrivals = self._arrivals.setdefault(kind, Arrivals(self._t0))

        def count(ssrc: int, size: int) -> None:
            self._ssrc_kind.setdefault(ssrc, kind)
            now = time.monotonic()
            arrivals.add(now, size)
            if gaps is not None:
                gaps.add(now)
            self._silences.add(now)

        return count

    def _frame_counter(self, kind: str) -> Callable[[], None]:
        def count() -> None:
            # The sink of the current ICE session (a restart makes new receivers and sinks).
            sink = self._sinks.get(kind)
            if sink is not None:
                sink.count()

        return count

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
            self._add_track(self._audio_track(), AUDIO_CODECS[self.options.audio_codec])
        if self.options.video:
            o = self.options
            self._add_track(
                MovingBarTrack(o.video_width, o.video_height, o.video_fps, seed=TONE_HZ[self.role]),
                VIDEO_CODECS[o.video_codec],
            )

    def _audio_track(self) -> ToneTrack | OpusToneTrack:
        """Opus: the tone encoded once per encoder setting and replayed (``opus_cache``; the
        profile's bitrate, frame size and FEC, else aiortc's encoder as it ships).  Other codecs,
        or ``TESTBED_LIVE_OPUS=1``: encoded live."""
        o = self.options
        if o.audio_codec != "opus" or _live_opus():
            return ToneTrack(TONE_HZ[self.role])
        if o.app_audio:
            setting = OpusSetting(o.audio_bitrate_bps, o.audio_frame_ms, o.audio_fec)
        else:
            setting = OpusSetting(aiortc_glue.AIORTC_OPUS_BITRATE, 20, False)
        if self._bitrate is not None:  # an ICE restart keeps what the controller learnt
            setting = OpusSetting(self._bitrate.bitrate_bps, setting.frame_ms, setting.fec)
        return OpusToneTrack(_tone_cache(self.role), setting)

    def _add_track(self, track: ToneTrack | OpusToneTrack | MovingBarTrack, mime: str) -> None:
        self._tracks.append(track)
        sender = self.pc.addTrack(track)
        if isinstance(track, OpusToneTrack):
            aiortc_glue.install_pre_encoded(sender, track.next_encoded)
        if track.kind == "audio" and self.options.app_audio:
            self._app_audio(sender, track if isinstance(track, OpusToneTrack) else None)
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

    def _app_audio(self, sender: RTCRtpSender, pre_encoded: OpusToneTrack | None) -> None:
        """The profile's Opus encoder (bitrate, frame size, FEC; a pre-encoded track has it
        already) and, with ``adapt``, the bitrate controller fed by the peer's receiver reports
        (docs/calls.md, "Adaptive audio")."""
        o = self.options
        encoder: aiortc_glue.AppOpusEncoder | OpusToneTrack
        if pre_encoded is not None:
            encoder = pre_encoded
        else:
            encoder = aiortc_glue.AppOpusEncoder(o.audio_bitrate_bps, o.audio_frame_ms, o.audio_fec)
            aiortc_glue.install_audio_encoder(sender, encoder)
        if not o.adapt:
            return
        if self._bitrate is None:
            self._bitrate = BitrateController(
                AdaptConfig(o.audio_bitrate_bps, o.audio_min_bitrate_bps, o.audio_max_bitrate_bps)
            )
            self._bitrate_shown = o.audio_bitrate_bps
        controller = self._bitrate
        self._bitrate_encoder = encoder
        encoder.set_bitrate(controller.bitrate_bps)

        def on_report(fraction_lost: float, rtt_s: float | None) -> None:
            self._apply_bitrate(controller.on_report(fraction_lost, rtt_s, time.monotonic()))

        aiortc_glue.on_receiver_report(sender, on_report)

    def _apply_bitrate(self, rate: int) -> None:
        if self._bitrate_encoder is not None:
            self._bitrate_encoder.set_bitrate(rate)
        # On the timeline only when it moved by 10 %: +1 kbit/s a second is not news.
        if abs(rate - self._bitrate_shown) >= 0.1 * self._bitrate_shown:
            self._bitrate_shown = rate
            self._emit(Layer.MEDIA, f"audio-bitrate-{rate // 1000}k")

    def _start_feedback_watch(self) -> None:
        if self._bitrate is not None and not self._feedback_watch:
            self._feedback_watch = True
            self._spawn(self._feedback_timer())

    async def _feedback_timer(self) -> None:
        """Once a second while media flows: the controller cuts the bitrate if no receiver report
        arrived for a while (they cross the same policer the other way)."""
        while not self._hanging_up and not self._closed and self._bitrate is not None:
            self._apply_bitrate(self._bitrate.on_timer(time.monotonic()))
            await asyncio.sleep(1.0)

    async def dial(self) -> None:
        self.start_sampling()
        self._add_media()
        if self.options.data_channel:
            reliable = self.options.data_reliable
            self._wire_channel(
                self.pc.createDataChannel(DATA_CHANNEL_LABEL, ordered=reliable, maxRetransmits=None if reliable else 0)
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
            report = EndpointReport()
        await self._send(Stats(t=time.monotonic(), report=report.to_json()))
        await self.close()
        await self._send(Done())

    async def close(self) -> None:
        """Stop media, close the peer connection, then give the tasks still running (the last
        state reports) a moment and cancel the rest.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for track in self._tracks:
            track.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.pc.close()
        # Sinks end when pc.close() ends their tracks; loops see _closed at their next turn.
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=DRAIN_TASKS_S)
            for task in still:
                task.cancel()

    async def report(self) -> EndpointReport:
        rtp, transports = aiortc_glue.read_stats(await self.pc.getStats())
        by_ssrc = {ssrc: self._arrivals[kind] for ssrc, kind in self._ssrc_kind.items() if kind in self._arrivals}
        frames_received = self._frames_received()
        arrivals = {ssrc: times for ssrc, a in by_ssrc.items() if (times := a.times()) is not None}
        return EndpointReport(
            rtp=tuple(self._with_carry(entry) for entry in rtp),
            transport=busiest_transport(transports),
            codecs=self._negotiated_codecs(),
            received_bytes={ssrc: a.bytes for ssrc, a in by_ssrc.items()},
            arrivals=arrivals,
            frames_sent={Kind(k): n for k, n in self._frames_sent().items()},
            frames_due={Kind(k): n for k, n in self._frames_due().items()},
            cpu_at_media_s=min(
                (t.first_cpu_s for t in (*self._old_tracks, *self._tracks) if t.first_cpu_s is not None),
                default=None,
            ),
            cpu_total_s=round(time.process_time(), 3),
            frames_received={Kind(k): n for k, n in frames_received.items()},
            data=DataCounts(
                messages_sent=self._data["messages_sent"],
                bytes_sent=self._data["bytes_sent"],
                messages_received=self._data["messages_received"],
                bytes_received=self._data["bytes_received"],
                delays_ms=tuple(self._delays_ms),
                arrivals=self._data_arrivals.times(),
            )
            if self.options.data_channel
            else None,
            candidate_pair=aiortc_glue.nominated_pair(self.pc),
            snapshots=tuple(self._snapshots),
            gaps={Kind(kind): tuple(g.gaps) for kind, g in self._gaps.items()},
            silences=tuple(self._silences.gaps),
            last_arrival=self._silences.last,
            freezes={Kind(kind): tuple(f.freezes) for kind, f in self._freezes.items() if kind in frames_received},
        )

    def _with_carry(self, entry: RtpStats) -> RtpStats:
        """A stats entry with the counts of earlier ICE sessions added (after a restart)."""
        carry = self._carry.get(entry.kind, {})
        spec = _CARRIED.get(entry.type)
        if not carry or spec is None:
            return entry
        direction, fields = spec
        changes: dict[str, Any] = {  # keyword arguments for dataclasses.replace
            stat: value + carry.get(direction, {}).get(counter, 0)
            for stat, counter in fields
            if isinstance(value := getattr(entry, stat), int)
        }
        return dataclasses.replace(entry, **changes)

    def _negotiated_codecs(self) -> dict[Kind, Codec]:
        # The answer decides: its first codec per m-line is the one both sides use.
        answer = self.pc.remoteDescription if self.role is Role.CALLER else self.pc.localDescription
        return {} if answer is None else aiortc_glue.answer_codecs(answer.sdp)


_TONE_CACHES: dict[Role, ToneCache] = {}


def _tone_cache(role: Role) -> ToneCache:
    """The process's encoded tones for ``role``'s tone (an ICE restart, and every child of the
    zygote, reuses them)."""
    cache = _TONE_CACHES.get(role)
    if cache is None:
        cache = _TONE_CACHES[role] = ToneCache(tone_second(TONE_HZ[role]))
    return cache


def warm_up() -> None:
    """Encode what a call without a profile sends, for both roles (``zygote`` calls it once, so
    its children start with it)."""
    for role in Role:
        _tone_cache(role).get(OpusSetting(aiortc_glue.AIORTC_OPUS_BITRATE, 20, False))


def _live_opus() -> bool:
    """``TESTBED_LIVE_OPUS=1``: encode the tone and decode received audio per frame, as endpoints
    did before the Opus cache (benchmarks/call_scale.py --live-opus compares the two)."""
    return os.environ.get(LIVE_OPUS_ENV) == "1"


# aiortc stats entry type -> (direction in _pc_counters, [(RtpStats field, counter)]).
_CARRIED: dict[StatsType, tuple[str, list[tuple[str, str]]]] = {
    StatsType.OUTBOUND_RTP: ("out", [("packets_sent", "packets"), ("bytes_sent", "bytes")]),
    StatsType.INBOUND_RTP: ("in", [("packets_received", "packets"), ("packets_lost", "lost")]),
    StatsType.REMOTE_INBOUND_RTP: ("out", [("packets_lost", "lost"), ("packets_received", "reported_received")]),
}


def _pc_counters(rtp: list[RtpStats]) -> CounterTable:
    """The cumulative counters of one peer connection's stats, by kind and direction."""
    out: CounterTable = {}
    for st in rtp:
        spec = _CARRIED.get(st.type)
        if spec is None:
            continue
        direction, fields = spec
        into = out.setdefault(st.kind, {}).setdefault(direction, {})
        for stat, counter in fields:
            value = getattr(st, stat)
            if isinstance(value, int):
                into[counter] = into.get(counter, 0) + value
    return out


# -- process ------------------------------------------------------------------------------------


async def run(config: EndpointConfig) -> int:
    reader, writer = await asyncio.open_unix_connection(str(config.socket))
    lock = asyncio.Lock()

    async def send(message: Message) -> None:
        async with lock:
            writer.write(encode(message))
            await writer.drain()

    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main.cancel)
    try:
        async with Endpoint(config, send) as endpoint:
            return await _follow_relay(endpoint, reader, send)
    except asyncio.CancelledError:
        return 0  # SIGTERM/SIGINT is a normal way to end an endpoint
    except BaseExceptionGroup as group:
        # A task of the endpoint failed: say so (to the relay: the call fails with this reason).
        errors = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(group))
        print(f"endpoint {config.role}: {errors}", file=sys.stderr)
        with contextlib.suppress(ConnectionError, OSError):
            await send(Failure(errors))
        return 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _follow_relay(
    endpoint: Endpoint, reader: asyncio.StreamReader, send: Callable[[Message], Awaitable[None]]
) -> int:
    """Say Hello, then carry out what the relay says until it hangs up or goes away.

    Offer/answer steps run one after another in a worker beside the read loop, so a HangUp is
    heard even while aiortc is still busy (a slow gathering, say), and cancels them."""
    await send(Hello(role=endpoint.role, pid=os.getpid()))
    decoder = Decoder()
    steps: asyncio.Queue[Message] = asyncio.Queue()
    async with asyncio.TaskGroup() as group:
        worker = group.create_task(_negotiate_in_order(endpoint, steps, send))
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return 0  # the relay went away: close and exit
                for message in decoder.feed(data):
                    if isinstance(message, Bye | HangUp):
                        worker.cancel()
                        await asyncio.wait([worker])
                        await _hang_up(endpoint, message, send)
                        return 0
                    steps.put_nowait(message)
        except SignallingProtocolError as exc:
            print(f"endpoint {endpoint.role}: bad message from relay: {exc}", file=sys.stderr)
            return 3
        finally:
            worker.cancel()


async def _negotiate_in_order(
    endpoint: Endpoint, steps: asyncio.Queue[Message], send: Callable[[Message], Awaitable[None]]
) -> None:
    while True:
        await _negotiate(endpoint, await steps.get(), send)


async def _negotiate(endpoint: Endpoint, message: Message, send: Callable[[Message], Awaitable[None]]) -> None:
    """Carry out one offer/answer step; report what fails (the relay then hangs up, and the
    hang-up still reports statistics)."""
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


async def _hang_up(endpoint: Endpoint, message: Bye | HangUp, send: Callable[[Message], Awaitable[None]]) -> None:
    try:
        if isinstance(message, Bye):
            await endpoint.on_bye(message.reason)
        else:
            await endpoint.hang_up(say_bye=True, reason=message.reason)
    except (ConnectionError, OSError):
        pass  # the relay went away half-way: nobody is left to tell


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.calls.endpoint")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = EndpointConfig.load(args.config)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())

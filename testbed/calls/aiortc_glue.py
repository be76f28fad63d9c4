"""Every place where testbed reaches into aiortc's or aioice's internals, and nothing else.

aiortc has no public API for what a censorship testbed needs to see: the nominated candidate pair,
the arrival time and size of each RTP packet, the client protocol of a TURN allocation.  Each hook
below is one private attribute or patched function, and ``tests/unit/test_calls_aiortc_glue.py``
has a test per hook that fails with :class:`AiortcGlueError` (naming the installed aiortc/aioice
versions and the attribute) if an upgrade moves it.  Written against aiortc 1.16 / aioice 0.13.

The hooks:

* ``aioice.turn.create_turn_endpoint`` is wrapped (:func:`turn_hook`) while an endpoint runs;
  ``aioice.ice`` looks it up on the module at each allocation, so the wrapper sees every one.
* ``aioice.turn.TurnTransport.__inner_protocol`` (name-mangled) and the inner protocol's
  ``_send`` (:class:`TurnAllocation`): app-profile STUN messages on the media's own 5-tuple.
* ``aiortc.RTCRtpReceiver._handle_rtp_packet`` is wrapped per receiver (:func:`on_rtp_packet`):
  the DTLS transport's RTP router calls it for each packet after SRTP decryption.
* ``aiortc.RTCRtpReceiver.__decoder_queue`` (name-mangled) is replaced for audio receivers
  (:func:`count_instead_of_decoding`): received audio frames are counted, not decoded.
* ``aiortc.RTCIceTransport._connection._nominated`` (:func:`nominated_pair`).
* ``aiortc.sdp.SessionDescription`` (an internal module) parses the answer (:func:`answer_codecs`).
* ``aiortc.codecs.opus.OpusEncoder`` is subclassed (:class:`AppOpusEncoder`: its ``codec``,
  ``resampler`` and ``first_packet_pts``) and put in place of the encoder aiortc would make,
  through ``RTCRtpSender.__encoder`` (name-mangled), which ``_next_encoded_frame`` fills from
  ``get_encoder`` only while it is ``None`` (:func:`install_audio_encoder`).  aiortc's own encoder
  has a fixed 96 kbit/s, 20 ms frames and no FEC, and no way to change them.
* ``aiortc.RTCRtpSender._next_encoded_frame`` is replaced per sender, and ``_enabled`` read
  (:func:`install_pre_encoded`): the synthetic tone's Opus packets are encoded once and replayed.
* ``aiortc.RTCRtpSender._handle_rtcp_packet`` is wrapped per sender and its smoothed RTT
  ``RTCRtpSender.__rtt`` read (:func:`on_receiver_report`): each RTCP receiver report about the
  sender's SSRC, for the bitrate controller (``testbed.calls.adapt``).

:func:`read_stats` (public API: aiortc's stats dataclasses) converts ``getStats()`` into
testbed's records, so the endpoint never handles an aiortc stats object itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aioice.turn
import aiortc
import av
from aiortc import RTCIceTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import opus as aiortc_opus
from aiortc.rtcrtpsender import RTCEncodedFrame
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket, RtpPacket
from aiortc.sdp import SessionDescription
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCRemoteOutboundRtpStreamStats,
    RTCStatsReport,
    RTCTransportStats,
)

from testbed.calls.endpoint_report import Codec, RtpStats, StatsType, TransportStats
from testbed.calls.result import CandidatePair, Kind

VERSIONS = f"aiortc {aiortc.__version__} / aioice {aioice.__version__}"


class AiortcGlueError(RuntimeError):
    """An aiortc/aioice internal that testbed hooks is not where it was: the installed versions
    changed it, and this module must follow."""


def glue_error(attribute: str, problem: str) -> AiortcGlueError:
    return AiortcGlueError(
        f"{VERSIONS}: {attribute} {problem}; testbed.calls.aiortc_glue was written for "
        "aiortc 1.16 / aioice 0.13 and must be updated for this version (or pin aiortc)"
    )


def _require(obj: object, attribute: str, where: str) -> Any:
    try:
        return getattr(obj, attribute)
    except AttributeError:
        raise glue_error(f"{where}.{attribute}", "is gone") from None


# -- TURN allocations ---------------------------------------------------------------------------

_INNER = "_TurnTransport__inner_protocol"


class TurnAllocation:
    """One TURN allocation's client protocol (UDP or TCP to the TURN server)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: aioice.turn.TurnClientProtocol) -> None:
        self._inner = inner

    @property
    def closed(self) -> bool:
        transport = getattr(self._inner, "transport", None)
        return transport is None or transport.is_closing()

    def send(self, data: bytes) -> None:
        """Send raw bytes to the TURN server (TCP framing added), beside the allocation's own."""
        send: Callable[[bytes], None] = _require(self._inner, "_send", type(self._inner).__name__)
        send(data)


def allocation_of(transport: object) -> TurnAllocation:
    """The allocation behind what ``create_turn_endpoint`` returned (a ``TurnTransport``)."""
    return TurnAllocation(_require(transport, _INNER, "aioice.turn.TurnTransport"))


@contextlib.contextmanager
def turn_hook(on_allocation: Callable[[TurnAllocation], None]) -> Iterator[None]:
    """While inside: (1) call ``on_allocation`` with each TURN allocation aioice makes, and
    (2) accept the relay's certificate for ``turns:`` (aioice passes ``ssl=True``, which would
    verify it against the system CAs; testbed's relays have per-run self-signed certificates,
    and a censor sees the same handshake either way).

    The patch is on aioice's module, so it is process-wide while it lasts: an endpoint process
    runs one endpoint.  Nested uses restore in order."""
    original = _require(aioice.turn, "create_turn_endpoint", "aioice.turn")

    async def create_turn_endpoint(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is True:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            kwargs["ssl"] = context
        transport, protocol = await original(*args, **kwargs)
        on_allocation(allocation_of(transport))
        return transport, protocol

    aioice.turn.create_turn_endpoint = create_turn_endpoint
    try:
        yield
    finally:
        aioice.turn.create_turn_endpoint = original


# -- RTP arrivals -------------------------------------------------------------------------------


def on_rtp_packet(receiver: RTCRtpReceiver, callback: Callable[[int, int], None]) -> None:
    """Call ``callback(ssrc, payload bytes)`` for each RTP packet ``receiver`` gets, before aiortc
    handles it (aiortc's inbound-rtp stats have no byte count and no timing)."""
    original = _require(receiver, "_handle_rtp_packet", "aiortc.RTCRtpReceiver")

    async def tracking(packet: RtpPacket, arrival_time_ms: int) -> None:
        callback(packet.ssrc, len(packet.payload))
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = tracking  # type: ignore[method-assign]


_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


class _CountingQueue:
    """Stands in for a receiver's decoder queue: each complete encoded frame the jitter buffer
    hands over is counted on the event loop instead of going to the decoder thread; ``None``
    (aiortc stopping the receiver) still goes through, so the idle decoder thread ends and, as
    before, ends the remote track."""

    __slots__ = ("_real", "_on_frame")

    def __init__(self, real: Any, on_frame: Callable[[], None]) -> None:
        self._real = real
        self._on_frame = on_frame

    def put(self, item: Any) -> None:
        if item is None:
            self._real.put(None)
        else:
            self._on_frame()

    def get(self) -> Any:
        return self._real.get()


def count_instead_of_decoding(receiver: RTCRtpReceiver, on_frame: Callable[[], None]) -> None:
    """Call ``on_frame()`` for each complete encoded frame ``receiver`` reassembles, instead of
    decoding it in aiortc's decoder thread (for the synthetic tone: nothing listens to it, and the
    thread hand-offs and the Opus decode were a third of a receiving endpoint's CPU).  Works
    before or after aiortc starts the thread (``receive``), which reads the queue through
    :class:`_CountingQueue` then."""
    real = _require(receiver, _DECODER_QUEUE, "aiortc.RTCRtpReceiver")
    if isinstance(real, _CountingQueue):
        raise glue_error(f"aiortc.RTCRtpReceiver.{_DECODER_QUEUE}", "is replaced twice")
    if not (hasattr(real, "put") and hasattr(real, "get")):
        raise glue_error(f"aiortc.RTCRtpReceiver.{_DECODER_QUEUE}", f"is a {type(real).__name__}, not a queue")
    setattr(receiver, _DECODER_QUEUE, _CountingQueue(real, on_frame))


# -- the Opus encoder ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """One frame's ready RTP payloads (several when the packet time is below 20 ms, as aiortc's
    encoder returns them), its RTP timestamp offset and its RFC 6465 audio level."""

    payloads: tuple[bytes, ...]
    timestamp: int
    audio_level: int


_ENCODER = "_RTCRtpSender__encoder"
_RTT = "_RTCRtpSender__rtt"
OPUS_RATE = 48000
AIORTC_OPUS_BITRATE = 96000
"""What aiortc's own ``OpusEncoder`` uses (fixed): a call without a profile sends this."""
FEC_EXPECTED_LOSS_PCT = 10
"""With FEC on, libopus only spends bits on it when told to expect loss (its ``packet_loss``);
libwebrtc feeds it the measured loss, we fix it at 10 % (a policer or a lossy link)."""


def open_opus_encoder(bitrate_bps: int, frame_ms: int, fec: bool) -> Any:
    """A libopus context as :class:`AppOpusEncoder` opens one (and ``opus_cache`` for the
    pre-encoded tone).  aiortc's own encoder is the case 96 kbit/s, 20 ms, no FEC: its options
    are libopus's defaults for the other three."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = bitrate_bps
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = OPUS_RATE
    codec.time_base = aiortc_opus.TIME_BASE
    codec.options = {
        "application": "voip",
        "frame_duration": str(frame_ms),
        "fec": "1" if fec else "0",
        "packet_loss": str(FEC_EXPECTED_LOSS_PCT if fec else 0),
    }
    return codec


class AppOpusEncoder(aiortc_opus.OpusEncoder):
    """aiortc's Opus encoder with a settable bitrate, frame size and in-band FEC.

    libopus (through FFmpeg) reads the bitrate only when the codec opens, so a new bitrate opens a
    new codec context at the next frame, as aiortc's own H.264 encoder does; packet timestamps
    stay continuous (each packet's pts is its first sample's, minus the same encoder delay).
    :meth:`set_bitrate` may be called from the event loop while :meth:`encode` runs in aiortc's
    executor thread: it only stores an int, which ``encode`` reads.  (It is deliberately not
    named ``target_bitrate``: aiortc assigns that on any encoder from REMB, a video estimate.)
    """

    def __init__(self, bitrate_bps: int, frame_ms: int, fec: bool) -> None:
        super().__init__()
        for attribute in ("codec", "resampler", "first_packet_pts"):
            if not hasattr(self, attribute):
                raise glue_error(f"aiortc.codecs.opus.OpusEncoder.{attribute}", "is gone")
        self.frame_ms = frame_ms
        self.fec = fec
        self.bitrate_bps = bitrate_bps
        self._wanted = bitrate_bps
        self.reopened = 0
        self.resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_RATE * frame_ms // 1000
        )
        self.codec = self._open(bitrate_bps)

    def _open(self, bitrate_bps: int) -> Any:
        return open_opus_encoder(bitrate_bps, self.frame_ms, self.fec)

    def set_bitrate(self, bitrate_bps: int) -> None:
        self._wanted = bitrate_bps

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        wanted = self._wanted
        if wanted != self.bitrate_bps:
            self.codec = self._open(wanted)
            self.bitrate_bps = wanted
            self.reopened += 1
        payloads, timestamp = super().encode(frame, force_keyframe)
        return payloads, timestamp


def install_audio_encoder(sender: RTCRtpSender, encoder: AppOpusEncoder) -> None:
    """Make ``sender`` encode with ``encoder`` instead of the one aiortc would create (call it
    before media starts, with Opus negotiated)."""
    if not hasattr(sender, _ENCODER):
        raise glue_error(f"aiortc.RTCRtpSender.{_ENCODER}", "is gone")
    if getattr(sender, _ENCODER) is not None:
        raise glue_error(f"aiortc.RTCRtpSender.{_ENCODER}", "is set before media started")
    setattr(sender, _ENCODER, encoder)


def install_pre_encoded(sender: RTCRtpSender, next_frame: Callable[[], Awaitable[EncodedAudio | None]]) -> None:
    """Make ``sender`` take ready Opus packets from ``next_frame`` instead of reading its track and
    encoding (``opus_cache``): aiortc's ``_next_encoded_frame`` is replaced on this sender, so no
    executor hop, resampler, encoder or pure-Python audio level runs per frame.  What goes on the
    wire is built as before (same RTP packetisation, header extensions, SRTP).  ``next_frame``
    paces itself and returns ``None`` for "nothing this time" as aiortc's own does."""
    if not hasattr(sender, "_next_encoded_frame") or not hasattr(sender, "_enabled"):
        raise glue_error("aiortc.RTCRtpSender._next_encoded_frame/_enabled", "is gone")

    async def next_encoded_frame(codec: Any) -> RTCEncodedFrame | None:
        audio = await next_frame()
        if audio is None or not sender._enabled:
            return None
        return RTCEncodedFrame(list(audio.payloads), audio.timestamp, audio.audio_level)

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]


def on_receiver_report(sender: RTCRtpSender, callback: Callable[[float, float | None], None]) -> None:
    """Call ``callback(fraction_lost, rtt_s)`` for each RTCP receiver report block about
    ``sender``'s SSRC (in an RR or SR), after aiortc has updated its RTT estimate from it.
    ``fraction_lost`` is RFC 3550's 8-bit fraction as 0..1; ``rtt_s`` is aiortc's smoothed RTT,
    ``None`` until it has one."""
    original = _require(sender, "_handle_rtcp_packet", "aiortc.RTCRtpSender")
    if not hasattr(sender, _RTT):
        raise glue_error(f"aiortc.RTCRtpSender.{_RTT}", "is gone")

    async def reporting(packet: Any) -> None:
        await original(packet)
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    rtt = getattr(sender, _RTT)
                    callback(report.fraction_lost / 256.0, float(rtt) if rtt is not None else None)

    sender._handle_rtcp_packet = reporting  # type: ignore[method-assign]


# -- the selected candidate pair ----------------------------------------------------------------


def ice_transport(pc: RTCPeerConnection) -> RTCIceTransport | None:
    """The peer connection's (BUNDLEd) ICE transport, once it has one."""
    if pc.sctp is not None:
        return pc.sctp.transport.transport
    transceivers = pc.getTransceivers()
    if not transceivers:
        return None
    return transceivers[0].sender.transport.transport


def nominated_pair(pc: RTCPeerConnection) -> CandidatePair | None:
    """The nominated pair of ICE component 1 (RTP; BUNDLE and rtcp-mux leave no other), or
    ``None`` before ICE nominated one.  aiortc has no candidate-pair stats, so this reads aioice's
    ``Connection._nominated``."""
    ice = ice_transport(pc)
    if ice is None:
        return None
    connection = _require(ice, "_connection", "aiortc.RTCIceTransport")
    nominated = _require(connection, "_nominated", "aioice.Connection")
    if not isinstance(nominated, dict):
        raise glue_error("aioice.Connection._nominated", f"is a {type(nominated).__name__}, not a dict")
    pair = nominated.get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return CandidatePair(
        protocol=local.transport.lower(),
        local_address=local.host,
        local_port=local.port,
        local_type=local.type,
        remote_address=remote.host,
        remote_port=remote.port,
        remote_type=remote.type,
    )


# -- SDP ---------------------------------------------------------------------------------------


def answer_codecs(sdp: str) -> dict[Kind, Codec]:
    """The codec of each audio/video m-line: the first one listed (in an answer, the one both
    sides use)."""
    out: dict[Kind, Codec] = {}
    for media in SessionDescription.parse(sdp).media:
        if media.kind in ("audio", "video") and media.rtp.codecs:
            codec = media.rtp.codecs[0]
            out[Kind(media.kind)] = Codec(codec.mimeType, codec.clockRate)
    return out


# -- statistics --------------------------------------------------------------------------------


def read_stats(report: RTCStatsReport) -> tuple[list[RtpStats], list[TransportStats]]:
    """aiortc's ``getStats()`` as testbed's records (RTP entries, transport entries)."""
    rtp: list[RtpStats] = []
    transports: list[TransportStats] = []
    for st in report.values():
        if isinstance(st, RTCTransportStats):
            transports.append(
                TransportStats(
                    id=st.id,
                    timestamp=_seconds(st.timestamp),
                    packets_sent=st.packetsSent,
                    packets_received=st.packetsReceived,
                    bytes_sent=st.bytesSent,
                    bytes_received=st.bytesReceived,
                    ice_role=st.iceRole,
                    dtls_state=st.dtlsState,
                )
            )
            continue
        if not isinstance(
            st,
            RTCInboundRtpStreamStats
            | RTCOutboundRtpStreamStats
            | RTCRemoteInboundRtpStreamStats
            | RTCRemoteOutboundRtpStreamStats,
        ) or st.kind not in ("audio", "video"):
            continue
        entry = RtpStats(
            type=StatsType(st.type),
            kind=Kind(st.kind),
            ssrc=st.ssrc,
            id=st.id,
            timestamp=_seconds(st.timestamp),
            transport_id=st.transportId,
        )
        match st:
            case RTCOutboundRtpStreamStats():
                entry = _replace(entry, packets_sent=st.packetsSent, bytes_sent=st.bytesSent, track_id=st.trackId)
            case RTCRemoteOutboundRtpStreamStats():
                entry = _replace(
                    entry,
                    packets_sent=st.packetsSent,
                    bytes_sent=st.bytesSent,
                    remote_timestamp=_seconds(st.remoteTimestamp),
                )
            case RTCRemoteInboundRtpStreamStats():
                entry = _replace(
                    entry,
                    packets_received=st.packetsReceived,
                    packets_lost=st.packetsLost,
                    jitter=st.jitter,
                    round_trip_time=st.roundTripTime,
                    fraction_lost=st.fractionLost,
                )
            case RTCInboundRtpStreamStats():
                entry = _replace(
                    entry, packets_received=st.packetsReceived, packets_lost=st.packetsLost, jitter=st.jitter
                )
        rtp.append(entry)
    return rtp, transports


def _replace(entry: RtpStats, **changes: Any) -> RtpStats:
    return dataclasses.replace(entry, **changes)


def _seconds(value: datetime.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None

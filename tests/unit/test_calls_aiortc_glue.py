"""One test per aiortc/aioice internal that ``testbed.calls.aiortc_glue`` hooks.

If an aiortc or aioice upgrade moves one, its test fails with a message that names the installed
versions and the attribute (``aiortc_glue.VERSIONS``), not with an obscure error deep in a call.
Nothing here sends a packet: fake transports stand in for sockets.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable, Iterator
from itertools import pairwise
from typing import Any

import aioice.ice
import aioice.turn
import pytest
from aioice import Candidate
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCStatsReport,
    RTCTransportStats,
)

from testbed.calls import aiortc_glue
from testbed.calls.aiortc_glue import VERSIONS, AiortcGlueError
from testbed.calls.endpoint_report import Codec, StatsType
from testbed.calls.result import CandidatePair, Kind

TURN_SERVER = ("198.18.0.1", 3478)  # never contacted: the fakes below answer instead


def loudly(attribute: str) -> str:
    return f"{VERSIONS}: {attribute} moved; update testbed.calls.aiortc_glue (or pin aiortc)"


class FakeDatagramTransport(asyncio.DatagramTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("198.18.0.1", 50000), "related_address": ("198.18.1.2", 40000)}.get(name, default)


class FakeStreamTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False


class FakeStunProtocol:
    """What aioice's ``protocol_factory`` makes: it only needs a transport and a candidate slot."""

    def __init__(self) -> None:
        self.transport = FakeDatagramTransport()
        self.local_candidate: Candidate | None = None


@pytest.fixture
def fake_turn_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Replace aioice's real ``create_turn_endpoint`` (before the glue wraps it) by one that makes
    a real ``TurnTransport`` around a real UDP client protocol on a fake socket."""
    calls: list[dict[str, Any]] = []

    async def create_turn_endpoint(
        protocol_factory: Callable[[], Any], **kwargs: Any
    ) -> tuple[aioice.turn.TurnTransport, Any]:
        calls.append(kwargs)
        inner = aioice.turn.TurnClientUdpProtocol(
            kwargs["server_addr"], username="u", password="p", lifetime=600, channel_refresh_time=500
        )
        inner.connection_made(FakeDatagramTransport())
        return aioice.turn.TurnTransport(inner), protocol_factory()

    monkeypatch.setattr(aioice.turn, "create_turn_endpoint", create_turn_endpoint)
    yield calls


async def _relayed_candidate() -> None:
    try:
        await aioice.ice.relayed_candidate(
            component=1,
            hide_related_address=False,
            protocol_factory=FakeStunProtocol,  # type: ignore[arg-type]
            turn_server=TURN_SERVER,
            turn_username="u",
            turn_password="p",
            turn_ssl=True,
            turn_transport="udp",
        )
    except (TypeError, AttributeError) as exc:
        pytest.fail(loudly(f"aioice.ice.relayed_candidate ({type(exc).__name__}: {exc})"))


def test_turn_hook_sees_each_allocation_aioice_makes(fake_turn_server: list[dict[str, Any]]) -> None:
    """aioice.ice looks ``turn.create_turn_endpoint`` up on the module, so wrapping it there sees
    every allocation; the allocation's inner protocol is reachable and can send."""
    allocations: list[aiortc_glue.TurnAllocation] = []

    async def scenario() -> None:
        with aiortc_glue.turn_hook(allocations.append):
            await _relayed_candidate()

    asyncio.run(scenario())
    assert len(fake_turn_server) == 1, loudly("aioice.ice calling aioice.turn.create_turn_endpoint")
    assert len(allocations) == 1, loudly("aioice.turn.TurnTransport.__inner_protocol")
    allocation = allocations[0]
    assert not allocation.closed
    allocation.send(b"\x00\x01hello")
    inner = getattr(allocation, "_inner")
    assert inner.transport.sent == [b"\x00\x01hello"], loudly("TurnClientUdpProtocol._send")
    inner.transport.closing = True
    assert allocation.closed


def test_turn_hook_accepts_self_signed_relays_for_turns(fake_turn_server: list[dict[str, Any]]) -> None:
    """aioice passes ``ssl=True`` for ``turns:``; the hook swaps in a context that accepts the
    relay's per-run self-signed certificate."""

    async def scenario() -> None:
        with aiortc_glue.turn_hook(lambda _: None):
            await _relayed_candidate()

    asyncio.run(scenario())
    assert "ssl" in fake_turn_server[0], loudly("the ssl= keyword of aioice.turn.create_turn_endpoint")
    context = fake_turn_server[0]["ssl"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_NONE


def test_turn_hook_is_undone_on_exit_and_belongs_to_its_caller(
    fake_turn_server: list[dict[str, Any]],
) -> None:
    """No process-global state: each hook reaches its own callback, and leaving restores
    aioice's function (nested hooks in order)."""
    unhooked = aioice.turn.create_turn_endpoint
    outer: list[aiortc_glue.TurnAllocation] = []
    inner: list[aiortc_glue.TurnAllocation] = []

    async def scenario() -> None:
        with aiortc_glue.turn_hook(outer.append):
            outer_fn = aioice.turn.create_turn_endpoint
            with aiortc_glue.turn_hook(inner.append):
                await _relayed_candidate()
            assert aioice.turn.create_turn_endpoint is outer_fn
        assert aioice.turn.create_turn_endpoint is unhooked
        await _relayed_candidate()  # unhooked: nobody hears of it

    asyncio.run(scenario())
    assert (len(outer), len(inner)) == (1, 1)  # the inner hook wraps the outer one
    assert len(fake_turn_server) == 2


def test_turn_allocation_over_tcp_sends_framed() -> None:
    inner = aioice.turn.TurnClientTcpProtocol(
        TURN_SERVER, username="u", password="p", lifetime=600, channel_refresh_time=500
    )
    transport = FakeStreamTransport()
    inner.connection_made(transport)
    aiortc_glue.TurnAllocation(inner).send(b"\x00\x01\x00\x00abc")
    assert b"".join(transport.written).startswith(b"\x00\x01\x00\x00abc"), loudly("TurnClientTcpProtocol._send")


def test_a_moved_turn_attribute_fails_loudly() -> None:
    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.allocation_of(object())
    message = str(info.value)
    assert VERSIONS in message and "TurnTransport._TurnTransport__inner_protocol" in message


# -- RTP arrivals -------------------------------------------------------------------------------


def test_on_rtp_packet_sees_each_packet_the_dtls_transport_routes() -> None:
    """aiortc's DTLS transport routes each decrypted RTP packet to
    ``receiver._handle_rtp_packet(packet, arrival_time_ms=...)``: the glue's wrapper must be what
    it calls."""
    seen: list[tuple[int, int]] = []

    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            transceiver = pc.addTransceiver("audio")
            receiver = transceiver.receiver
            aiortc_glue.on_rtp_packet(receiver, lambda ssrc, size: seen.append((ssrc, size)))
            dtls = receiver.transport
            try:
                router = getattr(dtls, "_rtp_router")
                router.register_receiver(receiver, ssrcs=[1234], payload_types=[111])
                handle: Callable[..., Awaitable[None]] = getattr(dtls, "_handle_rtp_data")
                packet = RtpPacket(payload_type=111, ssrc=1234, payload=b"\x01" * 50)
                await handle(packet.serialize(), arrival_time_ms=0)
            except (AttributeError, TypeError) as exc:
                pytest.fail(loudly(f"aiortc.RTCDtlsTransport RTP routing ({type(exc).__name__}: {exc})"))
        finally:
            await pc.close()

    asyncio.run(scenario())
    assert seen == [(1234, 50)], loudly("aiortc.RTCRtpReceiver._handle_rtp_packet")


def test_a_moved_rtp_hook_fails_loudly() -> None:
    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.on_rtp_packet(object(), lambda ssrc, size: None)  # type: ignore[arg-type]
    assert VERSIONS in str(info.value) and "RTCRtpReceiver._handle_rtp_packet" in str(info.value)


# -- nominated pair -----------------------------------------------------------------------------


class FakePairProtocol:
    def __init__(self, candidate: Candidate) -> None:
        self.local_candidate = candidate


def _candidate(host: str, port: int, type_: str) -> Candidate:
    return Candidate(foundation="1", component=1, transport="UDP", priority=1, host=host, port=port, type=type_)


def test_nominated_pair_reads_aioice_connection() -> None:
    async def scenario() -> tuple[CandidatePair | None, CandidatePair | None]:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio")
            before = aiortc_glue.nominated_pair(pc)  # ICE has not run: nothing nominated
            ice = aiortc_glue.ice_transport(pc)
            assert ice is not None
            pair = aioice.ice.CandidatePair(
                FakePairProtocol(_candidate("198.18.250.1", 5000, "host")),  # type: ignore[arg-type]
                _candidate("198.18.250.2", 6000, "relay"),
            )
            getattr(getattr(ice, "_connection"), "_nominated")[1] = pair
            return before, aiortc_glue.nominated_pair(pc)
        finally:
            await pc.close()

    try:
        before, after = asyncio.run(scenario())
    except AiortcGlueError as exc:
        pytest.fail(str(exc))
    assert before is None
    assert after == CandidatePair("udp", "198.18.250.1", 5000, "host", "198.18.250.2", 6000, "relay")


def test_a_moved_nominated_pair_fails_loudly() -> None:
    class FakeIce:
        _connection = object()  # no _nominated

    class FakeDtls:
        transport = FakeIce()

    class FakeSctp:
        transport = FakeDtls()

    class FakePc:
        sctp = FakeSctp()

    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.nominated_pair(FakePc())  # type: ignore[arg-type]
    assert VERSIONS in str(info.value) and "aioice.Connection._nominated" in str(info.value)


# -- SDP and stats ------------------------------------------------------------------------------


def test_answer_codecs_parse_aiortc_sdp() -> None:
    async def scenario() -> str:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio")
            pc.addTransceiver("video")
            offer = await pc.createOffer()
            return offer.sdp
        finally:
            await pc.close()

    codecs = aiortc_glue.answer_codecs(asyncio.run(scenario()))
    assert codecs == {Kind.AUDIO: Codec("audio/opus", 48000), Kind.VIDEO: Codec("video/VP8", 90000)}, loudly(
        "aiortc.sdp.SessionDescription"
    )


def test_read_stats_keeps_every_counter() -> None:
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    report = RTCStatsReport()
    common: dict[str, Any] = {"timestamp": now, "ssrc": 7, "kind": "audio", "transportId": "t1"}
    report.add(
        RTCOutboundRtpStreamStats(type="outbound-rtp", id="o", packetsSent=5, bytesSent=500, trackId="x", **common)
    )
    report.add(
        RTCInboundRtpStreamStats(type="inbound-rtp", id="i", packetsReceived=4, packetsLost=1, jitter=9, **common)
    )
    report.add(
        RTCRemoteInboundRtpStreamStats(
            type="remote-inbound-rtp", id="r", packetsReceived=3, packetsLost=2, jitter=8,
            roundTripTime=0.01, fractionLost=0.5, **common,
        )
    )  # fmt: skip
    report.add(
        RTCTransportStats(
            timestamp=now, type="transport", id="t1", packetsSent=10, packetsReceived=9,
            bytesSent=1000, bytesReceived=900, iceRole="controlling", dtlsState="connected",
        )
    )  # fmt: skip
    rtp, transports = aiortc_glue.read_stats(report)
    by_type = {entry.type: entry for entry in rtp}
    assert set(by_type) == {StatsType.OUTBOUND_RTP, StatsType.INBOUND_RTP, StatsType.REMOTE_INBOUND_RTP}
    out = by_type[StatsType.OUTBOUND_RTP]
    assert (out.packets_sent, out.bytes_sent, out.track_id, out.timestamp) == (5, 500, "x", now.timestamp())
    inbound = by_type[StatsType.INBOUND_RTP]
    assert (inbound.packets_received, inbound.packets_lost, inbound.jitter) == (4, 1, 9)
    remote = by_type[StatsType.REMOTE_INBOUND_RTP]
    assert (remote.round_trip_time, remote.fraction_lost, remote.packets_lost) == (0.01, 0.5, 2)
    assert [(t.packets_sent, t.bytes_received, t.ice_role, t.dtls_state) for t in transports] == [
        (10, 900, "controlling", "connected")
    ]


# -- the Opus encoder and receiver reports ------------------------------------------------------


def _tone_frames(count: int) -> list[Any]:
    """``count`` 20 ms mono s16 frames of a 440 Hz tone, as testbed's ToneTrack makes them."""
    import array
    import fractions
    import math

    import av

    second = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(48000)))
    data = second.tobytes()
    frames = []
    for i in range(count):
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        offset = (i * 1920) % len(data)
        frame.planes[0].update(data[offset : offset + 1920])
        frame.pts = i * 960
        frame.sample_rate = 48000
        frame.time_base = fractions.Fraction(1, 48000)
        frames.append(frame)
    return frames


def _encode_all(encoder: aiortc_glue.AppOpusEncoder, frames: list[Any]) -> list[tuple[int, int]]:
    """(timestamp, payload bytes) of every packet."""
    out = []
    for frame in frames:
        payloads, timestamp = encoder.encode(frame)
        out.extend((timestamp, len(p)) for p in payloads)
    return out


def test_app_opus_encoder_runs_at_its_bitrate_frame_size_and_follows_set_bitrate() -> None:
    """aiortc's OpusEncoder is fixed at 96 kbit/s and 20 ms; the subclass must really encode at
    the profile's bitrate and frame size, change bitrate mid-stream, and keep timestamps going."""
    encoder = aiortc_glue.AppOpusEncoder(bitrate_bps=32000, frame_ms=60, fec=True)
    first = _encode_all(encoder, _tone_frames(150))  # 3 s
    encoder.set_bitrate(12000)
    second = _encode_all(encoder, _tone_frames(300)[150:])
    assert len(first) == 50 and len(second) == 50, "60 ms frames: one packet per 3 input frames"
    stamps = [t for t, _ in first + second]
    assert {b - a for a, b in pairwise(stamps)} == {2880}, "timestamps step 60 ms, across the change"
    kbps_first = sum(n for _, n in first) * 8 / 3 / 1000
    kbps_second = sum(n for _, n in second) * 8 / 3 / 1000
    assert 24 < kbps_first < 40 and 8 < kbps_second < 16, (kbps_first, kbps_second)
    assert encoder.reopened == 1


def test_aiortc_default_opus_encoder_is_what_app_encoder_replaces() -> None:
    """If aiortc's own encoder ever gets a settable bitrate or frame size, the subclass may be
    unnecessary; if it changes its defaults, CallOptions' defaults (96 kbit/s, 20 ms) no longer
    mean 'aiortc unchanged'."""
    from aiortc.codecs.opus import SAMPLES_PER_FRAME, OpusEncoder

    assert OpusEncoder().codec.bit_rate == 96000 and SAMPLES_PER_FRAME == 960, loudly("aiortc Opus defaults")


def test_installed_encoder_is_the_one_the_sender_encodes_with() -> None:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from testbed.calls.media import ToneTrack

    class CountingEncoder(aiortc_glue.AppOpusEncoder):
        calls = 0

        def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
            type(self).calls += 1
            return super().encode(frame, force_keyframe)

    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            sender = pc.addTrack(ToneTrack())
            encoder = CountingEncoder(bitrate_bps=16000, frame_ms=20, fec=False)
            aiortc_glue.install_audio_encoder(sender, encoder)
            codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
            try:
                next_frame: Callable[..., Awaitable[Any]] = getattr(sender, "_next_encoded_frame")
                for _ in range(3):
                    await next_frame(codec)
            except (AttributeError, TypeError) as exc:
                pytest.fail(loudly(f"aiortc.RTCRtpSender._next_encoded_frame ({type(exc).__name__}: {exc})"))
            assert getattr(sender, "_RTCRtpSender__encoder") is encoder, loudly("aiortc.RTCRtpSender.__encoder")
        finally:
            await pc.close()

    asyncio.run(scenario())
    assert CountingEncoder.calls == 3, loudly("aiortc.RTCRtpSender.__encoder (get_encoder only while None)")


def test_on_receiver_report_sees_each_report_about_the_sender() -> None:
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    from testbed.calls.media import ToneTrack

    seen: list[tuple[float, float | None]] = []

    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            sender = pc.addTrack(ToneTrack())
            aiortc_glue.on_receiver_report(sender, lambda loss, rtt: seen.append((loss, rtt)))

            def block(ssrc: int, fraction: int) -> RtcpReceiverInfo:
                return RtcpReceiverInfo(
                    ssrc=ssrc,
                    fraction_lost=fraction,
                    packets_lost=10,
                    highest_sequence=100,
                    jitter=0,
                    lsr=0,
                    dlsr=0,
                )

            rr = RtcpRrPacket(ssrc=99, reports=[block(sender._ssrc, 128), block(sender._ssrc + 1, 255)])
            handle: Callable[..., Awaitable[None]] = getattr(sender, "_handle_rtcp_packet")
            await handle(rr)
        finally:
            await pc.close()

    asyncio.run(scenario())
    assert seen == [(0.5, None)], loudly("aiortc.RTCRtpSender._handle_rtcp_packet / __rtt")


def test_moved_encoder_and_report_hooks_fail_loudly() -> None:
    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.install_audio_encoder(object(), None)  # type: ignore[arg-type]
    assert VERSIONS in str(info.value) and "__encoder" in str(info.value)
    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.on_receiver_report(object(), lambda loss, rtt: None)  # type: ignore[arg-type]
    assert "RTCRtpSender._handle_rtcp_packet" in str(info.value)


# -- pre-encoded audio and frame counting (docs/performance.md, "Calls") -----------------------


def test_pre_encoded_packets_are_what_the_sender_sends() -> None:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from testbed.calls.media import OpusToneTrack, tone_second
    from testbed.calls.opus_cache import OpusSetting, ToneCache

    cache = ToneCache(tone_second(440))
    setting = OpusSetting(32000, 20, False)
    sent: list[Any] = []

    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            track = OpusToneTrack(cache, setting)
            sender = pc.addTrack(track)
            aiortc_glue.install_pre_encoded(sender, track.next_encoded)
            codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
            next_frame: Callable[..., Awaitable[Any]] = getattr(sender, "_next_encoded_frame")
            for _ in range(3):
                sent.append(await next_frame(codec))
            assert getattr(sender, "_RTCRtpSender__encoder") is None  # aiortc never made an encoder
        finally:
            await pc.close()

    asyncio.run(scenario())
    tone = cache.get(setting)
    assert [f.payloads for f in sent] == [[tone.warmup[i]] for i in range(3)]
    assert [f.timestamp for f in sent] == [0, 960, 1920]
    assert [f.audio_level for f in sent] == [tone.levels[i] for i in range(3)]


def test_counted_frames_skip_the_decoder_and_the_stop_still_reaches_it() -> None:
    counted: list[int] = []

    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            receiver = pc.addTransceiver("audio").receiver
            real = getattr(receiver, "_RTCRtpReceiver__decoder_queue")
            aiortc_glue.count_instead_of_decoding(receiver, lambda: counted.append(1))
            queue = getattr(receiver, "_RTCRtpReceiver__decoder_queue")
            queue.put(("codec", "frame"))
            queue.put(("codec", "frame"))
            assert real.empty()  # nothing for the decoder thread
            queue.put(None)  # aiortc stopping the receiver: the thread (and the track) must end
            assert queue.get() is None
        finally:
            await pc.close()

    asyncio.run(scenario())
    assert counted == [1, 1]


def test_moved_pre_encoded_and_counting_hooks_fail_loudly() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.install_pre_encoded(object(), nothing)  # type: ignore[arg-type]
    assert VERSIONS in str(info.value) and "_next_encoded_frame" in str(info.value)
    with pytest.raises(AiortcGlueError) as info:
        aiortc_glue.count_instead_of_decoding(object(), lambda: None)  # type: ignore[arg-type]
    assert VERSIONS in str(info.value) and "decoder_queue" in str(info.value)

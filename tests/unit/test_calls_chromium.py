"""engine: chromium -- schema, planning, the getStats mapping, reception timing, the DevTools
framing and the fake microphone's file (no browser needed: the integration tests run one)."""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.calls import metrics
from testbed.calls.chromium import browser, stats
from testbed.calls.chromium.audio import SAMPLE_RATE, speech_like_samples, write_speech_wav
from testbed.calls.chromium.cdp import CdpError, MessageSplitter, encode
from testbed.calls.endpoint_report import EndpointReport, StatsType
from testbed.calls.engine import Engine, endpoint_argv
from testbed.calls.orchestrate import _check_engines, plan_calls
from testbed.calls.result import Kind
from testbed.calls.signalling import Role
from testbed.errors import RunError, ScenarioError
from testbed.scenario.call_schema import CallEngine, CallSpec
from testbed.scenario.loader import parse_scenario

# -- schema and planning ---------------------------------------------------------------------------


def test_aiortc_encoder_keys_stay_allowed_with_one_aiortc_end() -> None:
    mixed = {"name": "a", "engine": {"caller": "chromium"}, "adapt": True, "audio": {"bitrate": "32kbit"}}
    assert CallSpec.model_validate(mixed).adapt is True


def test_engine_defaults_to_aiortc_and_takes_a_shorthand() -> None:
    assert CallSpec.model_validate({"name": "a"}).engine.caller is CallEngine.AIORTC
    both = CallSpec.model_validate({"name": "a", "engine": "chromium"}).engine
    assert (both.caller, both.callee) == (CallEngine.CHROMIUM, CallEngine.CHROMIUM)
    mixed = CallSpec.model_validate({"name": "a", "engine": {"caller": "chromium"}}).engine
    assert (mixed.caller, mixed.callee) == (CallEngine.CHROMIUM, CallEngine.AIORTC)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("    engine: firefox\n", ["engine", "aiortc", "chromium"]),
        ("    engine: {caller: chromium, callr: aiortc}\n", ["callr"]),
        ("    engine: chromium\n    ice: {restart: true}\n", ["ice.restart", "chromium"]),
        ("    engine: chromium\n    profile: whatsapp\n", ["whatsapp", "aiortc"]),
        ("    engine: chromium\n    adapt: false\n", ["adapt", "congestion control"]),
        ("    engine: chromium\n    audio: {bitrate: 32kbit}\n", ["audio.bitrate", "Chromium"]),
    ],
)
def test_bad_engine_is_a_scenario_error_at_its_line(entry: str, words: list[str]) -> None:
    text = "name: x\ncalls:\n  - name: a\n" + entry
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml:")
    for word in words:
        assert word in message


@dataclass(frozen=True)
class FakeNode:
    netns: str
    address: str
    public_address: str


NODES = {
    "caller": FakeNode("tb-x-caller", "198.18.1.2", "198.18.1.2"),
    "callee": FakeNode("tb-x-callee", "198.18.2.2", "198.18.2.2"),
}


def test_plan_carries_each_ends_engine() -> None:
    specs = [
        CallSpec.model_validate({"name": "a"}),
        CallSpec.model_validate({"name": "b", "engine": {"caller": "chromium", "callee": "aiortc"}, "count": 2}),
    ]
    plans = plan_calls(specs, nodes=NODES, services=[])
    assert plans[0].engine_names() == {"caller": "aiortc", "callee": "aiortc"}
    for plan in plans[1:]:
        assert plan.engines == {Role.CALLER: Engine.CHROMIUM, Role.CALLEE: Engine.AIORTC}
        assert plan.engine_names() == {"caller": "chromium", "callee": "aiortc"}


def test_endpoint_argv_per_engine(tmp_path: Path) -> None:
    assert endpoint_argv(Engine.AIORTC, tmp_path / "c.json")[2] == "testbed.calls.endpoint"
    assert endpoint_argv(Engine.CHROMIUM, tmp_path / "c.json")[2] == "testbed.calls.chromium.endpoint"


def test_missing_chromium_is_one_clear_error_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CANDIDATES", ("/nonexistent/chromium", "no-such-chromium-binary"))
    plans = plan_calls([CallSpec.model_validate({"name": "a", "engine": "chromium"})], nodes=NODES, services=[])
    with pytest.raises(RunError, match=r"call 'a': .*apt-get install chromium"):
        _check_engines(plans)
    # aiortc-only calls do not need it.
    _check_engines(plan_calls([CallSpec.model_validate({"name": "b"})], nodes=NODES, services=[]))


def test_doctor_names_the_package_when_chromium_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed import doctor

    monkeypatch.setattr(browser, "CANDIDATES", ("/nonexistent/chromium",))
    check = doctor._chromium()
    assert not check.ok
    assert check.fix is not None and "apt-get install chromium" in check.fix


def test_flags_keep_the_browser_headless_and_local(tmp_path: Path) -> None:
    flags = browser.chromium_flags(user_data_dir=tmp_path / "p", fake_audio=tmp_path / "a.wav")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--remote-debugging-pipe",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        f"--user-data-dir={tmp_path / 'p'}",
        f"--use-file-for-fake-audio-capture={tmp_path / 'a.wav'}",
    ):
        assert flag in flags
    assert not any(f.startswith("--remote-debugging-port") for f in flags)  # no port in the node


# -- getStats -> records ---------------------------------------------------------------------------

EPOCH = 1_700_000_000_000.0


def _chromium_stats(
    *,
    packets_in: int = 100,
    lost: int = 2,
    last_ms: float = EPOCH - 5.0,
    freezes: int = 0,
    freezes_s: float = 0.0,
    video_in: int = 40,
) -> list[dict[str, Any]]:
    """A trimmed Chromium 156 getStats() of an audio + video call (field names as Chromium's)."""
    return [
        {"type": "codec", "id": "COT01_111", "mimeType": "audio/opus", "clockRate": 48000},
        {"type": "codec", "id": "COT01_96", "mimeType": "video/VP8", "clockRate": 90000},
        {
            "type": "outbound-rtp",
            "id": "OT01A1",
            "kind": "audio",
            "ssrc": 11,
            "codecId": "COT01_111",
            "packetsSent": 120,
            "bytesSent": 9000,
            "timestamp": EPOCH,
        },
        {
            "type": "outbound-rtp",
            "id": "OT01V2",
            "kind": "video",
            "ssrc": 12,
            "codecId": "COT01_96",
            "packetsSent": 300,
            "bytesSent": 250000,
            "framesEncoded": 60,
            "timestamp": EPOCH,
        },
        {
            "type": "remote-inbound-rtp",
            "id": "RIA11",
            "kind": "audio",
            "ssrc": 11,
            "packetsLost": 3,
            "jitter": 0.004,
            "roundTripTime": 0.031,
            "fractionLost": 0.0,
            "timestamp": EPOCH,
        },
        {
            "type": "inbound-rtp",
            "id": "IT01A21",
            "kind": "audio",
            "ssrc": 21,
            "codecId": "COT01_111",
            "packetsReceived": packets_in,
            "bytesReceived": packets_in * 70,
            "packetsLost": lost,
            "jitter": 0.002,
            "lastPacketReceivedTimestamp": last_ms,
            "timestamp": EPOCH,
        },
        {
            "type": "inbound-rtp",
            "id": "IT01V22",
            "kind": "video",
            "ssrc": 22,
            "codecId": "COT01_96",
            "packetsReceived": video_in,
            "bytesReceived": video_in * 800,
            "packetsLost": 0,
            "jitter": 0.01,
            "framesDecoded": 30,
            "freezeCount": freezes,
            "totalFreezesDuration": freezes_s,
            "lastPacketReceivedTimestamp": last_ms,
            "timestamp": EPOCH,
        },
        {
            "type": "transport",
            "id": "T01",
            "selectedCandidatePairId": "CP1",
            "packetsSent": 500,
            "packetsReceived": 480,
            "bytesSent": 270000,
            "bytesReceived": 260000,
            "iceRole": "controlling",
            "dtlsState": "connected",
        },
        {
            "type": "candidate-pair",
            "id": "CP1",
            "localCandidateId": "IL1",
            "remoteCandidateId": "IR1",
            "availableOutgoingBitrate": 1_234_000,
            "nominated": True,
            "state": "succeeded",
        },
        {
            "type": "local-candidate",
            "id": "IL1",
            "address": "198.18.1.2",
            "port": 50000,
            "protocol": "udp",
            "candidateType": "relay",
            "relayProtocol": "tls",
        },
        {
            "type": "remote-candidate",
            "id": "IR1",
            "address": "198.18.3.2",
            "port": 50001,
            "protocol": "udp",
            "candidateType": "relay",
        },
    ]


def _poll(**kw: Any) -> stats.Poll:
    data = {"messages_sent": 5, "bytes_sent": 500, "messages_received": 4, "bytes_received": 400}
    return stats.parse_poll({"now": 1000.0, "epoch": EPOCH, "stats": _chromium_stats(**kw), "data": data})


def test_poll_maps_chromium_fields_and_units() -> None:
    poll = _poll()
    out = poll.find(StatsType.OUTBOUND_RTP, Kind.AUDIO)
    assert out is not None and (out.packets_sent, out.bytes_sent, out.ssrc) == (120, 9000, 11)
    rtcp = poll.find(StatsType.REMOTE_INBOUND_RTP, Kind.AUDIO)
    # Jitter: seconds -> RTP timestamp units (aiortc's unit): 4 ms x 48 kHz.
    assert rtcp is not None and rtcp.jitter == 192 and rtcp.round_trip_time == pytest.approx(0.031)
    inbound = poll.find(StatsType.INBOUND_RTP, Kind.VIDEO)
    assert inbound is not None and inbound.jitter == 900  # 10 ms x 90 kHz
    assert poll.codecs[Kind.AUDIO].mime_type == "audio/opus"
    assert poll.pair is not None and (poll.pair.local_type, poll.pair.remote_address) == ("relay", "198.18.3.2")
    assert poll.available_kbps == pytest.approx(1234.0)
    assert poll.transport is not None and poll.transport.dtls_state == "connected"
    assert poll.data.messages_received == 4


def test_garbage_polls_give_empty_records_not_errors() -> None:
    for raw in ({}, {"stats": "x"}, {"stats": [1, None, {"type": "inbound-rtp"}], "data": 3}):
        poll = stats.parse_poll(raw)
        assert poll.rtp == () and poll.inbound == {}


def test_snapshot_is_what_the_aiortc_endpoint_snapshots() -> None:
    snap = stats.snapshot(5.0, _poll(), data_channel=True)
    audio, video, data = snap.kinds[Kind.AUDIO], snap.kinds[Kind.VIDEO], snap.kinds[Kind.DATA]
    assert audio.out is not None and (audio.out.packets, audio.out.lost, audio.out.frames) == (120, 3, 120)
    assert audio.in_ is not None and (audio.in_.packets, audio.in_.lost, audio.in_.jitter) == (100, 2, 96.0)
    assert audio.rtt == pytest.approx(0.031)
    assert audio.available_kbps == pytest.approx(1234.0)  # congestion control's estimate
    assert video.out is not None and video.out.frames == 60
    assert video.in_ is not None and video.in_.frames == 30
    assert data.in_ is not None and data.in_.messages == 4
    # The same JSON shape the samples are built from.
    assert json.loads(json.dumps(snap.to_json()))["audio"]["in"]["packets"] == 100


def test_reception_sees_gaps_silences_and_freezes_between_polls() -> None:
    rec = stats.Reception(origin=0.0)
    t = 1.0
    packets = 0
    firsts = []
    # Steady audio for 1 s (5 packets per 0.1 s poll), then 0.5 s of nothing, then steady again.
    for step in range(30):
        t = 1.0 + step * 0.1
        silent = 10 <= step < 15
        if not silent:
            packets += 5
        last = t if not silent else 1.0 + 9 * 0.1
        entries = _chromium_stats(
            packets_in=packets,
            last_ms=EPOCH - (t - last) * 1000,
            freezes=1 if step >= 20 else 0,
            freezes_s=0.4 if step >= 20 else 0.0,
            video_in=packets,
        )
        raw = {"now": 0.0, "epoch": EPOCH, "stats": entries}
        firsts += rec.update(t, stats.parse_poll(raw))
    assert firsts == [Kind.AUDIO, Kind.VIDEO]
    gaps = rec.audio_gaps()
    assert len(gaps) == 1
    start, length = gaps[0]
    assert start == pytest.approx(1.9)
    # At least the silent polls' half second, at most one poll more.
    assert 0.45 <= length <= 0.61
    assert rec.silences == ()  # under a second: not a silence
    assert rec.freezes[Kind.VIDEO] == [(pytest.approx(3.0 - 0.4), pytest.approx(0.4))]
    times = rec.arrivals()[21]
    assert times.first <= 1.0 and times.last == pytest.approx(3.9)
    assert sum(times.per_s) == packets


def test_final_report_round_trips_and_feeds_the_same_metrics() -> None:
    rec = stats.Reception(origin=0.0)
    poll = _poll()
    rec.update(1.0, poll)
    snaps = [stats.snapshot(1.0, poll, data_channel=True)]
    report = stats.report(poll, rec, snapshots=snaps, data_channel=True, delays_ms=[3.0, 4.0])
    again = EndpointReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again.candidate_pair == poll.pair
    assert again.frames_sent == {Kind.AUDIO: 120, Kind.VIDEO: 60}
    assert again.received_bytes == {21: 7000, 22: 32000}
    assert again.data is not None and again.data.delays_ms == (3.0, 4.0)
    streams = metrics.build_streams({Role.CALLER: again, Role.CALLEE: None}, [Kind.AUDIO, Kind.DATA], t0=0.0)
    send = next(s for s in streams if s.endpoint == "caller" and s.kind is Kind.AUDIO and s.direction == "send")
    assert (send.packets_sent, send.packets_lost, send.round_trip_time_ms) == (120, 3, 31.0)
    recv = next(s for s in streams if s.endpoint == "caller" and s.kind is Kind.AUDIO and s.direction == "recv")
    assert (recv.packets_received, recv.bytes, recv.jitter_ms) == (100, 7000, 2.0)


def test_available_bitrate_reaches_the_send_samples() -> None:
    from testbed.calls import quality

    first, second = stats.snapshot(1.0, _poll(), data_channel=False), stats.snapshot(2.0, _poll(), data_channel=False)
    samples = quality.build_samples(
        {"caller": [first.to_json(), second.to_json()]}, t0=0.0, clock_rates={"caller": {"audio": 48000}}
    )
    send = [s for s in samples if s["direction"] == "send" and s["kind"] == "audio"]
    recv = [s for s in samples if s["direction"] == "recv"]
    assert send and all(s["available_kbps"] == pytest.approx(1234.0) for s in send)
    assert recv and all(s["available_kbps"] is None for s in recv)


# -- DevTools framing ------------------------------------------------------------------------------


def test_messages_split_on_nul_across_reads() -> None:
    splitter = MessageSplitter()
    wire = b'{"id":1,"result":{}}\0{"method":"Runtime.bindingCalled","params":{"name":"tbEmit"}}\0'
    got = []
    for i in range(0, len(wire), 7):
        got += splitter.feed(wire[i : i + 7])
    assert [m.get("id") or m.get("method") for m in got] == [1, "Runtime.bindingCalled"]
    assert encode(3, "Browser.close", None, "S").endswith(b"\0")
    assert json.loads(encode(3, "Browser.close", None, "S")[:-1]) == {
        "id": 3,
        "method": "Browser.close",
        "params": {},
        "sessionId": "S",
    }


def test_garbage_from_the_browser_is_a_cdp_error() -> None:
    with pytest.raises(CdpError):
        MessageSplitter().feed(b"\xff\xfe\0")
    with pytest.raises(CdpError):
        MessageSplitter(max_bytes=10).feed(b"x" * 11)


# -- fake microphone -------------------------------------------------------------------------------


def test_speech_like_wav_is_deterministic_with_pauses(tmp_path: Path) -> None:
    path = write_speech_wav(tmp_path / "s.wav")
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        assert w.getnframes() > 5 * SAMPLE_RATE
    samples = speech_like_samples()
    assert samples == speech_like_samples()
    window = SAMPLE_RATE // 10
    loud = [max(abs(x) for x in samples[i : i + window]) for i in range(0, len(samples) - window, window)]
    assert any(v == 0 for v in loud), "pauses between phrases"
    assert sum(1 for v in loud if v > 3000) > len(loud) / 3, "mostly voiced"

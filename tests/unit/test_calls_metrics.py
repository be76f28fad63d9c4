"""Endpoint statistics -> stream and transport results, on crafted aiortc-shaped reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testbed.calls.metrics import Arrivals, build_streams, build_transport, parse_report
from testbed.calls.result import CallResult, CandidatePair, Direction, Kind
from testbed.calls.signalling import Role
from testbed.records.timeline import TimelineEntry

CALLER, CALLEE = Role.CALLER, Role.CALLEE
A_SSRC, B_SSRC = 1111, 2222  # caller's and callee's audio SSRCs


def rtp(type_: str, ssrc: int, kind: str = "audio", **fields: Any) -> dict[str, Any]:
    """One stats object the way the endpoint serialises aiortc's dataclasses."""
    return {
        "timestamp": 1.7e9,
        "type": type_,
        "id": f"{type_}_{ssrc}",
        "ssrc": ssrc,
        "kind": kind,
        "transportId": "transport_1",
        **fields,
    }


def transport(**fields: Any) -> dict[str, Any]:
    return {
        "timestamp": 1.7e9,
        "type": "transport",
        "id": "transport_1",
        "iceRole": "controlling",
        "dtlsState": "connected",
        **fields,
    }


def report(
    own: int,
    peer: int,
    *,
    sent: int,
    received: int,
    lost: int = 0,
    jitter: int = 48,
    rtcp: bool = True,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    stats = [
        rtp("outbound-rtp", own, packetsSent=sent, bytesSent=sent * 80, trackId="t"),
        rtp("inbound-rtp", peer, packetsReceived=received, packetsLost=lost, jitter=jitter),
        transport(
            packetsSent=sent + 100,
            packetsReceived=received + 90,
            bytesSent=9000,
            bytesReceived=8000,
        ),
    ]
    if rtcp:
        # aiortc labels remote-inbound-rtp with the reporting peer's SSRC, not ours.
        stats.append(
            rtp(
                "remote-inbound-rtp",
                peer,
                packetsReceived=sent - 3,
                packetsLost=3,
                jitter=96,
                roundTripTime=0.0015,
                fractionLost=0,
            )
        )
        stats.append(
            rtp(
                "remote-outbound-rtp",
                peer,
                packetsSent=received - 5,
                bytesSent=1,
                remoteTimestamp=1.7e9,
            )
        )
    return {
        "stats": stats,
        "codecs": {"audio": {"mimeType": "audio/opus", "clockRate": 48000}},
        "received_bytes": {str(peer): received * 81},
        "frames": {"sent": {"audio": sent}, "received": {"audio": received - 4}},
        "data": data,
        "candidate_pair": {
            "protocol": "udp",
            "local_address": "198.18.250.1",
            "local_port": 5000,
            "local_type": "host",
            "remote_address": "198.18.250.2",
            "remote_port": 6000,
            "remote_type": "host",
        },
    }


def data(sent: int, received: int, delays: list[float]) -> dict[str, Any]:
    return {
        "messages_sent": sent,
        "bytes_sent": sent * 100,
        "messages_received": received,
        "bytes_received": received * 100,
        "delays_ms": delays,
    }


def test_both_reports_give_end_to_end_counts() -> None:
    caller = parse_report(report(A_SSRC, B_SSRC, sent=250, received=248, lost=2, jitter=24))
    callee = parse_report(report(B_SSRC, A_SSRC, sent=249, received=247, lost=3, jitter=96))
    streams = build_streams({CALLER: caller, CALLEE: callee}, [Kind.AUDIO])
    assert [(s.endpoint, s.kind, s.direction) for s in streams] == [
        ("caller", Kind.AUDIO, Direction.SEND),
        ("caller", Kind.AUDIO, Direction.RECV),
        ("callee", Kind.AUDIO, Direction.SEND),
        ("callee", Kind.AUDIO, Direction.RECV),
    ]
    send, recv = streams[0], streams[1]
    # caller -> callee: sender's count and the callee's own final count (not the lagging RTCP).
    assert (send.packets_sent, send.packets_received, send.packets_lost) == (250, 247, 3)
    assert send.jitter_ms == pytest.approx(2.0)  # 96 / 48 kHz, as the callee measured it
    assert send.round_trip_time_ms == pytest.approx(1.5)
    assert (send.bytes, send.ssrc, send.codec, send.frames) == (20000, A_SSRC, "audio/opus", 250)
    # callee -> caller, seen by the caller.
    assert (recv.packets_sent, recv.packets_received, recv.packets_lost) == (249, 248, 2)
    assert recv.jitter_ms == pytest.approx(0.5)
    assert (recv.bytes, recv.ssrc, recv.frames) == (248 * 81, B_SSRC, 244)
    assert recv.round_trip_time_ms is None
    # The two views of one flow agree.
    assert streams[3].packets_sent == send.packets_sent
    assert streams[3].packets_received == send.packets_received


def test_dead_peer_falls_back_to_rtcp() -> None:
    caller = parse_report(report(A_SSRC, B_SSRC, sent=100, received=90))
    streams = build_streams({CALLER: caller, CALLEE: None}, [Kind.AUDIO])
    send, recv, peer_send, peer_recv = streams
    assert (send.packets_sent, send.packets_received, send.packets_lost) == (100, 97, 3)
    assert send.jitter_ms == pytest.approx(2.0)
    assert (recv.packets_sent, recv.packets_received) == (85, 90)  # sender report lags
    # The dead endpoint's own figures are unknown; what its peer measured is still there.
    assert (peer_send.packets_sent, peer_send.packets_received, peer_send.bytes) == (
        None,
        None,
        None,
    )
    assert (peer_recv.packets_sent, peer_recv.packets_received) == (100, None)


def test_nothing_received_is_zero_not_unknown() -> None:
    # A censor that drops all media: aiortc lists no inbound-rtp at all.
    caller_raw = report(A_SSRC, B_SSRC, sent=100, received=0, rtcp=False)
    caller_raw["stats"] = [s for s in caller_raw["stats"] if s["type"] != "inbound-rtp"]
    callee_raw = report(B_SSRC, A_SSRC, sent=100, received=0, rtcp=False)
    callee_raw["stats"] = [s for s in callee_raw["stats"] if s["type"] != "inbound-rtp"]
    reports = {CALLER: parse_report(caller_raw), CALLEE: parse_report(callee_raw)}
    send, recv, _, _ = build_streams(reports, [Kind.AUDIO])
    assert (send.packets_sent, send.packets_received, send.packets_lost) == (100, 0, None)
    assert (recv.packets_sent, recv.packets_received, recv.bytes) == (100, 0, 0)


def test_no_reports_at_all() -> None:
    streams = build_streams({}, [Kind.AUDIO, Kind.DATA])
    assert len(streams) == 8
    assert all(s.packets_sent is None and s.packets_received is None for s in streams)


def test_data_channel_streams() -> None:
    caller = parse_report(report(A_SSRC, B_SSRC, sent=1, received=1, data=data(50, 49, [0.5, 0.2, 3.0])))
    callee = parse_report(report(B_SSRC, A_SSRC, sent=1, received=1, data=data(49, 50, [])))
    streams = build_streams({CALLER: caller, CALLEE: callee}, [Kind.DATA])
    send, recv, peer_send, peer_recv = streams
    assert (send.kind, send.packets_sent, send.packets_received, send.messages, send.bytes) == (
        Kind.DATA,
        50,
        50,
        50,
        5000,
    )
    assert (recv.packets_sent, recv.packets_received, recv.messages) == (49, 49, 49)
    assert (recv.latency_ms_median, recv.latency_ms_max) == (0.5, 3.0)
    assert peer_recv.latency_ms_median is None
    assert peer_send.ssrc is None and peer_send.jitter_ms is None


def test_kinds_are_ordered_and_filtered() -> None:
    streams = build_streams({}, [Kind.DATA, Kind.VIDEO])
    assert [(s.endpoint, s.kind.value, s.direction.value) for s in streams] == [
        ("caller", "video", "send"),
        ("caller", "video", "recv"),
        ("caller", "data", "send"),
        ("caller", "data", "recv"),
        ("callee", "video", "send"),
        ("callee", "video", "recv"),
        ("callee", "data", "send"),
        ("callee", "data", "recv"),
    ]


def test_video_jitter_uses_the_90khz_clock_by_default() -> None:
    raw = {"stats": [rtp("inbound-rtp", 5, kind="video", packetsReceived=10, packetsLost=0, jitter=900)]}
    (_, recv) = build_streams({CALLEE: parse_report(raw)}, [Kind.VIDEO])[2:]
    assert recv.jitter_ms == pytest.approx(10.0)


def test_transport_and_candidate_pair() -> None:
    caller = parse_report(report(A_SSRC, B_SSRC, sent=10, received=10))
    t = build_transport(CALLER, caller)
    assert (t.packets_sent, t.packets_received, t.bytes_sent, t.bytes_received) == (
        110,
        100,
        9000,
        8000,
    )
    assert (t.ice_role, t.dtls_state) == ("controlling", "connected")
    assert t.selected_candidate_pair == CandidatePair("udp", "198.18.250.1", 5000, "host", "198.18.250.2", 6000, "host")
    assert build_transport(CALLEE, None).to_json()["packets_sent"] is None


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"stats": "nope"},
        {
            "stats": [
                1,
                "x",
                None,
                {"type": "inbound-rtp"},
                {"type": "inbound-rtp", "kind": "smell", "ssrc": 1},
            ]
        },
        {"stats": [{"type": "outbound-rtp", "kind": "audio", "ssrc": True}]},
        {"codecs": {"audio": "opus", "smell": {}}, "received_bytes": {"x": 1, "1": "a"}},
        {"frames": {"sent": {"audio": "many"}}, "data": {"delays_ms": ["slow", 1]}},
        {"candidate_pair": {"protocol": "udp"}},
    ],
)
def test_malformed_reports_degrade_to_unknown(raw: dict[str, Any]) -> None:
    parsed = parse_report(raw)
    streams = build_streams({CALLER: parsed, CALLEE: parsed}, [Kind.AUDIO, Kind.DATA])
    assert len(streams) == 8
    json.dumps([s.to_json() for s in streams])


def test_call_result_json_contract() -> None:
    caller = parse_report(report(A_SSRC, B_SSRC, sent=10, received=10, data=data(1, 1, [1.0])))
    streams = build_streams({CALLER: caller, CALLEE: None}, [Kind.AUDIO, Kind.DATA])
    result = CallResult(
        name="c",
        connected=True,
        setup_ms=40.0,
        state_timeline=(TimelineEntry.parse(0.1, "caller:endpoint:ready"),),
        streams=streams,
        error=None,
        selected_candidate_pair=caller.candidate_pair,
        transports=(build_transport(CALLER, caller), build_transport(CALLEE, None)),
    )
    out = json.loads(json.dumps(result.to_json()))
    assert {
        "name",
        "connected",
        "setup_ms",
        "state_timeline",
        "streams",
        "error",
        "selected_candidate_pair",
    } <= set(out)
    assert out["state_timeline"] == [[0.1, "caller:endpoint:ready"]]
    for stream in out["streams"]:
        assert {
            "endpoint",
            "kind",
            "direction",
            "packets_sent",
            "packets_received",
            "bytes",
        } <= set(stream)
    assert result.stream("caller", "audio", "send").packets_sent == 10
    with pytest.raises(KeyError):
        result.stream("caller", "video", "send")


def test_arrivals_track_first_last_and_longest_gap() -> None:
    arrivals = Arrivals()
    assert arrivals.to_json() == {
        "first": None,
        "last": None,
        "max_gap_s": 0.0,
        "origin": None,
        "per_s": [],
    }
    for now in (10.0, 10.02, 10.04, 12.04, 12.06):  # a 2 s stall, then the flow resumed
        arrivals.add(now, 80)
    assert (arrivals.count, arrivals.bytes) == (5, 400)
    out = arrivals.to_json()
    assert (out["first"], out["last"]) == (10.0, 12.06)
    assert out["max_gap_s"] == pytest.approx(2.0)
    assert out["per_s"] == []  # no origin, no per-second counts


def test_arrivals_per_second_since_origin() -> None:
    arrivals = Arrivals(origin=100.0)
    arrivals.add(99.5, 10)  # before the call started (cannot happen, must not break)
    for i in range(10):
        arrivals.add(100.5 + i * 0.1, 10)  # 5 in [0, 1), 5 in [1, 2)
    arrivals.add(103.2, 10)  # nothing in [2, 3)
    assert arrivals.per_s == [5, 5, 0, 1]


def test_arrival_times_are_relative_to_call_start() -> None:
    raw = report(A_SSRC, B_SSRC, sent=10, received=10, data=data(1, 1, [1.0]))
    raw["arrivals"] = {
        str(B_SSRC): {
            "first": 100.5,
            "last": 104.25,
            "max_gap_s": 0.03,
            "origin": 100.0,
            "per_s": [25, 50, 50, 50, 13],
        }
    }
    raw["data"]["arrivals"] = {"first": 100.6, "last": 103.0, "max_gap_s": 2.0, "origin": 99.0}
    caller = parse_report(raw)
    streams = build_streams({CALLER: caller}, [Kind.AUDIO, Kind.DATA], t0=100.0)
    audio = streams[1]
    assert (audio.first_received_t_s, audio.last_received_t_s, audio.max_gap_ms) == (
        0.5,
        4.25,
        30.0,
    )
    assert audio.received_per_s == (25, 50, 50, 50, 13)
    data_recv = streams[3]
    assert (data_recv.last_received_t_s, data_recv.max_gap_ms) == (3.0, 2000.0)
    assert data_recv.received_per_s is None  # counted from another origin: not comparable
    assert streams[0].last_received_t_s is None  # send streams carry no arrival times
    # Without t0 there is nothing to be relative to.
    assert build_streams({CALLER: caller}, [Kind.AUDIO])[1].first_received_t_s is None


def test_setup_split_into_ice_and_dtls() -> None:
    from testbed.calls.metrics import setup_split

    timeline = [
        (0.10, "caller:signalling:offer-sent"),
        (0.15, "callee:ice-connection:completed"),
        (0.16, "caller:ice-connection:completed"),
        (0.19, "caller:dtls:connected"),
        (0.20, "callee:dtls:connected"),
    ]
    entries = [TimelineEntry.parse(t, label) for t, label in timeline]
    ice_ms, dtls_ms = setup_split(entries)
    assert ice_ms == pytest.approx(60.0) and dtls_ms == pytest.approx(40.0)
    assert setup_split(entries[:2]) == (None, None)


def test_candidate_summary_counts_both_ends_of_the_pair() -> None:
    from testbed.calls.metrics import candidate_summary
    from testbed.calls.result import CandidatePair, TransportResult

    def transport(who: str, local: str, remote: str) -> TransportResult:
        pair = CandidatePair("udp", "198.18.1.2", 1, local, "198.18.2.2", 2, remote)
        return TransportResult(who, selected_candidate_pair=pair)

    assert candidate_summary([transport("caller", "host", "host")], None) == ("host", "udp")
    # Through a cone NAT: the local candidate is the srflx candidate's host base.
    assert candidate_summary([transport("caller", "host", "srflx")], None) == ("srflx", "udp")
    relayed = [transport("caller", "host", "relay"), transport("callee", "relay", "host")]
    assert candidate_summary(relayed, "tls") == ("relay", "tls")
    assert candidate_summary([TransportResult("caller")], None) == (None, None)


def test_the_report_record_round_trips_and_keeps_every_wire_key() -> None:
    """The endpoint writes ``EndpointReport.to_json()``; the conductor reads it back with
    ``parse_report``: the same record, and every key the endpoint has always sent."""
    from testbed.calls.endpoint_report import EndpointReport

    raw = report(A_SSRC, B_SSRC, sent=10, received=9, data=data(3, 2, [1.5, 2.5]))
    raw["arrivals"] = {str(B_SSRC): {"first": 1.0, "last": 2.0, "max_gap_s": 0.5, "origin": 0.5, "per_s": [1, 2]}}
    raw["snapshots"] = [
        {"t": 1.0, "audio": {"out": {"packets": 5, "bytes": 400, "frames": 5}, "in": {"packets": 4, "jitter": 9}, "rtt": 0.01}},
        {"t": 2.0, "data": {"out": {"packets": 1, "bytes": 100, "messages": 1}}},
    ]  # fmt: skip
    raw["gaps"] = {"audio": [[1.0, 0.1]]}
    raw["freezes"] = {"video": []}
    raw["silences"] = [[3.0, 1.5]]
    raw["last_arrival"] = 4.5
    parsed = parse_report(raw)
    wire = json.loads(json.dumps(parsed.to_json()))
    assert EndpointReport.from_json(wire) == parsed
    assert set(wire) >= set(raw) | {"snapshots", "gaps", "silences", "last_arrival", "freezes"}
    assert wire["snapshots"] == raw["snapshots"]
    by_type = {s["type"]: s for s in wire["stats"]}
    for entry in raw["stats"]:
        assert by_type[entry["type"]] == entry  # every aiortc field the endpoint sent is kept

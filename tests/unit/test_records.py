"""testbed.records: every record round-trips, reads what the producers write, and rejects garbage."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path
from typing import Any

import pytest
from _dpi_helpers import build_client_hello, stun_message, tls_record, udp4, write_pcap
from test_policy_support import CALLEE, CALLER, RELAY, SYN, engine, play, policy, tcp, udp

from testbed.analysis.classify import flow_to_json
from testbed.analysis.classify import main as classify_main
from testbed.core.classify import Classifier
from testbed.core.engine import CensorEngine
from testbed.records import censor_message
from testbed.records.censor_event import CensorEvent, EventKind
from testbed.records.censor_message import CensorFinal, CensorReady, CensorStats
from testbed.records.flow import FlowRecord
from testbed.records.json import RecordError
from testbed.records.result import SCHEMA_VERSION
from testbed.records.timeline import CallState, Layer, Party, Role, TimelineEntry

RECORDS = Path(__file__).resolve().parents[2] / "testbed" / "records"

FLOW = FlowRecord(
    transport="udp", initiator="198.18.1.2:40000", responder="198.18.2.2:3478",
    packets_orig=3, packets_reply=2, bytes_orig=300, bytes_reply=180,
    first_seen=1000.25, last_seen=1001.5, first_seen_s=0.25, last_seen_s=1.5,
    labels=("stun",), sni="example.com", alpn=("h2",), fingerprints={"ja4": "t13d"},
    ended="idle", verdicts={"accept": 4, "drop": 1}, rule="r", rules={"r": 5}, settled=True, held=1,
)  # fmt: skip

ROUND_TRIPS: list[tuple[Any, Any]] = [
    (TimelineEntry(0.5, Party.RELAY, Layer.CALL, CallState.CONNECTED), TimelineEntry.from_json),
    (TimelineEntry(1.25, Party.CALLER, Layer.ICE_CONNECTION, "checking"), TimelineEntry.from_json),
    (
        CensorEvent(1.5, EventKind.MATCH, "r", ("198.18.1.2:1", "198.18.2.2:2"), {"sni": None, "labels": ["tls"]}),
        CensorEvent.from_json,
    ),
    (CensorEvent(2.0, "window-open", None, None), CensorEvent.from_json),
    (FLOW, FlowRecord.from_json),
    (FlowRecord("tcp", "[fd00::1]:5", "[fd00::2]:443", 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0), FlowRecord.from_json),
    (CensorReady(queue_num=0, t0=1234.5), censor_message.from_json),
    (CensorStats(t_s=1.0, packets=10, bytes=1000, flows=2, held=0), censor_message.from_json),
    (CensorFinal(file="/run/testbed/x/censor-final.json"), censor_message.from_json),
    (CensorFinal(file="f", error="RuntimeError: boom"), censor_message.from_json),
]


@pytest.mark.parametrize("record, from_json", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_every_record_round_trips_through_json_text(record: Any, from_json: Any) -> None:
    text = json.dumps(record.to_json())
    assert from_json(json.loads(text)) == record


def test_records_import_nothing_from_the_rest_of_testbed() -> None:
    # So testbed.core (sans-IO) may use them without a cycle.
    for path in RECORDS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("testbed.") or name.startswith("testbed.records"), (path.name, name)


# -- timeline entries ----------------------------------------------------------------------------


def test_a_timeline_entry_keeps_the_results_shape() -> None:
    entry = TimelineEntry(0.36, Role.CALLER.party, Layer.CONNECTION, "connected")
    assert entry.to_json() == [0.36, "caller:connection:connected"]
    assert entry.is_(None, Layer.CONNECTION, "connected")
    assert not entry.is_(Party.CALLEE, Layer.CONNECTION, "connected")
    # A state may itself hold ':' (the label is split on the first two only).
    assert TimelineEntry.from_json([1, "relay:call:failed:why"]).state == "failed:why"


@pytest.mark.parametrize("raw", [[0.1], [0.1, "caller:connection"], [True, "caller:dtls:new"], ["0", "caller:dtls:new"],
                                 [0.1, "peer:dtls:new"], [0.1, "caller:nope:new"], [0.1, 5], "x"])  # fmt: skip
def test_a_bad_timeline_entry_is_a_record_error(raw: object) -> None:
    with pytest.raises(RecordError, match="timeline entry"):
        TimelineEntry.from_json(raw)


# -- censor events -------------------------------------------------------------------------------


def test_censor_events_are_written_as_records_and_keep_the_flow_string() -> None:
    p = policy(
        "rules:\n  - {name: sni-4, match: {sni: blocked.example}, action: {drop: true, block_after: {for: 40s}}}\n"
    )
    e = engine(p)
    ch = tls_record(build_client_hello(sni="blocked.example"))
    play(e, [(1.0, tcp(CALLER, 40000, CALLEE, 443, payload=ch)), (2.0, tcp(CALLER, 40001, CALLEE, 443, flags=SYN))])
    written = p.summary()["events"]
    assert [ev["event"] for ev in written] == ["match", "block", "residual"]
    for raw in written:
        event = CensorEvent.from_json(raw)
        again = event.to_json()
        assert again == raw  # the policy writes the record itself
        assert "flow" in raw  # the old shape is kept: fields only added
        assert event.endpoints is not None and raw["endpoints"] == list(event.endpoints)
        assert event.flow == raw["flow"] and event.endpoints[1] == f"{CALLEE}:443"


def test_an_event_from_an_older_result_is_read_from_its_flow_string() -> None:
    old = {"t": 3.0, "event": "cut", "rule": "c", "flow": "10.0.1.2:1 <-> 10.0.2.2:2", "packets": 7}
    event = CensorEvent.from_json(old)
    assert event.endpoints == ("10.0.1.2:1", "10.0.2.2:2") and event.details == {"packets": 7}
    with pytest.raises(RecordError, match="flow"):
        CensorEvent.from_json({**old, "flow": "10.0.1.2:1 10.0.2.2:2"})
    with pytest.raises(RecordError, match="'t'"):
        CensorEvent.from_json({**old, "t": "3"})


# -- the censor's stdout -------------------------------------------------------------------------


def test_censor_messages_keep_their_wire_shape() -> None:
    assert censor_message.encode(CensorFinal(file="f")) == '{"event":"final","file":"f"}\n'
    assert json.loads(censor_message.encode(CensorReady(0, 1.5))) == {"event": "ready", "queue_num": 0, "t0": 1.5}
    assert censor_message.decode(b'{"event":"stats","t_s":1,"packets":1,"bytes":2,"flows":3,"held":0,"new":1}') == (
        CensorStats(1.0, 1, 2, 3, 0)  # unknown keys ignored: a newer censor may add some
    )


@pytest.mark.parametrize("line", [b"not json", b"[]", b'{"event":"hello"}', b'{"event":"ready","t0":1}',
                                  b'{"event":"final","file":3}', b'{"event":"stats","t_s":1,"packets":true,'
                                  b'"bytes":2,"flows":3,"held":0}', b"\xff"])  # fmt: skip
def test_a_bad_censor_line_is_a_record_error(line: bytes) -> None:
    with pytest.raises(RecordError, match="censor"):
        censor_message.decode(line)


# -- one flow record for the censor and classify -------------------------------------------------


def test_the_censor_and_classify_write_the_same_flow_object(tmp_path: Path) -> None:
    # The same packets through `testbed classify --json` and through the censor engine (with a
    # rule that matches, so the policy's facts are filled in): the same keys, the same flow.
    out = udp4("198.18.1.2", 40000, "198.18.2.2", 3478, stun_message(0x0001, []))
    back = udp4("198.18.2.2", 3478, "198.18.1.2", 40000, stun_message(0x0101, []))
    pcap = tmp_path / "a.pcap"
    write_pcap(pcap, [(10.0, out), (10.5, back)])
    text = io.StringIO()
    assert classify_main(str(pcap), as_json=True, inspect_packets=None, reassemble=True, out=text) == 0
    (from_classify,) = json.loads(text.getvalue())["flows"]

    p = policy("rules:\n  - {name: stun, match: {labels: [stun]}, action: accept}\n", start=10.0)
    censor = engine(p)
    play(censor, [(10.0, out), (10.5, back)])
    (from_censor,) = censor.summary()["flows"]
    plain = CensorEngine(Classifier())
    play(plain, [(10.0, out), (10.5, back)])
    (from_plain,) = plain.summary()["flows"]

    assert set(from_classify) == set(from_censor) == set(from_plain) == set(FLOW.to_json())
    same = ("transport", "endpoints", "initiator", "responder", "packets", "bytes", "packets_by_direction",
            "bytes_by_direction", "labels", "sni", "alpn", "first_seen", "last_seen")  # fmt: skip
    assert {k: from_classify[k] for k in same} == {k: from_censor[k] for k in same}
    assert from_classify["endpoints"] == ["198.18.1.2:40000", "198.18.2.2:3478"]  # initiator first
    assert from_censor["rule"] == "stun" and from_censor["verdicts"] == {"accept": 2}
    assert from_censor["first_seen_s"] == 0.0 and from_censor["last_seen_s"] == 0.5
    assert FlowRecord.from_json(from_classify).to_json() == from_classify
    assert FlowRecord.from_json(from_censor).to_json() == from_censor


def test_flow_to_json_is_the_flow_record() -> None:
    c = Classifier()
    from testbed.core.packet import parse_ip

    c.observe(parse_ip(udp(CALLER, 1, RELAY, 2)), 5.0)
    (flow,) = c.flows()
    record = FlowRecord.from_json(flow_to_json(flow))
    assert (record.initiator, record.responder, record.packets, record.ended) == (f"{CALLER}:1", f"{RELAY}:2", 1, None)


def test_the_result_file_and_each_scenario_carry_the_schema_version(tmp_path: Path) -> None:
    from testbed.report.json_report import write_json
    from testbed.runner import ScenarioResult

    path = tmp_path / "r.json"
    write_json([ScenarioResult(name="s", file="s.yaml", run_id="abc123", seed=0)], path)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == doc["scenarios"][0]["schema_version"] == 1

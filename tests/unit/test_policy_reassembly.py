"""``censor.reassemble_tls``: a ClientHello split over TCP segments, with and without reassembly
(issue 14, item 12; censor-behaviors.md B.7/B.9: the 2021 throttler read one segment only)."""

from __future__ import annotations

import pytest
from _dpi_helpers import build_client_hello, tls_record
from test_policy_support import CALLEE, CALLER, handshake, play, policy, tcp

from testbed.core.classify import Classifier
from testbed.core.engine import CensorEngine
from testbed.scenario.model import CensorSpec

RULE = "rules:\n  - {name: sni, match: {sni: {suffix: [twitter.com]}}, action: drop}\n"


def _split_hello_flow(cut: int) -> list[tuple[float, bytes]]:
    ch = tls_record(build_client_hello(sni="api.twitter.com"))
    assert 0 < cut < len(ch)
    pk = handshake(CALLER, 40000, CALLEE, 443)
    pk.append((0.01, tcp(CALLER, 40000, CALLEE, 443, seq=1000, ack=5000, payload=ch[:cut])))
    pk.append((0.02, tcp(CALLER, 40000, CALLEE, 443, seq=1000 + cut, ack=5000, payload=ch[cut:])))
    pk.append((0.03, tcp(CALLEE, 443, CALLER, 40000, seq=5000, ack=1000 + len(ch), payload=b"s" * 100)))
    return pk


@pytest.mark.parametrize("cut", [5, 20, 60])  # inside the record header, before and inside the SNI
def test_split_client_hello_matches_only_with_reassembly(cut: int) -> None:
    got = {}
    for reassemble in (True, False):
        e = CensorEngine(Classifier(inspect_packets=12, reassemble_tls=reassemble), (p := policy(RULE)), start=p.start)
        got[reassemble] = [v.rule for v in play(e, _split_hello_flow(cut))]
        flow = next(iter(e.classifier.table))
        assert "tls" in flow.labels
        assert flow.sni == ("api.twitter.com" if reassemble else None)
    # Reassembled: the second segment completes the hello, and it and the reply are dropped.
    assert got[True] == [None, None, None, None, "sni", "sni"]
    # One segment only, as TSPU's 2021 parser: the SNI is never seen.
    assert got[False] == [None] * 6


def test_whole_hello_in_one_segment_matches_either_way() -> None:
    ch = tls_record(build_client_hello(sni="api.twitter.com"))
    pk = handshake(CALLER, 40000, CALLEE, 443)
    pk.append((0.01, tcp(CALLER, 40000, CALLEE, 443, seq=1000, ack=5000, payload=ch)))
    for reassemble in (True, False):
        e = CensorEngine(Classifier(inspect_packets=12, reassemble_tls=reassemble), (p := policy(RULE)), start=p.start)
        assert [v.rule for v in play(e, pk)][-1] == "sni"


def test_censor_spec_switch_defaults_on() -> None:
    assert CensorSpec.model_validate({}).reassemble_tls is True
    assert CensorSpec.model_validate({"reassemble_tls": False}).reassemble_tls is False

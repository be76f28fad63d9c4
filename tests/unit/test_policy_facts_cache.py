"""The policy's per-flow "facts false" cache (FlowState.facts_false, issue 12) never changes a
verdict: every shared capture through an engine with the cache and one without it (every rule
evaluated on every packet, as before the cache) gives the same verdicts, rule counters and flow
records, under policies whose rules match the captures' labels, SNI and sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_policy_support import engine, policy

from testbed.analysis.pcap import read_capture, strip_link_layer
from testbed.core.engine import CensorEngine
from testbed.core.policy.matchers.facts import skippable_fact_matchers
from testbed.core.policy.matchers.names import LabelsMatch

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "pcaps"

POLICIES: dict[str, dict[str, Any]] = {
    "calls": {"rules": [
        {"name": "wa", "match": {"labels": ["whatsapp-call"], "packet_index": {"min": 3}}, "action": "drop"},
        {"name": "tg", "match": {"labels": ["telegram-call", "telegram"]}, "action": {"loss": "50%"}},
        {"name": "stun-late", "match": {"labels": ["stun"], "packet_index": {"min": 6}}, "action": "drop"},
        {"name": "dtls-big", "match": {"labels": ["dtls"], "size": {"min": 200}}, "action": {"delay": "5ms"}},
        {"name": "srtp", "match": {"labels": ["srtp", "rtp"], "not": {"labels": ["rtcp"]}}, "action": "drop"},
        {"name": "quic-g", "match": {"labels": ["quic"], "sni": {"suffix": ["google.com", "googlevideo.com"]}},
         "action": "drop"},
        {"name": "tls-sni", "match": {"sni": {"substring": ["whatsapp", "signal"]}}, "action": "drop"},
        {"name": "vpn", "match": {"labels": ["wireguard", "openvpn"], "packet_index": {"max": 40}}, "action": "drop"},
        {"name": "alpn", "match": {"alpn": ["h2"]}, "action": {"cut": {"after_packets": 10}}},
        {"name": "udp-rest", "match": {"transport": "udp", "payload_size": {"min": 1000}}, "action": "drop"},
    ]},
    "accept-first": {"rules": [
        {"name": "dns-ok", "match": {"labels": ["dns"]}, "action": "accept"},
        {"name": "tls", "match": {"labels": ["tls"], "not": {"sni": {"suffix": ["example.com"]}}}, "action": "drop"},
        {"name": "stun", "match": {"any": [{"labels": ["stun"]}, {"labels": ["turn"]}]}, "action": "drop"},
    ]},
}  # fmt: skip


def _packets() -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    t = 0.0
    for path in sorted(SHARED.glob("*.pcap*")):
        if path.name.endswith(".ndpi.out"):
            continue
        last = None
        for rec in read_capture(str(path)):
            ip = strip_link_layer(rec.linktype, rec.data)
            if ip is None:
                continue
            # One clock for every capture, gaps kept up to 1 s (their own clocks jump years).
            t += 0.0 if last is None else min(max(rec.timestamp - last, 0.0), 1.0)
            last = rec.timestamp
            out.append((t, ip))
        t += 1000.0
    return out


def _run(e: CensorEngine, packets: list[tuple[float, bytes]]) -> list[tuple[str, str | None, float | None]]:
    return [(v.action.value, v.rule, v.until) for v in (e.handle(data, now) for now, data in packets)]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real captures not found at {SHARED}")
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_cache_gives_the_slow_paths_verdicts_on_every_capture(name: str) -> None:
    packets = _packets()
    fast, slow = engine(policy(POLICIES[name])), engine(policy(POLICIES[name]))
    slow_policy: Any = slow.policy
    slow_policy._skippable = {}  # the slow path: every candidate rule evaluated on every packet
    assert getattr(fast.policy, "_skippable", None), "the policy has rules the cache can skip"
    got, want = _run(fast, packets), _run(slow, packets)
    assert got == want
    assert sum(1 for a, _, _ in got if a != "accept") > 50  # the rules do act on these captures
    fs, ss = fast.summary(packets[-1][0]), slow.summary(packets[-1][0])
    assert fs == ss
    skipped = sum(
        len(f.policy.facts_false[0]) + len(f.policy.facts_false[1])
        for f in fast.classifier.flows()
        if f.policy is not None
    )
    assert skipped > 0  # and the cache was used


def test_a_rule_skipped_on_its_labels_matches_once_the_label_arrives() -> None:
    # Built by hand: the flow's first packets carry no STUN, so the rule is cached false; then a
    # STUN Binding Request: labels grow, the cache empties, and the rule matches at once.
    import struct

    from test_policy_support import CALLEE, CALLER, udp

    e = engine(policy({"rules": [{"name": "s", "match": {"labels": ["stun"]}, "action": "drop"}]}))
    verdicts = [e.handle(udp(CALLER, 5000, CALLEE, 3479, b"\x99" * 40), 0.01 * i).action.value for i in range(3)]
    flow = next(iter(e.classifier.flows()))
    assert flow.policy is not None and flow.policy.facts_false[0] == {0}
    stun = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, b"\x07" * 12)
    verdicts += [e.handle(udp(CALLER, 5000, CALLEE, 3479, stun), 0.1).action.value]
    assert verdicts == ["accept", "accept", "accept", "drop"]


def test_only_pure_rules_are_skippable() -> None:
    from testbed.core.policy.matchers.fingerprint import GroupsMatch

    labels = LabelsMatch(frozenset({"stun"}))
    assert skippable_fact_matchers((labels,)) == (labels,)
    # A matcher that learns from each packet (hello groups) keeps the whole rule evaluated.
    assert skippable_fact_matchers((labels, GroupsMatch((29,), ("client",)))) == ()
    assert skippable_fact_matchers(()) == ()

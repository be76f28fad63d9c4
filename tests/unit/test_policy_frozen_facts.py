"""Rules whose flow facts are settled false are dropped from a flow's candidates after inspection,
without changing a single verdict."""

from __future__ import annotations

import random
import struct
from typing import Any

from testbed.core.classify import Classifier
from testbed.core.engine import CensorEngine
from testbed.core.policy import RulePolicy, compile_policy
from testbed.scenario.policy_ir import policy_ir
from testbed.scenario.policy_schema import PolicySpec

RULES: list[dict[str, Any]] = [
    {"name": "calls", "match": {"labels": ["whatsapp-call", "telegram-call"]}, "action": "drop"},
    {"name": "twitter", "match": {"sni": {"suffix": ["twitter.com"]}}, "action": "drop"},
    {"name": "not-stun-big", "match": {"not": {"labels": ["stun"]}, "size": {"min": 900}}, "action": "drop"},
    {"name": "stun-loss", "match": {"labels": ["stun"]}, "action": {"loss": "30%", "direction": "both"}},
    {"name": "big-out", "match": {"direction": "outbound", "size": {"min": 600}}, "action": {"delay": "5ms"}},
    {"name": "late", "match": {"transport": "udp", "packet_index": {"min": 40}}, "action": {"loss": "10%"}},
]


def _udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
        bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))),
    ) + udp  # fmt: skip


def _stun(tid: int) -> bytes:
    # A STUN binding request (RFC 5389): type 0x0001, length 0, magic cookie, transaction id.
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid.to_bytes(12, "big")


def _engine(prune: bool) -> CensorEngine:
    spec = PolicySpec.model_validate({"rules": RULES})
    policy = compile_policy(policy_ir(spec), resolve_node=lambda n: [], inside_addresses=["198.18.1.2"], seed=3)
    if not prune:
        policy._prune_frozen = lambda st, d, cands, ctx: cands  # type: ignore[method-assign]
    return CensorEngine(Classifier(inspect_packets=8), policy)


def _traffic(seed: int) -> list[tuple[float, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(3000):
        flow = rng.randrange(6)
        a, b = ("198.18.1.2", 40000 + flow), ("198.18.2.2", 5000 + flow)
        src, dst = (a, b) if rng.random() < 0.6 else (b, a)
        if flow < 2 and rng.random() < 0.3:
            payload = _stun(rng.getrandbits(96))
        else:
            payload = bytes(rng.randrange(256) for _ in range(rng.choice([40, 200, 700, 1000])))
        out.append((i * 0.001, _udp(*src, *dst, payload)))
    return out


def test_pruning_never_changes_a_verdict() -> None:
    for seed in range(3):
        traffic = _traffic(seed)
        pruned, full = _engine(True), _engine(False)
        assert [pruned.handle(d, t) for t, d in traffic] == [full.handle(d, t) for t, d in traffic]
        assert pruned.summary()["rules"] == full.summary()["rules"]


def test_rules_with_false_frozen_facts_leave_the_candidates() -> None:
    engine = _engine(True)
    for i in range(30):  # past both inspection budgets (classifier 8, policy 20 packets)
        engine.handle(_udp("198.18.1.2", 40000, "198.18.2.2", 5000, b"x" * 100), i * 0.001)
    (flow,) = list(engine.classifier.flows())
    st = flow.policy
    assert isinstance(engine.policy, RulePolicy)
    names = {r.name for r in st.candidates[0]}
    # Labels and SNI can no longer appear; "not stun" and per-packet matchers stay.
    assert "calls" not in names and "twitter" not in names and "stun-loss" not in names
    assert {"not-stun-big", "big-out", "late"} <= names

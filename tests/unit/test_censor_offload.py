"""The censor side of offload: the adapter marks packets of offloadable flows only, the firewall
rules keep fail closed, and ctnetlink entries parse into ``KernelCounts``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_censor_adapter import FakeClock
from test_policy_support import CALLEE, CALLER, a, engine, policy, udp

from testbed.censor import firewall
from testbed.censor.conntrack import parse_entry
from testbed.censor.nfqueue import QueueAdapter
from testbed.core.offload import KernelCounts, OffloadTable


class MarkedPacket:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.mark = 0
        self.verdict = ""

    def get_payload(self) -> bytes:
        return self.payload

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def accept(self) -> None:
        self.verdict = "accept"

    def drop(self) -> None:
        self.verdict = "drop"


def _marks(rules: str, n: int) -> list[tuple[str, int]]:
    async def go() -> list[tuple[str, int]]:
        e = engine(policy(rules), inspect_packets=4)
        adapter = QueueAdapter(e, queue_num=0, max_len=1024, on_fatal=lambda exc: None, clock=FakeClock(),
                               offload=OffloadTable(e), offload_mark=firewall.OFFLOAD_MARK)  # fmt: skip
        out = []
        for _ in range(n):
            pkt = MarkedPacket(udp(CALLER, 40000, CALLEE, 5000, bytes(100)))
            adapter._on_packet(pkt)  # type: ignore[arg-type]
            out.append((pkt.verdict, pkt.mark))
        return out

    return asyncio.run(go())


def test_packets_of_a_settled_flow_carry_the_mark_once_inspection_ends() -> None:
    got = _marks("rules:\n  - {name: ok, action: accept}\n", 6)
    # inspect_packets=4: the classifier is done with the flow at its 4th packet
    assert got == [("accept", 0)] * 3 + [("accept", firewall.OFFLOAD_MARK)] * 3


def test_packets_of_a_throttled_flow_never_carry_the_mark() -> None:
    got = _marks("rules:\n  - {name: t, action: {throttle: {rate: 100mbit, burst: 1MB}}}\n", 6)
    assert got == [("accept", 0)] * 6


def test_offload_rules_accept_only_marked_connections_and_keep_the_queue_fail_closed() -> None:
    specs = firewall.offload_rule_specs(firewall.OFFLOAD_MARK, "abc123")
    assert [(t, c) for t, c, _ in specs][-2:] == [("mangle", "POSTROUTING"), ("filter", "FORWARD")]
    accept = specs[-1][2]
    assert accept[:4] == ["-m", "connmark", "--mark", "0x20000000/0x20000000"] and accept[-2:] == ["-j", "ACCEPT"]
    assert "--save-mark" in specs[-2][2] and all("testbed:abc123" in rule for _, _, rule in specs)
    # Conntrack (raw table) follows TCP and UDP only: the rest is untracked, as before offload.
    raw = [rule for t, c, rule in specs if (t, c) == ("raw", "PREROUTING")]
    assert [r[:2] for r in raw[:2]] == [["-p", "tcp"], ["-p", "udp"]] and raw[-1][-2:] == ["CT", "--notrack"]
    assert "--queue-bypass" not in firewall.queue_rule(0, "abc123")


class FakeNfctMessage:
    """The two accessors of a pyroute2 nfct_msg that parse_entry uses."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs

    def get(self, name: str) -> Any:
        return self.attrs.get(name)

    def get_nested(self, *path: str) -> Any:
        node: Any = self.attrs
        for name in path:
            if node is None:
                return None
            node = node.get(name)
        return node


def test_conntrack_entries_parse_into_kernel_counts() -> None:
    msg = FakeNfctMessage({
        "CTA_TUPLE_ORIG": {
            "CTA_TUPLE_IP": {"CTA_IP_V4_SRC": CALLER, "CTA_IP_V4_DST": CALLEE},
            "CTA_TUPLE_PROTO": {"CTA_PROTO_NUM": 17, "CTA_PROTO_SRC_PORT": 40000, "CTA_PROTO_DST_PORT": 5000},
        },
        "CTA_ID": 77,
        "CTA_COUNTERS_ORIG": {"CTA_COUNTERS_PACKETS": 3, "CTA_COUNTERS_BYTES": 384},
        "CTA_COUNTERS_REPLY": {"CTA_COUNTERS_PACKETS": 1, "CTA_COUNTERS_BYTES": 128},
    })  # fmt: skip
    assert parse_entry(msg) == KernelCounts(77, 17, a(CALLER), 40000, a(CALLEE), 5000, 3, 384, 1, 128)
    icmp = FakeNfctMessage({"CTA_TUPLE_ORIG": {"CTA_TUPLE_PROTO": {"CTA_PROTO_NUM": 1}}})
    assert parse_entry(icmp) is None
    no_acct = FakeNfctMessage({**msg.attrs, "CTA_COUNTERS_ORIG": None})
    assert parse_entry(no_acct) is None


def test_a_missing_extension_names_the_fix_and_removes_the_rules_already_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    def fake_run(args: list[str]) -> None:
        calls.append(args)
        if "CONNMARK" in args and "-I" in args:
            raise firewall.FirewallError("iptables ... failed: Couldn't load target `CONNMARK'")

    monkeypatch.setattr(firewall, "_run", fake_run)
    with pytest.raises(firewall.FirewallError, match=r"offload: false"), firewall.offload_rules(1, tag="t"):
        pass
    inserted = [c for c in calls if "-I" in c and "CONNMARK" not in c]
    deleted = [c for c in calls if "-D" in c]
    assert len(inserted) == 4 and len(deleted) == 4  # the four raw rules, each removed
    assert [c[c.index("-D") + 1 :] for c in reversed(deleted)] == [c[c.index("-I") + 1 :][:1] + c[c.index("-I") + 3 :]
                                                                   for c in inserted]  # fmt: skip

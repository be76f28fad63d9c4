"""Helpers for the policy tests: a topology of named nodes, packet builders, a driver.

(Named ``test_policy_*`` to sit with the tests it serves; it holds no tests itself.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import yaml

from testbed.core.classify import Classifier
from testbed.core.craft import tcp_segment, udp_datagram
from testbed.core.engine import CensorEngine
from testbed.core.packet import TCPFlag
from testbed.core.policy import RulePolicy, compile_policy
from testbed.core.policy_ir import PolicyIR
from testbed.core.verdict import Verdict
from testbed.scenario.policy_ir import policy_ir
from testbed.scenario.policy_schema import PolicySpec

CALLER = "10.0.1.2"  # inside
CALLEE = "10.0.2.2"  # outside
RELAY = "10.0.3.2"  # outside
CALLER6 = "fd00:1::2"
CALLEE6 = "fd00:2::2"
NODES: dict[str, list[str]] = {
    "caller": [CALLER, CALLER6],
    "callee": [CALLEE, CALLEE6],
    "relay": [RELAY],
}
INSIDE = [CALLER, CALLER6]

SYN = int(TCPFlag.SYN)
SYNACK = int(TCPFlag.SYN | TCPFlag.ACK)
ACK = int(TCPFlag.ACK)
PSHACK = int(TCPFlag.PSH | TCPFlag.ACK)


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def resolve_node(name: str) -> list[str]:
    return NODES[name]


def spec(text_or_data: str | dict[str, Any]) -> PolicySpec:
    data = yaml.safe_load(text_or_data) if isinstance(text_or_data, str) else text_or_data
    return PolicySpec.model_validate(data)


def ir(text_or_data: str | dict[str, Any]) -> PolicyIR:
    """The spec compiled into the core's IR, sent through its JSON form as the censor gets it."""
    got = policy_ir(spec(text_or_data))
    assert PolicyIR.from_json(got.to_json()) == got
    return got


def policy(text_or_data: str | dict[str, Any], *, seed: int = 1, start: float = 0.0,
           files: dict[str, str] | None = None) -> RulePolicy:  # fmt: skip
    return compile_policy(
        ir(text_or_data),
        resolve_node=resolve_node,
        inside_addresses=INSIDE,
        seed=seed,
        start=start,
        read_file=(files or {}).__getitem__,
    )


def engine(p: RulePolicy, *, inspect_packets: int = 12) -> CensorEngine:
    return CensorEngine(Classifier(inspect_packets=inspect_packets), p, start=p.start)


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes = b"x" * 100) -> bytes:
    return udp_datagram(a(src), a(dst), sport, dport, payload)


def tcp(src: str, sport: int, dst: str, dport: int, *, flags: int = PSHACK, seq: int = 1000,
        ack: int = 5000, payload: bytes = b"") -> bytes:  # fmt: skip
    return tcp_segment(a(src), a(dst), sport, dport, seq=seq, ack=ack, flags=flags, payload=payload, window=65535)


def play(e: CensorEngine, packets: Iterable[tuple[float, bytes]]) -> list[Verdict]:
    return [e.handle(data, now) for now, data in packets]


def handshake(client: str, cport: int, server: str, sport: int, t: float = 0.0) -> list[tuple[float, bytes]]:
    """A TCP three-way handshake: client ISN 1000, server ISN 5000."""
    return [
        (t, tcp(client, cport, server, sport, flags=SYN, seq=999, ack=0)),
        (t + 0.001, tcp(server, sport, client, cport, flags=SYNACK, seq=4999, ack=1000)),
        (t + 0.002, tcp(client, cport, server, sport, flags=ACK, seq=1000, ack=5000)),
    ]

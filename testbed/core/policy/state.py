"""Per-flow policy state, kept in ``Flow.policy``.

``FlowFacts`` are what never changes for a flow (its endpoints, transport, which side is
inside); rules are filtered on them once per flow and direction, so the per-packet path of a
settled flow is a dict lookup and a flag test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from testbed.core.flow import Direction, Flow
from testbed.core.packet import Packet

if TYPE_CHECKING:
    from testbed.core.policy.bucket import TokenBucket
    from testbed.core.policy.loss import GilbertElliottState
    from testbed.core.policy.rule import CompiledRule

__all__ = ["Context", "FlowFacts", "FlowState", "RuleFlowState"]


ORIGINAL = Direction.ORIGINAL


@dataclass(frozen=True, slots=True)
class FlowFacts:
    proto: int
    client: bytes  # the initiator
    client_port: int
    server: bytes  # the responder
    server_port: int
    client_inside: bool
    server_inside: bool

    def sender_inside(self, direction: Direction) -> bool:
        return self.client_inside if direction is ORIGINAL else self.server_inside


@dataclass(slots=True)
class RuleFlowState:
    """One rule's state for one flow."""

    first_packet: int = 0  # flow packet count at the rule's first match (1-based)
    first_bytes: int = 0  # flow byte count before the rule's first match
    first_time: float = 0.0
    packets: int = 0
    cut: bool = False
    triggered: bool = False
    buckets: dict[int, TokenBucket] = field(default_factory=dict)
    rngs: dict[int, random.Random] = field(default_factory=dict)
    ge: dict[int, GilbertElliottState] = field(default_factory=dict)


@dataclass(slots=True)
class FlowState:
    facts: FlowFacts
    # Rules that can still match, per direction (None until first computed).
    candidates: list[tuple[CompiledRule, ...] | None] = field(default_factory=lambda: [None, None])
    settled: bool = False
    # Per direction, the rule whose accept the settled packets are counted as (None: default).
    settled_by: list[CompiledRule | None] = field(default_factory=lambda: [None, None])
    ignored: bool = False
    # Release time of the last held packet, per direction (0 original, 1 reply).
    last_until: list[float] = field(default_factory=lambda: [float("-inf"), float("-inf")])
    rules: dict[int, RuleFlowState] = field(default_factory=dict)
    first_rule: str | None = None
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "client"/"server" hello groups
    syn: bool = False
    synack: bool = False
    # A.1: the side of the first SYN (without ACK; None: none seen) and whether the outside ever
    # sent one (matchers/syn.py).
    first_syn_inside: bool | None = None
    outside_syn: bool = False
    handshake: bool = False
    seen_reply: bool = False
    residual_logged: bool = False
    held: int = 0
    # The client's first data payloads, joined (``conforms``, H.24): how many packets, where each
    # ends in ``first_data``.
    first_data: bytearray = field(default_factory=bytearray)
    first_data_n: int = 0
    first_data_ends: list[int] = field(default_factory=list)
    # Per-flow values of stateful matchers, keyed by the matcher's id (connections: the rank).
    marks: dict[int, int] = field(default_factory=dict)
    # Per direction: candidates already pruned of rules whose frozen flow facts cannot match.
    facts_pruned: list[bool] = field(default_factory=lambda: [False, False])
    # Per direction, while the flow is still inspected: rules (by index) whose flow-fact matchers
    # were false at the facts ``facts_key`` names, so they cannot match until the facts grow
    # (runtime.py: ``_facts_key``); emptied when they do.
    facts_false: list[set[int]] = field(default_factory=lambda: [set(), set()])
    facts_key: list[tuple[int, int, str | None, int, bool, bool] | None] = field(default_factory=lambda: [None, None])


@dataclass(slots=True)
class Context:
    """One packet as the matchers and actions see it."""

    packet: Packet
    flow: Flow
    direction: Direction
    now: float
    t: float  # seconds since the policy's start
    state: FlowState
    inspect_packets: int
    hello_cache: list[tuple[str, bytes, tuple[int, ...]]] | None = None  # hellos in this packet

    @property
    def dir_index(self) -> int:
        return 0 if self.direction is ORIGINAL else 1

    @property
    def inspecting(self) -> bool:
        return self.flow.packets_orig + self.flow.packets_reply <= self.inspect_packets

"""Flow endpoint matchers: transport, IP family, addresses, ports, initiator side, packet direction.

``src``/``dst`` are the flow's initiator and responder (conntrack's original tuple), whatever
the packet's direction, so "flows to the hosting list" matches the replies too (the 2025 freeze
counted both directions, censor-behaviors.md E.13).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.flow import Direction
from testbed.core.labels import AddressList
from testbed.core.policy.state import FlowFacts
from testbed.core.policy_kinds import PacketDirection

__all__ = ["AddressMatch", "DirectionMatch", "End", "FamilyMatch", "InitiatorMatch", "PortMatch", "TransportMatch"]

ORIGINAL = Direction.ORIGINAL


class End:
    CLIENT = "src"
    SERVER = "dst"
    EITHER = "addr"


@dataclass(frozen=True, slots=True)
class TransportMatch:
    protos: frozenset[int]

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        return facts.proto in self.protos


@dataclass(frozen=True, slots=True)
class FamilyMatch:
    v6: bool

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        # A flow's addresses are packed: 16 bytes is IPv6 (both ends share the family).
        return (len(facts.client) == 16) is self.v6


@dataclass(frozen=True, slots=True)
class AddressMatch:
    addresses: AddressList
    end: str

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        if self.end == End.CLIENT:
            return facts.client in self.addresses
        if self.end == End.SERVER:
            return facts.server in self.addresses
        return facts.client in self.addresses or facts.server in self.addresses


@dataclass(frozen=True, slots=True)
class PortMatch:
    ranges: tuple[tuple[int, int], ...]
    end: str

    def _has(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges)

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        if self.end == End.CLIENT:
            return self._has(facts.client_port)
        if self.end == End.SERVER:
            return self._has(facts.server_port)
        return self._has(facts.client_port) or self._has(facts.server_port)


@dataclass(frozen=True, slots=True)
class InitiatorMatch:
    inside: bool

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        return facts.client_inside is self.inside


@dataclass(frozen=True, slots=True)
class DirectionMatch:
    want: PacketDirection

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        w = self.want
        if w is PacketDirection.BOTH:
            return True
        if w is PacketDirection.ORIGINAL:
            return direction is ORIGINAL
        if w is PacketDirection.REPLY:
            return direction is not ORIGINAL
        inside = facts.sender_inside(direction)
        return inside if w is PacketDirection.OUTBOUND else not inside

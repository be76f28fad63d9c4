"""Residual blocking (``block_after``): once a rule triggers, block a key for T seconds.

A rule triggers at the first packet it blocks or rewrites (``runtime.py``), not at its match:
SNI-I's ClientHello passes, and the block starts with the server reply rewritten into the RST.

TSPU kept blocking a server for a while after a trigger, new connections included: ~75 s after
SNI-I, ~420 s after SNI-II and QUIC, ~40 s after SNI-IV (censor-behaviors.md A.2-A.4, reference
numbers; secondary sources). The state lives in the policy, not in a flow, because it outlives
the flow and catches new ones. Keys:

- ``server``: the responder's address: any packet to or from it, any port or protocol;
- ``3-tuple``: (transport, responder address, responder port), either direction;
- ``pair``: the two addresses of the flow, any ports;
- ``client-3-tuple``: (transport, initiator address, responder address, responder port), either
  direction: the GFW's "3-tuple" (client IP, server IP, server port) after a fully-encrypted or
  QUIC SNI block (I.26, I.27), which leaves other clients of the same server alone.

A block added ``one_way`` stops only the packets sent towards the blocked server (its address,
and its port for the tuple keys): the GFW dropped client->server packets only (I.26; Wu et al.
2023, §4.4), so the server's replies still arrive.

Entries expire lazily on lookup; the table is bounded and evicts the oldest entry first.

A block added with ``restart`` starts its period again whenever it catches the first packet of
a new flow (a fresh connection to the blocked key): the Iran protocol filter's 60 s were reset
by each new offending connection (censor-behaviors.md H.24), so a client that keeps retrying
stays blocked. Retransmissions within one flow do not restart it.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.flow import Flow
from testbed.core.packet import Packet
from testbed.core.policy_kinds import BlockKey

__all__ = ["ResidualBlock", "ResidualBlocks"]


_Key = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class ResidualBlock:
    until: float
    rule: int  # index of the rule that triggered it
    reject: bool
    restart: float | None = None  # the period a new flow caught by the block restarts
    toward: tuple[bytes, int] | None = None  # one-way: (server address, port or -1) blocked


class ResidualBlocks:
    __slots__ = ("_d", "max_entries", "kinds", "evicted", "triggered", "restarted")

    def __init__(self, max_entries: int) -> None:
        self._d: dict[_Key, ResidualBlock] = {}
        self.max_entries = max_entries
        self.kinds: set[BlockKey] = set()
        self.evicted = 0
        self.triggered = 0
        self.restarted = 0

    def __len__(self) -> int:
        return len(self._d)

    def add(
        self, kind: BlockKey, flow: Flow, until: float, rule: int, reject: bool,
        restart: float | None = None, one_way: bool = False,
    ) -> None:  # fmt: skip
        toward: tuple[bytes, int] | None = None
        if kind is BlockKey.SERVER:
            key: _Key = ("a", flow.responder_addr)
        elif kind is BlockKey.TUPLE3:
            key = ("t", flow.key.proto, flow.responder_addr, flow.responder_port)
        elif kind is BlockKey.CLIENT_TUPLE3:
            key = ("c", flow.key.proto, flow.initiator_addr, flow.responder_addr, flow.responder_port)
        else:
            a, b = sorted((flow.initiator_addr, flow.responder_addr))
            key = ("p", a, b)
        if one_way:
            tuple_key = kind in (BlockKey.TUPLE3, BlockKey.CLIENT_TUPLE3)
            toward = (flow.responder_addr, flow.responder_port if tuple_key else -1)
        self.kinds.add(kind)
        self.triggered += 1
        d = self._d
        d.pop(key, None)  # re-insert: a renewed block moves to the back of the eviction order
        while len(d) >= self.max_entries:
            del d[next(iter(d))]
            self.evicted += 1
        d[key] = ResidualBlock(until, rule, reject, restart, toward)

    def lookup(self, packet: Packet, flow: Flow, now: float) -> ResidualBlock | None:
        d = self._d
        if not d:
            return None
        kinds = self.kinds
        keys: list[_Key] = []
        if BlockKey.SERVER in kinds:
            keys.append(("a", packet.src))
            keys.append(("a", packet.dst))
        if BlockKey.TUPLE3 in kinds:
            proto = flow.key.proto
            keys.append(("t", proto, flow.responder_addr, flow.responder_port))
            keys.append(("t", proto, flow.initiator_addr, flow.initiator_port))
        if BlockKey.PAIR in kinds:
            a, b = sorted((packet.src, packet.dst))
            keys.append(("p", a, b))
        if BlockKey.CLIENT_TUPLE3 in kinds:
            proto = flow.key.proto
            keys.append(("c", proto, flow.initiator_addr, flow.responder_addr, flow.responder_port))
            keys.append(("c", proto, flow.responder_addr, flow.initiator_addr, flow.initiator_port))
        for key in keys:
            block = d.get(key)
            if block is None:
                continue
            if block.until <= now:
                del d[key]
                continue
            toward = block.toward
            if toward is not None and (packet.dst != toward[0] or (toward[1] >= 0 and packet.dport != toward[1])):
                continue  # a one-way block: this packet goes the other way
            if block.restart is not None and flow.packets_orig + flow.packets_reply == 1:
                # A new flow's first packet (counted by the classifier before the policy).
                block = ResidualBlock(now + block.restart, block.rule, block.reject, block.restart, toward)
                del d[key]
                d[key] = block  # renewed: to the back of the eviction order
                self.restarted += 1
            return block
        return None

    def active(self, now: float) -> int:
        return sum(1 for b in self._d.values() if b.until > now)

"""Bidirectional flows and a bounded flow table with idle timeouts and LRU eviction.

Rules of this module:

1. Time is an argument (``now``, float seconds from any monotonic origin); nothing reads a clock.
2. Both directions of a conversation map to one ``Flow``; the side that sent the first packet we
   saw is the initiator (``Direction.ORIGINAL``), as conntrack does.
3. Memory is bounded: at ``max_flows`` the least recently seen flow is evicted and handed to
   ``on_evict`` (and counted), so a censor can still report what that flow did.
4. Per-packet work for a known flow is a dict lookup, a few integer additions and an LRU touch.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from testbed.core.dissect.tls import ClientHello, ServerHello
from testbed.core.packet import Packet, format_endpoint

if TYPE_CHECKING:  # classify and policy import this module; their state types are annotations here
    from collections import Counter

    from testbed.core.classify.state import ClassifierState
    from testbed.core.policy.state import FlowState
    from testbed.core.verdict import Action

__all__ = [
    "DEFAULT_MAX_FLOWS",
    "DEFAULT_TCP_IDLE_TIMEOUT",
    "DEFAULT_UDP_IDLE_TIMEOUT",
    "Direction",
    "EndReason",
    "Flow",
    "FlowKey",
    "FlowTable",
]

# Defaults follow Linux conntrack's spirit, shortened for a lab: UDP "stream" 120 s
# (nf_conntrack_udp_timeout_stream), TCP established is 5 days in conntrack but TSPU was measured
# forgetting idle state after ~10 minutes (censoredplanet.org/throttling), so we use 600 s.
DEFAULT_UDP_IDLE_TIMEOUT = 120.0
DEFAULT_TCP_IDLE_TIMEOUT = 600.0
DEFAULT_MAX_FLOWS = 65536


class Direction(enum.Enum):
    ORIGINAL = "original"  # from the initiator
    REPLY = "reply"  # towards the initiator


class EndReason(enum.Enum):
    IDLE = "idle"
    EVICTED = "evicted"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Canonical, direction-free key: (proto, lower endpoint, higher endpoint).

    ``a``/``b`` are ordered by (address, port) so both directions give the same key.
    """

    proto: int
    a_addr: bytes
    a_port: int
    b_addr: bytes
    b_port: int

    @classmethod
    def of(cls, packet: Packet) -> FlowKey:
        return cls(*_canonical(packet.proto, packet.src, packet.sport, packet.dst, packet.dport))

    @property
    def transport(self) -> str:
        return {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}.get(self.proto, str(self.proto))

    @property
    def endpoints(self) -> tuple[str, str]:
        return format_endpoint(self.a_addr, self.a_port), format_endpoint(self.b_addr, self.b_port)


def _canonical(proto: int, src: bytes, sport: int, dst: bytes, dport: int) -> tuple[int, bytes, int, bytes, int]:
    if (src, sport) <= (dst, dport):
        return proto, src, sport, dst, dport
    return proto, dst, dport, src, sport


@dataclass(slots=True, eq=False)
class Flow:
    """Mutable state of one bidirectional flow. Identity equality: a flow is a thing, not a value."""

    key: FlowKey
    initiator_addr: bytes
    initiator_port: int
    responder_addr: bytes
    responder_port: int
    created_at: float
    last_seen: float
    packets_orig: int = 0
    packets_reply: int = 0
    bytes_orig: int = 0
    bytes_reply: int = 0
    fragments: int = 0
    # TCP segments carrying data, per direction: with payload and reaching new sequence space
    # (a retransmission counts as the segment it repeats); the handshake and pure ACKs are not
    # data (``data_packet`` in docs/policy.md; H.24, I.26). For other transports every packet
    # is a data packet: ``data_packets`` reads the packet counters, so the per-packet path of a
    # media flow pays nothing for these.
    data_orig: int = 0
    data_reply: int = 0
    # Per direction, the sequence number just past the highest data seen (TCP), -1 before any.
    data_end_orig: int = -1
    data_end_reply: int = -1
    labels: set[str] = field(default_factory=set)
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    # The parsed hellos (TLS, DTLS or QUIC), for policies that match their structure or raw
    # bytes (extension order, supported_groups at an offset: censor-behaviors.md H.19).
    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    # While True the classifier looks at payloads; it stops after a budget of packets or once
    # the flow is decided, as real DPIs do (the per-packet cost afterwards is a counter update).
    inspecting: bool = True
    inspected: int = 0
    # The classifier's inspection state (core/classify/state.py): created at the first inspected
    # packet, dropped when inspection ends, so a flow past its budget carries none.
    classifier_state: ClassifierState | None = None
    # The policy's state for this flow (core/policy/state.py), made at its first packet; its
    # ``settled`` says every later packet will be accepted untouched (an adapter may offload it).
    policy: FlowState | None = None
    # What the engine decided for this flow's packets, by action (the flow record's `verdicts`).
    verdicts: Counter[Action] | None = None
    ended: EndReason | None = None

    @property
    def transport(self) -> str:
        return self.key.transport

    @property
    def initiator(self) -> str:
        return format_endpoint(self.initiator_addr, self.initiator_port)

    @property
    def responder(self) -> str:
        return format_endpoint(self.responder_addr, self.responder_port)

    @property
    def packets(self) -> int:
        return self.packets_orig + self.packets_reply

    @property
    def bytes(self) -> int:
        return self.bytes_orig + self.bytes_reply

    def data_packets(self, direction: Direction) -> int:
        """Data packets so far in ``direction`` (see ``data_orig``)."""
        original = direction is Direction.ORIGINAL
        if self.key.proto != 6:
            return self.packets_orig if original else self.packets_reply
        return self.data_orig if original else self.data_reply

    def count_data(self, direction: Direction, packet: Packet) -> None:
        """Count a TCP ``packet`` as a data segment of its direction if it is one."""
        n = len(packet.payload)
        seq = packet.tcp_seq
        if not n or seq is None:
            return
        original = direction is Direction.ORIGINAL
        end = (seq + n) & 0xFFFFFFFF
        last = self.data_end_orig if original else self.data_end_reply
        # Serial-number arithmetic (RFC 1982): new data ends after the highest end seen.
        if last >= 0 and not 0 < (end - last) & 0xFFFFFFFF < 0x80000000:
            return
        if original:
            self.data_end_orig = end
            self.data_orig += 1
        else:
            self.data_end_reply = end
            self.data_reply += 1

    def count(self, direction: Direction, length: int, now: float) -> None:
        if direction is Direction.ORIGINAL:
            self.packets_orig += 1
            self.bytes_orig += length
        else:
            self.packets_reply += 1
            self.bytes_reply += length
        self.last_seen = now


OnEvict = Callable[[Flow], None]


class FlowTable:
    """Flows by key, bounded, with per-transport idle timeouts.

    Two LRU orders are kept (TCP and everything else) so that expiry only ever looks at the
    front of each: a long TCP timeout never hides an idle UDP flow behind it.
    ``on_evict`` is called for every flow that leaves the table (idle, evicted, or ``remove``),
    with ``flow.ended`` set to why.
    """

    def __init__(
        self,
        max_flows: int = DEFAULT_MAX_FLOWS,
        udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT,
        tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
        *,
        on_evict: OnEvict | None = None,
        expire_interval: float = 1.0,
    ) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows must be >= 1, got {max_flows}")
        if udp_idle_timeout <= 0 or tcp_idle_timeout <= 0:
            raise ValueError("idle timeouts must be > 0 seconds")
        self.max_flows = max_flows
        self.udp_idle_timeout = float(udp_idle_timeout)
        self.tcp_idle_timeout = float(tcp_idle_timeout)
        self.on_evict = on_evict
        self.expire_interval = expire_interval
        self._tcp: OrderedDict[tuple[int, bytes, int, bytes, int], Flow] = OrderedDict()
        self._other: OrderedDict[tuple[int, bytes, int, bytes, int], Flow] = OrderedDict()
        self._next_expire = float("-inf")
        self.evicted = 0  # flows pushed out by the size bound
        self.expired = 0  # flows that timed out idle
        self.created = 0

    def __len__(self) -> int:
        return len(self._tcp) + len(self._other)

    def __iter__(self) -> Iterator[Flow]:
        yield from list(self._tcp.values())
        yield from list(self._other.values())

    def get(self, packet: Packet) -> Flow | None:
        """The flow a packet belongs to, without creating or touching it."""
        table = self._tcp if packet.proto == 6 else self._other
        return table.get(_canonical(packet.proto, packet.src, packet.sport, packet.dst, packet.dport))

    def lookup(self, packet: Packet, now: float) -> tuple[Flow, Direction, bool]:
        """The packet's flow (created if new), its direction, and whether the flow is new.

        Does not count the packet (``Flow.count`` does) but marks the flow as recently used.
        """
        if now >= self._next_expire:
            self.expire(now)
        proto = packet.proto
        src = packet.src
        sport = packet.sport
        dst = packet.dst
        dport = packet.dport
        if (src, sport) <= (dst, dport):
            k = (proto, src, sport, dst, dport)
        else:
            k = (proto, dst, dport, src, sport)
        if proto == 6:
            table = self._tcp
            timeout = self.tcp_idle_timeout
        else:
            table = self._other
            timeout = self.udp_idle_timeout
        flow = table.get(k)
        if flow is not None:
            if now - flow.last_seen <= timeout:
                table.move_to_end(k)
                if src == flow.initiator_addr and sport == flow.initiator_port:
                    return flow, Direction.ORIGINAL, False
                return flow, Direction.REPLY, False
            # Idle past its timeout but not yet swept: it is over; this packet starts anew.
            del table[k]
            self._end(flow, EndReason.IDLE)
        if len(self._tcp) + len(self._other) >= self.max_flows:
            self._evict_one()
        self.created += 1
        flags = packet.tcp_flags
        if flags is not None and flags & 0x12 == 0x12:
            # The first packet we see is a SYN-ACK (we missed the SYN): its receiver initiated,
            # as conntrack's mid-stream pickup concludes.
            flow = Flow(FlowKey(*k), dst, dport, src, sport, now, now)
            table[k] = flow
            return flow, Direction.REPLY, True
        flow = Flow(FlowKey(*k), src, sport, dst, dport, now, now)
        table[k] = flow
        return flow, Direction.ORIGINAL, True

    def remove(self, flow: Flow, reason: EndReason = EndReason.CLOSED) -> None:
        k = (flow.key.proto, flow.key.a_addr, flow.key.a_port, flow.key.b_addr, flow.key.b_port)
        table = self._tcp if flow.key.proto == 6 else self._other
        if table.get(k) is flow:
            del table[k]
            self._end(flow, reason)

    def expire(self, now: float) -> list[Flow]:
        """Remove and return flows idle past their timeout."""
        self._next_expire = now + self.expire_interval
        gone: list[Flow] = []
        for table, timeout in (
            (self._tcp, self.tcp_idle_timeout),
            (self._other, self.udp_idle_timeout),
        ):
            while table:
                k, flow = next(iter(table.items()))
                if now - flow.last_seen <= timeout:
                    break
                del table[k]
                self._end(flow, EndReason.IDLE)
                gone.append(flow)
        return gone

    def _evict_one(self) -> None:
        front_tcp = next(iter(self._tcp.values()), None)
        front_other = next(iter(self._other.values()), None)
        if front_tcp is None and front_other is None:
            return
        if front_other is None or (front_tcp is not None and front_tcp.last_seen <= front_other.last_seen):
            self._tcp.popitem(last=False)
            victim = front_tcp
        else:
            self._other.popitem(last=False)
            victim = front_other
        assert victim is not None
        self._end(victim, EndReason.EVICTED)

    def _end(self, flow: Flow, reason: EndReason) -> None:
        flow.ended = reason
        if reason is EndReason.EVICTED:
            self.evicted += 1
        elif reason is EndReason.IDLE:
            self.expired += 1
        if self.on_evict is not None:
            self.on_evict(flow)

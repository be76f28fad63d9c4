"""Per-packet and flow-progress matchers: sizes, packet index, bytes so far, age, handshake,
and the run's time windows.

Counts are the classifier's, taken before the policy sees the packet, so they include it:
the first packet of a flow has index 1. Packets and bytes count both directions (E.13).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.policy.state import Context
from testbed.core.policy.window import TimeWindow

__all__ = [
    "AgeMatch",
    "FlowBytesMatch",
    "HandshakeMatch",
    "PacketIndexMatch",
    "PayloadSizeMatch",
    "Range",
    "SizeMatch",
    "TimeMatch",
]


@dataclass(frozen=True, slots=True)
class Range:
    lo: float | None
    hi: float | None

    def has(self, v: float) -> bool:
        return (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)


@dataclass(frozen=True, slots=True)
class SizeMatch:
    range: Range

    def __call__(self, ctx: Context) -> bool:
        return self.range.has(ctx.packet.length)


@dataclass(frozen=True, slots=True)
class PayloadSizeMatch:
    range: Range

    def __call__(self, ctx: Context) -> bool:
        return self.range.has(len(ctx.packet.payload))


@dataclass(frozen=True, slots=True)
class PacketIndexMatch:
    range: Range

    def __call__(self, ctx: Context) -> bool:
        f = ctx.flow
        return self.range.has(f.packets_orig + f.packets_reply)

    def over(self, ctx: Context) -> bool:
        f = ctx.flow
        return self.range.hi is not None and f.packets_orig + f.packets_reply >= self.range.hi


@dataclass(frozen=True, slots=True)
class FlowBytesMatch:
    range: Range

    def __call__(self, ctx: Context) -> bool:
        f = ctx.flow
        return self.range.has(f.bytes_orig + f.bytes_reply)

    def over(self, ctx: Context) -> bool:
        f = ctx.flow
        return self.range.hi is not None and f.bytes_orig + f.bytes_reply > self.range.hi


@dataclass(frozen=True, slots=True)
class AgeMatch:
    range: Range

    def __call__(self, ctx: Context) -> bool:
        return self.range.has(ctx.now - ctx.flow.created_at)

    def over(self, ctx: Context) -> bool:
        return self.range.hi is not None and ctx.now - ctx.flow.created_at > self.range.hi


@dataclass(frozen=True, slots=True)
class HandshakeMatch:
    """TCP: SYN, SYN/ACK and the initiator's ACK seen; other transports: both sides spoke."""

    done: bool

    def __call__(self, ctx: Context) -> bool:
        return ctx.state.handshake is self.done


@dataclass(frozen=True, slots=True)
class TimeMatch:
    window: TimeWindow

    def __call__(self, ctx: Context) -> bool:
        return self.window.contains(ctx.t)

    def over(self, ctx: Context) -> bool:
        return self.window.over(ctx.t)

"""Bytes at an offset of the packet's payload or of a (D)TLS hello in it.

QUIC v1 blocking in 2022 looked at bytes 1-4 = 00 00 00 01 of a >= 1001-byte datagram to :443
(C.10); the Snowflake rule at 1D 00 17 00 18, offset 0x5A of pion's ServerHello datagram (H.19);
WireGuard's handshake starts 01 00 00 00 (F.14). A ``sticky`` pattern, once seen within the
inspection budget, keeps matching the rest of the flow ("decided on the first packet, then the
5-tuple is dropped").
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.policy.matchers.hello import hellos
from testbed.core.policy.state import Context
from testbed.scenario.policy_schema import PayloadScope

__all__ = ["BytesMatch"]


def _at(data: bytes, offset: int, want: bytes, mask: bytes | None) -> bool:
    end = offset + len(want)
    if end > len(data):
        return False
    got = data[offset:end]
    if mask is None:
        return got == want
    return all((g & m) == (w & m) for g, w, m in zip(got, want, mask, strict=True))


@dataclass(frozen=True, slots=True)
class BytesMatch:
    ident: int  # unique per compiled pattern, for the flow's sticky set
    offset: int
    want: bytes
    mask: bytes | None
    scope: PayloadScope
    sticky: bool

    def __call__(self, ctx: Context) -> bool:
        if self.sticky and self.ident in ctx.state.sticky:
            return True
        if not ctx.inspecting or not ctx.packet.payload or ctx.packet.frag_offset:
            return False
        if self.scope is PayloadScope.PACKET:
            hit = _at(ctx.packet.payload, self.offset, self.want, self.mask)
        else:
            kind = "client" if self.scope is PayloadScope.CLIENT_HELLO else "server"
            hit = any(
                k == kind and _at(body, self.offset, self.want, self.mask)
                for k, body, _ in hellos(ctx)
            )
        if hit and self.sticky:
            ctx.state.sticky.add(self.ident)
        return hit

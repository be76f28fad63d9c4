"""Bytes at an offset of the packet's payload or of a (D)TLS hello in it.

QUIC v1 blocking in 2022 looked at bytes 1-4 = 00 00 00 01 of a >= 1001-byte datagram to :443
(C.10); the Snowflake rule at 1D 00 17 00 18, offset 0x5A of pion's ServerHello datagram (H.19);
WireGuard's handshake starts 01 00 00 00 (F.14). Packet patterns are looked for within the
inspection budget only; hello patterns read the flow's hello, which the classifier keeps, so they
are flow facts. To keep blocking a flow after the packet that matched, make the rule ``sticky``.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.policy.matchers.hello import hello_body, hellos
from testbed.core.policy.state import Context
from testbed.core.policy_kinds import PayloadScope

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
    offset: int
    want: bytes
    mask: bytes | None
    scope: PayloadScope

    def __call__(self, ctx: Context) -> bool:
        if self.scope is not PayloadScope.PACKET:
            client = self.scope is PayloadScope.CLIENT_HELLO
            kept = ctx.flow.client_hello if client else ctx.flow.server_hello
            if kept is not None:
                return _at(hello_body(kept.raw), self.offset, self.want, self.mask)
        if not ctx.inspecting or not ctx.packet.payload or ctx.packet.frag_offset:
            return False
        if self.scope is PayloadScope.PACKET:
            return _at(ctx.packet.payload, self.offset, self.want, self.mask)
        kind = "client" if self.scope is PayloadScope.CLIENT_HELLO else "server"
        return any(k == kind and _at(body, self.offset, self.want, self.mask) for k, body, _ in hellos(ctx))

"""The GFW's QUIC SNI filter's limits as match conditions (I.27).

Zohaib et al., "Exposing and Circumventing SNI-based QUIC Censorship of the Great Firewall of
China" (USENIX Security 2025): the GFW decrypts QUIC v1 Initials and matches their SNI, but

- it only inspects datagrams whose source port is above their destination port (a client on a
  low port, or a server on a high one, escapes): ``src_port_above_dst``, a fact of the flow
  (the initiator's port > the responder's);
- it does not reassemble a ClientHello split across several Initial packets (Chrome's
  post-quantum ClientHello spans two): ``first_initial_only`` holds for a client datagram whose
  first Initial packet carries a whole ClientHello by itself (CRYPTO data from offset 0 through
  the end of the message). The classifier always reassembles QUIC Initials, so the flow's SNI is
  known either way; this condition is what makes a split hello escape the rule.

Both are ``quic: {...}`` options; combine them with ``sni``.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.dissect.quic import QuicCryptoAssembler, looks_like_quic_long_header, parse_initial
from testbed.core.flow import Direction
from testbed.core.policy.state import Context, FlowFacts

__all__ = ["PortOrderMatch", "WholeHelloInFirstInitialMatch", "whole_hello_in_first_initial"]

ORIGINAL = Direction.ORIGINAL


@dataclass(frozen=True, slots=True)
class PortOrderMatch:
    """The flow's source (initiator) port is above its destination (responder) port."""

    def __call__(self, facts: FlowFacts, direction: Direction) -> bool:
        return facts.client_port > facts.server_port


def whole_hello_in_first_initial(payload: bytes) -> bool:
    """True when the first QUIC Initial packet of this datagram holds a whole ClientHello."""
    if not looks_like_quic_long_header(payload):
        return False
    initials = parse_initial(payload)
    if not initials:
        return False
    return QuicCryptoAssembler().feed(initials[0].crypto) is not None


@dataclass(frozen=True, slots=True)
class WholeHelloInFirstInitialMatch:
    """A client datagram whose first Initial carries a whole ClientHello (decrypted per packet,
    within the inspection budget only)."""

    def __call__(self, ctx: Context) -> bool:
        p = ctx.packet
        if ctx.direction is not ORIGINAL or p.proto != 17 or not p.payload or p.frag_offset or not ctx.inspecting:
            return False
        return whole_hello_in_first_initial(p.payload)

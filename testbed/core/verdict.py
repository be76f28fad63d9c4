"""What the censor decides about one packet: data, not actions.

The sans-IO core returns a ``Verdict``; the NFQUEUE adapter (``testbed.censor.nfqueue``) carries
it out.  Holding a packet (delay, jitter, shaping) is a verdict too: "accept, but not before
``until``" -- the adapter retains the packet and releases it from the event loop's timer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    HOLD = "hold"  # accept at ``until`` (a monotonic time in the caller's clock)
    REJECT = "reject"

    # Members are singletons compared by identity, so the identity hash is consistent with
    # equality; Enum's own __hash__ is a Python function (hash of the name), called twice per
    # packet by the engine's per-action counters (8% of the censor under flow churn, py-spy).
    __hash__ = object.__hash__


class RejectKind(enum.Enum):
    TCP_RST = "tcp-rst"
    ICMP_UNREACHABLE = "icmp-unreachable"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``action`` for the packet itself; ``inject`` are extra IP packets (e.g. crafted RSTs or
    ICMP errors) for the adapter to send from the censor; ``rewrite`` replaces the packet's bytes
    before it is accepted (TSPU rewrites the server's reply into an RST/ACK)."""

    action: Action
    until: float | None = None
    rule: str | None = None
    reject: RejectKind | None = None
    inject: tuple[bytes, ...] = ()
    rewrite: bytes | None = None

    def __post_init__(self) -> None:
        if (self.action is Action.HOLD) != (self.until is not None):
            raise ValueError("a HOLD verdict needs `until`, and only HOLD has one")
        if (self.action is Action.REJECT) != (self.reject is not None):
            raise ValueError("a REJECT verdict needs `reject`, and only REJECT has one")
        if self.rewrite is not None and self.action not in (Action.ACCEPT, Action.HOLD):
            raise ValueError("only a packet that goes on (ACCEPT or HOLD) can be rewritten")


ACCEPT = Verdict(Action.ACCEPT)
DROP = Verdict(Action.DROP)

"""Rule matchers, one concept per module.

Two kinds: ``StaticMatcher`` s look only at a flow's immutable facts and the packet's direction
and are evaluated once per flow and direction; ``Matcher`` s look at the packet and the flow's
evolving state (labels, SNI, counters, time) and run per packet.
"""

from __future__ import annotations

from typing import Protocol

from testbed.core.flow import Direction
from testbed.core.policy.state import Context, FlowFacts

__all__ = ["Expiring", "Matcher", "StaticMatcher", "StaticAsDynamic"]


class Matcher(Protocol):
    def __call__(self, ctx: Context) -> bool: ...


class Expiring(Matcher, Protocol):
    """A matcher on a quantity that only grows (packet index, bytes, age, run time): once
    ``over``, it can never match the flow again, so the rule is dropped from its candidates."""

    def over(self, ctx: Context) -> bool: ...


class StaticMatcher(Protocol):
    def __call__(self, facts: FlowFacts, direction: Direction) -> bool: ...


class StaticAsDynamic:
    """A static matcher used inside ``not``/``any``/``all``, where it is evaluated per packet."""

    __slots__ = ("inner",)

    def __init__(self, inner: StaticMatcher) -> None:
        self.inner = inner

    def __call__(self, ctx: Context) -> bool:
        return self.inner(ctx.state.facts, ctx.direction)

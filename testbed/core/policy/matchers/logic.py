"""``not``, ``any`` and ``all``: combinations of whole match blocks, evaluated per packet."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.policy.matchers import Matcher
from testbed.core.policy.state import Context

__all__ = ["AllOf", "AnyOf", "Not"]


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Matcher, ...]

    def __call__(self, ctx: Context) -> bool:
        return all(m(ctx) for m in self.parts)


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Matcher, ...]

    def __call__(self, ctx: Context) -> bool:
        return any(m(ctx) for m in self.parts)


@dataclass(frozen=True, slots=True)
class Not:
    inner: Matcher

    def __call__(self, ctx: Context) -> bool:
        return not self.inner(ctx)

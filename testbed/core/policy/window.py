"""Time windows of the run for rules: ``from``/``until`` and periodic on/off cycles.

Times are seconds since the policy's ``start`` (the run's start, in the event loop's clock).
A periodic window is active during the first ``active`` seconds of every ``every``-second cycle
counted from ``from``: "blocks lifted and restored" (censor-behaviors.md H.21).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TimeWindow"]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: float = 0.0
    until: float | None = None
    period: float | None = None
    active: float | None = None

    def contains(self, t: float) -> bool:
        if t < self.start or (self.until is not None and t >= self.until):
            return False
        if self.period is None or self.active is None:
            return True
        return math.fmod(t - self.start, self.period) < self.active

    def over(self, t: float) -> bool:
        """True once the window can never be active again."""
        return self.until is not None and t >= self.until

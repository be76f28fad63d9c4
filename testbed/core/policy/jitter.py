"""Delay samplers for ``delay``: fixed time plus jitter from a named distribution.

Like netem: ``uniform`` spreads the delay evenly over time +- jitter; ``normal``, ``pareto`` and
``paretonormal`` give delays with mean ``time`` and standard deviation ``jitter``. netem draws
pareto from a table of a Pareto law with shape 3, scaled to mean 0 and deviation 1, and
paretonormal as 1/4 normal + 3/4 pareto (iproute2 ``netem/paretonormal.c``); we sample the same
laws directly. Negative delays are clipped to 0 (the mean then shifts up slightly, as in netem).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from testbed.core.policy_kinds import Distribution

__all__ = ["DelaySampler"]

_PARETO_SHAPE = 3.0
# Pareto(shape a, scale 1): mean a/(a-1), variance a/((a-1)^2 (a-2)).
_PARETO_MEAN = _PARETO_SHAPE / (_PARETO_SHAPE - 1.0)
_PARETO_STD = math.sqrt(_PARETO_SHAPE / ((_PARETO_SHAPE - 1.0) ** 2 * (_PARETO_SHAPE - 2.0)))


def _std_pareto(rng: random.Random) -> float:
    return (rng.paretovariate(_PARETO_SHAPE) - _PARETO_MEAN) / _PARETO_STD


@dataclass(frozen=True, slots=True)
class DelaySampler:
    time: float
    jitter: float
    distribution: Distribution

    def sample(self, rng: random.Random) -> float:
        """One delay in seconds, >= 0. Always consumes randomness when there is jitter."""
        if self.jitter <= 0:
            return self.time
        d = self.distribution
        if d is Distribution.UNIFORM:
            x = self.time + self.jitter * (2.0 * rng.random() - 1.0)
        elif d is Distribution.NORMAL:
            x = self.time + self.jitter * rng.gauss(0.0, 1.0)
        elif d is Distribution.PARETO:
            x = self.time + self.jitter * _std_pareto(rng)
        else:
            # 1/4 normal + 3/4 pareto; both parts have mean 0, so the variance is 1/16 + 9/16 of
            # the unit one: rescale to deviation 1 (netem's table is normalised the same way).
            z = 0.25 * rng.gauss(0.0, 1.0) + 0.75 * _std_pareto(rng)
            x = self.time + self.jitter * z / math.sqrt(0.25**2 + 0.75**2)
        return x if x > 0.0 else 0.0

"""Packet-loss models for ``loss``: Bernoulli and Gilbert-Elliott, drawing from a passed RNG.

Gilbert-Elliott follows netem's ``loss gemodel p r 1-h 1-k`` (tc-netem(8); net/sched/sch_netem.c
``loss_gilb_ell``): the state at the packet's arrival decides the loss (1-k in the good state,
1-h in the bad one), then the chain moves (good->bad with p, bad->good with r). With 1-h = 100%
and 1-k = 0 a loss burst lasts 1/r packets on average and the long-run loss rate is p/(p+r).
Each call draws the same number of random numbers whatever happens, so one flow's sequence of
verdicts depends only on its seed and its own packet count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Bernoulli", "GilbertElliott", "GilbertElliottState"]


@dataclass(frozen=True, slots=True)
class Bernoulli:
    p: float

    def lost(self, rng: random.Random) -> bool:
        return rng.random() < self.p


@dataclass(slots=True)
class GilbertElliottState:
    bad: bool = False


@dataclass(frozen=True, slots=True)
class GilbertElliott:
    p: float  # good -> bad
    r: float  # bad -> good
    loss_bad: float = 1.0  # netem's 1-h
    loss_good: float = 0.0  # netem's 1-k

    def lost(self, rng: random.Random, state: GilbertElliottState) -> bool:
        u_loss = rng.random()
        u_move = rng.random()
        if state.bad:
            lost = u_loss < self.loss_bad
            if u_move < self.r:
                state.bad = False
        else:
            lost = u_loss < self.loss_good
            if u_move < self.p:
                state.bad = True
        return lost

    @property
    def stationary_loss(self) -> float:
        pi_bad = self.p / (self.p + self.r) if self.p + self.r > 0 else 0.0
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good

"""Shared by the network benchmarks: the ``testbed up`` session driver
(``testbed.tools.updown``) and small statistics helpers."""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.tools.udpseq import binomial_interval  # noqa: E402
from testbed.tools.updown import Session, python_in_nodes, session, testbed_cmd  # noqa: E402

__all__ = [
    "REPO",
    "Session",
    "binomial_interval",
    "mean_std",
    "percentile",
    "python_in_nodes",
    "session",
    "testbed_cmd",
]


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def percentile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = math.floor(k)
    hi = math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"

"""Sender-side bitrate adaptation from RTCP receiver reports: AIMD on the Opus target bitrate.

Sans-IO: :class:`BitrateController` takes what one receiver report says (fraction lost since the
previous report, RFC 3550 6.4.1; the sender's round-trip time estimate) and the time, and returns
the bitrate to encode at.  It reads no clock and does no I/O; ``testbed.calls.endpoint`` feeds it
from aiortc (through ``aiortc_glue.on_receiver_report``) and applies what it returns.

The rule (docs/calls.md, "Adaptive audio"), in the spirit of the loss-based half of Google
congestion control (draft-ietf-rmcat-gcc-02 section 6) and of TCP's AIMD (RFC 5681):

* **loss above** ``loss_high`` (5 %): multiply by ``max(0.5, 0.85 * (1 - loss))``.  Under a
  policer the loss fraction is about 1 - capacity/rate, so ``1 - loss`` lands on the capacity in
  one step and 0.85 goes below it, leaving room for the per-packet header overhead (which does
  not shrink with the bitrate) and for the bucket to refill.  Never more than halve at once.
* **RTT inflated** (above ``min RTT + rtt_slack_s`` and twice the minimum): multiply by 0.85.
  A shaper or a bufferbloated link delays instead of dropping; a growing queue is congestion too.
* **loss below** ``loss_low`` (2 %) and RTT not inflated: add ``increase_bps_per_s`` per second
  since the previous report (additive increase, probing for room), once ``increase_hold_s`` has
  passed since the last decrease (the next report must first show whether the decrease was enough).
* otherwise: hold.
* a decrease is applied at most once per ``decrease_hold_s``: a report that arrives sooner mostly
  describes packets sent before the previous decrease took effect.
* **no report** for ``feedback_timeout_s`` (3 s, about three RTCP intervals): multiply by 0.8,
  again every 3 s while it lasts (libwebrtc's send-side estimator does the same on a feedback
  timeout).  Reports travel the other way through the same policer and can all be lost; a
  sender that hears nothing must not assume all is well.  :meth:`BitrateController.on_timer`
  checks this; the caller calls it about once a second once media flows.
* the result is clamped to ``[min_bps, max_bps]``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptConfig", "BitrateController"]


@dataclass(frozen=True, slots=True)
class AdaptConfig:
    start_bps: int
    min_bps: int
    max_bps: int
    loss_high: float = 0.05
    """Above this fraction lost, decrease (GCC uses 10 %; a policer's losses are steady, not
    random, so anything clearly above noise means the rate is over the policed capacity)."""
    loss_low: float = 0.02
    """Below this, increase (GCC's value)."""
    decrease_floor: float = 0.5
    """Never cut by more than half in one step (TCP's multiplicative decrease)."""
    decrease_margin: float = 0.85
    """How far under the loss-implied capacity a decrease lands."""
    increase_bps_per_s: float = 1000.0
    """Additive increase: 1 kbit/s per second climbs the whole 6-32 kbit/s Opus speech range in
    about half a minute, slow enough that a policer is hit once per sawtooth, not every second."""
    increase_hold_s: float = 2.0
    decrease_hold_s: float = 1.0
    rtt_slack_s: float = 0.1
    """RTT this far above the minimum seen (and at least twice it) counts as a queue building up."""
    feedback_timeout_s: float = 3.0
    feedback_timeout_factor: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.min_bps <= self.start_bps <= self.max_bps:
            raise ValueError(
                f"adaptation needs 0 < min <= start <= max bitrate, got {self.min_bps} <= "
                f"{self.start_bps} <= {self.max_bps}"
            )
        if not 0 <= self.loss_low <= self.loss_high < 1:
            raise ValueError("adaptation needs 0 <= loss_low <= loss_high < 1")


class BitrateController:
    """AIMD on a target bitrate, one receiver report at a time (see the module docstring)."""

    __slots__ = ("config", "bitrate_bps", "_last_report", "_last_decrease", "_min_rtt", "_last_feedback")

    def __init__(self, config: AdaptConfig) -> None:
        self.config = config
        self.bitrate_bps = config.start_bps
        self._last_report: float | None = None
        self._last_decrease: float | None = None
        self._min_rtt: float | None = None
        self._last_feedback: float | None = None
        """The last report, or the first :meth:`on_timer` call (media started) before any."""

    def on_timer(self, now: float) -> int:
        """No report for ``feedback_timeout_s``: cut by ``feedback_timeout_factor``, at most once
        per timeout.  The first call only starts the clock (call it once media flows)."""
        c = self.config
        if self._last_feedback is None:
            self._last_feedback = now
            return self.bitrate_bps
        quiet = now - self._last_feedback >= c.feedback_timeout_s
        if quiet and (self._last_decrease is None or now - self._last_decrease >= c.feedback_timeout_s):
            rate = self.bitrate_bps * c.feedback_timeout_factor
            self.bitrate_bps = int(min(max(rate, c.min_bps), c.max_bps))
            self._last_decrease = now
        return self.bitrate_bps

    def on_report(self, fraction_lost: float, rtt_s: float | None, now: float) -> int:
        """One receiver report: ``fraction_lost`` in 0..1 (RFC 3550's 8-bit fraction / 256),
        ``rtt_s`` the sender's RTT estimate or ``None`` before it has one, ``now`` in seconds on
        any monotonic clock.  Returns the new target bitrate in bit/s."""
        c = self.config
        loss = min(max(fraction_lost, 0.0), 1.0)
        elapsed = 0.0 if self._last_report is None else max(0.0, now - self._last_report)
        self._last_report = self._last_feedback = now
        inflated = False
        if rtt_s is not None and rtt_s >= 0:
            self._min_rtt = rtt_s if self._min_rtt is None else min(self._min_rtt, rtt_s)
            inflated = rtt_s > self._min_rtt + c.rtt_slack_s and rtt_s > 2 * self._min_rtt
        rate = float(self.bitrate_bps)
        may_decrease = self._last_decrease is None or now - self._last_decrease >= c.decrease_hold_s
        if loss > c.loss_high or inflated:
            if may_decrease:
                factor = c.decrease_margin
                if loss > c.loss_high:
                    factor = max(c.decrease_floor, c.decrease_margin * (1.0 - loss))
                rate *= factor
                self._last_decrease = now
        elif loss < c.loss_low:
            if self._last_decrease is None or now - self._last_decrease >= c.increase_hold_s:
                # A long silence between reports (reports lost too) is no licence to jump.
                rate += c.increase_bps_per_s * min(elapsed, 2.0)
        self.bitrate_bps = int(min(max(rate, c.min_bps), c.max_bps))
        return self.bitrate_bps

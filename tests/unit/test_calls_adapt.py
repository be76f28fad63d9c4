"""The sans-IO bitrate controller, on virtual time."""

from __future__ import annotations

import pytest

from testbed.calls.adapt import AdaptConfig, BitrateController

CONFIG = AdaptConfig(start_bps=32000, min_bps=6000, max_bps=32000)


def test_heavy_loss_halves_at_most() -> None:
    c = BitrateController(CONFIG)
    assert c.on_report(0.9, 0.01, now=1.0) == 16000


def test_loss_lands_under_the_loss_implied_capacity() -> None:
    c = BitrateController(CONFIG)
    # 25 % lost: capacity ~ 24 kbit/s; 0.85 x 0.75 x 32000 = 20400.
    assert c.on_report(0.25, 0.01, now=1.0) == 20400


def test_moderate_loss_holds_and_low_loss_increases_additively() -> None:
    c = BitrateController(AdaptConfig(start_bps=20000, min_bps=6000, max_bps=32000))
    assert c.on_report(0.03, 0.01, now=1.0) == 20000  # between loss_low and loss_high: hold
    assert c.on_report(0.0, 0.01, now=2.0) == 21000  # +1 kbit/s per second
    assert c.on_report(0.0, 0.01, now=3.5) == 22500
    # A report after a long gap (reports lost) adds at most 2 s worth.
    assert c.on_report(0.0, 0.01, now=13.5) == 24500


def test_no_increase_right_after_a_decrease_and_one_decrease_per_hold() -> None:
    c = BitrateController(CONFIG)
    assert c.on_report(0.5, 0.01, now=1.0) == 16000
    # 0.5 s later: still the old packets' loss; no second cut.
    assert c.on_report(0.5, 0.01, now=1.5) == 16000
    # Clean, but within increase_hold_s of the cut: hold.
    assert c.on_report(0.0, 0.01, now=2.5) == 16000
    assert c.on_report(0.0, 0.01, now=3.5) == 17000


def test_clamped_to_the_range() -> None:
    c = BitrateController(AdaptConfig(start_bps=7000, min_bps=6000, max_bps=8000))
    assert c.on_report(1.0, None, now=1.0) == 6000
    for t in range(4, 20):
        c.on_report(0.0, None, now=float(t))
    assert c.bitrate_bps == 8000


def test_rtt_inflation_decreases_without_loss() -> None:
    c = BitrateController(CONFIG)
    assert c.on_report(0.0, 0.020, now=1.0) == 32000  # the minimum RTT
    assert c.on_report(0.0, 0.300, now=2.0) == 27200  # a queue: x 0.85
    assert c.on_report(0.0, 0.030, now=5.0) == 29200  # queue gone, +1 kbit/s per s (2 s capped)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="min <= start <= max"):
        AdaptConfig(start_bps=4000, min_bps=6000, max_bps=32000)


def _policed_call(adapt: bool, capacity_bps: float, seconds: int = 30) -> tuple[float, int]:
    """A fluid model of an Opus call behind a policer: 50 packets/s with 62 bytes of
    IP/UDP/RTP/SRTP overhead each, one receiver report per second.  Returns (loss over the
    last 15 s, final bitrate)."""
    c = BitrateController(CONFIG)
    overhead = 50 * 62 * 8
    lost = sent = 0.0
    rate = CONFIG.start_bps
    for t in range(1, seconds + 1):
        offered = rate + overhead
        loss = max(0.0, 1.0 - capacity_bps / offered)
        if t > seconds - 15:
            lost += loss * offered
            sent += offered
        if adapt:
            rate = c.on_report(loss, 0.01, now=float(t))
    return lost / sent, rate


def test_under_a_policer_the_adaptive_call_settles_below_capacity() -> None:
    fixed_loss, _ = _policed_call(adapt=False, capacity_bps=40000)
    adaptive_loss, rate = _policed_call(adapt=True, capacity_bps=40000)
    assert fixed_loss > 0.25
    assert adaptive_loss < 0.05
    assert CONFIG.min_bps < rate < 40000 - 50 * 62 * 8 + 2000


def test_no_reports_for_three_seconds_cuts_every_three_seconds() -> None:
    c = BitrateController(CONFIG)
    assert c.on_timer(10.0) == 32000  # media starts: the clock starts
    assert c.on_timer(12.0) == 32000
    assert c.on_timer(13.0) == 25600  # 3 s without a report: x 0.8
    assert c.on_timer(14.0) == 25600  # once per timeout
    assert c.on_timer(16.0) == 20480
    # A report restarts the feedback clock (and, right after a cut, holds).
    assert c.on_report(0.0, 0.01, now=16.5) == 20480
    assert c.on_timer(18.0) == 20480


def test_reports_keep_the_feedback_timeout_away() -> None:
    c = BitrateController(CONFIG)
    c.on_timer(0.0)
    for t in range(1, 10):
        c.on_report(0.0, 0.01, now=float(t))
        assert c.on_timer(t + 0.5) == 32000

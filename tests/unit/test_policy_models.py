"""The policy's pure models with virtual time: token bucket, loss models, jitter, windows, RNG."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from testbed.core.policy.bucket import TokenBucket
from testbed.core.policy.jitter import DelaySampler
from testbed.core.policy.loss import Bernoulli, GilbertElliott, GilbertElliottState
from testbed.core.policy.rng import derive_rng, derive_seed
from testbed.core.policy.window import TimeWindow
from testbed.scenario.policy_schema import Distribution


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sd, n * p + sigmas * sd


# --- token bucket -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16_250.0, 125_000.0, 650.0])
def test_policer_long_run_rate_within_one_percent(rate: float) -> None:
    # Offer 3x the rate in 1000-byte packets for long enough that the initial burst is noise.
    bucket = TokenBucket(rate, 16_000)
    size = 1000
    duration = 20_000 * size / rate / 3
    step = size / (3 * rate)
    passed = 0
    n = int(duration / step)
    for i in range(n):
        if bucket.police(size, i * step):
            passed += size
    measured = (passed - 16_000) / (n * step)
    assert measured == pytest.approx(rate, rel=0.01)


def test_policer_twitter_shape_full_bucket_then_drops() -> None:
    # 130 kbit/s with a 16 KB bucket: ~16 KB pass at once, then the excess is dropped (B.8).
    bucket = TokenBucket(130_000 / 8, 16_000)
    passed = sum(1000 for i in range(100) if bucket.police(1000, i * 0.001))
    assert 16_000 <= passed <= 16_000 + 130_000 / 8 * 0.1 + 1000


def test_shaper_releases_fifo_at_rate_and_drops_beyond_backlog() -> None:
    rate = 10_000.0
    bucket = TokenBucket(rate, 1500, max_backlog=5000, max_packets=100)
    releases = [bucket.shape(1000, 0.0) for _ in range(8)]
    # One packet leaves at once (full 1500 B bucket), then one per 100 ms; debt > 5000 B drops.
    assert releases[0] == 0.0
    kept = [r for r in releases if r is not None]
    assert kept == sorted(kept)
    assert [round(r, 6) for r in kept[1:]] == [0.05, 0.15, 0.25, 0.35, 0.45]
    assert releases[6:] == [None, None]
    assert bucket.backlog_packets == 5
    # After the backlog drained, there is room again.
    assert bucket.shape(1000, 10.0) == 10.0


def test_shaper_packet_bound() -> None:
    bucket = TokenBucket(1000.0, 1500, max_backlog=10**9, max_packets=3)
    out = [bucket.shape(1500, 0.0) for _ in range(6)]
    assert out[0] == 0.0 and all(r is not None for r in out[1:4]) and out[4:] == [None, None]


def test_shaper_long_run_rate() -> None:
    rate = 50_000.0
    bucket = TokenBucket(rate, 1500, max_backlog=10**9, max_packets=10**9)
    last = 0.0
    for i in range(10_000):
        r = bucket.shape(1000, i * 0.001)  # offered 1 MB/s
        assert r is not None and r >= last
        last = r
    assert (10_000 * 1000 - 1500) / last == pytest.approx(rate, rel=0.01)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


# --- loss ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_bernoulli_rate_within_binomial_bounds(p: float) -> None:
    rng = random.Random(7)
    model = Bernoulli(p)
    n = 100_000
    lost = sum(model.lost(rng) for _ in range(n))
    lo, hi = binomial_bounds(n, p)
    assert lo <= lost <= hi


def _bursts(model: GilbertElliott, n: int, seed: int) -> tuple[int, list[int]]:
    rng = random.Random(seed)
    state = GilbertElliottState()
    lost = 0
    bursts: list[int] = []
    run = 0
    for _ in range(n):
        if model.lost(rng, state):
            lost += 1
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    return lost, bursts


@pytest.mark.parametrize(("p", "r"), [(0.01, 0.3), (0.05, 0.5), (0.02, 0.1)])
def test_gilbert_elliott_mean_burst_is_one_over_r_and_rate_p_over_p_plus_r(p: float, r: float) -> None:
    model = GilbertElliott(p, r)
    n = 200_000
    lost, bursts = _bursts(model, n, seed=3)
    assert statistics.mean(bursts) == pytest.approx(1 / r, rel=0.1)
    assert lost / n == pytest.approx(p / (p + r), rel=0.1)
    assert model.stationary_loss == pytest.approx(p / (p + r))


def test_gilbert_elliott_partial_loss_states() -> None:
    # 1-h = 50% in the bad state, 1-k = 1% in the good state.
    model = GilbertElliott(0.1, 0.4, loss_bad=0.5, loss_good=0.01)
    n = 200_000
    lost, _ = _bursts(model, n, seed=5)
    assert lost / n == pytest.approx(model.stationary_loss, rel=0.05)


def test_gilbert_elliott_draws_two_numbers_per_packet() -> None:
    # Determinism across code paths: the stream position depends only on the packet count.
    a, b = random.Random(1), random.Random(1)
    GilbertElliott(0.5, 0.5).lost(a, GilbertElliottState(bad=True))
    b.random()
    b.random()
    assert a.random() == b.random()


# --- delay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dist", "rel_sd"),
    [(Distribution.NORMAL, 0.05), (Distribution.PARETO, 0.15), (Distribution.PARETONORMAL, 0.15)],
)
def test_delay_mean_and_deviation(dist: Distribution, rel_sd: float) -> None:
    sampler = DelaySampler(0.100, 0.010, dist)
    rng = random.Random(11)
    xs = [sampler.sample(rng) for _ in range(50_000)]
    assert statistics.mean(xs) == pytest.approx(0.100, rel=0.01)
    assert statistics.pstdev(xs) == pytest.approx(0.010, rel=rel_sd)
    assert min(xs) >= 0.0


def test_uniform_delay_spans_time_plus_minus_jitter() -> None:
    sampler = DelaySampler(0.050, 0.020, Distribution.UNIFORM)
    rng = random.Random(2)
    xs = [sampler.sample(rng) for _ in range(20_000)]
    assert 0.030 <= min(xs) < 0.031 and 0.069 < max(xs) <= 0.070
    assert statistics.mean(xs) == pytest.approx(0.050, rel=0.01)
    # Uniform over 2*jitter has deviation jitter/sqrt(3).
    assert statistics.pstdev(xs) == pytest.approx(0.020 / math.sqrt(3), rel=0.03)


def test_pareto_is_heavy_tailed_to_the_right() -> None:
    sampler = DelaySampler(0.100, 0.010, Distribution.PARETO)
    rng = random.Random(4)
    xs = sorted(sampler.sample(rng) for _ in range(50_000))
    median = xs[len(xs) // 2]
    assert median < 0.100 < xs[-1] and xs[-1] - 0.100 > 5 * (0.100 - xs[0])


def test_negative_delays_are_clipped_and_no_jitter_is_exact() -> None:
    rng = random.Random(0)
    wide = DelaySampler(0.001, 0.050, Distribution.NORMAL)
    assert all(wide.sample(rng) >= 0.0 for _ in range(1000))
    assert DelaySampler(0.05, 0.0, Distribution.NORMAL).sample(rng) == 0.05


# --- time windows ------------------------------------------------------------------------------


def test_time_window_from_until() -> None:
    w = TimeWindow(10.0, 20.0)
    assert [w.contains(t) for t in (9.99, 10.0, 15.0, 19.99, 20.0)] == [False, True, True, True, False]
    assert not w.over(19.0) and w.over(20.0)


def test_periodic_window_lifts_and_restores() -> None:
    w = TimeWindow(5.0, None, period=10.0, active=4.0)
    active = [t for t in range(0, 40) if w.contains(float(t))]
    assert active == [5, 6, 7, 8, 15, 16, 17, 18, 25, 26, 27, 28, 35, 36, 37, 38]
    assert not w.over(1e9)


# --- seeded randomness --------------------------------------------------------------------------


def test_derived_rngs_are_stable_and_distinct() -> None:
    assert derive_seed(1, "rule", 0, b"\x01") == derive_seed(1, "rule", 0, b"\x01")
    assert derive_seed(1, "rule", 0) != derive_seed(2, "rule", 0)
    # Parts are length-prefixed: ("ab", "c") and ("a", "bc") differ.
    assert derive_seed(1, "ab", "c") != derive_seed(1, "a", "bc")
    assert derive_rng(5, "x").random() == derive_rng(5, "x").random()
    # A known value: BLAKE2b, not the per-process salted hash(), so runs agree across processes.
    assert derive_seed(0) == derive_seed(0) and isinstance(derive_seed(0), int)

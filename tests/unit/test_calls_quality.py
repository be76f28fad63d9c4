"""Call quality maths: E-model MOS, W3C freezes, audio gaps, the per-second timeline, failure."""

from __future__ import annotations

import pytest

from testbed.calls import quality


def test_mos_of_a_perfect_lan_call() -> None:
    # EL = 0 + 0 + 10 ms -> R = 93.2 - 0.25 = 92.95 -> MOS 4.404
    assert quality.mos(0.0, 0.0, 0.0) == pytest.approx(4.404, abs=1e-3)


def test_mos_worked_example() -> None:
    # EL = 200 + 2*20 + 10 = 250 ms (>= 160) -> R = 93.2 - 13 = 80.2; - 2.5 * 1 % -> 77.7
    assert quality.r_factor(200, 20, 1) == pytest.approx(77.7)
    assert quality.mos(200, 20, 1) == pytest.approx(1 + 0.035 * 77.7 + 7e-6 * 77.7 * 17.7 * 22.3, abs=1e-3)


def test_mos_branches_meet_at_160_ms() -> None:
    below = quality.r_factor(149.999, 0, 0)  # EL just under 160
    above = quality.r_factor(150, 0, 0)
    assert below == pytest.approx(above, abs=0.01)


def test_mos_is_clamped() -> None:
    assert quality.mos(5000, 500, 50) == 1.0
    assert quality.mos_from_r(120) == 4.5
    assert quality.mos(None, None, None) is None


def test_freeze_by_w3c_definition() -> None:
    f = quality.FreezeDetector()
    t = 0.0
    for _ in range(31):  # 15 fps
        f.add(t)
        t += 1 / 15
    f.add(t + 0.15)  # 0.217 s: >= 3 x 0.0667 = 0.2, but < avg + 150 ms = 0.217 ... just at it
    t += 0.15
    for _ in range(5):
        t += 1 / 15
        f.add(t)
    f.add(t + 0.5)  # a clear freeze
    assert len(f.freezes) >= 1
    assert f.freezes[-1][1] == pytest.approx(0.5)


def test_no_freeze_on_steady_frames() -> None:
    f = quality.FreezeDetector()
    for i in range(100):
        f.add(i / 30)
    assert f.freezes == []


def test_gap_recorder_and_silence_accounting() -> None:
    g = quality.GapRecorder(0.060)
    for t in (0.0, 0.02, 0.04, 1.04, 1.06):
        g.add(t)
    assert g.gaps == [(0.04, pytest.approx(1.0))]
    # One second of silence minus the packet time it includes, all inside [0, 2).
    assert quality.silence_between(g.gaps, 0.0, 2.0, 0.02) == pytest.approx(0.98)
    assert quality.silence_between(g.gaps, 0.5, 1.0, 0.02) == pytest.approx(0.5)


def _snap(t: float, packets: int, lost: int, jitter: int, rtt: float | None = None) -> dict[str, object]:
    return {
        "t": t,
        "audio": {
            "out": {"packets": packets, "bytes": packets * 100},
            "in": {"packets": packets, "bytes": packets * 100, "lost": lost, "jitter": jitter},
            "rtt": rtt,
        },
    }


def test_samples_are_per_interval_deltas() -> None:
    snaps = {"caller": [_snap(101.0, 50, 0, 96, 0.02), _snap(102.0, 95, 5, 480, 0.04)]}
    samples = quality.build_samples(snaps, t0=100.0, clock_rates={"caller": {"audio": 48000}})
    recv = [s for s in samples if s["direction"] == "recv"]
    assert [s["t_s"] for s in recv] == [1.0, 2.0]
    assert [s["packets"] for s in recv] == [50, 45]
    assert [s["lost"] for s in recv] == [0, 5]
    assert recv[1]["loss_pct"] == pytest.approx(10.0)
    assert recv[1]["jitter_ms"] == pytest.approx(10.0)  # 480 / 48 kHz
    assert recv[1]["rtt_ms"] == pytest.approx(40.0)
    assert recv[1]["bitrate_kbps"] == pytest.approx(4500 * 8 / 1000)
    assert recv[1]["mos"] is not None and recv[1]["mos"] < recv[0]["mos"]
    assert set(quality.SAMPLE_KEYS) == set(recv[0])


def test_receive_stats_over_a_window() -> None:
    snaps = {"callee": [_snap(1.0, 50, 0, 48), _snap(2.0, 100, 0, 48), _snap(3.0, 140, 10, 48)]}
    samples = quality.build_samples(snaps, t0=0.0, clock_rates={"callee": {"audio": 48000}})
    early = quality.receive_stats(quality.window_samples(samples, 0.0, 2.0), "callee")
    late = quality.receive_stats(quality.window_samples(samples, 2.0), "callee")
    assert early.loss_pct == 0.0 and early.seconds == 2
    assert late.loss_pct == pytest.approx(20.0)
    assert late.mos is not None and early.mos is not None and late.mos < early.mos


@pytest.mark.parametrize(
    ("per_s", "expected"),
    [
        ([0, 0, 50, 50, 50, 50, 50, 50], (None, False)),  # healthy
        ([0, 0, 50, 50, 0, 0, 0, 0, 0, 0], (2.0, False)),  # died at 4 s, connected at 2 s
        ([0, 0, 50, 50, 0, 0, 0, 50, 50, 50], (2.0, True)),  # 3 s outage, then back
        ([0, 0, 50, 50, 0, 0, 50, 50, 50, 50], (None, False)),  # 2 s hiccup: below dead_after
    ],
)
def test_time_to_failure(per_s: list[int], expected: tuple[float | None, bool]) -> None:
    assert quality.time_to_failure(per_s, connected_s=2.0, ended_s=len(per_s), dead_after_s=3.0) == expected


def test_common_silences_are_the_intersection() -> None:
    caller = [(4.0, 3.0), (10.0, 1.5)]
    callee = [(4.5, 3.5), (12.0, 2.0)]
    assert quality.common_silences([caller, callee]) == [(4.5, pytest.approx(2.5))]


@pytest.mark.parametrize(
    ("silences", "expected"),
    [
        ([], (None, False)),
        ([(4.0, 2.0)], (None, False)),  # shorter than dead_after
        ([(4.0, 3.5)], (3.0, True)),  # came back at 7.5 s
        ([(4.0, 6.0)], (3.0, False)),  # until the hang-up at 10 s
        ([(0.0, 2.0)], (None, False)),  # set-up time does not count
    ],
)
def test_failure_from_silences(silences: list[tuple[float, float]], expected: tuple[float | None, bool]) -> None:
    got = quality.failure_from_silences(silences, connected_s=1.0, ended_s=10.0, dead_after_s=3.0)
    assert got == expected


def test_steady_60_ms_packets_are_not_audio_gaps() -> None:
    # The WhatsApp profile sends a packet every 60 ms: a 60 ms threshold read every interval as a
    # gap (5-6 s of "audio gaps" in a clean 10 s call); three packet times hold for any frame size.
    for frame_ms in (20, 40, 60):
        rec = quality.GapRecorder(quality.audio_gap_threshold_s(frame_ms))
        for n in range(200):
            rec.add(n * frame_ms / 1000.0 + (0.004 if n % 2 else 0.0))  # a little arrival jitter
        assert rec.gaps == [], frame_ms
        rec.add(rec.last + 4 * frame_ms / 1000.0)  # one real hole of 4 packet times
        assert len(rec.gaps) == 1
    assert quality.audio_gap_threshold_s(20) == pytest.approx(0.060)

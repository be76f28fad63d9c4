"""Call quality, computed (sans-IO, pure functions): MOS, freezes, gaps, the per-second timeline.

aiortc's stats give cumulative counters; what a VoIP engineer asks for (loss per interval, MOS,
freezes, time to failure) is computed here from the endpoints' one-per-second snapshots and their
own arrival records.  Nothing here reads a clock or imports aiortc.

E-model (ITU-T G.107, simplified as in Cole & Rosenbluth, "Voice over IP performance monitoring",
ACM CCR 2001)::

    EL  = RTT + 2 x jitter + 10 ms                  effective latency (10 ms: codec/playout)
    R   = R0 - EL/40            if EL < 160 ms
        = R0 - (EL - 120)/10    otherwise
    R  -= 2.5 x loss %
    MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)   (1 if R < 0, 4.5 if R > 100)

R0 = 93.2: G.107's R with every parameter at its default value (G.107 (06/2015) section 7.7);
codec impairment (Ie) is taken as 0, right for G.711 and close for Opus at call bitrates.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.records.json import JsonObject

R0 = 93.2
R0_SOURCE = "ITU-T G.107 (06/2015) default R (all parameters at defaults); Ie = 0"
FREEZE_WINDOW = 30  # W3C webrtc-stats freezeCount: average over the last 30 rendered frames
FREEZE_MIN_EXTRA_S = 0.150


def r_factor(rtt_ms: float, jitter_ms: float, loss_pct: float, *, r0: float = R0) -> float:
    effective = rtt_ms + 2.0 * jitter_ms + 10.0
    r = r0 - effective / 40.0 if effective < 160.0 else r0 - (effective - 120.0) / 10.0
    return r - 2.5 * loss_pct


def mos_from_r(r: float) -> float:
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def mos(rtt_ms: float | None, jitter_ms: float | None, loss_pct: float | None, *, r0: float = R0) -> float | None:
    """MOS of received audio; an unknown RTT or jitter counts as 0 (a LAN), unknown loss as none.
    ``None`` only if all three are unknown."""
    if rtt_ms is None and jitter_ms is None and loss_pct is None:
        return None
    return round(mos_from_r(r_factor(rtt_ms or 0.0, jitter_ms or 0.0, loss_pct or 0.0, r0=r0)), 3)


class FreezeDetector:
    """Video freezes by the W3C webrtc-stats definition (``freezeCount``): an interval between
    two rendered frames >= max(3 x avg, avg + 150 ms), avg being the mean of the previous 30
    intervals.  Fed with each frame's render time (seconds); keeps every freeze (start, length)."""

    __slots__ = ("_durations", "_last", "freezes")

    def __init__(self) -> None:
        self._durations: list[float] = []
        self._last: float | None = None
        self.freezes: list[tuple[float, float]] = []

    def add(self, now: float) -> None:
        if self._last is not None:
            gap = now - self._last
            if len(self._durations) >= 2:
                avg = sum(self._durations) / len(self._durations)
                if gap >= max(3.0 * avg, avg + FREEZE_MIN_EXTRA_S) and len(self.freezes) < 10000:
                    self.freezes.append((self._last, gap))
            self._durations.append(gap)
            if len(self._durations) > FREEZE_WINDOW:
                del self._durations[0]
        self._last = now


def audio_gap_threshold_s(frame_ms: int) -> float:
    """The shortest audio silence worth recording: 3 packet times (60 ms at 20 ms a packet), as a
    jitter buffer hides shorter holes. With 60 ms packets (the WhatsApp profile) a packet arrives
    every 60 ms by design, so 60 ms would call every interval a gap."""
    return 3.0 * max(frame_ms, 20) / 1000.0


class GapRecorder:
    """Silences in a received stream longer than ``threshold_s``: (start, length) pairs.  For
    audio the threshold is :func:`audio_gap_threshold_s`."""

    __slots__ = ("gaps", "last", "threshold_s")

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self.last: float | None = None
        self.gaps: list[tuple[float, float]] = []

    def add(self, now: float) -> None:
        if self.last is not None and now - self.last > self.threshold_s and len(self.gaps) < 10000:
            self.gaps.append((self.last, now - self.last))
        self.last = now


# -- the per-second timeline ---------------------------------------------------------------------

SAMPLE_KEYS = (
    "t_s", "endpoint", "kind", "direction", "packets", "bytes", "bitrate_kbps", "lost",
    "loss_pct", "jitter_ms", "rtt_ms", "frames", "freezes", "audio_gap_ms", "messages", "mos",
    "available_kbps",
)  # fmt: skip


def build_samples(
    snapshots: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    t0: float,
    clock_rates: Mapping[str, Mapping[str, int]],
    gaps: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    freezes: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    audio_ptime_s: float = 0.020,
) -> list[JsonObject]:
    """Per-second samples from each endpoint's cumulative snapshots.

    ``snapshots[endpoint]`` is a list of ``{"t": monotonic, "<kind>": {"out": {...}, "in":
    {...}}}`` (see ``endpoint.Endpoint.snapshot``); each sample covers the interval ending at
    ``t_s`` (seconds since ``t0``) and holds what happened in it.  ``gaps``/``freezes`` (by
    endpoint) are the received audio's silences and the received video's freezes.
    """
    out: list[JsonObject] = []
    for endpoint in ("caller", "callee"):
        series = [s for s in snapshots.get(endpoint, ()) if isinstance(s.get("t"), int | float)]
        prev: Mapping[str, Any] | None = None
        for snap in series:
            if prev is None:
                prev = {"t": t0}
            t_end = float(snap["t"])
            dt = t_end - float(prev["t"])
            if dt <= 0:
                continue
            for kind in ("audio", "video", "data"):
                cur_k, prev_k = snap.get(kind), prev.get(kind) or {}
                if not isinstance(cur_k, Mapping):
                    continue
                rtt = _num(cur_k.get("rtt"))
                rtt_ms = None if rtt is None else round(rtt * 1000.0, 3)
                rate = clock_rates.get(endpoint, {}).get(kind)
                for direction, key in (("send", "out"), ("recv", "in")):
                    cur, old = cur_k.get(key), prev_k.get(key) or {}
                    if not isinstance(cur, Mapping):
                        continue
                    packets = _delta(cur, old, "packets")
                    size = _delta(cur, old, "bytes")
                    lost = _delta(cur, old, "lost") if cur.get("lost") is not None else None
                    if lost is not None:
                        lost = max(0, lost)  # RTCP's cumulative loss can go down (duplicates)
                    jitter = _num(cur.get("jitter"))
                    sample: JsonObject = {
                        "t_s": round(t_end - t0, 3),
                        "endpoint": endpoint,
                        "kind": kind,
                        "direction": direction,
                        "packets": packets,
                        "bytes": size,
                        "bitrate_kbps": round(size * 8 / 1000.0 / dt, 3),
                        "lost": lost,
                        "loss_pct": _loss_pct(
                            lost, packets if direction == "recv" else cur_delta_expected(cur, old, packets)
                        ),
                        "jitter_ms": None if jitter is None or not rate else round(jitter * 1000.0 / rate, 3),
                        "rtt_ms": rtt_ms if kind != "data" else None,
                        "frames": _delta(cur, old, "frames") if cur.get("frames") is not None else None,
                        "freezes": None,
                        "audio_gap_ms": None,
                        "messages": _delta(cur, old, "messages") if kind == "data" else None,
                        "mos": None,
                        # The sender's congestion-control estimate at the interval's end (send only).
                        "available_kbps": _num(cur_k.get("available_kbps"))
                        if direction == "send" and kind != "data"
                        else None,
                    }
                    start = float(prev["t"])
                    if direction == "recv" and kind == "video" and freezes is not None:
                        sample["freezes"] = sum(1 for s, _ in freezes.get(endpoint, ()) if start <= s < t_end)
                    if direction == "recv" and kind == "audio":
                        sample["audio_gap_ms"] = round(
                            1000.0
                            * silence_between(gaps.get(endpoint, ()) if gaps else (), start, t_end, audio_ptime_s),
                            3,
                        )
                        if packets or lost:
                            sample["mos"] = mos(rtt_ms, sample["jitter_ms"], sample["loss_pct"])
                    out.append(sample)
            prev = snap
    out.sort(key=lambda s: (s["t_s"], s["endpoint"], s["kind"], s["direction"]))
    return out


def cur_delta_expected(cur: Mapping[str, Any], old: Mapping[str, Any], packets: int) -> int:
    """Send side: the receiver's RTCP report covers the packets it expected, not what we sent
    in this second; ``lost + received`` as the report counts it is the fair denominator."""
    received = cur.get("reported_received")
    if received is None:
        return packets
    return max(0, _delta(cur, old, "reported_received"))


def silence_between(gaps: Iterable[tuple[float, float]], start: float, end: float, ptime: float) -> float:
    """Seconds of [start, end) inside recorded gaps (minus the one packet time a gap includes)."""
    total = 0.0
    for g_start, length in gaps:
        s, e = g_start + ptime, g_start + length
        total += max(0.0, min(e, end) - max(s, start))
    return total


def _delta(cur: Mapping[str, Any], old: Mapping[str, Any], key: str) -> int:
    a, b = cur.get(key), old.get(key)
    a = a if isinstance(a, int | float) and not isinstance(a, bool) else 0
    b = b if isinstance(b, int | float) and not isinstance(b, bool) else 0
    return int(a - b)


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _loss_pct(lost: int | None, received: int) -> float | None:
    if lost is None:
        return None
    total = lost + received
    return round(100.0 * lost / total, 3) if total else 0.0


# -- aggregates over a window ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Received media quality over a set of samples (one endpoint, or the worse of both)."""

    loss_pct: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    mos: float | None = None
    bitrate_kbps: float | None = None
    audio_gap_ms: float | None = None
    freezes: int | None = None
    message_loss_pct: float | None = None
    seconds: int = 0


def window_samples(
    samples: Iterable[Mapping[str, Any]], start: float = 0.0, until: float | None = None
) -> list[Mapping[str, Any]]:
    """Samples whose interval ends in (start, until] -- one-second intervals, so a window edge
    is exact to one second."""
    return [s for s in samples if s["t_s"] > start and (until is None or s["t_s"] <= until + 1e-9)]


def receive_stats(samples: Sequence[Mapping[str, Any]], endpoint: str) -> WindowStats:
    """One endpoint's received quality over ``samples`` (already cut to a window).

    Loss is summed over the window (lost / (lost + received)); jitter is the mean of the
    per-second values (RFC 3550's estimate is already smoothed); RTT is the median of the
    endpoint's RTCP measurements; MOS comes from those three for audio."""
    mine = [s for s in samples if s["endpoint"] == endpoint and s["direction"] == "recv"]
    if not mine:
        return WindowStats()
    media = [s for s in mine if s["kind"] in ("audio", "video")]
    audio = [s for s in mine if s["kind"] == "audio"]
    primary = audio or media
    lost = sum(s["lost"] or 0 for s in primary)
    got = sum(s["packets"] for s in primary)
    loss = round(100.0 * lost / (lost + got), 3) if primary and (lost + got) else (None if not primary else 0.0)
    jitters = [s["jitter_ms"] for s in primary if s["jitter_ms"] is not None]
    rtts = [s["rtt_ms"] for s in primary if s["rtt_ms"] is not None]
    jitter = round(statistics.fmean(jitters), 3) if jitters else None
    rtt = round(statistics.median(rtts), 3) if rtts else None
    seconds = len({s["t_s"] for s in mine})
    bitrate = round(sum(s["bitrate_kbps"] for s in mine) / seconds, 3) if seconds else None
    gaps = [s["audio_gap_ms"] for s in audio if s["audio_gap_ms"] is not None]
    video = [s for s in mine if s["kind"] == "video"]
    got_msgs = sum(s["messages"] or 0 for s in mine if s["kind"] == "data")
    sent_msgs = sum(
        s["messages"] or 0
        for s in samples
        if s["endpoint"] != endpoint and s["kind"] == "data" and s["direction"] == "send"
    )
    has_data = any(s["kind"] == "data" for s in mine)
    return WindowStats(
        loss_pct=loss,
        jitter_ms=jitter,
        rtt_ms=rtt,
        mos=mos(rtt, jitter, loss) if audio else None,
        bitrate_kbps=bitrate,
        audio_gap_ms=round(sum(gaps), 3) if gaps else None,
        freezes=sum(s["freezes"] or 0 for s in video) if video else None,
        message_loss_pct=round(100.0 * max(0, sent_msgs - got_msgs) / sent_msgs, 3) if has_data and sent_msgs else None,
        seconds=seconds,
    )


# -- failure -------------------------------------------------------------------------------------


def time_to_failure(
    received_per_s: Sequence[int], *, connected_s: float, ended_s: float, dead_after_s: float
) -> tuple[float | None, bool]:
    """(seconds from connected to the start of the first silence >= ``dead_after_s``, whether
    anything arrived after it).  ``received_per_s[i]``: everything both endpoints received in
    second [i, i+1) of the call.  Seconds before ``connected_s`` or from ``ended_s`` on are not
    judged (set-up and hang-up); resolution is one second."""
    first = int(connected_s) + 1  # the first whole second of media
    last = int(ended_s)  # exclusive: the second the call ended in is partial
    run_start: int | None = None
    for i in range(first, last):
        count = received_per_s[i] if i < len(received_per_s) else 0
        if count == 0:
            if run_start is None:
                run_start = i
            if i + 1 - run_start >= dead_after_s:
                ttf = round(max(0.0, run_start - connected_s), 3)
                recovered = any((received_per_s[j] if j < len(received_per_s) else 0) > 0 for j in range(i + 1, last))
                return ttf, recovered
        else:
            run_start = None
    return None, False


def common_silences(
    per_endpoint: Sequence[Sequence[tuple[float, float]]],
) -> list[tuple[float, float]]:
    """Intervals (start, length) in which *no* endpoint received anything: the intersection
    of every endpoint's silences, in time order."""
    if not per_endpoint:
        return []
    current = [(s, s + n) for s, n in per_endpoint[0]]
    for other in per_endpoint[1:]:
        spans = [(s, s + n) for s, n in other]
        current = [(max(a0, b0), min(a1, b1)) for a0, a1 in current for b0, b1 in spans if min(a1, b1) > max(a0, b0)]
    return sorted((a, b - a) for a, b in current)


def failure_from_silences(
    silences: Sequence[tuple[float, float]], *, connected_s: float, ended_s: float, dead_after_s: float
) -> tuple[float | None, bool]:
    """(seconds from connected to the start of the first common silence of at least
    ``dead_after_s`` within the call, whether anything arrived after it).  A silence that runs
    to the end of the call did not recover."""
    for start, length in silences:
        s, e = max(start, connected_s), min(start + length, ended_s)
        if e - s >= dead_after_s - 1e-6:
            # 0.1 s: a silence that runs to the hang-up ends there, give or take rounding.
            return round(s - connected_s, 3), start + length < ended_s - 0.1
    return None, False

"""Verdicts: each call's outcome (``ok``/``degraded``/``blocked``) and the ``expect:`` checks.

Pure functions of :class:`~testbed.calls.result.CallResult` and the scenario's settings: no I/O,
no clock.  A failed expectation's ``detail`` always says what was expected and what was measured.

    outcome(result, thresholds) -> "ok" | "degraded" | "blocked"
    judged(result, thresholds) -> CallResult with outcome, reasons, time_to_failure_s, recovered
    evaluate(expectations, results, thresholds) -> [ExpectationResult]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from testbed.calls import quality
from testbed.calls.metrics import candidate_summary
from testbed.calls.result import CallResult
from testbed.records.json import JsonObject
from testbed.records.timeline import CallState, Layer, Party, TimelineEntry
from testbed.scenario.expect_schema import Bound, Expectation, Outcome, VerdictSettings

__all__ = ["ExpectationResult", "evaluate", "failure", "judged", "outcome"]

DEFAULT_THRESHOLDS = VerdictSettings.model_validate({})


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    what: str
    passed: bool
    detail: str
    expected: str | None = None
    """The bound in words (``>= 1``), for the reports' expected/measured columns."""
    measured: int | float | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"what": self.what, "passed": self.passed, "detail": self.detail}
        if self.expected is not None:  # only added where known: readers of older results rely on it
            out["expected"] = self.expected
            out["measured"] = self.measured
        return out


# -- failure and outcome ---------------------------------------------------------------------------


def _event_time(
    timeline: Iterable[TimelineEntry], who: Party, layer: Layer, state: str, after: float = -1.0
) -> float | None:
    for entry in timeline:
        if entry.is_(who, layer, state) and entry.t >= after:
            return entry.t
    return None


def failure(result: CallResult, thresholds: VerdictSettings = DEFAULT_THRESHOLDS) -> tuple[float | None, bool | None]:
    """(time to failure in s since connected, recovered) -- (None, None) if it never connected,
    (None, False) if it never failed.

    A connected call has failed when nothing at all (media or data, either direction) arrived for
    ``dead_after`` seconds, or when an endpoint's connection failed, closed or was lost before
    the hang-up.  It recovered if media arrived again afterwards."""
    connected_at = _event_time(result.state_timeline, Party.RELAY, Layer.CALL, CallState.CONNECTED)
    if not result.connected or connected_at is None:
        return None, None
    ended_at = _event_time(result.state_timeline, Party.RELAY, Layer.SIGNALLING, CallState.HANGUP, connected_at)
    if ended_at is None:
        ended_at = connected_at + (result.media_s or 0.0)
    if result.silences is not None and len(result.silences) == 2:
        common = quality.common_silences([[(s, n) for s, n in spans] for spans in result.silences.values()])
        ttf, recovered = quality.failure_from_silences(
            common, connected_s=connected_at, ended_s=ended_at, dead_after_s=thresholds.dead_after
        )
        return _with_breakage(result, connected_at, ended_at, ttf, recovered)
    per_s: list[int] = []
    for st in result.streams:
        if st.direction == "recv" and st.received_per_s:
            if len(st.received_per_s) > len(per_s):
                per_s.extend([0] * (len(st.received_per_s) - len(per_s)))
            for i, n in enumerate(st.received_per_s):
                per_s[i] += n
    ttf, recovered = quality.time_to_failure(
        per_s, connected_s=connected_at, ended_s=ended_at, dead_after_s=thresholds.dead_after
    )
    return _with_breakage(result, connected_at, ended_at, ttf, recovered)


def _with_breakage(
    result: CallResult, connected_at: float, ended_at: float, ttf: float | None, recovered: bool
) -> tuple[float | None, bool | None]:
    """Also count a connection that failed (or an endpoint that died) before the hang-up."""
    broke = None
    for entry in result.state_timeline:
        if connected_at <= entry.t < ended_at + 1e-6 and (
            entry.is_(None, Layer.CONNECTION, "failed") or entry.is_(None, Layer.ENDPOINT, CallState.LOST)
        ):
            broke = entry.t
            break
    if broke is not None and (ttf is None or broke - connected_at < ttf):
        again = _event_time(result.state_timeline, Party.RELAY, Layer.CALL, CallState.RECONNECTED, broke)
        reconnected = again is not None
        ttf, recovered = round(broke - connected_at, 3), reconnected
    return ttf, recovered


def _reasons(
    result: CallResult, thresholds: VerdictSettings, ttf: float | None, recovered: bool | None
) -> tuple[str, list[str]]:
    if not result.connected:
        return Outcome.BLOCKED.value, [f"never connected: {result.error or 'no reason given'}"]
    if ttf is not None and not recovered:
        return Outcome.BLOCKED.value, [f"died {ttf:g} s after connecting"]
    out: list[str] = []
    if ttf is not None:
        how = " after an ICE restart" if result.restarts else ""
        out.append(f"media stopped {ttf:g} s after connecting, then recovered{how}")
    t = thresholds
    for value, limit, what, unit, worse in (
        (result.loss_pct, t.max_loss_pct, "loss", " %", "above"),
        (result.jitter_ms, t.max_jitter_ms, "jitter", " ms", "above"),
        (result.rtt_ms, t.max_rtt_ms, "RTT", " ms", "above"),
        (result.setup_ms, t.max_setup * 1000.0, "setup", " ms", "above"),
    ):
        if value is not None and value > limit:
            out.append(f"{what} {value:g}{unit} {worse} {limit:g}{unit}")
    if result.mos is not None and result.mos < t.min_mos:
        out.append(f"MOS {result.mos:g} below {t.min_mos:g}")
    for st in result.streams:
        if st.audio_gap_max_ms is not None and st.audio_gap_max_ms > t.max_audio_gap * 1000.0:
            out.append(
                f"{st.endpoint} heard no audio for {st.audio_gap_max_ms:g} ms (> {t.max_audio_gap * 1000.0:g} ms)"
            )
        if st.freeze_count is not None and st.freeze_count > t.max_freezes:
            out.append(f"{st.endpoint} video froze {st.freeze_count} times (> {t.max_freezes})")
    return (Outcome.DEGRADED.value if out else Outcome.OK.value), out


def outcome(result: CallResult, thresholds: VerdictSettings = DEFAULT_THRESHOLDS) -> str:
    """``blocked`` (never connected, or died and stayed dead), ``degraded`` (a threshold of
    ``thresholds`` crossed, or died and recovered) or ``ok``."""
    ttf, recovered = failure(result, thresholds)
    return _reasons(result, thresholds, ttf, recovered)[0]


def judged(result: CallResult, thresholds: VerdictSettings = DEFAULT_THRESHOLDS) -> CallResult:
    ttf, recovered = failure(result, thresholds)
    verdict, reasons = _reasons(result, thresholds, ttf, recovered)
    return dataclasses.replace(
        result,
        outcome=verdict,
        outcome_reasons=tuple(reasons),
        time_to_failure_s=ttf,
        recovered=recovered if ttf is not None else None,
    )


# -- expectations ---------------------------------------------------------------------------------


def evaluate(
    expectations: Iterable[Expectation],
    results: Sequence[CallResult],
    thresholds: VerdictSettings = DEFAULT_THRESHOLDS,
    *,
    call_names: Sequence[str] | None = None,
) -> list[ExpectationResult]:
    """Check every expectation against the calls it names.

    ``call: NAME`` matches the call of that name and, for a call with ``count``, every instance
    (``NAME#1`` ...); without ``call`` every result is checked.  ``call_names`` (the instance
    names the scenario should have produced) lets a call that did not run at all fail clearly."""
    out: list[ExpectationResult] = []
    for exp in expectations:
        if exp.censor is not None:
            continue  # the censor's counters: testbed.censor.expect
        if exp.call is None:
            targets: list[tuple[str, CallResult | None]] = [(r.name, r) for r in results]
            if call_names is not None:
                ran = {r.name for r in results}
                targets += [(n, None) for n in call_names if n not in ran]
        else:
            matched = [r for r in results if r.name == exp.call or (r.spec or r.name) == exp.call]
            targets = [(r.name, r) for r in matched] or [(exp.call, None)]
        for name, result in targets:
            out.extend(_check(exp, name, result, thresholds))
    return out


def _check(
    exp: Expectation, name: str, call: CallResult | None, thresholds: VerdictSettings
) -> list[ExpectationResult]:
    out: list[ExpectationResult] = []
    scope = f" in {exp.window.describe()}" if exp.window is not None else ""
    who = f" ({exp.endpoint.value})" if exp.endpoint is not None else ""

    def add(what: str, passed: bool, detail: str) -> None:
        out.append(ExpectationResult(f"{name}: {what}", passed, detail))

    def missing(what: str) -> None:
        add(what, False, "the call did not run")

    if exp.outcome is not None:
        want = " or ".join(o.value for o in exp.outcome)
        what = f"outcome {want}"
        if call is None:
            missing(what)
        else:
            if call.outcome is None:
                call = judged(call, thresholds)
            got = call.outcome or Outcome.BLOCKED.value
            reasons = "; ".join(call.outcome_reasons)
            detail = f"expected {want}, measured {got}" + (f": {reasons}" if reasons else "")
            add(what, got in {o.value for o in exp.outcome}, detail)
    if exp.connected is not None:
        what = f"connected == {str(exp.connected).lower()}"
        if call is None:
            missing(what)
        else:
            if call.connected:
                detail = f"connected in {call.setup_ms:.0f} ms" if call.setup_ms is not None else "connected"
            else:
                detail = f"never connected: {call.error or 'no reason given'}"
            add(what, call.connected == exp.connected, detail)
    if exp.setup is not None:
        what = f"setup {exp.setup.describe(' s')}"
        if call is None:
            missing(what)
        elif call.setup_ms is None:
            add(
                what,
                False,
                f"expected setup {exp.setup.describe(' s')}, measured: never connected ({call.error or 'no reason given'})",
            )
        else:
            s = call.setup_ms / 1000.0
            split = ""
            if call.setup_ice_ms is not None:
                split = f" (ICE {call.setup_ice_ms:.0f} ms, DTLS {call.setup_dtls_ms or 0:.0f} ms)"
            add(what, exp.setup.holds(s), f"expected {exp.setup.describe(' s')}, measured {s:.3f} s{split}")
    if exp.survives is not None:
        what = f"survives >= {exp.survives:g} s"
        if call is None:
            missing(what)
        elif not call.connected:
            add(what, False, f"expected >= {exp.survives:g} s of media, measured: never connected")
        else:
            ttf = call.time_to_failure_s if call.outcome is not None else failure(call, thresholds)[0]
            media = call.media_s or 0.0
            lasted = ttf if ttf is not None else media
            # 0.25 s: the hang-up is timed by the relay, a scheduling tick after the duration.
            passed = lasted + 0.25 >= exp.survives
            if ttf is not None:
                detail = f"expected >= {exp.survives:g} s, measured: media stopped after {ttf:g} s"
            elif passed:
                detail = f"expected >= {exp.survives:g} s, measured {media:g} s of media without failure"
            else:
                detail = (
                    f"expected >= {exp.survives:g} s, measured {media:g} s of media: the call was shorter "
                    "than the expectation (raise its duration)"
                )
            add(what, passed, detail)
    quality_checks = [
        (key, bound, unit)
        for key, bound, unit in (
            ("loss_pct", exp.loss_pct, " %"),
            ("jitter_ms", exp.jitter_ms, " ms"),
            ("rtt_ms", exp.rtt_ms, " ms"),
            ("mos", exp.mos, ""),
            ("bitrate_kbps", exp.bitrate_kbps, " kbit/s"),
            ("audio_gap_ms", exp.audio_gap_ms, " ms"),
            ("freezes", exp.freezes, ""),
            ("message_loss_pct", exp.message_loss_pct, " %"),
        )
        if bound is not None
    ]
    if quality_checks:
        stats = None if call is None else _window_stats(call, exp)
        for key, bound, unit in quality_checks:
            assert bound is not None
            what = f"{key} {bound.describe(unit)}{scope}{who}"
            if call is None or stats is None:
                missing(what)
                continue
            value, whose = _pick(stats, key, bound, exp)
            if value is None:
                why = "never connected" if not call.connected else f"no {key} measured{scope}"
                add(what, False, f"expected {key} {bound.describe(unit)}, measured: {why}")
            else:
                add(what, bound.holds(value), f"expected {bound.describe(unit)}, measured {value:g}{unit}{whose}")
    if exp.candidate is not None:
        fam = exp.candidate.family
        want = "/".join(v.value for v in (exp.candidate.type, exp.candidate.transport, fam) if v is not None)
        what = f"candidate {want}{who}"
        if call is None:
            missing(what)
        else:
            ctype, ctransport = _candidate(call, exp)
            cfamily = _candidate_family(call, exp)
            got = f"{ctype or 'none'}/{ctransport or '-'}" + (f"/{cfamily or '-'}" if fam is not None else "")
            passed = (
                (exp.candidate.type is None or exp.candidate.type.value == ctype)
                and (exp.candidate.transport is None or exp.candidate.transport.value == ctransport)
                and (fam is None or fam.value == cfamily)
            )
            add(what, passed, f"expected {want}, measured {got}" + ("" if call.connected else " (never connected)"))
    return out


def _window_stats(call: CallResult, exp: Expectation) -> Mapping[str, quality.WindowStats] | None:
    start = exp.window.from_ if exp.window is not None else 0.0
    until = exp.window.until if exp.window is not None else None
    samples = quality.window_samples(call.samples, start, until)
    if exp.window is None and call.quality:
        # The whole call: the figures measured over its media time.
        return {who: quality.WindowStats(**q) for who, q in call.quality.items()}
    return {who: quality.receive_stats(samples, who) for who in ("caller", "callee")}


_HIGHER_IS_BETTER = {"mos", "bitrate_kbps"}


def _pick(
    stats: Mapping[str, quality.WindowStats], key: str, bound: Bound, exp: Expectation
) -> tuple[float | None, str]:
    if exp.endpoint is not None:
        return getattr(stats[exp.endpoint.value], key), ""
    values = [(getattr(s, key), who) for who, s in stats.items() if getattr(s, key) is not None]
    if not values:
        return None, ""
    worst = min(values) if key in _HIGHER_IS_BETTER else max(values)
    return worst[0], f" (worse endpoint: {worst[1]})"


def _candidate_family(call: CallResult, exp: Expectation) -> str | None:
    if exp.endpoint is None:
        return call.candidate_family
    mine = [t.selected_candidate_pair for t in call.transports if t.endpoint == exp.endpoint.value]
    return next((p.family for p in mine if p is not None and p.family is not None), None)


def _candidate(call: CallResult, exp: Expectation) -> tuple[str | None, str | None]:
    if exp.endpoint is None:
        return call.candidate_type, call.candidate_transport
    mine = [t for t in call.transports if t.endpoint == exp.endpoint.value]
    relay_transport = call.candidate_transport if call.candidate_type == "relay" else None
    return candidate_summary(mine, relay_transport)

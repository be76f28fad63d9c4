"""Outcomes and expectation checks on hand-made results: details say expected vs measured."""

from __future__ import annotations

import dataclasses
from typing import Any

from testbed.calls import evaluate, judged, outcome
from testbed.calls.result import CallResult, CandidatePair, Direction, Kind, StreamResult, TransportResult
from testbed.records.timeline import TimelineEntry
from testbed.scenario.expect_schema import Expectation, VerdictSettings


def _sample(t: float, endpoint: str, packets: int, lost: int = 0, rtt: float = 20.0) -> dict[str, Any]:
    return {
        "t_s": t, "endpoint": endpoint, "kind": "audio", "direction": "recv", "packets": packets,
        "bytes": packets * 80, "bitrate_kbps": packets * 0.64, "lost": lost,
        "loss_pct": 100.0 * lost / (lost + packets) if lost + packets else 0.0, "jitter_ms": 2.0,
        "rtt_ms": rtt, "frames": None, "freezes": None, "audio_gap_ms": 0.0, "messages": None, "mos": None,
    }  # fmt: skip


def _call(per_s: list[int], *, connected: bool = True, name: str = "c", lost_from: int | None = None) -> CallResult:
    streams = tuple(
        StreamResult(endpoint=who, kind=Kind.AUDIO, direction=Direction.RECV, received_per_s=tuple(per_s))
        for who in ("caller", "callee")
    )
    samples = tuple(
        _sample(float(i), who, n, lost=10 if lost_from is not None and i >= lost_from else 0)
        for i, n in enumerate(per_s)
        if i >= 1
        for who in ("caller", "callee")
    )
    pair = CandidatePair("udp", "198.18.3.2", 5000, "relay", "198.18.3.2", 5001, "relay")
    labels = [(0.1, "caller:signalling:offer-sent")]
    if connected:
        labels += [(0.5, "relay:call:connected"), (len(per_s) - 0.5, "relay:signalling:hangup")]
    timeline = tuple(TimelineEntry.parse(t, label) for t, label in labels)
    return CallResult(
        name=name, connected=connected, setup_ms=400.0 if connected else None, state_timeline=timeline,
        streams=streams, error=None if connected else "not connected within 15 s", media_s=len(per_s) - 1.0,
        transports=(TransportResult("caller", selected_candidate_pair=pair),), samples=samples,
        candidate_type="relay", candidate_transport="tls", loss_pct=0.0, mos=4.3, rtt_ms=20.0, jitter_ms=2.0,
    )  # fmt: skip


def _check(call: CallResult, **entry: Any) -> list[tuple[bool, str, str]]:
    return [(e.passed, e.what, e.detail) for e in evaluate([Expectation.model_validate(entry)], [call])]


def test_outcomes() -> None:
    assert outcome(_call([0] + [50] * 9)) == "ok"
    assert outcome(_call([], connected=False)) == "blocked"
    died = judged(_call([0, 50, 50, 0, 0, 0, 0, 0, 0, 0]))
    assert died.outcome == "blocked" and died.time_to_failure_s == 2.5 and died.recovered is False
    back = judged(_call([0, 50, 50, 0, 0, 0, 50, 50, 50, 50]))
    assert back.outcome == "degraded" and back.recovered is True
    assert "recovered" in back.outcome_reasons[0]
    lossy = dataclasses.replace(_call([0] + [50] * 9), loss_pct=12.0)
    assert outcome(lossy) == "degraded"
    assert outcome(lossy, VerdictSettings(max_loss_pct=20)) == "ok"


def test_failed_expectation_says_expected_and_measured() -> None:
    ((passed, what, detail),) = _check(_call([], connected=False), outcome="ok")
    assert not passed and what == "c: outcome ok"
    assert detail.startswith("expected ok, measured blocked: never connected: not connected")
    ((passed, _, detail),) = _check(_call([0] + [50] * 9), setup="300ms")
    assert not passed and detail == "expected <= 0.3 s, measured 0.400 s"
    ((passed, _, detail),) = _check(_call([0] + [50] * 9), candidate="relay/udp")
    assert not passed and detail == "expected relay/udp, measured relay/tls"
    ((passed, _, _),) = _check(_call([0] + [50] * 9), candidate="relay/tls")
    assert passed


def test_survives() -> None:
    ((passed, _, detail),) = _check(_call([0, 50, 50, 0, 0, 0, 0, 0, 0, 0]), survives="5s")
    assert not passed and "media stopped after 2.5 s" in detail
    ((passed, _, _),) = _check(_call([0] + [50] * 9), survives="9s")
    assert passed
    ((passed, _, detail),) = _check(_call([0] + [50] * 9), survives="30s")
    assert not passed and "shorter than the expectation" in detail


def test_windows_scope_quality_checks() -> None:
    call = _call([0] + [50] * 9, lost_from=5)
    ((passed, what, _),) = _check(call, window={"until": "4s"}, loss_pct=1)
    assert passed and what == "c: loss_pct <= 1 % in [0s, 4s)"
    ((passed, _, detail),) = _check(call, window={"from": "5s"}, loss_pct=1)
    assert not passed and detail.startswith("expected <= 1 %, measured 16.667 %")
    ((passed, _, detail),) = _check(call, window={"from": "5s"}, mos=4.2)
    assert not passed and "worse endpoint" in detail


def test_counted_calls_and_missing_calls() -> None:
    calls = [dataclasses.replace(_call([0] + [50] * 9, name=f"load#{i}"), spec="load") for i in (1, 2)]
    results = evaluate([Expectation.model_validate({"call": "load", "connected": True})], calls)
    assert [r.what for r in results] == ["load#1: connected == true", "load#2: connected == true"]
    (missing,) = evaluate([Expectation.model_validate({"call": "nope", "connected": True})], calls)
    assert not missing.passed and missing.detail == "the call did not run"


def test_candidate_family_names_the_ip_version_of_the_selected_pair() -> None:
    v6 = CandidatePair("udp", "fd12:3456:789a:1::2", 5000, "host", "fd12:3456:789a:2::2", 5001, "host")
    assert v6.family == "v6" and v6.to_json()["family"] == "v6"
    assert CandidatePair("udp", "198.18.1.2", 1, "host", "198.18.2.2", 2, "host").family == "v4"
    # Chromium may name a host candidate by mDNS: no family rather than a guess.
    assert CandidatePair("udp", "a.local", 1, "host", "b.local", 2, "host").family is None
    call = dataclasses.replace(
        _call([0] + [50] * 9), transports=(TransportResult("caller", selected_candidate_pair=v6),)
    )
    assert call.candidate_family == "v6" and call.to_json()["candidate_family"] == "v6"
    ((passed, what, detail),) = _check(call, candidate={"family": "v6"})
    assert passed and what == "c: candidate v6" and detail.endswith("/v6")
    ((passed, _, detail),) = _check(_call([0] + [50] * 9), candidate={"family": "v6"})
    assert not passed and detail == "expected v6, measured relay/tls/v4"
    ((passed, _, _),) = _check(_call([0] + [50] * 9), candidate={"type": "relay", "family": "v4"})
    assert passed

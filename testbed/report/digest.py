"""Read scenario result dicts (``ScenarioResult.to_json()``) into the few numbers reports show.

Every reporter (console, JUnit, HTML) works from the JSON dicts, not the Python classes, so a
saved ``--json`` file can be rendered again later.  Fields are only ever added to that schema, so
everything here tolerates a missing key: a result written before a field existed renders with
"—" in its place, never with an exception.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.records.censor_event import CensorEvent
from testbed.records.json import JsonObject, RecordError
from testbed.records.timeline import CallState, Layer, Party, TimelineEntry

__all__ = [
    "CallDigest",
    "as_dict",
    "call_digest",
    "call_expectations",
    "censor_events",
    "censor_rules",
    "connected_at",
    "failed_at",
    "fmt_num",
    "mapping",
    "scenario_status",
    "timeline_entries",
]

MEDIA_KINDS = ("audio", "video")


def as_dict(result: Any) -> JsonObject:
    """A result dict from either a dict or anything with ``to_json()`` (e.g. ``ScenarioResult``)."""
    if isinstance(result, Mapping):
        return dict(result)
    to_json = getattr(result, "to_json", None)
    if callable(to_json):
        out = to_json()
        if isinstance(out, Mapping):
            return dict(out)
    raise TypeError(f"expected a scenario result dict, got {type(result).__name__}")


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (a field an older result lacks)."""
    return value if isinstance(value, Mapping) else {}


def scenario_status(result: Mapping[str, Any]) -> str:
    """``PASS``, ``FAIL`` (an expectation failed) or ``ERROR`` (the run itself broke)."""
    if result.get("error"):
        return "ERROR"
    return "PASS" if result.get("passed") else "FAIL"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def fmt_num(value: Any, unit: str = "", digits: int = 0) -> str:
    """``value`` with ``digits`` decimals and a unit, or an em dash when unknown."""
    f = _num(value)
    if f is None:
        return "—"
    return f"{f:.{digits}f}{unit}"


@dataclass(frozen=True, slots=True)
class CallDigest:
    name: str
    connected: bool
    outcome: str
    """The call's own ``outcome`` when the result has one, else ``connected`` / ``failed``."""
    outcome_reported: bool
    setup_ms: float | None
    mos: float | None
    loss_pct: float | None
    time_to_failure_s: float | None
    why: str
    """Empty when nothing went wrong; else the first reason worth reading."""


def _loss_from_samples(samples: Iterable[Mapping[str, Any]]) -> float | None:
    lost = got = 0.0
    seen = False
    for s in samples:
        if s.get("direction") != "recv" or s.get("kind") not in MEDIA_KINDS:
            continue
        n_lost, n_got = _num(s.get("lost")), _num(s.get("packets"))
        if n_lost is None or n_got is None:
            continue
        seen = True
        lost += max(n_lost, 0.0)
        got += max(n_got, 0.0)
    if not seen or lost + got == 0:
        return None
    return 100.0 * lost / (lost + got)


def _loss_from_streams(streams: Iterable[Mapping[str, Any]]) -> float | None:
    lost = expected = 0.0
    seen = False
    for s in streams:
        if s.get("direction") != "recv" or s.get("kind") not in MEDIA_KINDS:
            continue
        received = _num(s.get("packets_received"))
        n_lost = _num(s.get("packets_lost"))
        sent = _num(s.get("packets_sent"))
        if received is None:
            continue
        if n_lost is not None:
            # RTCP's cumulative loss goes negative with duplicates (RFC 3550 §6.4.1).
            n_lost = max(n_lost, 0.0)
            lost += n_lost
            expected += received + n_lost
            seen = True
        elif sent is not None and sent > 0:
            lost += max(sent - received, 0.0)
            expected += max(sent, received)
            seen = True
    if not seen or expected == 0:
        return None
    return 100.0 * lost / expected


def call_loss_pct(call: Mapping[str, Any]) -> float | None:
    """Media packet loss over the whole call, in percent, as the receivers saw it."""
    direct = _num(call.get("loss_pct"))
    if direct is not None:
        return direct
    samples = call.get("samples")
    if isinstance(samples, list) and samples:
        from_samples = _loss_from_samples(samples)
        if from_samples is not None:
            return from_samples
    streams = call.get("streams")
    return _loss_from_streams(streams) if isinstance(streams, list) else None


def call_expectations(call_name: str, expectations: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The expectations about one call (their ``what`` starts with ``"<call>: "``, or names it)."""
    out = []
    for e in expectations:
        if e.get("call") == call_name or str(e.get("what", "")).startswith(f"{call_name}: "):
            out.append(e)
    return out


def call_digest(call: Mapping[str, Any], expectations: Sequence[Mapping[str, Any]] = ()) -> CallDigest:
    name = str(call.get("name", "?"))
    connected = bool(call.get("connected"))
    reported = call.get("outcome")
    outcome = str(reported) if reported else ("connected" if connected else "failed")
    ttf = _num(call.get("time_to_failure_s"))
    reasons: list[str] = []
    if call.get("error"):
        reasons.append(str(call["error"]))
    for reason in call.get("outcome_reasons") or []:
        # A reason that only restates the error ("never connected: <error>") adds nothing.
        if not any(str(r) in str(reason) or str(reason) in str(r) for r in reasons):
            reasons.append(str(reason))
    for e in call_expectations(name, expectations):
        if not e.get("passed"):
            what = str(e.get("what", ""))
            what = what.split(": ", 1)[1] if what.startswith(f"{name}: ") else what
            reasons.append(f"{what}: {e.get('detail', '')}".rstrip(": "))
    if ttf is not None and not reasons:
        reasons.append(f"failed after {ttf:.1f} s")
    return CallDigest(
        name=name,
        connected=connected,
        outcome=outcome,
        outcome_reported=bool(reported),
        setup_ms=_num(call.get("setup_ms")),
        mos=_num(call.get("mos")),
        loss_pct=call_loss_pct(call),
        time_to_failure_s=ttf,
        why="; ".join(reasons),
    )


def connected_at(call: Mapping[str, Any]) -> float | None:
    """When the call connected, in seconds on the call's own timeline (``state_timeline``)."""
    fallback = None
    for entry in timeline_entries(call):
        if entry.is_(Party.RELAY, Layer.CALL, CallState.CONNECTED):
            return entry.t
        if fallback is None and entry.is_(None, Layer.CONNECTION, "connected"):
            fallback = entry.t
    return fallback


def timeline_entries(call: Mapping[str, Any]) -> list[TimelineEntry]:
    """The call's ``state_timeline`` as records; an entry this version cannot read is skipped."""
    out = []
    raw = call.get("state_timeline")
    for item in raw if isinstance(raw, list) else []:
        try:
            entry = TimelineEntry.from_json(item)
        except RecordError:
            continue
        if math.isfinite(entry.t):
            out.append(entry)
    return out


def failed_at(call: Mapping[str, Any]) -> float | None:
    """``time_to_failure_s`` counts from the moment the call connected; this is on the call's axis."""
    ttf = _num(call.get("time_to_failure_s"))
    if ttf is None:
        return None
    return ttf + (connected_at(call) or 0.0)


def censor_events(censor: Mapping[str, Any]) -> list[CensorEvent]:
    """The policy engine's event log, wherever this result version put it (or ``[]``); an entry
    this version cannot read is skipped."""
    events = censor.get("events")
    if not isinstance(events, list):
        policy = censor.get("policy")
        events = policy.get("events") if isinstance(policy, Mapping) else None
    if not isinstance(events, list):
        return []
    out = []
    for raw in events:
        try:
            out.append(CensorEvent.from_json(raw))
        except RecordError:
            continue
    return out


def censor_rules(censor: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Per-rule counters (``censor.rules`` or ``censor.policy.rules``), or ``[]``."""
    rules = censor.get("rules")
    if not isinstance(rules, list):
        policy = censor.get("policy")
        rules = policy.get("rules") if isinstance(policy, Mapping) else None
    if not isinstance(rules, list):
        return []
    return [r for r in rules if isinstance(r, Mapping)]

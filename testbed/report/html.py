"""The HTML report (``testbed run --report DIR``): static pages that open offline.

``write_html_report(results, out_dir)`` writes ``index.html`` (every scenario, pass/fail, calls,
expectations) and one page per scenario with, for each call, bitrate, loss and RTT over time
(inline SVG drawn by ``testbed.report.svg``; no JavaScript, nothing fetched), the censor's events
marked on that timeline, the expectations, the streams, the censor's rules, events and flows, and
a link to the pcap of the censor's links when one is given, the apps (with links to their logs,
copied into ``logs/``) and the probes (a repeated probe's attempts as a strip on the probes'
timeline, next to the censor's events).

Input is the list of ``ScenarioResult.to_json()`` dicts (so a saved ``--json`` file renders the
same), and every field that later versions add is optional here:

* ``call.samples`` (per-second ``t_s``/``endpoint``/``kind``/``direction``/``bitrate_kbps``/
  ``loss_pct``/``rtt_ms``...) drives the charts.  Without it the bitrate chart falls back to the
  receivers' ``received_per_s`` arrival counts times their mean payload size (labelled as an
  estimate) and the loss/RTT charts say there is no timeline.
* ``censor.events`` (or ``censor.policy.events``): ``{"t", "event", "rule", "flow", ...}`` with
  ``t`` in seconds since the censor started.  They are drawn at ``t - offset`` on the call's axis,
  where ``offset`` is the call's start minus the censor's start, taken from
  ``result["timeline_origin"]`` when the result has it (any one clock, e.g. CLOCK_MONOTONIC):
  ``{"censor": T0, "calls": {name: T1}}``, or ``{"censor": T0, "calls_phase": T1}`` plus the
  call's own ``start_s``; else the ``censor_offset_s`` argument plus ``start_s`` (default 0: the
  censor starts well under a second before the calls, close enough to read a chart by).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from testbed import __version__
from testbed.records.censor_event import CensorEvent, EventKind
from testbed.records.json import JsonObject
from testbed.records.result import call_addresses
from testbed.report.digest import (
    as_dict,
    call_digest,
    call_expectations,
    censor_events,
    censor_rules,
    connected_at,
    failed_at,
    fmt_num,
    mapping,
    scenario_status,
    timeline_entries,
)
from testbed.report.svg import Bar, Marker, Series, bar_timeline, line_chart

__all__ = ["write_html_report"]

MAX_MARKERS = 40
MAX_EVENT_ROWS = 300
MAX_FLOW_ROWS = 300

# One colour per media flow (sender -> receiver, kind): its sent line is dashed, its received line
# solid, so the gap between them is what the network (or the censor) took.
_FLOW_COLORS = {
    ("caller", "audio"): "#1f6fb4",
    ("callee", "audio"): "#e07b1a",
    ("caller", "video"): "#2a9d4b",
    ("callee", "video"): "#8e4fc2",
    ("caller", "data"): "#0f9fae",
    ("callee", "data"): "#a0522d",
}
_EVENT_COLORS = {
    "match": "#3b6fd8",
    "drop": "#e67e22",
    "ignore": "#7f8c8d",
}
_BLOCKING_EVENTS = ("cut", "block", "reject", "residual", "trigger")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _other(endpoint: str) -> str:
    return {"caller": "callee", "callee": "caller"}.get(endpoint, "peer")


def _sender(endpoint: str, direction: str) -> str:
    return endpoint if direction == "send" else _other(endpoint)


def _flow_label(sender: str, kind: str) -> str:
    return f"{kind} {sender}→{_other(sender)}"


def _color(sender: str, kind: str) -> str:
    return _FLOW_COLORS.get((sender, kind), "#555")


def _event_color(name: str) -> str:
    if any(word in name for word in _BLOCKING_EVENTS):
        return "#c0392b"
    if "window" in name:
        return "#8e44ad"
    return _EVENT_COLORS.get(name, "#546e7a")


# -- data -> chart series ----------------------------------------------------------------------


def _sample_series(
    samples: Sequence[Mapping[str, Any]], field: str, *, recv_only: bool, send_dashed: bool
) -> list[Series]:
    """One series per media flow and direction (bitrate, loss), or per endpoint and kind (RTT)."""
    per_endpoint = field == "rtt_ms"  # the same RTT is repeated on an endpoint's send and recv entries
    groups: dict[tuple[str, str, str], dict[float, float | None]] = {}
    for s in samples:
        t = _num(s.get("t_s"))
        endpoint, kind, direction = str(s.get("endpoint")), str(s.get("kind")), str(s.get("direction"))
        if t is None or field not in s or (recv_only and direction != "recv"):
            continue
        key = (endpoint, kind, "" if per_endpoint else direction)
        by_t = groups.setdefault(key, {})
        value = _num(s.get(field))
        if by_t.get(t) is None:
            by_t[t] = value
    out = []

    def order(key: tuple[str, str, str]) -> tuple[str, str, bool]:
        endpoint, kind, direction = key
        return (kind, _sender(endpoint, direction or "send"), direction != "send")

    for key in sorted(groups, key=order):
        endpoint, kind, direction = key
        points = sorted(groups[key].items())
        if all(value is None for _, value in points):
            continue
        if per_endpoint:
            out.append(Series(f"{kind} RTT at {endpoint}", points, _color(endpoint, kind)))
            continue
        sender = _sender(endpoint, direction)
        what = "sent" if direction == "send" else "received"
        label = f"{_flow_label(sender, kind)} ({what})"
        out.append(Series(label, points, _color(sender, kind), dashed=send_dashed and direction == "send"))
    return out


def _estimated_bitrate(streams: Sequence[Mapping[str, Any]]) -> list[Series]:
    """kbit/s from the receivers' per-second arrival counts times their mean payload size."""
    out = []
    for s in streams:
        per_s = s.get("received_per_s")
        if s.get("direction") != "recv" or not isinstance(per_s, list) or not per_s:
            continue
        count = _num(s.get("messages") if s.get("kind") == "data" else s.get("packets_received"))
        size = _num(s.get("bytes"))
        if not count or size is None:
            continue
        mean = size / count
        kind = str(s.get("kind"))
        sender = _sender(str(s.get("endpoint")), "recv")
        points = [(i + 0.5, (_num(n) or 0.0) * mean * 8 / 1000) for i, n in enumerate(per_s)]
        out.append(Series(f"{_flow_label(sender, kind)} (received, est.)", points, _color(sender, kind)))
    return out


def _origin_offset(result: Mapping[str, Any], call: Mapping[str, Any], default: float) -> float:
    """Seconds from the censor's start to this call's start (its ``t_s`` = 0)."""
    name = str(call.get("name"))
    origin = result.get("timeline_origin")
    if isinstance(origin, Mapping):
        censor = _num(origin.get("censor"))
        calls = origin.get("calls")
        start = _num(calls.get(name)) if isinstance(calls, Mapping) else None
        if censor is not None and start is not None:
            return start - censor
        phase = _num(origin.get("calls_phase"))
        if censor is not None and phase is not None:
            return phase - censor + (_num(call.get("start_s")) or 0.0)
    # Calls placed later in the calls phase (``start_s``) start that much later.
    return default + (_num(call.get("start_s")) or 0.0)


def _events_for_call(events: Sequence[CensorEvent], call: Mapping[str, Any], n_calls: int) -> list[int]:
    """Indices of the events about this call's flows (all of them if that cannot be told)."""
    addresses = call_addresses(call) if n_calls > 1 else set()
    if not addresses:
        return list(range(len(events)))
    out = []
    for i, e in enumerate(events):
        if e.endpoints is None or any(a in e.endpoints for a in addresses):
            out.append(i)
    return out


def _pick_markers(events: Sequence[CensorEvent]) -> list[int]:
    """Indices of events worth a marker: every trigger, and the first match of each rule."""
    picked, matched_rules = [], set()
    for i, e in enumerate(events):
        if e.event == EventKind.MATCH:
            if e.rule in matched_rules:
                continue
            matched_rules.add(e.rule)
        elif e.event == EventKind.IGNORE:
            continue
        picked.append(i)
        if len(picked) >= MAX_MARKERS:
            break
    return picked


def _event_text(e: CensorEvent) -> str:
    parts = [e.event]
    if e.rule:
        parts.append(f"rule {e.rule}")
    if e.flow:
        parts.append(e.flow)
    if e.details:
        parts.append(", ".join(f"{k}={_value(v)}" for k, v in e.details.items() if v is not None))
    return " · ".join(parts)


def _window_bands(events: Sequence[CensorEvent], offset: float, x_end: float) -> list[Marker]:
    bands: list[Marker] = []
    open_at: dict[str | None, float] = {}
    for e in events:
        name = e.event
        if "window" not in name:
            continue
        t = e.t - offset
        state = f"{name} {e.details.get('state', '')}".lower()
        key = e.rule
        if any(w in state for w in ("off", "close", "end", "stop")):
            start = open_at.pop(key, 0.0)
            bands.append(Marker(start, "", f"window of rule {key}: {start:.1f}-{t:.1f} s", "#8e44ad", band_to=t))
        elif any(w in state for w in ("on", "open", "start")):
            open_at[key] = t
    for key, start in open_at.items():
        bands.append(Marker(start, "", f"window of rule {key}: from {start:.1f} s", "#8e44ad", band_to=x_end))
    return bands


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
:root { --fg:#1d2430; --muted:#5f6b7a; --line:#dfe3e8; --bg:#f5f7fa; --card:#fff;
  --ok:#1e8e4f; --fail:#c0392b; --err:#8e2d8e; --warn:#b9770e; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color:var(--fg); background:var(--bg); }
header.top { background:#1d2430; color:#fff; padding:14px 28px; display:flex; align-items:baseline; gap:18px; }
header.top h1 { font-size:18px; margin:0; font-weight:600; }
header.top .meta { color:#b8c2cf; font-size:12.5px; }
header.top a { color:#9ecbff; }
main { padding:20px 28px 40px; max-width:1180px; }
h2 { font-size:17px; margin:26px 0 10px; }
h3 { font-size:15px; margin:0; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin:0 0 18px; }
.summary { display:flex; flex-wrap:wrap; gap:10px 28px; margin:4px 0 0; }
.summary div { min-width:90px; }
.summary .k { color:var(--muted); font-size:11.5px; text-transform:uppercase; letter-spacing:.04em; }
.summary .v { font-size:18px; font-weight:600; font-variant-numeric:tabular-nums; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
  color:#fff; vertical-align:2px; }
.b-pass,.b-ok,.b-connected { background:var(--ok); }
.b-fail,.b-blocked,.b-failed { background:var(--fail); }
.b-error { background:var(--err); }
.b-degraded { background:var(--warn); }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; background:#fafbfc; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.bad td { background:#fdf1f0; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size:12.5px; }
.error { background:#fbeefb; border:1px solid #e6c3e6; color:#5b1d5b; padding:10px 12px; border-radius:6px;
  white-space:pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace; font-size:12.5px; }
.why { color:var(--fail); }
.muted { color:var(--muted); }
.chead { display:flex; flex-wrap:wrap; align-items:baseline; gap:2px 18px; margin:16px 0 -6px 56px; }
.chead .ct { font-weight:600; font-size:13px; }
.legend { display:flex; flex-wrap:wrap; gap:2px 16px; font-size:12px; color:#39424e; }
.legend span { white-space:nowrap; }
.legend i { display:inline-block; width:22px; height:0; border-top:3px solid; vertical-align:middle; margin-right:6px; }
.legend i.dash { border-top-style:dashed; }
.charts { margin-top:6px; }
svg.chart { display:block; max-width:100%; height:auto; margin:6px 0 2px; }
svg.chart .ctitle { font-size:12.5px; font-weight:600; fill:#1d2430; }
svg.chart .cunit, svg.chart .tick { font-size:11px; fill:#6b7684; }
svg.chart .grid { stroke:#eceff3; }
svg.chart .xgrid { stroke:#f3f5f7; }
svg.chart .frame { stroke:#c9d0d8; }
svg.chart .series { fill:none; stroke-width:1.8; stroke-linejoin:round; }
svg.chart .empty { font-size:12.5px; fill:#98a2ae; }
svg.chart .marker line { stroke-width:1.2; stroke-dasharray:3 2; }
svg.chart .marker text { font-size:10px; font-weight:700; fill:#fff; }
nav.crumbs { font-size:12.5px; margin-bottom:6px; }
a { color:#1f5fbf; text-decoration:none; } a:hover { text-decoration:underline; }
details summary { cursor:pointer; color:var(--muted); margin:8px 0 4px; }
.labels span { display:inline-block; background:#eef2f7; border-radius:4px; padding:0 5px; margin:0 3px 2px 0;
  font-size:12px; }
.ev-num { display:inline-block; min-width:20px; text-align:center; border-radius:3px; color:#fff; font-size:11px;
  font-weight:700; }
"""


def _page(title: str, body: str, *, crumbs: str = "") -> str:
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f'<header class="top"><h1>testbed report</h1><span class="meta">testbed {escape(__version__)} · '
        f"generated {generated}</span>{crumbs}</header><main>{body}</main></body></html>\n"
    )


def _value(v: Any) -> str:
    """A measured/expected value as the JSON file spells it (true, not True; nothing for null)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _badge(text: str) -> str:
    return f'<span class="badge b-{escape(re.sub(r"[^a-z]", "", text.lower()))}">{escape(text)}</span>'


def _table(
    head: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (), row_classes: Sequence[str] = ()
) -> str:
    th = "".join(
        f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>" for i, h in enumerate(head)
    )
    body = []
    for r_i, row in enumerate(rows):
        cls = f' class="{row_classes[r_i]}"' if r_i < len(row_classes) and row_classes[r_i] else ""
        tds = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _slug(result: Mapping[str, Any], used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(result.get("name") or "scenario")).strip("-.") or "scenario"
    slug, n = base, 2
    while slug in used:
        slug = f"{base}-{n}"
        n += 1
    used.add(slug)
    return slug


def _expectations_html(expectations: Sequence[Mapping[str, Any]]) -> str:
    if not expectations:
        return '<p class="muted">No expectations.</p>'
    # Expected/measured columns only when some expectation reports them (older results do not).
    values = any("expected" in e or "measured" in e for e in expectations)
    rows, classes = [], []
    for e in expectations:
        ok = bool(e.get("passed"))
        row = [_badge("pass" if ok else "fail"), escape(str(e.get("what", "")))]
        if values:
            row += [escape(_value(e.get("expected"))), escape(_value(e.get("measured")))]
        rows.append([*row, escape(str(e.get("detail", "")))])
        classes.append("" if ok else "bad")
    head = ["", "expectation", *(["expected", "measured"] if values else []), "detail"]
    return _table(head, rows, row_classes=classes)


def _legend(series: Sequence[Series]) -> str:
    seen: dict[str, Series] = {}
    for s in series:
        seen.setdefault(s.label, s)
    items = [
        f'<span><i class="{"dash" if s.dashed else ""}" style="border-top-color:{escape(s.color)}"></i>{escape(s.label)}</span>'
        for s in seen.values()
    ]
    return f'<span class="legend">{"".join(items)}</span>' if items else ""


def _call_html(
    result: Mapping[str, Any],
    call: Mapping[str, Any],
    events: Sequence[CensorEvent],
    event_numbers: Mapping[int, int],
    censor_offset_s: float,
    n_calls: int = 1,
) -> str:
    expectations = [e for e in result.get("expectations") or [] if isinstance(e, Mapping)]
    d = call_digest(call, expectations)
    samples = [s for s in call.get("samples") or [] if isinstance(s, Mapping)]
    streams = [s for s in call.get("streams") or [] if isinstance(s, Mapping)]

    if samples:
        bitrate = _sample_series(samples, "bitrate_kbps", recv_only=False, send_dashed=True)
        bitrate_title = "bitrate"
        loss = _sample_series(samples, "loss_pct", recv_only=True, send_dashed=False)
        rtt = _sample_series(samples, "rtt_ms", recv_only=False, send_dashed=False)
        no_loss = no_rtt = "no samples"
    else:
        bitrate = _estimated_bitrate(streams)
        bitrate_title = "bitrate received (estimated from per-second arrivals × mean payload size)"
        loss, rtt = [], []
        no_loss = "no per-second loss in this result (it has no samples)"
        rtts = [v for s in streams if (v := _num(s.get("round_trip_time_ms"))) is not None]
        no_rtt = (
            f"no per-second RTT in this result; call average {sum(rtts) / len(rtts):.1f} ms"
            if rtts
            else "no RTT measured"
        )

    xs = [x for s in (*bitrate, *loss, *rtt) for x, _ in s.points]
    timeline = [entry.t for entry in timeline_entries(call)]
    x_end = max([*xs, *timeline, 1.0])

    offset = _origin_offset(result, call, censor_offset_s)
    markers: list[Marker] = []
    for i, e in enumerate(events):
        num = event_numbers.get(i)
        if num is None:
            continue
        t = e.t - offset
        markers.append(Marker(t, str(num), f"#{num} at {t:.2f} s: {_event_text(e)}", _event_color(e.event)))
    markers += _window_bands(events, offset, x_end)
    connected = connected_at(call)
    if connected is not None:
        markers.append(Marker(connected, "C", f"connected at {connected:.2f} s", "#7f8c8d"))
    failed = failed_at(call)
    if failed is not None:
        markers.append(
            Marker(failed, "✕", f"failed at {failed:.2f} s ({d.time_to_failure_s:.1f} s after connecting)", "#c0392b")
        )

    charts = "".join(
        f'<div class="chead"><span class="ct">{escape(title)}</span>{_legend(series)}</div>'
        + line_chart(series, title=title, unit=unit, x_max=x_end, markers=markers, draw_title=False, **kw)
        for title, unit, series, kw in (
            (bitrate_title, "kbit/s", bitrate, {}),
            ("packet loss", "%", loss, {"y_ceiling": 100.0, "y_min_top": 5.0, "empty_text": no_loss}),
            ("round-trip time", "ms", rtt, {"empty_text": no_rtt}),
        )
    )
    pair = call.get("selected_candidate_pair")
    pair_text = (
        f"{escape(str(pair.get('local_address')))}:{pair.get('local_port')} ({escape(str(pair.get('local_type')))}) → "
        f"{escape(str(pair.get('remote_address')))}:{pair.get('remote_port')} ({escape(str(pair.get('remote_type')))}) "
        f"over {escape(str(pair.get('protocol')))}"
        + (f" / IP{escape(str(pair['family']))}" if pair.get("family") else "")
        if isinstance(pair, Mapping)
        else "—"
    )
    summary = "".join(
        f'<div><div class="k">{k}</div><div class="v">{v}</div></div>'
        for k, v in (
            ("setup", fmt_num(d.setup_ms, " ms")),
            ("MOS", fmt_num(d.mos, digits=2)),
            ("loss", fmt_num(d.loss_pct, " %", 1)),
            ("media", fmt_num(call.get("media_s"), " s", 1)),
            ("failed after", fmt_num(d.time_to_failure_s, " s", 1)),
            ("candidates", escape(str(call.get("candidate_type") or "—"))),
        )
    )
    why = f'<p class="why">{escape(d.why)}</p>' if d.why else ""
    stream_rows = [
        [
            escape(str(s.get("endpoint"))),
            escape(str(s.get("kind"))),
            escape(str(s.get("direction"))),
            fmt_num(s.get("packets_sent")),
            fmt_num(s.get("packets_received")),
            fmt_num(s.get("packets_lost")),
            fmt_num(s.get("bytes")),
            fmt_num(s.get("jitter_ms"), digits=1),
            fmt_num(s.get("round_trip_time_ms"), digits=1),
            fmt_num(s.get("max_gap_ms")),
            escape(str(s.get("codec") or "")),
        ]
        for s in streams
    ]
    streams_html = (
        "<details><summary>streams</summary>"
        + _table(
            [
                "endpoint",
                "kind",
                "dir",
                "sent",
                "received",
                "lost",
                "bytes",
                "jitter ms",
                "RTT ms",
                "max gap ms",
                "codec",
            ],
            stream_rows,
            numeric=range(3, 10),
        )
        + "</details>"
        if stream_rows
        else ""
    )
    exps = call_expectations(d.name, expectations)
    return (
        f'<section class="card" id="call-{escape(d.name)}"><h3>call {escape(d.name)} {_badge(d.outcome)}</h3>'
        f'<div class="summary">{summary}</div>{why}'
        f'<p class="muted">path: {pair_text}</p>'
        f'<div class="charts">{charts}</div>'
        + (f"<h4>expectations</h4>{_expectations_html(exps)}" if exps and n_calls > 1 else "")
        + streams_html
        + "</section>"
    )


def _probes_timeline(
    result: Mapping[str, Any],
    probes: Sequence[Mapping[str, Any]],
    events: Sequence[CensorEvent],
    event_numbers: Mapping[int, int],
    censor_offset_s: float,
) -> str:
    """Each probe as a bar from its start to its end (a repeated probe: a strip of its attempts,
    green when one exited 0), with the censor's events on the same axis."""
    bars = []
    for p in probes:
        start, took = _num(p.get("started_s")), _num(p.get("duration_s"))
        if start is None or took is None:
            continue
        attempts = [a for a in p.get("attempts") or [] if isinstance(a, Mapping)]
        if attempts:
            bars.extend(_attempt_bars(str(p.get("name", "?")), attempts))
            continue
        ok = p.get("exit_code") == 0 and not p.get("timed_out")
        code = "timed out" if p.get("timed_out") else f"exit {_value(p.get('exit_code'))}"
        bars.append(
            Bar(
                str(p.get("name", "?")),
                start,
                start + took,
                "#2e9d5b" if ok else "#c0392b",
                f"{p.get('name')}: {start:.2f}-{start + took:.2f} s, {code}",
            )
        )
    if not bars:
        return ""
    # Probes' started_s count from the start of the calls phase, like a call with start_s = 0.
    offset = _origin_offset(result, {}, censor_offset_s)
    markers = [
        Marker(
            e.t - offset,
            str(event_numbers[i]),
            f"#{event_numbers[i]} at {e.t - offset:.2f} s: {_event_text(e)}",
            _event_color(e.event),
        )
        for i, e in enumerate(events)
        if i in event_numbers
    ]
    return bar_timeline(bars, title="probes", markers=markers, x_label="seconds since the calls and probes started")


def _attempt_bars(name: str, attempts: Sequence[Mapping[str, Any]]) -> list[Bar]:
    out = []
    for a in attempts:
        t, took = _num(a.get("t_s")), _num(a.get("duration_s"))
        if t is None or took is None:
            continue
        code = a.get("exit")
        text = "timed out" if code is None else f"exit {_value(code)}"
        out.append(
            Bar(name, t, t + took, "#2e9d5b" if code == 0 else "#c0392b", f"{name}: attempt at {t:.2f} s, {text}")
        )
    return out


def _apps_html(result: Mapping[str, Any], apps: Sequence[Mapping[str, Any]], links: Mapping[str, str]) -> str:
    """The apps: when each started and was ready (on the probes' clock), how it ended, its log."""
    origin = result.get("timeline_origin")
    shift = 0.0
    if isinstance(origin, Mapping):
        a, c = _num(origin.get("apps")), _num(origin.get("calls_phase"))
        if a is not None and c is not None:
            shift = a - c  # the apps' clock -> seconds since the calls and probes started
    rows, classes = [], []
    for app in apps:
        name = str(app.get("name", "?"))
        started, ready = _num(app.get("started_s")), _num(app.get("ready_s"))
        link = links.get(name)
        log = f'<a href="{escape(link)}">{escape(Path(link).name)}</a>' if link else '<span class="muted">—</span>'
        dropped = int(app.get("dropped_bytes") or 0)
        if dropped:
            log += f' <span class="muted">({dropped} bytes left out)</span>'
        rows.append(
            [
                f"<b>{escape(name)}</b>",
                escape(str(app.get("node", ""))),
                fmt_num(None if started is None else started + shift, " s", 2),
                fmt_num(None if ready is None else ready + shift, " s", 2) if ready is not None else "never",
                escape(_value(app.get("exit_code"))),
                "yes" if app.get("alive_at_end") else "no",
                log,
            ]
        )
        classes.append("" if ready is not None else "bad")
    return (
        '<p class="muted">Times in seconds since the calls and probes started (negative: before). '
        "Exit code -15: stopped by the run's SIGTERM, -9: killed after the grace period.</p>"
        + _table(
            ["app", "node", "started", "ready", "exit", "alive at end", "log"],
            rows,
            numeric=(2, 3),
            row_classes=classes,
        )
    )


def _place_logs(apps: Sequence[Mapping[str, Any]], out_dir: Path, slug: str) -> dict[str, str]:
    """App name -> link to its log under ``out_dir`` (copied into ``logs/`` if it is elsewhere)."""
    links: dict[str, str] = {}
    for app in apps:
        src = Path(str(app.get("log") or ""))
        if not app.get("log") or not src.is_file():
            continue
        try:
            links[str(app.get("name"))] = src.resolve().relative_to(out_dir.resolve()).as_posix()
            continue
        except ValueError:
            pass
        dest = out_dir / "logs" / f"{slug}-{app.get('name')}.log"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        links[str(app.get("name"))] = dest.relative_to(out_dir).as_posix()
    return links


def _probes_html(probes: Sequence[Mapping[str, Any]]) -> str:
    rows, classes = [], []
    for p in probes:
        argv = p.get("argv")
        if not isinstance(argv, list):
            argv = []
        code = "timed out" if p.get("timed_out") else _value(p.get("exit_code"))
        pct = _num(p.get("success_pct"))
        if pct is not None:
            first = _num(p.get("first_failure_s"))
            code = f"{pct:g}% of {len(p.get('attempts') or [])} ok" + (
                f", first failure {first:.2f} s" if first is not None else ""
            )
        tail = "\n".join(str(p.get(k) or "").strip() for k in ("stdout_tail", "stderr_tail")).strip()
        rows.append(
            [
                f"<b>{escape(str(p.get('name', '?')))}</b>",
                escape(str(p.get("node", ""))),
                f'<span class="mono">{escape(" ".join(str(a) for a in argv))}</span>',
                fmt_num(p.get("started_s"), " s", 2),
                fmt_num(p.get("duration_s"), " s", 2),
                escape(code),
                f'<span class="mono">{escape(tail[-300:])}</span>',
            ]
        )
        ok = p.get("exit_code") == 0 and not p.get("timed_out") if pct is None else pct == 100
        classes.append("" if ok else "bad")
    return _table(
        ["probe", "node", "command", "started", "took", "exit", "output (tail)"],
        rows,
        numeric=(3, 4),
        row_classes=classes,
    )


def _capture_file(result: Mapping[str, Any]) -> Path | None:
    """The capture the runner recorded in the result (``censor.capture.file``), if any."""
    for holder in (result.get("censor"), result):
        cap = holder.get("capture") if isinstance(holder, Mapping) else None
        if isinstance(cap, Mapping) and isinstance(cap.get("file"), str):
            return Path(cap["file"])
    return None


def _censor_html(
    censor: Mapping[str, Any], events: Sequence[CensorEvent], event_numbers: Mapping[int, int], pcap_link: str | None
) -> str:
    parts = ["<h2>Censor</h2>", '<section class="card">']
    actions = mapping(censor.get("actions"))
    kernel = mapping(censor.get("kernel"))
    stats = [
        ("packets", fmt_num(censor.get("packets"))),
        ("bytes", fmt_num(censor.get("bytes"))),
        ("flows", str(len(censor.get("flows") or []))),
        *((f"{k}", fmt_num(v)) for k, v in sorted(actions.items())),
        (
            "kernel drops",
            fmt_num((_num(kernel.get("queue_dropped")) or 0) + (_num(kernel.get("user_dropped")) or 0))
            if kernel
            else "—",
        ),
    ]
    parts.append(
        '<div class="summary">'
        + "".join(f'<div><div class="k">{escape(k)}</div><div class="v">{v}</div></div>' for k, v in stats)
        + "</div>"
    )
    if pcap_link:
        cap = mapping(censor.get("capture"))
        notes = []
        if cap.get("packets") is not None:
            notes.append(f"{cap['packets']} frames")
        if cap.get("limit"):
            notes.append(f"stopped at its {cap['limit']} limit")
        drops = cap.get("kernel_drops")
        if isinstance(drops, Mapping) and any(drops.values()):
            notes.append(f"{sum(int(v) for v in drops.values())} frames lost by the capture")
        if cap.get("error"):
            notes.append(str(cap["error"]))
        note = f" — {escape('; '.join(notes))}" if notes else ""
        parts.append(
            f'<p>Capture of the censor\'s links: <a href="{escape(pcap_link)}">{escape(Path(pcap_link).name)}</a>{note} '
            '<span class="muted">(every forwarded packet appears twice: arriving on one link and leaving on '
            "the other; a dropped one only arriving. Open with Wireshark or <code>testbed classify</code>.)</span></p>"
        )
    parts.append("</section>")

    rules = censor_rules(censor)
    if rules:
        rows = []
        for r in rules:
            drops = mapping(r.get("drops"))
            rows.append(
                [
                    f"<code>{escape(str(r.get('name')))}</code>",
                    escape(str(r.get("action", ""))),
                    fmt_num(r.get("matched_flows")),
                    fmt_num(r.get("packets")),
                    fmt_num(r.get("accepted")),
                    fmt_num(r.get("dropped")),
                    fmt_num(r.get("delayed")),
                    fmt_num(r.get("rejected")),
                    escape(", ".join(f"{k} {v}" for k, v in drops.items())),
                ]
            )
        parts.append('<h2>Rules</h2><section class="card">')
        parts.append(
            _table(
                ["rule", "action", "flows", "packets", "accepted", "dropped", "delayed", "rejected", "why dropped"],
                rows,
                numeric=range(2, 8),
            )
        )
        parts.append("</section>")

    if events:
        rows = []
        for i, e in enumerate(events[:MAX_EVENT_ROWS]):
            num = event_numbers.get(i)
            color = _event_color(e.event)
            badge = f'<span class="ev-num" style="background:{color}">{num}</span>' if num is not None else ""
            rows.append(
                [
                    badge,
                    f"{e.t:.3f}",
                    escape(e.event),
                    f"<code>{escape(e.rule)}</code>" if e.rule else "",
                    f'<span class="mono">{escape(e.flow or "")}</span>',
                    escape(", ".join(f"{k}={_value(v)}" for k, v in e.details.items() if v is not None)),
                ]
            )
        more = len(events) - MAX_EVENT_ROWS
        dropped = _num(censor.get("events_dropped")) or _num(
            (censor.get("policy") or {}).get("events_dropped") if isinstance(censor.get("policy"), Mapping) else None
        )
        note = ""
        if more > 0:
            note += f" {more} more not shown."
        if dropped:
            note += f" The censor left out {int(dropped)} events (its log is bounded)."
        parts.append('<h2>Censor events</h2><section class="card">')
        parts.append(
            '<p class="muted">Numbered events are marked on the call charts; t is seconds since the censor started.'
            + escape(note)
            + "</p>"
        )
        parts.append(_table(["#", "t (s)", "event", "rule", "flow", "details"], rows, numeric=(1,)))
        parts.append("</section>")

    flows = [f for f in censor.get("flows") or [] if isinstance(f, Mapping)]
    parts.append('<h2>Flows seen by the censor</h2><section class="card">')
    if flows:
        rows = []
        for f in flows[:MAX_FLOW_ROWS]:
            eps = f.get("endpoints") or []
            verdicts = mapping(f.get("verdicts"))
            labels = "".join(f"<span>{escape(str(lb))}</span>" for lb in f.get("labels") or [])
            sni = f' <span class="muted">SNI {escape(str(f["sni"]))}</span>' if f.get("sni") else ""
            rows.append(
                [
                    escape(str(f.get("transport", ""))),
                    '<span class="mono">' + " ⇄ ".join(escape(str(e)) for e in eps) + "</span>",
                    f'<span class="labels">{labels}</span>{sni}',
                    escape(", ".join(f"{k} {v}" for k, v in verdicts.items())),
                    f"{fmt_num(f.get('packets_orig'))} / {fmt_num(f.get('packets_reply'))}",
                    fmt_num(f.get("bytes")),
                    f"{fmt_num(f.get('first_seen_s'), digits=2)} – {fmt_num(f.get('last_seen_s'), digits=2)}",
                    f"<code>{escape(str(f['rule']))}</code>" if f.get("rule") else "",
                ]
            )
        if len(flows) > MAX_FLOW_ROWS:
            rows.append(
                [
                    "",
                    f'<span class="muted">{len(flows) - MAX_FLOW_ROWS} more flows not shown</span>',
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
        parts.append(
            _table(
                [
                    "proto",
                    "endpoints (initiator first)",
                    "labels",
                    "verdicts",
                    "pkts orig / reply",
                    "bytes",
                    "seen (s)",
                    "rule",
                ],
                rows,
                numeric=(4, 5, 6),
            )
        )
    else:
        parts.append('<p class="muted">No flows recorded.</p>')
    parts.append("</section>")
    return "".join(parts)


def _scenario_page(
    result: Mapping[str, Any],
    *,
    pcap_link: str | None,
    censor_offset_s: float,
    log_links: Mapping[str, str] | None = None,
) -> str:
    status = scenario_status(result)
    censor = mapping(result.get("censor"))
    events = censor_events(censor)
    calls = [c for c in result.get("calls") or [] if isinstance(c, Mapping)]
    expectations = [e for e in result.get("expectations") or [] if isinstance(e, Mapping)]

    # One numbering of the marked events for the whole page, so "3" on a chart is row 3 below.
    event_numbers = {i: n + 1 for n, i in enumerate(_pick_markers(events))}
    body = [
        '<nav class="crumbs"><a href="index.html">← all scenarios</a></nav>',
        f'<h2 style="margin-top:4px">{escape(str(result.get("name", "?")))} {_badge(status)}</h2>',
        '<section class="card"><div class="summary">',
        *(
            f'<div><div class="k">{k}</div><div class="v" style="font-size:14px">{v}</div></div>'
            for k, v in (
                ("file", f"<code>{escape(str(result.get('file', '')))}</code>"),
                ("run id", f"<code>{escape(str(result.get('run_id', '')))}</code>"),
                ("seed", escape(str(result.get("seed", "")))),
                ("duration", fmt_num(result.get("duration_s"), " s", 1)),
                ("expectations", f"{sum(bool(e.get('passed')) for e in expectations)}/{len(expectations)} held"),
            )
        ),
        "</div>",
    ]
    if result.get("error"):
        body.append(f'<p><b>The run itself broke:</b></p><div class="error">{escape(str(result["error"]))}</div>')
    body.append("</section>")
    body.append(f'<h2>Expectations</h2><section class="card">{_expectations_html(expectations)}</section>')
    if calls:
        body.append("<h2>Calls</h2>")
        body.append(
            '<p class="muted">Dashed: what the sender sent; solid: what arrived. Vertical markers: censor events '
            "(numbers refer to the event table), C = connected, ✕ = call failed; shaded: a rule's time window.</p>"
        )
        for call in calls:
            mine = _events_for_call(events, call, len(calls))
            mine_numbers = {j: event_numbers[i] for j, i in enumerate(mine) if i in event_numbers}
            body.append(_call_html(result, call, [events[i] for i in mine], mine_numbers, censor_offset_s, len(calls)))
    apps = [a for a in result.get("apps") or [] if isinstance(a, Mapping)]
    if apps:
        body.append('<h2>Apps</h2><section class="card">' + _apps_html(result, apps, log_links or {}) + "</section>")
    probes = [p for p in result.get("probes") or [] if isinstance(p, Mapping)]
    if probes:
        body.append(
            "<h2>Probes</h2>"
            + '<section class="card">'
            + _probes_timeline(result, probes, events, event_numbers, censor_offset_s)
            + _probes_html(probes)
            + "</section>"
        )
    if censor:
        body.append(_censor_html(censor, events, event_numbers, pcap_link))
    elif pcap_link:
        body.append(f'<p>Capture: <a href="{escape(pcap_link)}">{escape(Path(pcap_link).name)}</a></p>')
    return _page(f"{result.get('name', '?')} — testbed", "".join(body))


def _index_page(results: Sequence[Mapping[str, Any]], slugs: Sequence[str]) -> str:
    passed = sum(bool(r.get("passed")) for r in results)
    failed = len(results) - passed
    rows, classes = [], []
    for r, slug in zip(results, slugs, strict=True):
        status = scenario_status(r)
        calls = [c for c in r.get("calls") or [] if isinstance(c, Mapping)]
        exps = [e for e in r.get("expectations") or [] if isinstance(e, Mapping)]
        digests = [call_digest(c, exps) for c in calls]
        outcome = ", ".join(f"{escape(d.name)} {_badge(d.outcome)}" for d in digests) or '<span class="muted">—</span>'
        why = r.get("error") or next((d.why for d in digests if d.why), "")
        rows.append(
            [
                _badge(status),
                f'<a href="{escape(slug)}.html"><b>{escape(str(r.get("name", "?")))}</b></a><br>'
                f'<span class="muted mono">{escape(str(r.get("file", "")))}</span>',
                outcome,
                f"{sum(bool(e.get('passed')) for e in exps)}/{len(exps)}",
                fmt_num(r.get("duration_s"), " s", 1),
                # A call failing as the scenario expected is not why anything failed: muted.
                f'<span class="{"muted" if r.get("passed") else "why"}">'
                f"{escape(str(why).splitlines()[0] if why else '')}</span>",
            ]
        )
        classes.append("" if r.get("passed") else "bad")
    body = (
        '<section class="card"><div class="summary">'
        f'<div><div class="k">scenarios</div><div class="v">{len(results)}</div></div>'
        f'<div><div class="k">passed</div><div class="v" style="color:var(--ok)">{passed}</div></div>'
        f'<div><div class="k">failed</div><div class="v" style="color:var(--fail)">{failed}</div></div>'
        "</div></section>"
        '<section class="card">'
        + _table(
            [
                "",
                "scenario",
                "calls",
                "expectations",
                "duration",
                "why it failed (or, if it passed, what failed as expected)",
            ],
            rows,
            numeric=(3, 4),
            row_classes=classes,
        )
        + f'</section><p class="muted">{passed} passed, {failed} failed</p>'
    )
    return _page("testbed report", body)


def _place_pcap(src: Path, out_dir: Path, slug: str) -> str | None:
    if not src.is_file():
        return None
    try:
        return src.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        pass
    dest = out_dir / "pcap" / f"{slug}{''.join(src.suffixes[-1:]) or '.pcap'}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest.relative_to(out_dir).as_posix()


def write_html_report(
    results: list[JsonObject],
    out_dir: Path,
    *,
    pcaps: Mapping[str, Path] = {},
    censor_offset_s: float = 0.0,
) -> Path:
    """Write ``index.html`` and one page per scenario into ``out_dir``; returns index.html's path.

    ``pcaps`` maps a scenario's ``run_id`` (or, failing that, its ``name``) to a capture file; it
    is copied into ``out_dir/pcap/`` (unless already under ``out_dir``) and linked from the page.
    ``censor_offset_s`` is the call start minus the censor start, used when a result carries no
    ``timeline_origin``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    dicts = [as_dict(r) for r in results]
    used: set[str] = {"index"}
    slugs = [_slug(r, used) for r in dicts]
    for r, slug in zip(dicts, slugs, strict=True):
        src = pcaps.get(str(r.get("run_id"))) or pcaps.get(str(r.get("name"))) or _capture_file(r)
        link = _place_pcap(Path(src), out_dir, slug) if src is not None else None
        apps = [a for a in r.get("apps") or [] if isinstance(a, Mapping)]
        logs = _place_logs(apps, out_dir, slug)
        _write(
            out_dir / f"{slug}.html", _scenario_page(r, pcap_link=link, censor_offset_s=censor_offset_s, log_links=logs)
        )
    index = out_dir / "index.html"
    _write(index, _index_page(dicts, slugs))
    return index


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)

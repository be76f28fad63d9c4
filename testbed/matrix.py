"""``testbed matrix``: every workload of some scenarios against a set of censor profiles.

Each scenario runs once per censor column, with its own censor *rules* replaced by that profile's
(its ``lists:`` stay, so a profile's list names can point at sandbox nodes, and so do its other
censor settings), and once with no rules at all: the ``none`` control column, run before the
others. A workload (a call, a probe, a probe on a node that runs apps) that does not work under
``none`` is ``broken`` in every column: its failure says nothing about the censors.

The cells are derived from the runs' result dicts (``ScenarioResult.to_json()``) by pure
functions, so tests and reports can feed them crafted results:

- a call: its own ``outcome`` (``ok``/``degraded``/``blocked`` from the verdict thresholds);
  ``blocked_after_s`` is its ``time_to_failure_s`` when it connected and then died;
- a one-shot probe: exit 0 is ``ok`` (``degraded`` when slower than its ``expect.within``, or than
  three times the control run's duration plus 2 s), else ``blocked`` after the attempt's duration;
- a repeated probe: every attempt succeeded is ``ok``; attempts failed and none succeeded after the
  first failure is ``blocked after`` (first failure - start); failures mixed with successes is
  ``degraded``.

Which rule decided: the rule that dropped, rejected or cut packets (for ``degraded``: also
delayed), from the censor summary's per-rule counters. When exactly one rule acted in that run it
is the rule; when several acted, a call's flows (its selected candidate pairs) pick the first of
them by event time among the events on those flows; otherwise (a probe's flows are not known by
address) the cell says ``?`` rather than guess.

The matrix is a measurement: exit 0 unless a run broke (an error), or a scenario's
``expect_matrix`` is violated (exit 1).
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from testbed.errors import AppNotReadyError, ScenarioError, UsageError
from testbed.records.json import JsonObject
from testbed.records.result import call_addresses
from testbed.scenario.loader import LoadedScenario
from testbed.scenario.model import MatrixOutcome, Scenario
from testbed.scenario.profiles import (
    CensorProfile,
    apply_profiles,
    is_profile_path,
    resolve_profile,
    shipped_profile_names,
)

__all__ = [
    "CONTROL",
    "Cell",
    "Column",
    "Matrix",
    "MatrixCheck",
    "Outcome",
    "Row",
    "Workload",
    "WorkloadKind",
    "build_matrix",
    "derive_cells",
    "format_table",
    "matrix_json",
    "parse_censors",
    "scenario_variant",
    "workloads_of",
]

CONTROL = "none"
SLOW_FACTOR = 3.0
SLOW_MARGIN_S = 2.0


class Outcome(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    BLOCKED = "blocked"
    BROKEN = "broken"
    """It fails without a censor: the ``none`` column says nothing works, so no column can say why."""
    ERROR = "error"
    """The run itself failed (its ``error``): no measurement."""


class WorkloadKind(StrEnum):
    CALL = "call"
    PROBE = "probe"
    APP_PROBE = "app-probe"
    """A probe on a node that runs apps (a VPN or proxy client the probe goes through)."""


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    kind: WorkloadKind
    within_s: float | None = None
    """A one-shot probe's ``expect.within``: slower than this is ``degraded``."""
    expected_exit: int | str = 0
    """A probe's ``expect.exit``: not 0 for a probe written to fail (a check of the tool itself,
    such as a wrong key, or of the scenario's own censor)."""


@dataclass(frozen=True, slots=True)
class Cell:
    outcome: Outcome
    blocked_after_s: float | None = None
    rule: str | None = None
    """The rule that decided (``?``: it acted but cannot be attributed); None for ok/broken."""
    measured: Outcome | None = None
    """For ``broken``: what this column measured anyway."""
    detail: str = ""
    link: str | None = None
    """That run's HTML page, relative to the matrix report's directory."""

    @property
    def text(self) -> str:
        if self.outcome is Outcome.BLOCKED and self.blocked_after_s is not None:
            return f"blocked after {self.blocked_after_s:.1f} s"
        return self.outcome.value

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "outcome": self.outcome.value,
            "blocked_after_s": None if self.blocked_after_s is None else round(self.blocked_after_s, 3),
            "rule": self.rule,
            "text": self.text,
            "detail": self.detail,
        }
        if self.measured is not None:
            out["measured"] = self.measured.value
        if self.link is not None:
            out["run_page"] = self.link
        return out


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    workload: str
    kind: WorkloadKind
    cells: Mapping[str, Cell]

    def to_json(self) -> JsonObject:
        return {
            "scenario": self.scenario,
            "workload": self.workload,
            "kind": self.kind.value,
            "cells": {c: cell.to_json() for c, cell in self.cells.items()},
        }


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A workload that is not a row: a probe written to fail that fails without a censor too
    (``wrong-cert``): a check of the tool itself, ``broken`` in every column, noise in the grid."""

    scenario: str
    workload: str
    reason: str

    def to_json(self) -> JsonObject:
        return {"scenario": self.scenario, "workload": self.workload, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class MatrixCheck:
    scenario: str
    workload: str
    censor: str
    wanted: tuple[Outcome, ...]
    got: Outcome | None
    """None: that censor was not in this matrix (the check is skipped, not failed)."""

    @property
    def passed(self) -> bool:
        return self.got is None or self.got in self.wanted

    def to_json(self) -> JsonObject:
        return {
            "scenario": self.scenario,
            "workload": self.workload,
            "censor": self.censor,
            "wanted": [w.value for w in self.wanted],
            "got": None if self.got is None else self.got.value,
            "passed": self.passed,
            "skipped": self.got is None,
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    censors: tuple[str, ...]
    rows: tuple[Row, ...]
    errors: tuple[tuple[str, str, str], ...] = ()
    """(scenario, censor, message) of every run that broke."""
    checks: tuple[MatrixCheck, ...] = ()
    left_out: tuple[LeftOut, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.checks)

    def to_json(self) -> JsonObject:
        return {
            "matrix": {
                "censors": list(self.censors),
                "rows": [r.to_json() for r in self.rows],
                "errors": [{"scenario": s, "censor": c, "error": e} for s, c, e in self.errors],
                "checks": [c.to_json() for c in self.checks],
                "not_in_grid": [x.to_json() for x in self.left_out],
                "passed": self.passed,
            }
        }


# --- columns ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    profile: CensorProfile | None
    """None: the ``none`` control column (no rules)."""


def parse_censors(value: str, *, base_dir: Path) -> list[Column]:
    """``--censors a,b,./mine.yaml`` or ``all`` -> the columns, ``none`` first. Unknown names and
    bad profile files are ``ScenarioError``/``UsageError`` (exit 2)."""
    refs = [r.strip() for r in value.split(",")]
    if not value.strip() or any(not r for r in refs):
        raise UsageError(
            "--censors needs profile names separated by commas (e.g. --censors tspu-2025-calls,tspu-vpn), "
            "or `all` (`testbed profiles` lists them)"
        )
    if refs == ["all"]:
        refs = list(shipped_profile_names())
    columns = [Column(CONTROL, None)]
    for ref in refs:
        if ref == CONTROL:
            continue  # always there, always first
        try:
            profile = resolve_profile(ref, base_dir=base_dir)
        except ScenarioError as exc:
            if exc.file is not None:
                raise  # an error inside a profile file, at its file:line
            raise UsageError(f"--censors: {exc.bare_message}" + (f"\n  hint: {exc.hint}" if exc.hint else "")) from None
        if any(c.name == profile.name for c in columns):
            raise UsageError(f"--censors names profile {profile.name!r} twice; name each censor once")
        columns.append(Column(profile.name, profile))
    return columns


def scenario_variant(loaded: LoadedScenario, column: Column) -> LoadedScenario:
    """The scenario with its rules replaced by ``column``'s profile (none: no rules). Its lists
    and settings stay; its ``expect:`` goes (it checks the scenario's own censor, not this one)."""
    own = loaded.own_censor if loaded.own_censor is not None else loaded.scenario.censor
    base = own.model_copy(update={"rules": (), "profiles": ()})
    if column.profile is None:
        censor = base
    else:
        try:
            censor = apply_profiles(base, [column.profile])
        except ValueError as exc:
            raise ScenarioError(
                f"profile {column.name!r} cannot be applied to this scenario: {exc}", file=str(loaded.path)
            ) from None
        censor = censor.model_copy(update={"profiles": (column.name,)})
    scenario = loaded.scenario.model_copy(update={"censor": censor, "expect": ()})
    return LoadedScenario(loaded.path, scenario, loaded.own_censor)


# --- workloads and cells ---------------------------------------------------------------------------


def workloads_of(scenario: Scenario) -> list[Workload]:
    out = [Workload(n, WorkloadKind.CALL) for c in scenario.calls for n in c.instance_names]
    for p in scenario.probes:
        node = scenario.nodes.get(p.node)
        kind = WorkloadKind.APP_PROBE if node is not None and node.apps else WorkloadKind.PROBE
        within = p.expect.within if p.repeat is None else None
        out.append(Workload(p.name, kind, within_s=within, expected_exit=p.expect.exit))
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _by_name(items: Any) -> dict[str, Mapping[str, Any]]:
    return {str(i.get("name")): i for i in items or [] if isinstance(i, Mapping)}


def _call_cell(call: Mapping[str, Any]) -> Cell:
    raw = call.get("outcome")
    if raw in ("ok", "degraded", "blocked"):
        outcome = Outcome(raw)
    else:
        outcome = Outcome.OK if call.get("connected") else Outcome.BLOCKED
    reasons = call.get("outcome_reasons") or []
    detail = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
    if not call.get("connected"):
        detail = detail or f"never connected{': ' + str(call['error']) if call.get('error') else ''}"
        return Cell(Outcome.BLOCKED, None, detail=detail)
    after = _num(call.get("time_to_failure_s")) if outcome is Outcome.BLOCKED else None
    return Cell(outcome, after, detail=detail)


def _probe_cell(probe: Mapping[str, Any], workload: Workload, control: Mapping[str, Any] | None) -> Cell:
    attempts = [a for a in probe.get("attempts") or [] if isinstance(a, Mapping)]
    started = _num(probe.get("started_s")) or 0.0
    if attempts:
        oks = [a.get("exit") == 0 for a in attempts]
        n_ok = sum(oks)
        detail = f"{n_ok}/{len(oks)} attempts succeeded"
        if all(oks):
            return Cell(Outcome.OK, detail=detail)
        first = oks.index(False)
        t_first = _num(attempts[first].get("t_s"))
        after = None if t_first is None else max(0.0, t_first - started)
        if any(oks[first:]):
            return Cell(Outcome.DEGRADED, detail=detail + " (failures among successes)")
        return Cell(Outcome.BLOCKED, after, detail=detail)
    code = probe.get("exit_code")
    took = _num(probe.get("duration_s"))
    if code != 0:
        what = "timed out" if code is None else f"exit {code}"
        return Cell(Outcome.BLOCKED, took, detail=f"{what} after {took or 0:.1f} s")
    if took is not None and workload.within_s is not None and took > workload.within_s:
        return Cell(Outcome.DEGRADED, detail=f"took {took:.1f} s (expect.within {workload.within_s:g} s)")
    ctrl = _num(control.get("duration_s")) if control is not None else None
    if took is not None and ctrl is not None and took > max(SLOW_FACTOR * ctrl, ctrl + SLOW_MARGIN_S):
        return Cell(Outcome.DEGRADED, detail=f"took {took:.1f} s, {ctrl:.1f} s without a censor")
    return Cell(Outcome.OK, detail="" if took is None else f"took {took:.1f} s")


def _acting_rules(censor: Mapping[str, Any], *, delays: bool) -> list[str]:
    """Rules whose counters show they dropped, rejected or cut packets (and delayed, if asked)."""
    out: list[str] = []
    for r in censor.get("rules") or []:
        if not isinstance(r, Mapping) or not isinstance(r.get("name"), str):
            continue
        drops = r.get("drops") if isinstance(r.get("drops"), Mapping) else {}
        assert isinstance(drops, Mapping)
        n = sum(int(v) for v in drops.values() if isinstance(v, int) and not isinstance(v, bool))
        for key in ("dropped", "rejected") + (("delayed",) if delays else ()):
            v = r.get(key)
            n += v if isinstance(v, int) and not isinstance(v, bool) else 0
        if n > 0:
            out.append(r["name"])
    return out


def _rule_for(cell: Cell, censor: Mapping[str, Any], call: Mapping[str, Any] | None) -> str | None:
    if cell.outcome not in (Outcome.BLOCKED, Outcome.DEGRADED):
        return None
    acting = _acting_rules(censor, delays=cell.outcome is Outcome.DEGRADED)
    if len(acting) == 1:
        return acting[0]
    if len(acting) > 1 and call is not None:
        mine = call_addresses(call)
        for e in censor.get("events") or []:
            if not isinstance(e, Mapping) or e.get("rule") not in acting:
                continue
            eps = e.get("endpoints")
            if not isinstance(eps, list):
                flow = e.get("flow")
                eps = str(flow).split(" <-> ") if isinstance(flow, str) else []
            if mine & {str(x) for x in eps}:
                return str(e["rule"])
    return "?"


def _blocked_before_start(result: Mapping[str, Any], control: Mapping[str, Any] | None) -> bool:
    return (
        control is not None
        and not control.get("error")
        and bool(result.get("error"))
        and result.get("error_kind") == AppNotReadyError.kind
    )


def derive_cells(
    result: Mapping[str, Any],
    workloads: Sequence[Workload],
    control: Mapping[str, Any] | None = None,
) -> dict[str, Cell]:
    """One run's cells, by workload name. ``control``: the ``none`` run of the same scenario
    (for a probe's "slower than without a censor"); None when this is that run."""
    censor = result.get("censor") if isinstance(result.get("censor"), Mapping) else {}
    assert isinstance(censor, Mapping)
    if _blocked_before_start(result, control):
        # An app that was ready without a censor never became ready under this one (a VPN
        # client whose tunnel never came up): everything the run would have measured is blocked.
        acting = _acting_rules(censor, delays=False)
        decided = acting[0] if len(acting) == 1 else "?"
        detail = f"never started: {result['error']}"
        return {w.name: Cell(Outcome.BLOCKED, None, decided, detail=detail) for w in workloads}
    if result.get("error"):
        return {w.name: Cell(Outcome.ERROR, detail=str(result["error"])) for w in workloads}
    calls, probes = _by_name(result.get("calls")), _by_name(result.get("probes"))
    ctrl_probes = _by_name(control.get("probes")) if control is not None else {}
    out: dict[str, Cell] = {}
    for w in workloads:
        if w.kind is WorkloadKind.CALL:
            call = calls.get(w.name)
            if call is None:
                out[w.name] = Cell(Outcome.ERROR, detail="the call has no result")
                continue
            cell = _call_cell(call)
        else:
            probe = probes.get(w.name)
            if probe is None:
                out[w.name] = Cell(Outcome.ERROR, detail="the probe did not run")
                continue
            call = None
            cell = _probe_cell(probe, w, ctrl_probes.get(w.name))
        rule = _rule_for(cell, censor, call)
        out[w.name] = Cell(cell.outcome, cell.blocked_after_s, rule, detail=cell.detail)
    return out


# --- the matrix ------------------------------------------------------------------------------------


def _with_control(cells: Mapping[str, Cell], control: Cell | None) -> dict[str, Cell]:
    """A workload that is not ``ok`` without a censor is ``broken`` in every column (the measured
    outcome kept as ``measured``); an error stays an error."""
    if control is None or control.outcome is Outcome.OK or control.outcome is Outcome.ERROR:
        return dict(cells)
    out: dict[str, Cell] = {}
    for name, cell in cells.items():
        if cell.outcome is Outcome.ERROR:
            out[name] = cell
            continue
        detail = f"without a censor: {control.text}" + (f" ({control.detail})" if control.detail else "")
        out[name] = Cell(Outcome.BROKEN, measured=cell.outcome, detail=detail, link=cell.link)
    return out


def _left_out(scenario: str, workload: Workload, control: Cell | None) -> LeftOut | None:
    if workload.expected_exit == 0 or control is None or control.outcome is not Outcome.BLOCKED:
        return None
    return LeftOut(
        scenario,
        workload.name,
        f"expects exit {workload.expected_exit} and fails without a censor too: it checks the tool, not a censor",
    )


def _wanted(value: Any) -> tuple[Outcome, ...]:
    items = value if isinstance(value, tuple) else (value,)
    return tuple(Outcome(v.value if isinstance(v, MatrixOutcome) else str(v)) for v in items)


def _checks(
    scenario: Scenario, rows: Sequence[Row], censors: Sequence[str], aliases: Mapping[str, str]
) -> list[MatrixCheck]:
    out: list[MatrixCheck] = []
    for key, want in scenario.expect_matrix.items():
        column = aliases.get(key, key)
        for row in rows:
            if isinstance(want, dict):
                if row.workload not in want:
                    continue
                wanted = _wanted(want[row.workload])
            else:
                wanted = _wanted(want)
            got = row.cells[column].outcome if column in censors and column in row.cells else None
            out.append(MatrixCheck(scenario.name, row.workload, column, wanted, got))
    return out


def build_matrix(
    scenarios: Sequence[tuple[Scenario, Mapping[str, Mapping[str, Any]]]],
    censors: Sequence[str],
    *,
    links: Mapping[tuple[str, str], str] = {},
    aliases: Mapping[tuple[str, str], str] = {},
) -> Matrix:
    """``scenarios``: each scenario with its results by censor column (``none`` among them).
    ``links``: (scenario, censor) -> that run's page. ``aliases``: (scenario, expect_matrix key)
    -> column name, for keys that are profile file paths."""
    rows: list[Row] = []
    errors: list[tuple[str, str, str]] = []
    checks: list[MatrixCheck] = []
    left_out: list[LeftOut] = []
    for scenario, results in scenarios:
        workloads = workloads_of(scenario)
        control = results.get(CONTROL)
        per: dict[str, dict[str, Cell]] = {}
        for censor in censors:
            result = results.get(censor)
            if result is None:
                per[censor] = {w.name: Cell(Outcome.ERROR, detail="not run") for w in workloads}
                continue
            if result.get("error") and not _blocked_before_start(result, control):
                errors.append((scenario.name, censor, str(result["error"])))
            cells = derive_cells(result, workloads, None if censor == CONTROL else control)
            link = links.get((scenario.name, censor))
            per[censor] = {
                n: Cell(c.outcome, c.blocked_after_s, c.rule, c.measured, c.detail, link) for n, c in cells.items()
            }
        scenario_rows: list[Row] = []
        for w in workloads:
            raw = {c: per[c][w.name] for c in censors}
            cells = _with_control(raw, raw.get(CONTROL))
            scenario_rows.append(Row(scenario.name, w.name, w.kind, cells))
            gone = _left_out(scenario.name, w, raw.get(CONTROL))
            if gone is not None:
                left_out.append(gone)
            else:
                rows.append(scenario_rows[-1])
        names = {k: aliases.get((scenario.name, k), k) for k in scenario.expect_matrix}
        # Left-out rows are still checked: an expect_matrix on one reads ``broken``.
        checks.extend(_checks(scenario, scenario_rows, censors, names))
    return Matrix(tuple(censors), tuple(rows), tuple(errors), tuple(checks), tuple(left_out))


# --- rendering ---------------------------------------------------------------------------------------


def _cell_text(cell: Cell) -> str:
    text = cell.text
    if cell.rule is not None:
        text += f" [{cell.rule}]"
    return text


def format_table(matrix: Matrix) -> str:
    """The console grid: one row per workload, one column per censor; the rule that decided in []."""
    head = ["scenario", "workload", "kind", *matrix.censors]
    body = [
        [r.scenario, r.workload, r.kind.value, *(_cell_text(r.cells[c]) for c in matrix.censors)] for r in matrix.rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
    for s, c, e in matrix.errors:
        lines.append(f"error: {s} under {c}: {e}")
    for x in matrix.left_out:
        lines.append(f"not in the grid: {x.scenario} / {x.workload}: {x.reason}")
    failed = [k for k in matrix.checks if not k.passed]
    for k in failed:
        lines.append(
            f"expect_matrix: {k.scenario} {k.workload} under {k.censor}: wanted {'/'.join(w for w in k.wanted)}, "
            f"got {k.got}"
        )
    skipped = sum(k.got is None for k in matrix.checks)
    if matrix.checks:
        held = len(matrix.checks) - len(failed) - skipped
        extra = f", {skipped} skipped (censor not in --censors)" if skipped else ""
        lines.append(f"expect_matrix: {held} held, {len(failed)} failed{extra}")
    return "\n".join(lines)


def matrix_json(matrix: Matrix) -> JsonObject:
    from testbed import __version__

    return {"testbed_version": __version__, **matrix.to_json()}


def write_junit(matrix: Matrix, path: Path) -> None:
    """One testcase per cell (classname scenario.workload, name the censor); a failed
    ``expect_matrix`` check or an error fails its cell."""
    import xml.etree.ElementTree as ET

    failed = {(k.scenario, k.workload, k.censor): k for k in matrix.checks if not k.passed}
    suite = ET.Element("testsuite", name="testbed-matrix")
    n_fail = n_err = 0
    for row in matrix.rows:
        for censor, cell in row.cells.items():
            case = ET.SubElement(suite, "testcase", classname=f"{row.scenario}.{row.workload}", name=censor)
            ET.SubElement(case, "system-out").text = _cell_text(cell) + (f": {cell.detail}" if cell.detail else "")
            check = failed.get((row.scenario, row.workload, censor))
            if cell.outcome is Outcome.ERROR:
                n_err += 1
                ET.SubElement(case, "error", message=cell.detail or "the run failed")
            elif check is not None:
                n_fail += 1
                ET.SubElement(
                    case, "failure", message=f"expect_matrix wanted {'/'.join(check.wanted)}, got {check.got}"
                )
    suite.set("tests", str(sum(len(r.cells) for r in matrix.rows)))
    suite.set("failures", str(n_fail))
    suite.set("errors", str(n_err))
    tmp = path.with_name(path.name + ".tmp")
    ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)


# --- running -----------------------------------------------------------------------------------------


def expect_aliases(loaded: Sequence[LoadedScenario]) -> dict[tuple[str, str], str]:
    """``expect_matrix`` keys that are profile file paths -> the profile's name (its column).
    Errors inside those files are ``ScenarioError`` at their file:line."""
    out: dict[tuple[str, str], str] = {}
    for item in loaded:
        for key in item.scenario.expect_matrix:
            if is_profile_path(key):
                try:
                    profile = resolve_profile(key, base_dir=item.path.parent)
                except ScenarioError as exc:
                    if exc.file is not None:
                        raise
                    raise ScenarioError(
                        f"expect_matrix: {exc.bare_message}", file=str(item.path), hint=exc.hint
                    ) from None
                out[(item.scenario.name, key)] = profile.name
    return out


async def run_matrix(
    loaded: Sequence[LoadedScenario],
    columns: Sequence[Column],
    *,
    jobs: int,
    run_one: Callable[[LoadedScenario, str, str], Any],
) -> dict[tuple[str, str], JsonObject]:
    """Every (scenario, column) run, the ``none`` column of every scenario first; ``run_one``
    (variant, scenario name, column name) -> awaitable ScenarioResult. Results by (scenario, column)."""
    out: dict[tuple[str, str], JsonObject] = {}
    gate = asyncio.Semaphore(jobs)
    variants = {(item.scenario.name, c.name): scenario_variant(item, c) for item in loaded for c in columns}

    async def one(key: tuple[str, str]) -> None:
        async with gate:
            result = await run_one(variants[key], key[0], key[1])
        out[key] = result.to_json()

    for phase in (
        [k for k in variants if k[1] == CONTROL],
        [k for k in variants if k[1] != CONTROL],
    ):
        async with asyncio.TaskGroup() as tg:
            for key in phase:
                tg.create_task(one(key))
    return out


def print_table(matrix: Matrix, out: TextIO = sys.stdout) -> None:
    print(format_table(matrix), file=out)


__all__ += ["expect_aliases", "print_table", "run_matrix", "write_junit"]

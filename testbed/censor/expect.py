"""``expect: - censor: {...}``: bounds on the censor's counters, checked against its summary.

A pure function of the ``censor`` section of a result (``CensorEngine.summary()`` merged with
the policy's, docs/policy.md "Results"): no I/O.  It lets a scenario assert the mechanism behind
an outcome (rule ``sni-i`` rewrote a reply into an RST; the STUN rule dropped packets and the
control call's rule none), not only the outcome.

Per rule, the counters are that rule's (``censor.rules[]``, packets its residual blocks caught
included).  Without ``rule`` they are the whole censor's: every rule's plus the packets no rule
matched (``censor.default``), ``packets`` and ``bytes`` as the engine counted them (malformed
packets included) and ``flows`` the flows the policy evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from testbed.calls.verdict import ExpectationResult
from testbed.scenario.expect_schema import RULE_COUNTERS, CensorCheck, DropCause, Expectation

__all__ = ["check_censor"]


def check_censor(expectations: Iterable[Expectation], censor: Mapping[str, Any]) -> list[ExpectationResult]:
    """One result per bounded counter of every ``censor:`` entry, in the entries' order."""
    out: list[ExpectationResult] = []
    for exp in expectations:
        check = exp.censor
        if check is None:
            continue
        scope = f"censor rule {check.rule}" if check.rule is not None else "censor totals"
        counters = _counters(check, censor)
        for name, bound in check.bounds():
            what = f"{scope}: {name} {bound.describe()}"
            if isinstance(counters, str):
                out.append(ExpectationResult(what, False, counters, bound.describe(), None))
                continue
            got = counters.get(name)
            if got is None:
                out.append(ExpectationResult(what, False, f"the censor reported no {name!r}", bound.describe(), None))
                continue
            ok = bound.holds(got)
            out.append(
                ExpectationResult(what, ok, f"expected {bound.describe()}, measured {got}", bound.describe(), got)
            )
    return out


def _counters(check: CensorCheck, censor: Mapping[str, Any]) -> dict[str, int] | str:
    """The counters the check reads, flat (``drops.residual``), or why there are none."""
    if not censor:
        return "the censor reported no counters"
    rules = [r for r in censor.get("rules") or [] if isinstance(r, Mapping)]
    if check.rule is not None:
        found = next((r for r in rules if r.get("name") == check.rule), None)
        if found is None:
            return f"the censor reported no counters for rule {check.rule!r}"
        return _flat(found)
    default = censor.get("default")
    parts = [*rules, default] if isinstance(default, Mapping) else rules
    total: dict[str, int] = {}
    for part in parts:
        for name, n in _flat(part).items():
            total[name] = total.get(name, 0) + n
    for name in ("packets", "bytes"):
        if isinstance(censor.get(name), int):
            total[name] = censor[name]
    evaluated = censor.get("flows_evaluated")
    if isinstance(evaluated, int):
        total["flows"] = evaluated
    return total


def _flat(counters: Mapping[str, Any]) -> dict[str, int]:
    out = {n: v for n in RULE_COUNTERS if isinstance(v := counters.get(n), int) and not isinstance(v, bool)}
    drops = counters.get("drops")
    if isinstance(drops, Mapping):
        # ``drops`` lists only the causes that happened: any other is a measured 0.
        out.update({f"drops.{c.value}": 0 for c in DropCause})
        out.update({f"drops.{k}": v for k, v in drops.items() if isinstance(v, int)})
    return out

"""The matrix's HTML grid (``testbed matrix --report DIR``): ``DIR/index.html``, one row per
workload, one column per censor, each cell coloured by its outcome and linking to that run's own
report (written by ``testbed.report.html`` into ``DIR/<scenario>/<censor>/``). Static, offline,
no JavaScript."""

from __future__ import annotations

from html import escape
from pathlib import Path

from testbed import __version__
from testbed.matrix import Cell, Matrix, Outcome

__all__ = ["write_matrix_html"]

_COLOURS = {
    Outcome.OK: "#c8e6c9",
    Outcome.DEGRADED: "#fff3b0",
    Outcome.BLOCKED: "#f4b6b6",
    Outcome.BROKEN: "#d0d0d0",
    Outcome.ERROR: "#b39ddb",
}

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #999; padding: .3em .6em; text-align: left; vertical-align: top; }
td.cell a { color: inherit; text-decoration: none; display: block; }
.rule { font-size: .8em; color: #333; }
.legend span { padding: .1em .5em; margin-right: .5em; border: 1px solid #999; }
.fail { color: #a00; }
"""


def _cell(cell: Cell) -> str:
    text = escape(cell.text)
    if cell.rule is not None:
        text += f'<br><span class="rule">{escape(cell.rule)}</span>'
    if cell.link is not None:
        text = f'<a href="{escape(cell.link)}">{text}</a>'
    title = escape(cell.detail, quote=True)
    colour = _COLOURS[cell.outcome]
    return f'<td class="cell {cell.outcome.value}" style="background:{colour}" title="{title}">{text}</td>'


def matrix_page(matrix: Matrix) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in ["scenario", "workload", "kind", *matrix.censors])
    rows = []
    for r in matrix.rows:
        cells = "".join(_cell(r.cells[c]) for c in matrix.censors)
        rows.append(
            f"<tr><td>{escape(r.scenario)}</td><td>{escape(r.workload)}</td><td>{escape(r.kind.value)}</td>{cells}</tr>"
        )
    legend = "".join(f'<span style="background:{c}">{o.value}</span>' for o, c in _COLOURS.items())
    extra: list[str] = []
    for s, c, e in matrix.errors:
        extra.append(f'<li class="fail">run {escape(s)} under {escape(c)} broke: {escape(e)}</li>')
    for x in matrix.left_out:
        extra.append(f"<li>not in the grid: {escape(x.scenario)} / {escape(x.workload)}: {escape(x.reason)}</li>")
    for k in matrix.checks:
        if not k.passed:
            wanted = "/".join(w.value for w in k.wanted)
            extra.append(
                f'<li class="fail">expect_matrix: {escape(k.scenario)} {escape(k.workload)} under '
                f"{escape(k.censor)}: wanted {escape(wanted)}, got {escape(str(k.got))}</li>"
            )
    notes = f"<ul>{''.join(extra)}</ul>" if extra else ""
    verdict = "passed" if matrix.passed else "failed"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>testbed matrix</title>'
        f"<style>{_STYLE}</style></head><body><h1>testbed matrix ({verdict})</h1>"
        f'<p class="legend">{legend}</p>'
        "<p>Each cell links to that run's report; the rule that decided is under the outcome "
        "(<code>?</code>: rules acted but none can be tied to this workload's flows).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{notes}"
        f"<p><small>testbed {escape(__version__)}</small></p></body></html>\n"
    )


def write_matrix_html(matrix: Matrix, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    tmp = index.with_name("index.html.tmp")
    tmp.write_text(matrix_page(matrix))
    tmp.replace(index)
    return index

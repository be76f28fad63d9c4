"""Console output from result dicts: the call table, tolerance of old results, the summary line."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from test_report_data import all_results, error_result, legacy_result, rich_result

from testbed.report.console import ProgressBoard, format_call_table, print_result, print_summary
from testbed.report.digest import call_digest, call_loss_pct


def _printed(result: dict[str, Any]) -> str:
    out = io.StringIO()
    print_result(result, out)
    return out.getvalue()


def test_legacy_result_prints_a_table_with_dashes_for_missing_fields() -> None:
    text = _printed(legacy_result())
    lines = text.splitlines()
    assert lines[0] == "PASS  baseline  (7.9 s, scenarios/baseline.yaml)"
    header, row = lines[1].split(), lines[2].split()
    assert header == ["call", "outcome", "setup", "MOS", "loss", "why", "it", "failed"]
    # No outcome/MOS in schema 1: derived "connected", MOS unknown; loss from RTCP counts 6/251.
    assert row == ["direct-audio", "connected", "95", "ms", "—", "2.4%"]
    assert "censor: 1104 packets, 218112 bytes, 1 flows" in text
    assert "[ok  ] direct-audio: connected == true: connected in 95 ms" in text


def test_rich_result_shows_outcome_mos_loss_and_why() -> None:
    text = _printed(rich_result())
    assert text.startswith("FAIL  dtls-cut  (14.2 s, scenarios/dtls-cut.yaml)\n")
    row = next(line for line in text.splitlines() if line.strip().startswith("video-call"))
    assert "blocked" in row and "88 ms" in row and "1.4" in row and "60.5%" in row
    assert "media stopped at 4.0 s" in row and "loss 58% > 10%" in row and row.endswith("…")
    # The censor line names the event that stopped traffic, not the first window/match.
    assert "(204 drop); 4 censor event(s), cut by dtls-cut at 4.2 s" in text
    assert "[FAIL] video-call: loss <= 5%: loss 58.0% > 5%" in text
    assert "    rules: dtls-cut (cut after 3.5 s): 1 flow(s), 204 dropped\n" in text
    assert "    probe        node    exit    time\n    https-probe  caller    28  5.01 s\n" in text


def test_error_result_prints_the_error_and_no_table() -> None:
    text = _printed(error_result())
    assert text.startswith("ERROR censor-dies  (2.5 s, scenarios/censor-dies.yaml)\n")
    assert "    the censor engine exited unexpectedly mid-run (exit code 1).\n" in text
    assert "outcome" not in text  # no calls ran: no table


def test_minimal_dict_does_not_break() -> None:
    text = _printed({"name": "x", "passed": False, "calls": [{"name": "c"}], "censor": {}})
    assert text.startswith("FAIL  x  (—, ?)")
    assert "c     failed" in text


def test_long_reasons_are_clipped_in_the_table_only() -> None:
    r = rich_result()
    r["calls"][0]["error"] = "x" * 300
    table = format_call_table(r)
    assert table[1].endswith("…") and len(table[1]) < 200
    assert "x" * 300 not in "\n".join(table)


def test_summary_last_line_is_exact() -> None:
    out = io.StringIO()
    print_summary(all_results(), out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "1 passed, 2 failed"
    assert "FAIL  dtls-cut  (scenarios/dtls-cut.yaml)" in lines
    out = io.StringIO()
    print_summary([], out)
    assert out.getvalue().splitlines()[-1] == "0 passed, 0 failed"


@dataclass
class FakeScenarioResult:
    """Stands in for runner.ScenarioResult during the switch-over: anything with to_json()."""

    doc: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.doc


def test_objects_with_to_json_are_accepted() -> None:
    out = io.StringIO()
    print_result(FakeScenarioResult(legacy_result()), out)
    print_summary([FakeScenarioResult(legacy_result())], out)
    assert out.getvalue().startswith("PASS  baseline")
    assert out.getvalue().endswith("1 passed, 0 failed\n")


def test_loss_prefers_samples_then_streams() -> None:
    r = rich_result()
    call = r["calls"][0]
    assert call_loss_pct(call) == call_digest(call).loss_pct
    assert 60 < (call_loss_pct(call) or 0) < 61
    del call["samples"]
    assert call_loss_pct(call) == call_loss_pct(legacy_result()["calls"][0])
    call["loss_pct"] = 12.5
    assert call_loss_pct(call) == 12.5
    # Negative RTCP cumulative loss (duplicates) is not a gain.
    assert (
        call_loss_pct({"streams": [{"direction": "recv", "kind": "audio", "packets_received": 10, "packets_lost": -2}]})
        == 0.0
    )
    assert call_loss_pct({"streams": []}) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    board = ProgressBoard(out, live=False)
    board.start("baseline", "scenarios/baseline.yaml")
    board.for_scenario("baseline")("starting censor")
    assert out.getvalue() == "RUN   baseline  (scenarios/baseline.yaml)\n      [baseline] starting censor\n"


def test_progress_live_lines_are_redrawn_and_results_go_above() -> None:
    err, stdout, clock = io.StringIO(), io.StringIO(), FakeClock()
    board = ProgressBoard(err, live=True, clock=clock)
    board.start("a")
    board.start("b")
    clock.now += 2.5
    board.update("a", "placing 1 call(s)")
    assert err.getvalue().endswith("  ..  a    2.5 s  placing 1 call(s)\n  ..  b    2.5 s  starting\n")
    board.print_result(legacy_result() | {"name": "a"}, stdout)
    assert stdout.getvalue().startswith("PASS  a  ")
    # The two live lines were erased before the result, and only b's was drawn again.
    assert err.getvalue().endswith("\x1b[2F\x1b[J  ..  b    2.5 s  starting\n")
    board.close()
    assert err.getvalue().endswith("\x1b[1F\x1b[J")


def test_tick_redraws_only_live_boards() -> None:
    import asyncio

    async def run(live: bool) -> str:
        out, clock = io.StringIO(), FakeClock()
        board = ProgressBoard(out, live=live, clock=clock)
        board.start("a")
        before = out.getvalue()
        clock.now += 3.0
        task = asyncio.create_task(board.tick(0))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        return out.getvalue()[len(before) :]

    assert asyncio.run(run(live=True)).endswith("\x1b[1F\x1b[J  ..  a    3.0 s  starting\n")
    assert asyncio.run(run(live=False)) == ""


def test_censor_line_counts_every_flow_not_only_those_listed() -> None:
    from testbed.report.console import _censor_line

    censor = {"packets": 5000, "bytes": 1, "flows": [{}] * 1000, "flows_total": 5000, "flows_omitted": 4000}
    assert "5000 flows" in (_censor_line(censor) or "")

"""Processes a run did not start itself: a background job left by `testbed exec`, a killed owner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.net import runs
from testbed.tools.updown import session

pytestmark = pytest.mark.netns


def _running(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def test_down_ends_a_background_process_started_with_exec() -> None:
    marker = f"sleep 4242{os.getpid() % 1000}"  # unique argv to find it by
    scenario = {"name": "strays", "nodes": {"caller": {"side": "inside"}, "server": {"side": "outside"}}}
    with session(scenario) as s:
        s.run("server", ["sh", "-c", f"nohup {marker} >/dev/null 2>&1 &"], timeout=30)
        assert _running(marker), "the background job did not start"
    # `down` removed the namespace, and with it what was still running inside.
    assert _running(marker) == []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert f"tb-{s.run_id}-" not in out


def test_an_unreaped_owner_counts_as_gone(tmp_path: Path) -> None:
    # `testbed clean` right after `kill -9` of a run: the owner is a zombie until its parent
    # reaps it, and must not keep the run "alive".
    child = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "owner.json").write_text(
            f'{{"pid": {child.pid}, "start_ticks": {runs.process_start_ticks(child.pid)}}}'
        )
        assert runs.owner_alive(tmp_path)
        child.kill()
        for _ in range(200):  # not reaped (no wait()): a zombie
            if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            os.sched_yield()
        assert not runs.owner_alive(tmp_path)
    finally:
        child.kill()
        child.wait()


def test_a_probe_that_times_out_takes_its_pipeline_with_it(tmp_path: Path) -> None:
    # `sleep | cat` under sh: the probe's timeout must end the sleep too, not only the shell. A
    # second probe, later in the same run, looks for it (strays are also ended when the run's
    # namespaces go, so looking after the run would prove nothing).
    marker = f"sleep 4711{os.getpid() % 1000}"
    scenario = tmp_path / "probe-group.yaml"
    scenario.write_text(
        "name: probe-group\n"
        "probes:\n"
        f"  - {{name: slow, node: caller, timeout: 1s, run: [sh, -c, '{marker} | cat'], expect: {{exit: nonzero}}}}\n"
        # "[s]leep": the pattern must not match the looking shell's own command line
        f"  - {{name: look, node: caller, start: 4s, run: [sh, -c, '! pgrep -f \"[s]{marker[1:]}\"']}}\n"
    )
    out = tmp_path / "out.json"
    p = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "run", str(scenario), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert _running(marker) == []

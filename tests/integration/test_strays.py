"""Processes a run did not start itself: a background job left by `testbed exec`, a killed owner."""

from __future__ import annotations

import os
import subprocess
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

"""`testbed ... | head -1`: a reader that goes away ends a command quietly, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PCAPS = Path(__file__).resolve().parents[3] / "shared" / "pcaps"
CLI = [sys.executable, "-m", "testbed.cli"]


def run_into_closed_pipe(argv: list[str], *, unbuffered: bool) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone: the first write fails (EPIPE)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120, check=False, env=env)
    finally:
        os.close(w)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["classify", str(PCAPS / "dtls.pcap")], id="classify"),
        pytest.param(["classify", "--json", str(PCAPS / "dtls.pcap")], id="classify-json"),
        pytest.param(["--help"], id="help"),
        pytest.param(["--version"], id="version"),
        pytest.param(["up", "--help"], id="up-help"),
    ],
)
def test_a_reader_gone_after_the_work_keeps_the_exit_status(args: list[str], unbuffered: bool) -> None:
    # Only printing was left when the write failed: the command's own status (0), nothing on
    # stderr (before: "Exception ignored ... BrokenPipeError" and status 120).
    proc = run_into_closed_pipe([*CLI, *args], unbuffered=unbuffered)
    assert proc.stderr == ""
    assert proc.returncode == 0

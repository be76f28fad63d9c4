"""Who owns a run: a directory per run under /run/testbed with an owner record.

``testbed clean`` must remove what a killed run left behind, and must never touch a run that is
still going (another terminal, a parallel CI job).  A run is alive when the process in its owner
record exists *and* started at the recorded time (so a recycled PID does not keep garbage alive).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from testbed.errors import PrivilegeError, RunError
from testbed.net import names


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat.rsplit(")", 1)[1].split()
    if rest[0] == "Z":
        return None  # dead, only not reaped yet (a run killed a moment ago): gone for our purposes
    return int(rest[19])


def owner_alive(run_dir: Path) -> bool:
    try:
        owner = json.loads((run_dir / "owner.json").read_text())
        pid = int(owner["pid"])
        ticks = int(owner["start_ticks"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return process_start_ticks(pid) == ticks


@contextlib.contextmanager
def registered_run(run_id: str, purpose: str = "run") -> Iterator[Path]:
    """Create /run/testbed/<rid>/ with our owner record; remove it (and all in it) on exit."""
    path = names.run_dir(run_id)
    try:
        names.RUN_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        raise RunError(
            f"run id {run_id} is taken by another run ({path} exists); run again (a new id is drawn)"
        ) from None
    except PermissionError:
        raise PrivilegeError(
            f"cannot create {path}: testbed needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN); "
            "run it with sudo, or check `testbed doctor`"
        ) from None
    owner = {
        "pid": os.getpid(),
        "start_ticks": process_start_ticks(os.getpid()),
        "purpose": purpose,
        "argv": sys.argv,
        "created": time.time(),
    }
    (path / "owner.json").write_text(json.dumps(owner))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

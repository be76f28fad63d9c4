"""Processes still inside a namespace that is about to be deleted.

Deleting a namespace's mount does not end the processes in it: a background process started
with ``testbed exec NODE -- sh -c 'server &'`` (or a node process whose owner died) keeps the
namespace alive, unreachable and invisible to ``ip netns``. Whoever deletes a run's namespace
first ends what is left in it: SIGTERM, a short grace, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = ["end_processes_in_netns", "is_zombie", "pids_in_netns"]

NETNS_RUN_DIR = Path("/run/netns")


def pids_in_netns(ns_path: Path) -> list[int]:
    """Every process whose network namespace is the one mounted at ``ns_path``."""
    try:
        target = os.stat(ns_path)
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev) and not is_zombie(int(entry)):
            pids.append(int(entry))
    return pids


def is_zombie(pid: int) -> bool:
    """Dead but not reaped yet, or gone altogether."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait until every pid is gone (or a zombie); return those still running."""
    deadline = time.monotonic() + timeout_s
    while pids:
        pids = [p for p in pids if not is_zombie(p)]
        if not pids or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return pids


def end_processes_in_netns(name: str, *, grace_s: float = 1.0, sig: signal.Signals = signal.SIGTERM) -> list[int]:
    """End every process in namespace ``name`` (``sig``, then SIGKILL after ``grace_s``);
    returns the pids that were signalled."""
    pids = pids_in_netns(NETNS_RUN_DIR / name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    left = wait_gone(pids, grace_s) if sig != signal.SIGKILL else pids
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(left, 3.0)
    return pids

"""Run a program inside a named network namespace: ``python -m testbed.net.nsexec NETNS -- CMD...``.

Switching namespaces is process-global (``setns(2)`` applies to the calling thread, and pyroute2's
helper to the whole process), so the orchestrator never does it in its own event-loop thread.  It
starts this tiny launcher instead, which joins the namespace in a fresh single-threaded process and
then ``exec``s the command.  The launcher also asks the kernel to SIGKILL the command when the parent
(the orchestrator) dies, so a ``kill -9`` of a run does not leave calls or censors running inside
namespaces that ``testbed clean`` then has to hunt down.

It deliberately imports nothing heavy: it is on the start-up path of every process in a run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NETNS_RUN_DIR = "/run/netns"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def enter_netns(name: str) -> None:
    """Move the *calling process* (which must be single-threaded) into network namespace ``name``."""
    path = name if name.startswith("/") else os.path.join(NETNS_RUN_DIR, name)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent exits (survives exec)."""
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may already have died between fork and prctl: then we were re-parented.
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(137)


def main(argv: list[str]) -> int:
    usage = "usage: python -m testbed.net.nsexec [--parent PID] NETNS -- CMD [ARGS...]"
    parent: int | None = None
    if argv[:1] == ["--parent"] and len(argv) >= 2:
        parent = int(argv[1])
        argv = argv[2:]
    if len(argv) < 3 or argv[1] != "--":
        print(usage, file=sys.stderr)
        return 2
    netns, cmd = argv[0], argv[2:]
    if parent is not None:
        die_with_parent(parent)
    try:
        enter_netns(netns)
    except OSError as exc:
        print(f"nsexec: cannot enter network namespace {netns!r}: {exc}", file=sys.stderr)
        return 126
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f"nsexec: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

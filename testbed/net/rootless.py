"""Rootless runs: a normal user's ``testbed run`` re-enters itself in namespaces it owns.

An unprivileged process may create a *user* namespace in which it is root (uid 0 mapped to its own
uid, nothing else), and with it network, mount and PID namespaces owned by that user namespace. In
there it holds CAP_NET_ADMIN and CAP_SYS_ADMIN over everything the run creates: namespaces, veths,
iptables rules, the NFQUEUE binding, TUN devices, /proc/sys/net. Nothing it does reaches the host:

- **network**: the top process gets a fresh network namespace (only ``lo``), so even a bug could not
  touch the host's links, routes or iptables;
- **mount**: a private tmpfs on ``/run`` holds ``/run/netns`` (the namespaces' bind mounts) and
  ``/run/testbed`` (run directories), so nothing is written to the host's ``/run``; ``/proc`` is
  mounted afresh for the PID namespace;
- **PID**: every process of the run lives in a PID namespace whose init is ours. When the run ends,
  however it ends (``kill -9`` of any of its processes included), the init exits, the kernel kills
  every process left in it, and the namespaces die with their last process: nothing to clean.

Three processes: the *outer* process (the user's, in the new user namespace) waits for the *init*
(PID 1 of the new PID namespace), which reaps every orphan and waits for the *worker* (PID 2), which
returns from :func:`enter` and goes on as the ordinary command. Signals sent with ``kill`` to the outer
process or the init are passed down to the worker; a terminal's Ctrl-C reaches the worker directly
(the three share a process group), so it is not passed on a second time.

State lives and dies with the namespaces, so ``up``/``exec``/``down`` (which span several commands)
are root-only; see docs/rootless.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "ENV_MARK",
    "RootlessStatus",
    "enter",
    "in_rootless",
    "needs_rootless",
    "rootless_status",
]

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 1 << 18
PR_SET_PDEATHSIG: Final = 1
# siginfo's si_code of a signal the kernel itself sent, e.g. a terminal's Ctrl-C to its foreground group.
SI_KERNEL: Final = 0x80

# Set in the worker's environment: the command runs inside a rootless namespace (and its children
# know it: Chromium and the doctor read it).
ENV_MARK: Final = "TESTBED_ROOTLESS"

FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

# kernel.unprivileged_userns_clone is Debian's and Ubuntu's own switch; the AppArmor one is Ubuntu
# 23.10+'s; user.max_user_namespaces is upstream's (0 disables user namespaces for everyone).
SYSCTL_USERNS_CLONE: Final = "kernel/unprivileged_userns_clone"
SYSCTL_MAX_USERNS: Final = "user/max_user_namespaces"
SYSCTL_APPARMOR: Final = "kernel/apparmor_restrict_unprivileged_userns"


@dataclass(frozen=True, slots=True)
class RootlessStatus:
    """Whether a normal user can run scenarios here, and if not, why and how to fix it."""

    available: bool
    detail: str
    fix: str = ""


def read_sysctl(name: str) -> str | None:
    """The value of /proc/sys/NAME (``kernel/unprivileged_userns_clone``), or None if it does not exist."""
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def rootless_status(read: Callable[[str], str | None] = read_sysctl) -> RootlessStatus:
    """What the kernel's switches say about unprivileged user namespaces (``read`` is injected by tests)."""
    if read(SYSCTL_USERNS_CLONE) == "0":
        return RootlessStatus(
            False,
            "kernel.unprivileged_userns_clone=0: unprivileged user namespaces are disabled",
            "as root: sysctl -w kernel.unprivileged_userns_clone=1 "
            "(and put it in /etc/sysctl.d/ to keep it), or run testbed as root",
        )
    if read(SYSCTL_MAX_USERNS) == "0":
        return RootlessStatus(
            False,
            "user.max_user_namespaces=0: user namespaces are disabled",
            "as root: sysctl -w user.max_user_namespaces=15000 "
            "(and put it in /etc/sysctl.d/ to keep it), or run testbed as root",
        )
    if read(SYSCTL_APPARMOR) == "1":
        return RootlessStatus(
            False,
            "kernel.apparmor_restrict_unprivileged_userns=1: AppArmor denies unprivileged user namespaces",
            "as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
            "with `userns,` for the venv's python; or run testbed as root",
        )
    return RootlessStatus(True, "unprivileged user namespaces are enabled (a normal user can `testbed run`)")


def probe_userns() -> str | None:
    """Try what ``enter`` does (a user and a network namespace) in a throwaway process: None if the
    kernel allows it, else its error. Catches what no sysctl tells (a container's seccomp filter, an
    LSM policy)."""
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "true"], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        return None  # no util-linux unshare to try with: the sysctls are all we know
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def in_rootless() -> bool:
    return os.environ.get(ENV_MARK) == "1"


def needs_rootless() -> bool:
    """Not root, and not yet inside our own namespaces."""
    return os.geteuid() != 0 and not in_rootless()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc().mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() if data else None
    )
    _check(rc, f"mount {fstype or source} on {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _unshare(uid: int, gid: int) -> None:
    libc = _libc()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
    # One uid and one gid, our own, as root: an unprivileged process may write exactly this map
    # (no newuidmap needed), once setgroups is denied.
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1\n")
    _write("/proc/self/gid_map", f"0 {gid} 1\n")


def _prepare_mounts() -> None:
    """In the init (PID 1), before the worker starts: private mounts, our /proc, /run and /sys."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The host's /run is root's and testbed writes /run/netns and /run/testbed: a private tmpfs
    # hides the host's and keeps everything the run writes in memory that dies with the namespace.
    _mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for d in ("/run/netns", "/run/testbed", "/run/lock"):
        os.makedirs(d, exist_ok=True)
    # /sys of our network namespace (not the host's links); optional, nothing needs it to start.
    with contextlib.suppress(OSError):
        _mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The top network namespace starts with lo down; some tools expect 127.0.0.1 to answer.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False, capture_output=True)


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _supervise(child: int, *, reap_all: bool) -> int:
    """Wait for ``child``, passing down signals sent to us with kill(2); return its exit code.

    The init (``reap_all``) also reaps every orphan re-parented to it, so none stays a zombie that
    ``/proc`` scans (strays.py, owner records) would see."""
    watched = {*FORWARDED, signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            if info.si_code != SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, info.si_signo)
            continue
        while True:
            try:
                pid, status = os.waitpid(-1 if reap_all else child, os.WNOHANG)
            except ChildProcessError:
                return 1
            if pid == 0:
                break
            if pid == child:
                return _status_code(status)


def enter() -> None:
    """Re-enter this command in a user, mount, network and PID namespace of our own.

    Returns only in the worker process, which then runs the command as root of the namespaces;
    the outer process and the init exit with the worker's exit code and never return. Raises
    OSError (in the calling process, before anything was forked) when the kernel refuses."""
    uid, gid = os.geteuid(), os.getegid()
    _unshare(uid, gid)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    sys.stdout.flush()
    sys.stderr.flush()
    # The outer process holds the write end (and never writes): EOF on the read end tells the init
    # that the outer process is gone (getppid() says 0 across a PID namespace, whoever the parent is).
    alive_r, alive_w = os.pipe()
    init = os.fork()
    if init != 0:
        os.close(alive_r)
        os._exit(_supervise(init, reap_all=False))
    os.close(alive_w)
    # PID 1 of the new PID namespace. A kill -9 of the outer process kills us, and with us (the
    # init) every process of the namespace; if it died before prctl took effect, we go now.
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if select.select([alive_r], [], [], 0)[0]:
        os._exit(137)
    os.close(alive_r)
    try:
        _prepare_mounts()
    except OSError as exc:
        print(f"testbed: error: rootless mode: {exc}; run as root, or see `testbed doctor`", file=sys.stderr)
        os._exit(2)
    os.environ[ENV_MARK] = "1"
    worker = os.fork()
    if worker != 0:
        os._exit(_supervise(worker, reap_all=True))
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

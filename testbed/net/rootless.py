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
(PID 1 of the new PID namespace), which reaps every orphan and waits for the *worker*, which
returns from :func:`enter` and goes on as the ordinary command. Signals sent with ``kill`` to the outer
process or the init are passed down to the worker; a terminal's Ctrl-C reaches the worker directly
(the three share a process group), so it is not passed on a second time.

State lives and dies with the namespaces: ``up`` leaves a *holder* (the outer process, detached)
that keeps them until ``down``, and ``exec``/``down`` join its namespaces (``join_held``); see
docs/rootless.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import select
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

__all__ = [
    "ENV_MARK",
    "RootlessStatus",
    "enter",
    "in_rootless",
    "join_held",
    "live_holders",
    "needs_rootless",
    "probe_userns",
    "read_sysctl",
    "report_held",
    "rootless_status",
    "start_held",
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


def _supervise(child: int, *, reap_all: bool, hold: bool = False) -> int:
    """Wait for ``child``, passing down signals sent to us with kill(2); return its exit code.

    The init (``reap_all``) also reaps every orphan re-parented to it, so none stays a zombie that
    ``/proc`` scans (strays.py, owner records) would see. With ``hold`` (`testbed up`), it goes on
    after the child until no process is left (the session's supervisor ends at `testbed down`),
    and a signal then goes to every process of the namespace."""
    watched = {*FORWARDED, signal.SIGCHLD}
    code: int | None = None
    draining = False  # hold: our children are gone, but joined ones (`exec`, `down`) still run
    while True:
        if draining:
            if not _others_in_pid_namespace():
                return 1 if code is None else code
            # Joined processes are not our children: their end sends us nothing, so look again soon.
            polled = signal.sigtimedwait(watched, 0.2)
            if polled is None:
                continue
            info = polled
        else:
            info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            if info.si_code != SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child if code is None else -1, info.si_signo)
            continue
        while True:
            try:
                pid, status = os.waitpid(-1 if reap_all else child, os.WNOHANG)
            except ChildProcessError:
                if not hold:
                    return 1 if code is None else code
                draining = True
                break
            if pid == 0:
                break
            if pid == child:
                code = _status_code(status)
                if not hold:
                    return code


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _python_handlers() -> dict[signal.Signals, _Handler]:
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict[signal.Signals, _Handler], mask: set[int | signal.Signals]) -> None:
    """In the worker: the command's own signal handling, as before the forks. testbed.net resets
    SIGINT/SIGTERM to the default in every forked child (for pyroute2's helpers), which would make
    Ctrl-C kill the worker outright instead of raising KeyboardInterrupt and unwinding the run."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _others_in_pid_namespace() -> bool:
    """Any process but us (the init, PID 1) in our PID namespace (/proc is its own)."""
    return any(e.isdigit() and e != "1" for e in os.listdir("/proc"))


def enter(*, hold: bool = False, worker_fds: tuple[int, ...] = ()) -> None:
    """Re-enter this command in a user, mount, network and PID namespace of our own.

    Returns only in the worker process, which then runs the command as root of the namespaces;
    the outer process and the init exit with the worker's exit code and never return (with
    ``hold``, only once every process of the namespace is gone). Raises OSError (in the calling
    process, before anything was forked) when the kernel refuses. ``worker_fds`` are closed in
    the outer process and the init (a pipe whose reader waits for the worker's end-of-file)."""
    uid, gid = os.geteuid(), os.getegid()
    handlers = _python_handlers()
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
        for fd in worker_fds:
            os.close(fd)
        if hold:
            _quiet_stdio()
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
        for fd in worker_fds:
            os.close(fd)
        if hold:
            _quiet_stdio()
        os._exit(_supervise(worker, reap_all=True, hold=hold))
    _restore(handlers, old_mask)


def _quiet_stdio() -> None:
    """A holder outlives the command: it must not keep the terminal or a pipe (`up | cat`) open."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


# ---- `testbed up` / `exec` / `down` as a normal user: a holder keeps the namespaces -------------------
#
# `up` forks a holder (the outer process of enter(hold=True), in a session of its own) and waits for its
# worker to report; the user's command then exits while the holder keeps the namespaces until `down`.
# The holder's pid is kept in a per-user directory of the host's /tmp; `exec` and `down` join its user,
# mount and PID namespaces (setns) and then run as under root.

_held_report: int | None = None


def holders_dir(uid: int | None = None) -> Path:
    return Path("/tmp") / f"testbed-rootless-{os.geteuid() if uid is None else uid}"


def _own_dir(path: Path) -> Path:
    """Create (0700) or check the holders' directory: /tmp is everyone's, so it must be ours."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise OSError(f"{path} is not a private directory of uid {os.geteuid()}; remove it")
    return path


def start_held() -> None:
    """`testbed up` as a normal user: returns in the worker inside a holder's namespaces; the user's
    own process waits for :func:`report_held`, records the holder and exits with the worker's code."""
    global _held_report
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    outer = os.fork()
    if outer != 0:
        os.close(report_w)
        os._exit(_await_held(outer, report_r))
    os.close(report_r)
    os.setsid()  # the terminal's Ctrl-C and hang-up are not the held network's
    try:
        enter(hold=True, worker_fds=(report_w,))
    except OSError as exc:
        print(f"testbed: error: rootless mode: the kernel refused a user namespace ({exc})", file=sys.stderr)
        os._exit(2)
    _held_report = report_w


def report_held(code: int) -> None:
    """In the worker of :func:`start_held`: tell the user's process how `up` ended, and its run id."""
    if _held_report is None:
        return
    root = Path("/run/testbed")
    rids = sorted(d.name for d in root.iterdir() if (d / "state.json").is_file()) if root.is_dir() else []
    with os.fdopen(_held_report, "w") as f:
        f.write(json.dumps({"code": code, "run_id": rids[0] if rids else None}) + "\n")


def _await_held(outer: int, report_r: int) -> int:
    try:
        with os.fdopen(report_r) as f:
            text = f.readline()  # one line; end-of-file if the worker died without it
    except KeyboardInterrupt:
        os.kill(outer, signal.SIGKILL)  # everything in its namespaces dies with it
        return 130
    try:
        msg = json.loads(text)
        code, rid = int(msg["code"]), msg["run_id"]
    except (ValueError, KeyError, TypeError):
        return 1  # the worker died before reporting (its error is on stderr); the holder goes with it
    if code == 0 and isinstance(rid, str):
        holder = {"pid": outer, "start_ticks": _start_ticks(outer)}
        (_own_dir(holders_dir()) / rid).write_text(json.dumps(holder))
    return code


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def live_holders() -> dict[str, int]:
    """Run id -> holder pid, for this user's held networks whose holder still runs (stale records go)."""
    out: dict[str, int] = {}
    d = holders_dir()
    if not d.is_dir():
        return out
    for f in d.iterdir():
        try:
            rec = json.loads(f.read_text())
            pid, ticks = int(rec["pid"]), rec["start_ticks"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if ticks is not None and _start_ticks(pid) == ticks:
            out[f.name] = pid
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return out


def join_held(run_id: str | None, *, forget: bool = False) -> str:
    """`exec`/`down` as a normal user: join the holder's namespaces; returns the run id in a child in
    its PID namespace, while this process waits for that child and exits with its code (with
    ``forget``, for `down`, removing the holder's record when the child succeeded)."""
    holders = live_holders()
    if run_id is not None:
        if run_id not in holders:
            raise LookupError(f"no rootless `testbed up` session of yours with run id {run_id!r}")
        rid = run_id
    elif not holders:
        raise LookupError("nothing is up: start a network with `testbed up SCENARIO` first")
    elif len(holders) > 1:
        raise LookupError(f"several sessions are up ({', '.join(sorted(holders))}); choose one with --run RID")
    else:
        (rid,) = holders
    pid = holders[rid]
    record = holders_dir() / rid  # named by our uid as the host sees it: inside, geteuid() says 0
    cwd = os.getcwd()
    libc = _libc()
    # The user namespace first: in it we hold the capabilities the other joins need.
    joins = (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS), ("pid_for_children", CLONE_NEWPID))
    # Every fd opened first: once in its mount namespace, /proc is its PID namespace's, without the holder.
    fds = [(ns, flag, os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)) for ns, flag in joins]
    try:
        for ns, flag, fd in fds:
            _check(libc.setns(fd, flag), f"setns({ns} of holder {pid})")
    finally:
        for _ns, _flag, fd in fds:
            os.close(fd)
    with contextlib.suppress(OSError):
        os.chdir(cwd)  # joining a mount namespace moved us to its root
    os.environ[ENV_MARK] = "1"
    handlers = _python_handlers()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child != 0:
        code = _supervise(child, reap_all=False)
        if forget and code == 0:
            with contextlib.suppress(OSError):
                record.unlink()
        os._exit(code)
    _restore(handlers, old_mask)
    return rid

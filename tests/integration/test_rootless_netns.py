"""Rootless runs: a scenario run by an unprivileged user works, and leaves the host as it was.

Runs as root (to create a throwaway system user and to see the whole host), then runs testbed as
that user. The user must reach a venv: the project's own when every directory above it is open to
others; otherwise (CI's venv is made with a pyenv python under /root, mode 0700) a venv made once
for this module with the system's /usr/bin/python3 and `pip install` of this repository, in a
temporary directory under /var/tmp, removed at the end. TESTBED_ROOTLESS_VENV names another venv.
The scenario is copied where the user can read it (the clone may be under a 0700 directory too).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.net.rootless import holders_dir

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "scenarios" / "baseline.yaml"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _open_to_others(path: Path) -> bool:
    """Every directory above ``path`` is searchable by others, and ``path`` is executable by them."""
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [*path.parents, path])


@pytest.fixture(scope="module")
def reachable() -> Iterator[tuple[Path, Path]]:
    """(a testbed executable, the baseline scenario) that an unprivileged user can reach."""
    base = Path(tempfile.mkdtemp(prefix="tb-rootless-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        scenario = base / "baseline.yaml"
        shutil.copyfile(BASELINE, scenario)
        scenario.chmod(0o644)
        own = Path(sys.prefix) / "bin" / "testbed"
        if os.environ.get("TESTBED_ROOTLESS_VENV"):
            testbed = Path(os.environ["TESTBED_ROOTLESS_VENV"]) / "bin" / "testbed"
        elif _open_to_others(own) and _open_to_others(Path(sys.executable)) and _open_to_others(REPO):
            testbed = own
        else:
            testbed = _system_venv(base / "venv")
        yield testbed, scenario
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _system_venv(venv: Path) -> Path:
    if not SYSTEM_PYTHON.exists():
        pytest.fail(
            f"this project's venv ({sys.prefix}) is not reachable by other users and there is no {SYSTEM_PYTHON} "
            "to make one that is: install python3 and python3-venv (apt-get install python3-venv), or set "
            "TESTBED_ROOTLESS_VENV to a venv outside 0700 directories"
        )
    for argv in (
        [str(SYSTEM_PYTHON), "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", str(REPO)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"making a venv other users can reach failed: {' '.join(argv)}: {done.stderr[-2000:]}")
    return venv / "bin" / "testbed"


@pytest.fixture
def user() -> Iterator[str]:
    """A temporary system user with no home; removed (with anything it still runs) in the end."""
    name = f"tbrl{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    uid = _uid(name)
    try:
        yield name
    finally:
        for pid in _pids_of(uid):  # only the throwaway user's processes, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(holders_dir(uid), ignore_errors=True)  # a rootless `up`'s records
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def out(user: str) -> Iterator[Path]:
    """A directory the user may write (--json files), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="tb-rootless-"))
    os.chown(path, _uid(user), -1)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _require_reachable(user: str, testbed: Path, scenario: Path) -> None:
    """The user must be able to run the venv's testbed and its interpreter, and read the scenario."""
    interpreter = (testbed.parent / "python").resolve()
    for path, test in ((testbed, "-x"), (interpreter, "-x"), (scenario, "-r")):
        done = subprocess.run(["runuser", "-u", user, "--", "test", test, str(path)], check=False)
        if done.returncode != 0:
            blocked = next((p for p in [*reversed(path.parents), path] if not os.stat(p).st_mode & 0o001), path)
            pytest.fail(
                f"{path} is not reachable by an unprivileged user ({blocked} has mode "
                f"{os.stat(blocked).st_mode & 0o777:o}): a rootless run needs a venv and repo outside 0700 "
                "directories; make a venv with a system python (/usr/bin/python3 -m venv V && V/bin/pip install "
                ".) and set TESTBED_ROOTLESS_VENV=V"
            )


def _uid(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid_line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
        if int(uid_line.split()[1]) == uid:
            pids.append(int(entry))
    return pids


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _mounts() -> set[str]:
    """The host's mount points, less the namespace bind mounts of other runs going on right now."""
    points = {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()}
    return {p for p in points if not p.startswith("/run/netns/")}


def _wait_gone(uid: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _pids_of(uid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_a_normal_user_runs_the_baseline_and_the_host_is_untouched(
    user: str, out: Path, unchanged_host: dict[str, str], reachable: tuple[Path, Path]
) -> None:
    # unchanged_host (conftest.py): namespaces, links, addresses, routes, iptables, /run/testbed.
    testbed, scenario = reachable
    _require_reachable(user, testbed, scenario)
    uid = _uid(user)
    mounts = _mounts()
    done = subprocess.run(
        ["runuser", "-u", user, "--", str(testbed), "run", str(scenario), "--json", str(out / "r.json")],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((out / "r.json").read_text())
    (result,) = doc["scenarios"]
    assert result["passed"], result
    (call,) = result["calls"]
    assert call["outcome"] == "ok"
    # The censor really inspected the call: its queue saw the media.
    assert result["censor"]["packets"] > 100 and result["censor"]["flows_total"] >= 1
    assert (out / "r.json").stat().st_uid == uid  # written as the user, not as root
    assert _wait_gone(uid, 30) == [], "processes of the rootless run outlived it"
    assert _mounts() == mounts


def _start(user: str, testbed: Path, scenario: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["runuser", "-u", user, "--", str(testbed), "run", str(scenario), "--json", str(out / "r.json")],
        cwd=out,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_connected(runner: subprocess.Popen[str]) -> list[str]:
    """Read the run's progress until its call connects: namespaces, censor, endpoints all up."""
    assert runner.stderr is not None
    lines = []
    for line in runner.stderr:
        lines.append(line)
        if "connected at" in line:
            return lines
    pytest.fail(f"the rootless run ended before its call connected (exit {runner.wait()}): {''.join(lines)}")


def test_sigterm_to_a_rootless_run_is_passed_on_and_it_unwinds(
    user: str, out: Path, unchanged_host: dict[str, str], reachable: tuple[Path, Path]
) -> None:
    testbed, scenario = reachable
    _require_reachable(user, testbed, scenario)
    uid = _uid(user)
    runner = _start(user, testbed, scenario, out)
    try:
        _wait_connected(runner)
        (outer,) = [p for p in _pids_of(uid) if _ppid(p) == runner.pid]
        os.kill(outer, signal.SIGTERM)  # kill(2), not a terminal: the outer process must pass it on
        assert runner.stderr is not None
        rest = runner.stderr.read()
        assert runner.wait(timeout=120) == 143, rest
        assert "terminated; everything the run created was removed" in rest
        assert _wait_gone(uid, 30) == []
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stderr is not None:
            runner.stderr.close()


def test_a_rootless_run_killed_with_sigkill_leaves_nothing(
    user: str, out: Path, unchanged_host: dict[str, str], reachable: tuple[Path, Path]
) -> None:
    testbed, scenario = reachable
    _require_reachable(user, testbed, scenario)
    uid = _uid(user)
    mounts = _mounts()
    runner = _start(user, testbed, scenario, out)
    try:
        _wait_connected(runner)
        pids = _pids_of(uid)
        assert len(pids) >= 4, pids  # outer, init, worker, censor, endpoints...
        # The user's own process (runuser's child, the outer one) dies hardest; everything else must follow.
        (outer,) = [p for p in pids if _ppid(p) == runner.pid]
        os.kill(outer, signal.SIGKILL)
        assert _wait_gone(uid, 60) == [], "processes of a killed rootless run outlived it"
        runner.wait(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stderr is not None:
            runner.stderr.close()
    assert _mounts() == mounts
    assert not (out / "r.json").exists()  # killed before it could write: nothing pretends to be a result


def test_up_exec_down_as_a_normal_user(
    user: str, out: Path, unchanged_host: dict[str, str], reachable: tuple[Path, Path]
) -> None:
    testbed, scenario = reachable
    _require_reachable(user, testbed, scenario)
    uid = _uid(user)
    scenario = out / "idle.yaml"  # (the baseline is not used here)
    scenario.write_text("name: rootless-idle\nnodes:\n  caller: {side: inside}\n  server: {side: outside}\n")
    mounts = _mounts()

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", user, "--", str(testbed), *argv],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    try:
        # `up` returns (its stdout piped and read to the end: the holder keeps no pipe open)...
        up = cli("up", str(scenario), "--json", str(out / "counters.json"))
        assert up.returncode == 0, up.stdout + up.stderr
        assert "up: rootless-idle" in up.stdout
        (record,) = holders_dir(uid).iterdir()  # named by run id, in a private directory of the user's
        assert f"(run {record.name})" in up.stdout and holders_dir(uid).stat().st_mode & 0o777 == 0o700
        # ...while the holder keeps the network for later commands.
        assert len(_pids_of(uid)) >= 3
        ping = cli("exec", "caller", "--", "sh", "-c", 'ping -c 2 -W 5 "$TESTBED_ADDR_SERVER"')
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "2 received" in ping.stdout
        assert cli("exec", "server", "--", "sh", "-c", "exit 7").returncode == 7
        down = cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        counters = json.loads((out / "counters.json").read_text())
        assert counters["censor"]["packets"] >= 4  # the two pings and their replies went through the censor
        assert list(holders_dir(uid).iterdir()) == []  # `down` forgot the holder
        assert cli("down").returncode == 2  # nothing is up any more
    finally:
        if _pids_of(uid):
            cli("down")
    assert _wait_gone(uid, 30) == [], "processes of a rootless session outlived `down`"
    assert _mounts() == mounts


def test_ctrl_c_in_a_terminal_unwinds_a_rootless_run(
    user: str, unchanged_host: dict[str, str], reachable: tuple[Path, Path]
) -> None:
    # A terminal's Ctrl-C reaches every process of the foreground group: the worker must get
    # KeyboardInterrupt (not die of SIGINT) and remove what it made, as under root. setpriv, not
    # runuser: runuser turns the terminal's SIGINT into a SIGTERM of its own to the child.
    testbed, scenario = reachable
    _require_reachable(user, testbed, scenario)
    uid = _uid(user)
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the user and run testbed on the terminal
        os.chdir(scenario.parent)
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(testbed), "run", str(scenario)]
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)  # never back into pytest in the child
    out = b""
    try:
        deadline = time.monotonic() + 180
        while b"connected at" not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        assert b"connected at" in out, out.decode(errors="replace")
        os.write(fd, b"\x03")
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every process of the run closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(fd)
    text = out.decode(errors="replace")
    assert code == 130, text[-2000:]
    assert "interrupted; everything the run created was removed" in text
    assert _wait_gone(uid, 30) == []

"""Apps: the user's own programs (a VPN, a proxy, a client and its server) run inside nodes for
the whole run, started after the services and the censor and before calls and probes.

Each app is a supervised process, like a service: started in its node with ``testbed.net.nsexec``
(it dies with the orchestrator: PR_SET_PDEATHSIG), in its own session and process group, with its
own directory ``<rundir>/apps/<name>/`` as working directory. The run owns it:

- start, in ``after`` order, each waiting until it is ready (``ready:``) before the next starts;
  an app that exits first, or is not ready within ``ready_timeout``, fails the run with its last
  20 lines of output;
- watch it while the calls and probes run: an exit then fails the run the same way (but a set-up
  step, ``ready: {exit: N}``, is done once it exited);
- stop it on every exit path: SIGTERM to its process group, SIGKILL after ``GRACE_S``, then SIGKILL
  to whatever of its session is still in the node (a shell's children). ``testbed clean`` finds
  what a ``kill -9`` of testbed left by the namespace (every process in a run's namespaces is the
  run's).

Its output (stdout and stderr, interleaved) goes to ``<rundir>/apps/<name>.log``, bounded: the
first ``LOG_HEAD_BYTES`` are written as they come, then only the last ``LOG_TAIL_LINES`` lines are
kept (in memory) and written when the app stops, after a line saying how much was left out. An
app writing megabytes per second fills neither the disk nor the memory.

Limits: an app that daemonizes itself into a new session (``setsid``) leaves the process group
testbed stops; run it in the foreground (``-f``, ``--foreground``, ``-D``...).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.core.policy_regex import Regex, compile_regex
from testbed.errors import AppNotReadyError, RunError
from testbed.net.process import netns_argv
from testbed.net.topology import TopologyPlan
from testbed.records.app import AppInfo, AppResult
from testbed.scenario import template
from testbed.scenario.app_schema import AppSpec, app_order
from testbed.scenario.model import Scenario
from testbed.services.run import RunningService

__all__ = [
    "GRACE_S",
    "LOG_HEAD_BYTES",
    "LOG_TAIL_LINES",
    "BoundedLog",
    "RunningApp",
    "listening",
    "running_apps",
]

GRACE_S = 5.0
"""Between SIGTERM and SIGKILL: long enough for a VPN to tear its tunnel down."""
LOG_HEAD_BYTES = 1 << 20
LOG_TAIL_LINES = 200
_LINE_MAX = 8192
"""A longer line is cut (in the kept tail and for ``ready: {log:}``): memory stays bounded."""
_POLL_S = 0.05
ERROR_LINES = 20


class BoundedLog:
    """An app's output file: the first ``head`` bytes as they come, then a ring of the last lines
    (written with a note of what was left out on :meth:`close`). Also the app's recent lines,
    for error messages, and the readiness regex's input."""

    def __init__(self, path: Path, *, head: int = LOG_HEAD_BYTES, tail_lines: int = LOG_TAIL_LINES) -> None:
        self.path = path
        self._file = path.open("wb")
        self._head = head
        self._head_left = head
        self._tail: collections.deque[bytes] = collections.deque(maxlen=tail_lines)
        """Complete lines after the head: kept in memory, written on close."""
        self._tail_partial = b""
        self._recent: collections.deque[bytes] = collections.deque(maxlen=ERROR_LINES)
        self._partial = b""
        self.total_bytes = 0
        self.dropped_bytes = 0

    def write(self, chunk: bytes) -> list[bytes]:
        """Take a chunk of output; return the complete lines it ended (each cut to ``_LINE_MAX``)."""
        self.total_bytes += len(chunk)
        rest = chunk
        if self._head_left > 0:
            self._file.write(chunk[: self._head_left])
            self._file.flush()
            rest = chunk[self._head_left :]
            self._head_left = max(0, self._head_left - len(chunk))
        if rest:
            *done, last = (self._tail_partial + rest).split(b"\n")
            self._tail.extend(line[:_LINE_MAX] for line in done)
            self._tail_partial = last[:_LINE_MAX]
        *complete, last = (self._partial + chunk).split(b"\n")
        self._partial = last[:_LINE_MAX]
        lines = [line[:_LINE_MAX] for line in complete]
        self._recent.extend(lines)
        return lines

    def recent(self) -> list[str]:
        """The last lines (up to ERROR_LINES), the unfinished one included."""
        out = [line.decode(errors="replace") for line in self._recent]
        if self._partial:
            out.append(self._partial.decode(errors="replace"))
        return out[-ERROR_LINES:]

    def close(self) -> None:
        if self._file.closed:
            return
        if self.total_bytes > self._head:
            kept = list(self._tail) + ([self._tail_partial] if self._tail_partial else [])
            body = b"\n".join(kept) + (b"" if self._tail_partial or not kept else b"\n")
            self.dropped_bytes = max(0, self.total_bytes - self._head - len(body))
            if self.dropped_bytes:
                note = (
                    f"[testbed: {self.dropped_bytes} bytes of output left out here; the last {len(kept)} lines follow]"
                )
                self._file.write(b"\n" + note.encode() + b"\n")
            self._file.write(body)
        self._file.close()


def _netns_inode(netns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(Path("/run/netns") / netns)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _proc_netns(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def listening(pid: int, transport: str, port: int) -> bool:
    """A TCP socket listening on ``port`` / a UDP socket bound to it, in the network namespace of
    process ``pid`` (``/proc/PID/net`` shows that process's namespace: no ``setns`` needed)."""
    for suffix in ("", "6"):
        try:
            text = Path(f"/proc/{pid}/net/{transport}{suffix}").read_text()
        except OSError:
            continue
        for row in text.splitlines()[1:]:
            fields = row.split()
            if len(fields) < 4 or ":" not in fields[1]:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            # TCP state 0A is LISTEN; a UDP socket bound to the port is in any state.
            if local_port == port and (transport == "udp" or fields[3] == "0A"):
                return True
    return False


def _session_pids_in(netns: tuple[int, int], sid: int) -> list[int]:
    """Processes of session ``sid`` in the namespace (an app's children after it is gone)."""
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # After the ")": state, ppid, pgrp, session.
        if len(fields) > 3 and int(fields[3]) == sid and _proc_netns(int(entry)) == netns:
            out.append(int(entry))
    return out


@dataclass(frozen=True, slots=True)
class Launch:
    """An app with its placeholders rendered for this run."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    files: Mapping[str, str]
    ready_file: Path | None
    directory: Path


def render_app(
    spec: AppSpec, node: str, scenario: Scenario, plan: TopologyPlan, services: Sequence[RunningService], rundir: Path
) -> Launch:
    appdir = rundir / "apps" / spec.name
    addresses = {n.name: n.public_address for n in plan.nodes}
    certs: dict[str, tuple[str, str]] = {}
    for svc in services:
        if svc.cert is not None and svc.key is not None:
            certs.setdefault(svc.node, (svc.cert, svc.key))
    value = template.lookup(
        addresses=addresses,
        addresses6={n.name: n.public_address6 for n in plan.nodes if n.public_address6 is not None},
        variables=scenario.variables,
        certs=certs,
        python=sys.executable,
        rundir=str(rundir),
        appdir=str(appdir),
    )

    def r(text: str) -> str:
        return template.render(text, value)

    env = {k: r(v) for k, v in spec.env.items()}
    env |= {"TESTBED_RUN": plan.run_id, "TESTBED_NODE": node, "TESTBED_APP": spec.name}
    env |= {f"TESTBED_ADDR_{n.upper()}": a for n, a in addresses.items()}
    ready_file = None
    if spec.ready is not None and spec.ready.file is not None:
        ready_file = appdir / r(spec.ready.file)  # an absolute path replaces appdir
    return Launch(tuple(r(w) for w in spec.run), env, {k: r(v) for k, v in spec.files.items()}, ready_file, appdir)


class RunningApp:
    """One app of a run (a ``testbed.lifecycle.NodeProcess``)."""

    def __init__(
        self,
        spec: AppSpec,
        node: str,
        netns: str,
        launch: Launch,
        origin: float,
        *,
        keep: tuple[Path, str] | None = None,
    ) -> None:
        self._keep = keep
        self.kept_log: Path | None = None
        self.spec = spec
        self._node = node
        self.netns = netns
        self.launch = launch
        self.origin = origin
        self.log_path = launch.directory.parent / f"{spec.name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self._log: BoundedLog | None = None
        self._pump: asyncio.Task[None] | None = None
        self._exited: asyncio.Task[int] | None = None
        self._line_seen = asyncio.Event()
        self._regex: Regex | None = None
        self._matched = False
        self.started: float | None = None
        self.ready_at: float | None = None
        self.alive_at_end = False
        self._stopping = False
        self._done = False
        """A set-up step (``ready: {exit: N}``) that exited as it should."""
        self._ns = _netns_inode(netns)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def node(self) -> str:
        return self._node

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def what(self) -> str:
        return f"app {self.name!r} on {self.node}"

    async def start(self) -> None:
        d = self.launch.directory
        d.mkdir(parents=True, exist_ok=True)
        for rel, text in self.launch.files.items():
            path = d / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if self.spec.ready is not None and self.spec.ready.log is not None:
            self._regex = compile_regex(self.spec.ready.log)
        self._log = BoundedLog(self.log_path)
        self.started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *netns_argv(self.netns, self.launch.argv),
            env={**os.environ, **self.launch.env},
            cwd=d,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        self._pump = asyncio.create_task(self._read_output(), name=f"app {self.name} output")
        self._exited = asyncio.create_task(self.proc.wait(), name=f"app {self.name} exit")

    async def _read_output(self) -> None:
        """Keep reading (a full pipe would stall the app) into the bounded log."""
        assert self.proc is not None and self.proc.stdout is not None and self._log is not None
        stream = self.proc.stdout
        with contextlib.suppress(OSError):
            while chunk := await stream.read(65536):
                lines = self._log.write(chunk)
                if self._regex is not None and not self._matched:
                    for line in lines:
                        if self._regex.search(line.decode(errors="replace")) is not None:
                            self._matched = True
                            self._line_seen.set()
                            break

    def _tail(self) -> str:
        lines = self._log.recent() if self._log is not None else []
        if not lines:
            return "(no output)"
        return "last lines of its output:\n" + "\n".join(f"    {line}" for line in lines)

    async def _drained(self) -> None:
        """Let the output reader take the last lines (bounded: a child may hold the pipe open)."""
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), 1.0)

    def _exit_text(self, code: int) -> str:
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _ready_now(self) -> bool:
        ready = self.spec.ready
        assert self.started is not None and self.proc is not None
        if ready is None:
            return True
        if ready.tcp is not None or ready.udp is not None:
            # Only once the launcher is in the node's namespace: before that, /proc/PID/net is the host's.
            if self._ns is None or _proc_netns(self.proc.pid) != self._ns:
                return False
            return listening(self.proc.pid, "tcp" if ready.tcp is not None else "udp", ready.tcp or ready.udp or 0)
        if ready.log is not None:
            return self._matched
        if ready.file is not None:
            assert self.launch.ready_file is not None
            return self.launch.ready_file.exists()
        if ready.after is not None:
            return time.monotonic() - self.started >= ready.after
        return False  # exit: decided by the exit

    async def wait_ready(self) -> None:
        """Until it is ready; RunError (with its last lines) if it exits first or takes too long."""
        assert self._exited is not None and self.started is not None
        ready = self.spec.ready
        deadline = self.started + self.spec.ready_timeout
        while True:
            if ready is not None and ready.exit is not None:
                if self._exited.done():
                    code = self._exited.result()
                    await self._drained()
                    if code != ready.exit:
                        raise AppNotReadyError(f"{self.what} {self._exit_text(code)}, not {ready.exit}; {self._tail()}")
                    self._done = True
                    self.ready_at = time.monotonic()
                    return
            else:
                if self._ready_now():
                    if self._exited.done():
                        pass  # fall through to the exit report below
                    else:
                        self.ready_at = time.monotonic()
                        return
                if self._exited.done():
                    await self._drained()
                    raise AppNotReadyError(
                        f"{self.what} {self._exit_text(self._exited.result())} before it was ready "
                        f"({ready.describe() if ready else 'started'}); {self._tail()}"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                want = ready.describe() if ready is not None else "started"
                raise AppNotReadyError(
                    f"{self.what} was not ready ({want}) within its ready_timeout of "
                    f"{self.spec.ready_timeout:g} s (raise `ready_timeout:` if it is slow); {self._tail()}"
                )
            waiters: list[asyncio.Future[object]] = [self._exited]  # type: ignore[list-item]
            if self._regex is not None:
                waiters.append(asyncio.ensure_future(self._line_seen.wait()))
            await asyncio.wait(waiters, timeout=min(_POLL_S, left), return_when=asyncio.FIRST_COMPLETED)
            for w in waiters[1:]:
                w.cancel()

    async def watch(self) -> None:
        """A lifecycle watcher: returns never while the app runs; RunError once it exits (unless
        it is being stopped, or is a set-up step that is done)."""
        if self._done or self._exited is None:
            return
        code = await asyncio.shield(self._exited)
        if self._stopping:
            return
        await self._drained()
        raise RunError(f"{self.what} {self._exit_text(code)} during the run; {self._tail()}")

    async def stop(self, grace_s: float = GRACE_S) -> None:
        """SIGTERM its process group, SIGKILL after ``grace_s``, then its session's stragglers;
        close the log. Safe to call on an app that never started or already exited."""
        if self._stopping:
            return
        self._stopping = True
        proc = self.proc
        try:
            if proc is not None:
                self.alive_at_end = proc.returncode is None and not self._done
                self._signal_group(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace_s)
                except TimeoutError:
                    pass
                # The leader's exit does not end its group: a shell's children ignore the shell's TERM.
                self._signal_group(signal.SIGKILL)
                await proc.wait()
                self._kill_session()
        except BaseException:
            self._signal_group(signal.SIGKILL)
            self._kill_session()
            raise
        finally:
            if self._pump is not None:
                await self._drained()
                self._pump.cancel()
            if self._log is not None:
                self._log.close()
                self._keep_log()

    def _keep_log(self) -> None:
        if self._keep is None:
            return
        directory, prefix = self._keep
        try:
            directory.mkdir(parents=True, exist_ok=True)
            dest = directory / f"{prefix}{self.name}.log"
            shutil.copyfile(self.log_path, dest)
            self.kept_log = dest
        except OSError:
            pass  # the result then names the log in the run directory; the run's outcome stands

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _kill_session(self) -> None:
        if self.proc is None or self._ns is None:
            return
        for pid in _session_pids_in(self._ns, self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def record(self) -> AppResult:
        code = None if self.proc is None else self.proc.returncode
        started = (self.started or self.origin) - self.origin
        return AppResult(
            name=self.name,
            node=self.node,
            started_s=started,
            ready_s=None if self.ready_at is None else self.ready_at - self.origin,
            exit_code=code,
            alive_at_end=self.alive_at_end,
            log=str(self.kept_log or self.log_path),
            dropped_bytes=self._log.dropped_bytes if self._log is not None else 0,
        )

    def info(self) -> AppInfo:
        """What `testbed up` says about it."""
        return AppInfo(self.name, self.node, self.pid, str(self.log_path))


@contextlib.asynccontextmanager
async def running_apps(
    scenario: Scenario,
    plan: TopologyPlan,
    services: Sequence[RunningService],
    rundir: Path,
    started: list[RunningApp],
    origin: float,
    *,
    keep: tuple[Path, str] | None = None,
) -> AsyncIterator[list[RunningApp]]:
    """Start the scenario's apps in order, each ready before the next; stop them all on the way
    out (at once: SIGTERM to all, then SIGKILL to those still there). ``started`` is filled as
    they start, so a caller sees the apps also when one of them failed. Their times count from
    ``origin`` (CLOCK_MONOTONIC). ``keep``: (directory, file name prefix) to copy each log to when
    the app has stopped (``run --report``: the run directory goes with the run)."""
    order = app_order([(n, a) for n, spec in scenario.nodes.items() for a in spec.apps])
    try:
        for node, spec in order:
            launch = render_app(spec, node, scenario, plan, services, rundir)
            app = RunningApp(spec, node, plan.node(node).netns, launch, origin, keep=keep)
            started.append(app)
            await app.start()
            await app.wait_ready()
        yield started
    finally:
        # Shielded: a cancelled run still waits for its apps to be gone.
        await asyncio.shield(asyncio.gather(*(a.stop() for a in reversed(started)), return_exceptions=True))

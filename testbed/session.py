"""``testbed up`` / ``exec`` / ``down``: a scenario's network and censor, kept up for manual use.

``up`` validates the scenario and starts a *supervisor* process in its own session; the supervisor
owns the run through the same ``testbed.lifecycle.Lifecycle`` as ``testbed run`` (run directory,
namespaces, censor, services) and holds it until SIGTERM (``down``) or until the censor dies.
``up`` returns once the supervisor says the network is ready, printing the nodes and their
addresses.  ``exec`` joins a node's namespace and ``exec``s the command there, so any program
(curl, openssl, iperf3, a VPN, a circumvention client) runs behind the censor with the terminal,
exit code and signals of a normal command.

The supervisor writes ``state.json`` in its run directory; ``exec`` and ``down`` find live sessions
through it (and through the same owner check as ``testbed clean``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from testbed.errors import RunError, TestbedError, UsageError
from testbed.lifecycle import RUN_DIR, Lifecycle, LiveRun, Parts, Purpose, RunPlan, Step, StepsFor
from testbed.lifecycle import default_steps, insert_after
from testbed.net import names
from testbed.net.runs import owner_alive
from testbed.records.app import AppInfo
from testbed.records.json import JsonObject, RecordError
from testbed.scenario.loader import LoadedScenario, load_scenario
from testbed.services.run import RunningService

UP_TIMEOUT_S = 60.0
DOWN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class NodeState:
    netns: str
    addresses: tuple[str, ...]
    """The address the rest of the network sees first; behind a NAT, the node's own second."""
    side: str | None = None
    """``inside``/``outside``; None for the censor."""
    nat: str | None = None

    def to_json(self, *, censor: bool) -> dict[str, object]:
        out: dict[str, object] = {"netns": self.netns, "addresses": list(self.addresses)}
        if not censor:
            out |= {"side": self.side, "nat": self.nat}
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> NodeState:
        addresses = doc["addresses"]
        if not isinstance(addresses, list):
            raise ValueError("addresses is not a list")
        side, nat = doc.get("side"), doc.get("nat")
        return cls(
            str(doc["netns"]),
            tuple(str(a) for a in addresses),
            None if side is None else str(side),
            None if nat is None else str(nat),
        )


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a live session is (``state.json`` in its run directory; what `up` prints)."""

    run_id: str
    scenario: str
    file: str
    supervisor_pid: int
    json_out: str | None
    nodes: Mapping[str, NodeState]
    """``censor`` first, then the scenario's nodes."""
    services: tuple[RunningService, ...]
    apps: tuple[AppInfo, ...] = ()
    """The scenario's apps, running (their logs, for `tail -f`)."""

    @classmethod
    def of(cls, live: LiveRun, json_out: Path | None) -> SessionState:
        topo = live.topology
        nodes = {"censor": NodeState(topo.censor_netns, live.addresses["censor"])}
        for n in topo.nodes:
            nat = n.nat.type.value if n.nat else None
            nodes[n.name] = NodeState(n.netns, live.addresses[n.name], n.side.value, nat)
        return cls(
            run_id=live.plan.run_id,
            scenario=live.plan.scenario.name,
            file=str(live.plan.loaded.path),
            supervisor_pid=os.getpid(),
            json_out=str(json_out) if json_out is not None else None,
            nodes=nodes,
            services=live.services,
            apps=tuple(p.info() for p in live.processes),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "scenario": self.scenario,
            "file": self.file,
            "supervisor_pid": self.supervisor_pid,
            "json_out": self.json_out,
            "nodes": {name: n.to_json(censor=name == "censor") for name, n in self.nodes.items()},
            "services": [s.to_json() for s in self.services],
            "apps": [a.to_json() for a in self.apps],
        }

    @classmethod
    def from_json(cls, doc: object) -> SessionState:
        """Raises ValueError for anything that is not a session state."""
        try:
            if not isinstance(doc, dict) or not isinstance(doc["nodes"], dict) or not isinstance(doc["services"], list):
                raise ValueError("not a session state")
            json_out = doc.get("json_out")
            return cls(
                run_id=str(doc["run_id"]),
                scenario=str(doc["scenario"]),
                file=str(doc["file"]),
                supervisor_pid=int(doc["supervisor_pid"]),
                json_out=None if json_out is None else str(json_out),
                nodes={str(k): NodeState.from_json(v) for k, v in doc["nodes"].items()},
                services=tuple(_service_from_json(s) for s in doc["services"]),
                apps=tuple(AppInfo.from_json(a) for a in doc.get("apps") or ()),
            )
        except (KeyError, TypeError, AttributeError, RecordError) as exc:
            raise ValueError(f"not a session state: {exc!r}") from None


def _service_from_json(doc: Mapping[str, Any]) -> RunningService:
    return RunningService(
        node=str(doc["node"]),
        kind=str(doc["kind"]),
        address=str(doc["address"]),
        port=int(doc["port"]),
        names=tuple(doc.get("names") or ()),
        cert=doc.get("cert"),
        urls=tuple(doc.get("urls") or ()),
        username=doc.get("username"),
        credential=doc.get("credential"),
        key=doc.get("key"),
    )


@dataclass(frozen=True, slots=True)
class SessionCounters:
    """What ``up --json FILE`` holds once the session went down: the censor's counters, or why
    there are none."""

    run_id: str
    censor: JsonObject | None = None
    """The censor's summary (a JSON document, as in ``testbed run``'s results)."""
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"run_id": self.run_id}
        if self.censor is not None:
            doc["censor"] = self.censor
        else:
            doc["error"] = self.error
        return doc

    @classmethod
    def from_json(cls, doc: object) -> SessionCounters:
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        censor, error = doc.get("censor"), doc.get("error")
        return cls(
            str(doc.get("run_id")),
            dict(censor) if isinstance(censor, dict) else None,
            None if error is None else str(error),
        )


@dataclass(slots=True)
class _Outcome:
    """What the session got to: filled in by ``hold``, read by the counters-file step."""

    ready: bool = False
    censor: JsonObject | None = None


def _counters_file(json_out: Path, run_id: str, outcome: _Outcome) -> Step:
    """A step that writes ``json_out`` on the way down, once the network was up (before that,
    `up` fails and says why). Placed right after the run directory, so it runs after everything
    else is undone but before the directory goes: `down` waits for the directory to go, then
    reads the file."""

    @contextlib.asynccontextmanager
    async def enter(_parts: Parts) -> AsyncIterator[None]:
        try:
            yield
        except BaseException as exc:
            if outcome.ready:
                _write_counters(json_out, run_id, outcome.censor, exc)
            raise
        if outcome.ready:
            _write_counters(json_out, run_id, outcome.censor, None)

    return Step("counters file", enter)


def _write_counters(json_out: Path, run_id: str, censor: JsonObject | None, exc: BaseException | None) -> None:
    if censor is not None:
        doc = SessionCounters(run_id, censor=censor)
    elif isinstance(exc, TestbedError):
        doc = SessionCounters(run_id, error=str(exc))
    elif exc is not None and not isinstance(exc, asyncio.CancelledError):
        doc = SessionCounters(run_id, error=f"{type(exc).__name__}: {exc}")
    else:
        doc = SessionCounters(run_id, error="the session ended before the censor's counters were read")
    tmp = json_out.with_name(f".{json_out.name}.{run_id}.tmp")
    tmp.write_text(json.dumps(doc.to_json(), indent=2) + "\n")
    tmp.replace(json_out)


async def hold(
    loaded: LoadedScenario,
    on_ready: Callable[[SessionState], None],
    json_out: Path | None,
    *,
    steps: StepsFor = default_steps,
) -> None:
    """Bring the scenario's network up (the same lifecycle as ``testbed run``), report it, and
    hold it until cancelled or the censor dies.

    With ``json_out``, once the network was up the file is always written when it goes down:
    ``{"run_id", "censor"}`` with the censor's counters, or ``{"run_id", "error"}`` saying why
    there are none; `down` checks which (never an old file or none behind a success message)."""
    plan = RunPlan.create(loaded, purpose=Purpose.UP)
    outcome = _Outcome()
    chosen = tuple(steps(plan))
    if json_out is not None:
        chosen = insert_after(chosen, RUN_DIR, _counters_file(json_out, plan.run_id, outcome))
    async with Lifecycle(plan, steps=chosen) as live:
        state = SessionState.of(live, json_out)
        (live.workdir / "state.json").write_text(json.dumps(state.to_json(), indent=2))
        on_ready(state)
        outcome.ready = True
        try:
            await asyncio.Event().wait()  # until `down` cancels us; the lifecycle cancels us if the censor dies
        except asyncio.CancelledError:
            outcome.censor = await asyncio.shield(live.censor.stop())
            raise


def supervise(scenario_path: str, notify_fd: int, json_out: str | None) -> int:
    """The detached supervisor's main: report readiness (or the error) on ``notify_fd``."""
    notify = os.fdopen(notify_fd, "w")

    def on_ready(state: SessionState) -> None:
        notify.write(json.dumps({"ready": state.to_json()}) + "\n")
        notify.close()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        await hold(load_scenario(scenario_path, idle_ok=True), on_ready, Path(json_out) if json_out else None)

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        return 0
    except BaseException as exc:  # noqa: BLE001 - must be reported to `up`, whatever it is
        msg = str(exc) if isinstance(exc, TestbedError) else f"{type(exc).__name__}: {exc}"
        if not notify.closed:
            notify.write(json.dumps({"error": msg}) + "\n")
            notify.close()
        print(f"testbed up: {msg}", file=sys.stderr)
        return 1
    return 0


def up(scenario_path: str, json_out: str | None) -> SessionState:
    """Start a supervisor for the scenario and wait until it is ready; returns its state."""
    # Validate here, so errors come back as file:line at once. No call or probe is needed: the
    # network is for the user's own tools (calls and probes are not run by `up` anyway).
    load_scenario(scenario_path, idle_ok=True)
    read_fd, write_fd = os.pipe()
    log = open(os.devnull, "wb")  # noqa: SIM115 - handed to the child
    argv = [sys.executable, "-m", "testbed.session", str(Path(scenario_path).resolve()), str(write_fd)]
    if json_out:
        argv.append(str(Path(json_out).resolve()))
    proc = subprocess.Popen(
        argv, pass_fds=(write_fd,), start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    os.close(write_fd)
    log.close()
    with os.fdopen(read_fd) as r:
        line = _read_line_with_timeout(r, UP_TIMEOUT_S)
    if not line:
        if proc.poll() is None:
            proc.terminate()
        raise RunError("the testbed supervisor exited or hung before the network was ready")
    msg = json.loads(line)
    if "error" in msg:
        raise RunError(f"testbed up failed: {msg['error']}")
    return SessionState.from_json(msg["ready"])


def _read_line_with_timeout(r: IO[str], timeout_s: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ)
    if not sel.select(timeout_s):
        return ""
    return str(r.readline())


def live_sessions() -> list[SessionState]:
    out: list[SessionState] = []
    if not names.RUN_ROOT.is_dir():
        return out
    for d in sorted(names.RUN_ROOT.iterdir()):
        state_file = d / "state.json"
        if names.is_run_id(d.name) and state_file.is_file() and owner_alive(d):
            with contextlib.suppress(ValueError, OSError):
                out.append(SessionState.from_json(json.loads(state_file.read_text())))
    return out


def find_session(run_id: str | None) -> SessionState:
    sessions = live_sessions()
    if run_id is not None:
        sessions = [s for s in sessions if s.run_id == run_id]
        if not sessions:
            raise UsageError(f"no live `testbed up` session with run id {run_id!r}")
        return sessions[0]
    if not sessions:
        raise UsageError(
            "nothing is up: start a network with `testbed up SCENARIO` first "
            "(if a session's supervisor was killed, `testbed clean` removes what it left)"
        )
    if len(sessions) > 1:
        ids = ", ".join(f"{s.run_id} ({s.scenario})" for s in sessions)
        raise UsageError(f"several sessions are up ({ids}); choose one with --run RID")
    return sessions[0]


def exec_in_node(node: str, argv: list[str], run_id: str | None) -> int:
    """Replace this process with ``argv`` running inside ``node``'s namespace. Returns only on error."""
    from testbed.net.nsexec import enter_netns

    if not argv:
        raise UsageError("nothing to run: testbed exec NODE -- COMMAND [ARGS...]")
    session = find_session(run_id)
    nodes = session.nodes
    if node not in nodes:
        raise UsageError(f"no node {node!r} in session {session.run_id}; nodes: {', '.join(nodes)}")
    env = dict(os.environ)
    env["TESTBED_RUN"] = session.run_id
    env["TESTBED_NODE"] = node
    for name, info in nodes.items():
        if name != "censor":
            env[f"TESTBED_ADDR_{name.upper()}"] = info.addresses[0]
    enter_netns(nodes[node].netns)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]!r} in {node}: {exc.strerror}") from None
    return 127  # not reached


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def down(run_id: str | None) -> str:
    """Stop the session; with ``up --json FILE``, raise RunError unless FILE now holds the
    censor's counters (after the network is removed all the same)."""
    session = find_session(run_id)
    rid = session.run_id
    pid = session.supervisor_pid
    json_out = Path(session.json_out) if session.json_out else None
    before = _file_identity(json_out) if json_out is not None else None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while time.monotonic() < deadline and names.run_dir(rid).exists():
        time.sleep(0.05)
    if names.run_dir(rid).exists():
        from testbed.net.clean import clean

        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        clean(run_id=rid)
    if json_out is not None:
        _check_json_out(rid, json_out, before)
    return rid


def _check_json_out(rid: str, json_out: Path, before: tuple[int, int, int] | None) -> None:
    # The supervisor replaces the file (a new inode) when it stops; the same identity as before
    # means it never got that far (it was killed), so whatever is there is not this run's.
    problem = None
    if _file_identity(json_out) in (None, before):
        problem = "the session's supervisor ended without writing it (killed?)"
    else:
        try:
            doc = SessionCounters.from_json(json.loads(json_out.read_text()))
        except (OSError, ValueError) as exc:
            problem = f"it cannot be read: {exc}"
        else:
            if doc.run_id != rid or doc.censor is None:
                problem = doc.error or "it holds no counters"
    if problem is not None:
        raise RunError(f"run {rid} removed, but the censor's counters are not in {json_out}: {problem}")


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))

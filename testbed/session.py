"""``testbed up`` / ``exec`` / ``down``: a scenario's network and censor, kept up for manual use.

``up`` validates the scenario and starts a *supervisor* process in its own session; the supervisor
owns the run exactly as ``testbed run`` does (run directory, namespaces, censor, services) and
holds it until SIGTERM (``down``) or until the censor dies.  ``up`` returns once the supervisor says
the network is ready, printing the nodes and their addresses.  ``exec`` joins a node's namespace and
``exec``s the command there, so any program (curl, openssl, iperf3, a VPN, a circumvention client)
runs behind the censor with the terminal, exit code and signals of a normal command.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.censor.control import running_censor
from testbed.runner import checked_policy_config
from testbed.errors import RunError, TestbedError, UsageError
from testbed.net import names
from testbed.net.names import new_run_id
from testbed.net.runs import owner_alive, registered_run
from testbed.net.topology import build_topology, plan_topology
from testbed.scenario.loader import LoadedScenario, load_scenario
from testbed.services.run import running_services

UP_TIMEOUT_S = 60.0
DOWN_TIMEOUT_S = 30.0


def _state(
    loaded: LoadedScenario, run_id: str, plan: Any, services: list[Any], json_out: Path | None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "scenario": loaded.scenario.name,
        "file": str(loaded.path),
        "supervisor_pid": os.getpid(),
        "json_out": str(json_out) if json_out is not None else None,
        "nodes": {
            "censor": {"netns": plan.censor_netns, "addresses": [n.censor_address for n in plan.nodes]},
            **{
                n.name: {
                    "netns": n.netns,
                    "addresses": [n.public_address] + ([n.address] if n.address != n.public_address else []),
                    "side": n.side.value,
                    "nat": n.nat.type.value if n.nat else None,
                }
                for n in plan.nodes
            },
        },
        "services": [s.to_json() for s in services],
    }


async def hold(loaded: LoadedScenario, on_ready: Callable[[dict[str, Any]], None], json_out: Path | None) -> None:
    """Bring the scenario's network up, report it, and hold it until cancelled or the censor dies.

    With ``json_out``, once the network was up the file is always written when it goes down:
    ``{"run_id", "censor"}`` with the censor's counters, or ``{"run_id", "error"}`` saying why
    there are none; `down` checks which (never an old file or none behind a success message)."""
    scenario = loaded.scenario
    run_id = new_run_id()
    censor_summary: dict[str, Any] | None = None
    ready = False

    def write_json_out(_type: Any, exc: BaseException | None, _tb: Any) -> None:
        if json_out is None or not ready:
            return
        doc: dict[str, Any] = {"run_id": run_id}
        if censor_summary is not None:
            doc["censor"] = censor_summary
        elif isinstance(exc, TestbedError):
            doc["error"] = str(exc)
        elif exc is not None and not isinstance(exc, asyncio.CancelledError):
            doc["error"] = f"{type(exc).__name__}: {exc}"
        else:
            doc["error"] = "the session ended before the censor's counters were read"
        tmp = json_out.with_name(f".{json_out.name}.{run_id}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(json_out)

    async with contextlib.AsyncExitStack() as stack:
        workdir = stack.enter_context(registered_run(run_id, purpose="up"))
        # Pushed right after the run directory, so it runs after everything else is undone but
        # before the directory goes: `down` waits for the directory to go, then reads the file.
        stack.push(write_json_out)
        plan = plan_topology(scenario, run_id)
        policy = checked_policy_config(scenario, plan, loaded.path, scenario.seed)
        await stack.enter_async_context(build_topology(plan))
        censor = await stack.enter_async_context(
            running_censor(plan, scenario.censor, workdir, seed=scenario.seed, policy=policy)
        )
        services = await stack.enter_async_context(running_services(plan, scenario, workdir))
        state = _state(loaded, run_id, plan, services, json_out)
        (workdir / "state.json").write_text(json.dumps(state, indent=2))
        on_ready(state)
        ready = True
        try:
            await censor.watch()
        except asyncio.CancelledError:
            censor_summary = await asyncio.shield(censor.stop())
            raise


def supervise(scenario_path: str, notify_fd: int, json_out: str | None) -> int:
    """The detached supervisor's main: report readiness (or the error) on ``notify_fd``."""
    notify = os.fdopen(notify_fd, "w")

    def on_ready(state: dict[str, Any]) -> None:
        notify.write(json.dumps({"ready": state}) + "\n")
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


def up(scenario_path: str, json_out: str | None) -> dict[str, Any]:
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
    return dict(msg["ready"])


def _read_line_with_timeout(r: Any, timeout_s: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ)
    if not sel.select(timeout_s):
        return ""
    return str(r.readline())


def live_sessions() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not names.RUN_ROOT.is_dir():
        return out
    for d in sorted(names.RUN_ROOT.iterdir()):
        state_file = d / "state.json"
        if names.is_run_id(d.name) and state_file.is_file() and owner_alive(d):
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(state_file.read_text()))
    return out


def find_session(run_id: str | None) -> dict[str, Any]:
    sessions = live_sessions()
    if run_id is not None:
        sessions = [s for s in sessions if s["run_id"] == run_id]
        if not sessions:
            raise UsageError(f"no live `testbed up` session with run id {run_id!r}")
        return sessions[0]
    if not sessions:
        raise UsageError(
            "nothing is up: start a network with `testbed up SCENARIO` first "
            "(if a session's supervisor was killed, `testbed clean` removes what it left)"
        )
    if len(sessions) > 1:
        ids = ", ".join(f"{s['run_id']} ({s['scenario']})" for s in sessions)
        raise UsageError(f"several sessions are up ({ids}); choose one with --run RID")
    return sessions[0]


def exec_in_node(node: str, argv: list[str], run_id: str | None) -> int:
    """Replace this process with ``argv`` running inside ``node``'s namespace. Returns only on error."""
    from testbed.net.nsexec import enter_netns

    if not argv:
        raise UsageError("nothing to run: testbed exec NODE -- COMMAND [ARGS...]")
    session = find_session(run_id)
    nodes = session["nodes"]
    if node not in nodes:
        raise UsageError(f"no node {node!r} in session {session['run_id']}; nodes: {', '.join(nodes)}")
    env = dict(os.environ)
    env["TESTBED_RUN"] = session["run_id"]
    env["TESTBED_NODE"] = node
    for name, info in nodes.items():
        if name != "censor":
            env[f"TESTBED_ADDR_{name.upper()}"] = info["addresses"][0]
    enter_netns(nodes[node]["netns"])
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
    rid = str(session["run_id"])
    pid = int(session["supervisor_pid"])
    json_out = Path(session["json_out"]) if session.get("json_out") else None
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
            doc = json.loads(json_out.read_text())
        except (OSError, ValueError) as exc:
            problem = f"it cannot be read: {exc}"
        else:
            if not isinstance(doc, dict) or doc.get("run_id") != rid or "censor" not in doc:
                problem = str(doc.get("error") if isinstance(doc, dict) else None) or "it holds no counters"
    if problem is not None:
        raise RunError(f"run {rid} removed, but the censor's counters are not in {json_out}: {problem}")


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))

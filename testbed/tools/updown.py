"""Drive a ``testbed up`` network from Python, through the CLI, as a user would:
``testbed up --json``, ``testbed exec --run RID``, ``testbed down --run RID``.

    with updown.session(scenario_dict) as s:
        rx = s.popen("server", [sys.executable, "-m", "testbed.tools.udpseq", "recv", "9000"])
        s.run("caller", ["ping", "-c", "3", s.address("server")], timeout=10)
    s.censor   # the censor's counters, written by ``testbed down`` (per-rule counters, events, flows)

The run id is always passed explicitly, so other sessions up on the machine are never touched;
the session is always taken down (and its processes killed), whatever happens in the block.
Used by ``benchmarks/`` and the integration tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from testbed.records.json import JsonObject

__all__ = ["Session", "python_in_nodes", "session", "testbed_cmd"]

RUN_ROOT = Path("/run/testbed")
UP_TIMEOUT_S = 90.0

_RUN_RE = re.compile(r"\(run ([0-9a-f]+)\)")


def testbed_cmd() -> list[str]:
    """The CLI, run by this interpreter (so it is the same installation)."""
    return [sys.executable, "-m", "testbed.cli"]


def python_in_nodes() -> str:
    """The interpreter to run ``python -m testbed.tools...`` with inside nodes."""
    return sys.executable


class Session:
    """One ``testbed up`` network; use through ``session(...)`` so it is always taken down."""

    def __init__(self, run_id: str, state_text: str, workdir: Path, json_out: Path) -> None:
        self.run_id = run_id
        self.state_text = state_text
        self.workdir = workdir
        self.json_out = json_out
        self.censor: JsonObject | None = None
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, node: str, cmd: Sequence[str]) -> list[str]:
        return [*testbed_cmd(), "exec", "--run", self.run_id, node, "--", *cmd]

    def run(
        self, node: str, cmd: Sequence[str], *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(node, cmd), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{node}: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc

    def popen(self, node: str, cmd: Sequence[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.argv(node, cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    @property
    def state(self) -> JsonObject:
        """The session's ``state.json``: nodes, addresses, services (certificates)."""
        return dict(json.loads((RUN_ROOT / self.run_id / "state.json").read_text()))

    def address(self, node: str) -> str:
        return str(self.state["nodes"][node]["addresses"][0])

    def cert(self, node: str, port: int = 443) -> str:
        """The certificate of ``node``'s HTTPS service on ``port`` (for ``curl --cacert``)."""
        for svc in self.state["services"]:
            if svc["node"] == node and svc["kind"] == "https" and svc["port"] == port:
                return str(svc["cert"])
        raise KeyError(f"no https service on {node}:{port}")

    def netns(self, node: str) -> str:
        return f"tb-{self.run_id}-{node}"

    def pids(self, node: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.netns(node)], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]

    def wait_listening(self, node: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        """Readiness: poll the node's socket table until something listens on ``port``."""
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["ip", "netns", "exec", self.netns(node), "ss", flag, f"sport = :{port}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listens on {node}:{port}/{proto} after {timeout:.0f} s")

    def snmp(self, node: str) -> dict[str, int]:
        """The node's IPv4 counters (/proc/net/snmp and /proc/net/netstat are per namespace):
        ``Tcp.InSegs``, ``IpExt.InOctets``, ``Udp.InDatagrams``..."""
        out: dict[str, int] = {}
        for path in ("/proc/net/snmp", "/proc/net/netstat"):
            text = subprocess.run(
                ["ip", "netns", "exec", self.netns(node), "cat", path], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            for head, vals in zip(text[::2], text[1::2], strict=False):
                prefix, keys = head.split(":", 1)
                _, values = vals.split(":", 1)
                for k, v in zip(keys.split(), values.split(), strict=False):
                    with contextlib.suppress(ValueError):
                        out[f"{prefix}.{k}"] = int(v)
        return out

    def down(self) -> JsonObject:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
        self.procs.clear()
        if self.censor is None:
            done = subprocess.run(
                [*testbed_cmd(), "down", "--run", self.run_id], capture_output=True, text=True, timeout=60, check=False
            )
            if done.returncode != 0:
                # `down` exits non-zero when the counters were not written (it says why).
                raise RuntimeError(
                    f"testbed down --run {self.run_id} failed ({done.returncode}): {done.stderr.strip()}"
                )
            self.censor = dict(json.loads(self.json_out.read_text())["censor"])
        return self.censor


@contextlib.contextmanager
def session(scenario: JsonObject, workdir: Path | None = None) -> Iterator[Session]:
    """``testbed up`` the scenario (a dict, written as YAML), yield the session, always ``down``.
    Without ``workdir`` the scenario file and the counters live in a temporary directory that
    is removed afterwards (``Session.censor`` keeps the counters)."""
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-")) if workdir is None else workdir
    try:
        path = tmp / f"{scenario['name']}.yaml"
        path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        json_out = tmp / f"{scenario['name']}.censor.json"
        proc = subprocess.run(
            [*testbed_cmd(), "up", str(path), "--json", str(json_out)],
            capture_output=True, text=True, timeout=UP_TIMEOUT_S, check=False,
        )  # fmt: skip
        m = _RUN_RE.search(proc.stdout)
        if proc.returncode != 0 or m is None:
            raise RuntimeError(f"testbed up {path} failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
        s = Session(m.group(1), proc.stdout, tmp, json_out)
        try:
            yield s
        finally:
            s.down()
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)

"""Start a scenario's node services inside their namespaces, and stop them with the run."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import RunError
from testbed.net.process import netns_process
from testbed.net.topology import TopologyPlan
from testbed.scenario.model import Scenario, ServiceSpec
from testbed.services.certs import make_certificate
from testbed.services.coturn import READY_MARKER, coturn_command, turn_urls

READY_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class RunningService:
    node: str
    kind: str
    address: str
    port: int
    names: tuple[str, ...] = ()
    cert: str | None = None
    """PEM certificate clients can trust (``curl --cacert``)."""
    urls: tuple[str, ...] = ()
    """For a TURN relay: its ICE server URLs (RFC 7065)."""
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "kind": self.kind,
            "address": self.address,
            "port": self.port,
            "names": list(self.names),
            "cert": self.cert,
            "urls": list(self.urls),
            "username": self.username,
            "credential": self.credential,
        }


@contextlib.asynccontextmanager
async def running_services(plan: TopologyPlan, scenario: Scenario, workdir: Path) -> AsyncIterator[list[RunningService]]:
    out: list[RunningService] = []
    logdir = workdir / "logs"
    logdir.mkdir(exist_ok=True)
    # The TaskGroup is entered first so it is left last: the log copiers end when the processes
    # (stopped by the exit stack) close their output.
    async with asyncio.TaskGroup() as tg, contextlib.AsyncExitStack() as stack:
        for name, spec in scenario.nodes.items():
            node = plan.node(name)
            certs: dict[tuple[str, ...], tuple[Path, Path]] = {}
            for i, svc in enumerate(spec.services):
                argv, info, ready_word = _command(svc, node.name, node.address, workdir, i, certs)
                proc = await stack.enter_async_context(
                    netns_process(
                        node.netns,
                        argv,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                )
                log = logdir / f"{name}-{svc.kind}-{svc.port}.log"
                await _wait_ready(proc, ready_word, f"{svc.kind} on {name}:{svc.port}", log)
                assert proc.stdout is not None
                tg.create_task(_copy_to(proc.stdout, log))
                out.append(info)
        yield out


def _command(
    svc: ServiceSpec, node: str, address: str, workdir: Path, index: int, certs: dict[tuple[str, ...], tuple[Path, Path]]
) -> tuple[list[str], RunningService, bytes]:
    web = svc.https or svc.quic
    if web is not None:
        kind = "https" if svc.https is not None else "quic"
        if web.names not in certs:  # https and quic with the same names share one certificate
            certdir = workdir / "certs"
            certdir.mkdir(exist_ok=True)
            certs[web.names] = make_certificate(list(web.names), certdir, f"{node}-{index}", [address])
        cert, key = certs[web.names]
        argv = [sys.executable, "-m", f"testbed.services.{kind}", str(cert), str(key), str(web.port)]
        return argv, RunningService(node, kind, address, web.port, web.names, str(cert)), b"ready"
    if svc.turn is not None:
        t = svc.turn
        argv = coturn_command(t, address, workdir, f"turn-{node}-{index}")
        info = RunningService(
            node, "turn", address, t.port, (t.realm,), None, tuple(turn_urls(address, t)), t.username, t.password
        )
        return argv, info, READY_MARKER
    assert svc.iperf3 is not None
    binary = shutil.which("iperf3")
    if binary is None:
        raise RunError("the scenario declares an iperf3 service but iperf3 is not installed: apt-get install iperf3")
    argv = [binary, "--server", "--port", str(svc.iperf3.port), "--forceflush"]
    return argv, RunningService(node, "iperf3", address, svc.iperf3.port), b"Server listening"


async def _wait_ready(proc: asyncio.subprocess.Process, word: bytes, what: str, log: Path) -> None:
    assert proc.stdout is not None
    seen: list[bytes] = []
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RunError(f"service {what} exited before it was ready: {b''.join(seen).decode(errors='replace')[-500:]}")
                seen.append(line)
                if word in line:
                    break
    except TimeoutError:
        raise RunError(f"service {what} did not become ready within {READY_TIMEOUT_S:.0f} s") from None
    finally:
        log.write_bytes(b"".join(seen))


async def _copy_to(stream: asyncio.StreamReader, log: Path) -> None:
    """Keep reading a service's output (a full pipe would stall it) into its log file."""
    with log.open("ab") as f:
        while chunk := await stream.read(65536):
            f.write(chunk)
            f.flush()

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
"""From start to serving: the log marker, then (for turn) the STUN checks, all within this."""
_MARKER_SCAN_LIMIT = 1 << 20
"""Output searched for the marker: a service that prints this much without it is not starting right."""


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
    key: str | None = None
    """The private key of ``cert`` (apps get it as ``{key:NODE}``)."""

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
            "key": self.key,
        }


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one service and how to know it serves."""

    argv: list[str]
    info: RunningService
    marker: bytes
    """Printed by the service once its sockets listen (https, http, quic, iperf3: after bind)."""
    checks: tuple[str, ...] = ()
    """``testbed.services.ready`` checks run in the node after the marker, when the marker alone
    comes too early (coturn prints its marker before its auth thread is up)."""


@contextlib.asynccontextmanager
async def running_services(
    plan: TopologyPlan, scenario: Scenario, workdir: Path
) -> AsyncIterator[list[RunningService]]:
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
                launch = _command(svc, node.name, node.address, workdir, i, certs)
                proc = await stack.enter_async_context(
                    netns_process(
                        node.netns,
                        launch.argv,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                )
                log = logdir / f"{name}-{svc.kind}-{svc.port}.log"
                what = f"{svc.kind} on {name}:{svc.port}"
                deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
                await _wait_marker(proc, launch.marker, what, log, deadline)
                assert proc.stdout is not None
                tg.create_task(_copy_to(proc.stdout, log))
                if launch.checks:
                    await _check_serving(node.netns, launch.checks, what, deadline)
                out.append(launch.info)
        yield out


def _command(
    svc: ServiceSpec,
    node: str,
    address: str,
    workdir: Path,
    index: int,
    certs: dict[tuple[str, ...], tuple[Path, Path]],
) -> Launch:
    if svc.http is not None:
        argv = [sys.executable, "-m", "testbed.services.https", "--plain", str(svc.http.port)]
        return Launch(argv, RunningService(node, "http", address, svc.http.port), b"ready")
    web = svc.https or svc.quic
    if web is not None:
        kind = "https" if svc.https is not None else "quic"
        if web.names not in certs:  # https and quic with the same names share one certificate
            certdir = workdir / "certs"
            certdir.mkdir(exist_ok=True)
            certs[web.names] = make_certificate(list(web.names), certdir, f"{node}-{index}", [address])
        cert, key = certs[web.names]
        argv = [sys.executable, "-m", f"testbed.services.{kind}", str(cert), str(key), str(web.port)]
        return Launch(argv, RunningService(node, kind, address, web.port, web.names, str(cert), key=str(key)), b"ready")
    if svc.turn is not None:
        t = svc.turn
        argv = coturn_command(t, address, workdir, f"turn-{node}-{index}")
        info = RunningService(
            node, "turn", address, t.port, (t.realm,), None, tuple(turn_urls(address, t)), t.username, t.password
        )
        checks = [f"stun-udp:{address}:{t.port}", f"stun-tcp:{address}:{t.port}"]
        if t.tls_port:
            checks.append(f"tcp:{address}:{t.tls_port}")
        return Launch(argv, info, READY_MARKER, tuple(checks))
    assert svc.iperf3 is not None
    binary = shutil.which("iperf3")
    if binary is None:
        raise RunError("the scenario declares an iperf3 service but iperf3 is not installed: apt-get install iperf3")
    argv = [binary, "--server", "--port", str(svc.iperf3.port), "--forceflush"]
    # iperf3 prints this right after listen() (iperf_server_listen), so the marker suffices.
    return Launch(argv, RunningService(node, "iperf3", address, svc.iperf3.port), b"Server listening")


async def _wait_marker(proc: asyncio.subprocess.Process, marker: bytes, what: str, log: Path, deadline: float) -> None:
    """Read the service's output until ``marker``; a RunError if it exits, floods or stalls first.

    Read in chunks, not lines: a long line without a newline must not end in LimitOverrunError."""
    assert proc.stdout is not None
    seen = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            while marker not in seen:
                if len(seen) > _MARKER_SCAN_LIMIT:
                    raise RunError(
                        f"service {what} printed {len(seen)} bytes without its ready marker {marker.decode()!r}: {_tail(seen)}"
                    )
                chunk = await proc.stdout.read(65536)
                if not chunk:
                    raise RunError(f"service {what} exited before it was ready: {_tail(seen)}")
                seen += chunk
    except TimeoutError:
        raise RunError(
            f"service {what} did not become ready within {READY_TIMEOUT_S:.0f} s: {_tail(seen) or 'no output'}"
        ) from None
    finally:
        log.write_bytes(bytes(seen))


def _tail(output: bytes | bytearray) -> str:
    # The run directory (and the log in it) goes with the run: the error carries the evidence.
    return bytes(output[-500:]).decode(errors="replace").strip()


async def _check_serving(netns: str, checks: tuple[str, ...], what: str, deadline: float) -> None:
    """Run ``testbed.services.ready`` in the node: the service answers, not only logged a start."""
    left = max(1.0, deadline - asyncio.get_running_loop().time())
    argv = [sys.executable, "-m", "testbed.services.ready", "--timeout", f"{left:.1f}", *checks]
    async with netns_process(netns, argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) as proc:
        try:
            # The checker stops itself at --timeout; the margin covers its start (a Python import).
            async with asyncio.timeout(left + 15.0):
                output, _ = await proc.communicate()
        except TimeoutError:
            raise RunError(f"service {what}: its readiness check did not finish") from None
    if proc.returncode != 0:
        raise RunError(f"service {what} is not serving: {output.decode(errors='replace').strip()[-300:]}")


async def _copy_to(stream: asyncio.StreamReader, log: Path) -> None:
    """Keep reading a service's output (a full pipe would stall it) into its log file."""
    with log.open("ab") as f:
        while chunk := await stream.read(65536):
            f.write(chunk)
            f.flush()

"""The runner's side of the censor process: start it, wait until it is ready, watch it, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from testbed.censor.config import CensorConfig, PolicyConfig
from testbed.errors import CensorError
from testbed.net.process import netns_process, terminate
from testbed.net.topology import TopologyPlan
from testbed.records import censor_message
from testbed.records.censor_message import CensorFinal, CensorReady, CensorStats
from testbed.records.json import JsonObject, RecordError
from testbed.scenario.model import CensorSpec

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# The censor's stdout lines are short (the final summary comes through a file); a longer line is
# cut at this length and kept as output text rather than ending the run.
MAX_LINE_BYTES = 1 << 20


async def bounded_lines(stream: asyncio.StreamReader, max_bytes: int = MAX_LINE_BYTES) -> AsyncIterator[bytes]:
    """The stream's lines, each cut to ``max_bytes`` (the rest of a longer line is skipped):
    ``async for line in stream`` raises on a line over the reader's 64 KiB limit instead."""
    buf = bytearray()
    skipping = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            if buf and not skipping:
                yield bytes(buf)
            return
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start : nl + 1]
            if not skipping:
                buf += piece[: max_bytes - len(buf)]
                if nl < 0 and len(buf) >= max_bytes:
                    yield bytes(buf)
                    buf.clear()
                    skipping = True
            if nl < 0:
                break
            if not skipping:
                yield bytes(buf)
            buf.clear()
            skipping = False
            start = nl + 1


class CensorHandle:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready = asyncio.Event()
        self.final: JsonObject | None = None
        """The result's ``censor`` section, read from the file the final message names."""
        self.final_error: str | None = None
        self.last_stats: CensorStats | None = None
        self.stderr_tail: deque[str] = deque(maxlen=30)
        self.stopping = False
        self.t0: float | None = None
        """The censor's time origin (CLOCK_MONOTONIC): its event times count from here."""

    async def read_stdout(self) -> None:
        assert self.proc.stdout is not None
        async for raw in bounded_lines(self.proc.stdout):
            try:
                msg = censor_message.decode(raw)
            except RecordError as exc:
                # Kept as output: shown if the censor dies (a stray print, or a message this
                # runner does not understand, which then says why).
                text = raw.decode(errors="replace").rstrip()
                self.stderr_tail.append(text if text[:1] != "{" else f"{text}  ({exc})")
                continue
            match msg:
                case CensorReady(t0=t0):
                    self.t0 = t0
                    self.ready.set()
                case CensorStats():
                    self.last_stats = msg
                case CensorFinal(file=file, error=error):
                    self.final_error = error
                    self.final = self._read_final(file)

    def _read_final(self, file: str) -> JsonObject | None:
        try:
            return dict(json.loads(Path(file).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            self.stderr_tail.append(f"cannot read the censor's summary: {exc}")
            return None

    async def read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in bounded_lines(self.proc.stderr, 4096):
            self.stderr_tail.append(raw.decode(errors="replace").rstrip())

    def _died(self, while_: str) -> CensorError:
        tail = "\n".join(self.stderr_tail) or "(no output)"
        return CensorError(
            f"the censor engine exited unexpectedly {while_} (exit code {self.proc.returncode}). "
            "Its queue is bound without bypass, so forwarded traffic was being dropped from that "
            f"moment: this run's results cannot be trusted.\n  censor output:\n    " + tail.replace("\n", "\n    ")
        )

    async def watch(self) -> None:
        """Returns never while the censor is healthy; raises CensorError if it dies."""
        await self.proc.wait()
        if not self.stopping:
            raise self._died("mid-run")

    async def stop(self) -> JsonObject:
        self.stopping = True
        await terminate(self.proc, STOP_TIMEOUT_S)
        if self.proc.returncode == 0 and self.final is None:
            tail = "\n    ".join(self.stderr_tail) or "(no output)"
            raise CensorError(f"the censor stopped without its summary (its counters are lost):\n    {tail}")
        if self.proc.returncode != 0 or self.final is None:
            raise self._died("while stopping")
        if self.final_error:
            raise CensorError(f"the censor engine failed: {self.final_error}")
        return self.final


@contextlib.asynccontextmanager
async def running_censor(
    plan: TopologyPlan, spec: CensorSpec, workdir: Path, *, seed: int, policy: PolicyConfig
) -> AsyncIterator[CensorHandle]:
    """``policy`` is ``testbed.censor.policy_setup.policy_config(...)``."""
    config = CensorConfig(
        policy=policy,
        run_id=plan.run_id,
        seed=seed,
        final_path=str(workdir / "censor-final.json"),
        queue_num=0,
        max_len=spec.queue_max_len,
        inspect_packets=spec.inspect_packets,
        max_flows=spec.max_flows,
        reassemble_tls=spec.reassemble_tls,
        ipv6=plan.ip.has_v6,
        offload=spec.offload,
    )
    cfg_path = workdir / "censor.json"
    cfg_path.write_text(json.dumps(config.to_json(), separators=(",", ":")))
    argv = [sys.executable, "-m", "testbed.censor.main", str(cfg_path)]
    async with netns_process(
        plan.censor_netns, argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    ) as proc:
        handle = CensorHandle(proc)
        async with asyncio.TaskGroup() as tg:
            readers = [tg.create_task(handle.read_stdout()), tg.create_task(handle.read_stderr())]
            try:
                ready = tg.create_task(handle.ready.wait())
                exited = tg.create_task(proc.wait())
                done, _ = await asyncio.wait(
                    {ready, exited}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
                )
                ready.cancel()
                exited.cancel()
                if not handle.ready.is_set():
                    if proc.returncode is not None:
                        # Let the readers drain what it said before it died.
                        await asyncio.wait(readers, timeout=2)
                        raise handle._died("during start-up")
                    raise CensorError(f"the censor did not become ready within {READY_TIMEOUT_S:.0f} s")
                yield handle
            finally:
                if proc.returncode is None:
                    handle.stopping = True
                    await terminate(proc, STOP_TIMEOUT_S)

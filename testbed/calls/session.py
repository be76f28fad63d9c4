"""``run_call``: one call between two network namespaces, measured.

The orchestrator side of a call, and deliberately light: it imports neither aiortc nor av, and it
never switches namespaces.  It

1. listens on a unix socket in ``workdir`` (the out-of-band signalling path: a filesystem object,
   reachable from every namespace, invisible to the censor);
2. starts the two endpoint processes at once with :func:`testbed.net.process.netns_process`;
3. relays their messages and drives the :class:`~testbed.calls.conductor.Conductor` (dial,
   duration, hang-up, timeouts), then builds the :class:`~testbed.calls.result.CallResult`.

Everything it opens is closed on the way out, on error and on cancellation: the endpoint
processes are terminated and reaped, the socket file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from testbed.calls.conductor import Abort, Action, Conductor, Finish, Send
from testbed.calls.endpoint_config import EndpointConfig
from testbed.calls.engine import Engine, endpoint_argv
from testbed.calls.options import CallOptions
from testbed.calls.result import CallResult
from testbed.calls.signalling import (
    Decoder,
    Hello,
    Message,
    Role,
    SignallingProtocolError,
    encode,
)
from testbed.errors import CallError
from testbed.net.process import netns_process, terminate
from testbed.records.timeline import TimelineEntry

SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
EXIT_WAIT_S = 1.0  # after Done, an endpoint only has to let its interpreter exit
STDERR_TAIL_BYTES = 2000


@dataclass(frozen=True, slots=True)
class _Received:
    role: Role
    message: Message


@dataclass(frozen=True, slots=True)
class _Disconnected:
    role: Role


@dataclass(frozen=True, slots=True)
class _Exited:
    role: Role
    code: int


@dataclass(frozen=True, slots=True)
class _Violation:
    reason: str


_Input = _Received | _Disconnected | _Exited | _Violation


async def run_call(
    options: CallOptions,
    *,
    caller_netns: str,
    callee_netns: str,
    workdir: Path,
    start_timeout_s: float = 30.0,
    teardown_timeout_s: float = 3.0,
    observer: Callable[[TimelineEntry], None] | None = None,
    engines: Mapping[Role, Engine] | None = None,
    zygote: Path | None = None,
) -> CallResult:
    """Place one call from ``caller_netns`` to ``callee_netns`` and measure it.

    A call that fails (never connects, an endpoint dies, the connection fails) is a result with
    ``error`` set, not an exception.  :class:`CallError` means the harness failed: an endpoint
    process that did not start or never said hello; its message carries the stderr tail.
    Endpoint logs are kept in ``workdir/<name>.<role>.log``.  ``observer(entry)``, if
    given, is called with each timeline entry as it happens (for live progress); it must not block.
    ``engines`` picks each end's endpoint process (default: aiortc at both; ``calls.engine``).
    ``zygote``: the socket of a running :func:`endpoint_zygote`: aiortc endpoints are forked from
    it (no import per endpoint) instead of started afresh.
    """
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    conductor = Conductor(
        options,
        start=started,
        start_timeout_s=start_timeout_s,
        teardown_timeout_s=teardown_timeout_s,
        observer=observer,
    )
    logs = {role: workdir / f"{options.name}.{role}.log" for role in Role}
    async with AsyncExitStack() as stack:
        sock_path = stack.enter_context(_socket_path(workdir, options.name))
        listener = stack.enter_context(_listening(sock_path))
        processes: dict[Role, asyncio.subprocess.Process] = {}
        for role, netns in ((Role.CALLER, caller_netns), (Role.CALLEE, callee_netns)):
            config = workdir / f"{options.name}.{role}.json"
            # t0 is CLOCK_MONOTONIC, shared by every process: endpoints count arrivals from it.
            config.write_text(json.dumps(EndpointConfig(role, sock_path, options, started, zygote).to_json()))
            log: IO[bytes] = stack.enter_context(open(logs[role], "wb"))
            argv = endpoint_argv((engines or {}).get(role, Engine.AIORTC), config, zygote=zygote is not None)
            # Both start before either is awaited: aiortc's import (~1 s) runs in parallel.
            processes[role] = await stack.enter_async_context(
                netns_process(
                    netns,
                    argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    grace_s=teardown_timeout_s,
                )
            )
        relay = _Relay(conductor, processes, listener)
        outcome = await relay.run()
        if isinstance(outcome, Finish):
            await relay.wait_exited(EXIT_WAIT_S)
    if isinstance(outcome, Abort):
        roles = [outcome.role] if outcome.role else list(Role)
        tails = "".join(f"\n--- {role} endpoint log ({logs[role]}) ---\n{_tail(logs[role])}" for role in roles)
        raise CallError(f"call {options.name!r}: {outcome.reason}{tails}")
    return conductor.result(wall_s=time.monotonic() - started)


class _Relay:
    """Accepts the endpoints' connections, forwards between them, feeds the conductor."""

    def __init__(
        self,
        conductor: Conductor,
        processes: dict[Role, asyncio.subprocess.Process],
        listener: socket.socket,
    ) -> None:
        self._conductor = conductor
        self._processes = processes
        self._listener = listener
        self._inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self._writers: dict[Role, asyncio.StreamWriter] = {}
        self._exit_codes: dict[Role, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> Finish | Abort:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks.append(tg.create_task(self._accept(tg)))
                for role, proc in self._processes.items():
                    self._tasks.append(tg.create_task(self._watch(role, proc)))
                try:
                    return await self._conduct()
                finally:
                    for task in self._tasks:
                        task.cancel()
        finally:
            for writer in self._writers.values():
                writer.close()
            # The endpoints see EOF and exit by themselves if they are still running.

    async def wait_exited(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for proc in self._processes.values():
                    await proc.wait()

    async def _conduct(self) -> Finish | Abort:
        conductor = self._conductor
        while True:
            deadline = conductor.next_deadline()
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    item = await self._inbox.get()
            except TimeoutError:
                actions = conductor.on_timer(time.monotonic())
            else:
                actions = await self._dispatch(item)
            for action in actions:
                if isinstance(action, Send):
                    await self._send(action.to, action.message)
                else:
                    return action

    async def _dispatch(self, item: _Input) -> list[Action]:
        conductor = self._conductor
        match item:
            case _Received(role=role, message=message):
                return conductor.receive(role, message, time.monotonic())
            case _Disconnected(role=role):
                proc = self._processes[role]
                # Give the exit status a moment to arrive, so the error can say how it ended.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await proc.wait()
                return conductor.lost(role, time.monotonic(), _describe_exit(proc.returncode))
            case _Exited(role=role, code=code):
                self._exit_codes[role] = code
                if role in self._writers:
                    return []  # its connection's EOF reports it, after any last messages
                return conductor.lost(role, time.monotonic(), _describe_exit(code))
            case _Violation(reason=reason):
                return [Abort(reason)]
        return []

    async def _send(self, role: Role, message: Message) -> None:
        writer = self._writers.get(role)
        if writer is None:
            return
        try:
            writer.write(encode(message))
            async with asyncio.timeout(2.0):
                await writer.drain()
        except (ConnectionError, OSError, TimeoutError):
            pass  # the endpoint is gone or stuck; its EOF or the teardown timeout reports it

    async def _accept(self, tg: asyncio.TaskGroup) -> None:
        loop = asyncio.get_running_loop()
        for _ in Role:
            conn, _address = await loop.sock_accept(self._listener)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
            self._tasks.append(tg.create_task(self._serve(reader, writer)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        role: Role | None = None
        try:
            while data := await reader.read(65536):
                for message in decoder.feed(data):
                    if role is None:
                        if not isinstance(message, Hello) or message.role in self._writers:
                            self._inbox.put_nowait(_Violation(f"an endpoint connection began with {message.type}"))
                            return
                        role = message.role
                        self._writers[role] = writer
                    self._inbox.put_nowait(_Received(role, message))
            decoder.eof()
        except SignallingProtocolError as exc:
            self._inbox.put_nowait(_Violation(f"{role or 'an'} endpoint sent garbage: {exc}"))
        except (ConnectionError, OSError):
            pass  # the same as EOF
        finally:
            if role is not None:
                self._inbox.put_nowait(_Disconnected(role))
            else:
                writer.close()

    async def _watch(self, role: Role, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._inbox.put_nowait(_Exited(role, code))


def _loop_time(deadline: float | None) -> float | None:
    """Convert a CLOCK_MONOTONIC deadline to the event loop's clock (the same clock on Linux's
    default loop, but asyncio does not promise it)."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


ZYGOTE_READY_TIMEOUT_S = 60.0


@contextlib.asynccontextmanager
async def endpoint_zygote(workdir: Path) -> AsyncIterator[Path | None]:
    """Run a ``testbed.calls.zygote`` for the calls inside; yields its socket, or ``None`` when it
    could not start (the calls then start their endpoints afresh, as without one).  It is
    terminated and reaped on the way out, and dies with this process if that is killed."""
    workdir.mkdir(parents=True, exist_ok=True)
    with _socket_path(workdir, "zygote") as path:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "testbed.calls.zygote",
            "--socket",
            str(path),
            "--parent",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            try:
                async with asyncio.timeout(ZYGOTE_READY_TIMEOUT_S):
                    ready = (await proc.stdout.readline()).strip() == b"ready"
            except TimeoutError:
                ready = False
            yield path if ready else None
        finally:
            await terminate(proc)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "closed its signalling connection"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


@contextlib.contextmanager
def _socket_path(workdir: Path, name: str) -> Iterator[Path]:
    """A socket path in ``workdir``, or in a private temporary directory if ``workdir`` is too
    deep for ``sun_path`` (107 bytes)."""
    path = workdir / f"{name}.sock"
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="testbed-sig-") as private:
        yield Path(private) / "call.sock"


@contextlib.contextmanager
def _listening(path: Path) -> Iterator[socket.socket]:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover of a killed run with the same workdir and name
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # only root (and so only our endpoints) may connect
        sock.listen(2)
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(cannot read: {exc})"
    text = data[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").rstrip()
    return text or "(empty)"

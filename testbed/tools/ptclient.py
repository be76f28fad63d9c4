"""Run a pluggable-transport client in managed mode on a fixed local port:
``python -m testbed.tools.ptclient --transport obfs4 --state DIR [--listen 127.0.0.1:1080] -- obfs4proxy``.

A managed PT client (obfs4proxy, lyrebird, snowflake-client, ...) is configured only through the
environment of the Tor pluggable-transport spec (pt-spec.txt, version 1): TOR_PT_MANAGED_TRANSPORT_VER,
TOR_PT_STATE_LOCATION, TOR_PT_CLIENT_TRANSPORTS, TOR_PT_EXIT_ON_STDIN_CLOSE. It then picks a random
port and says so on stdout (``CMETHOD obfs4 socks5 127.0.0.1:PORT`` ... ``CMETHODS DONE``). A scenario
needs a port it can name, so this wrapper starts the PT, reads that handshake, and relays
``--listen`` to the PT's SOCKS port byte for byte (the SOCKS dialogue, including the bridge
arguments a client passes as SOCKS5 username and password, is the application's: e.g.
``curl --socks5 127.0.0.1:1080 --proxy-user "cert=...;:iat-mode=0"``).

Prints the PT's CMETHOD line, then ``ready: HOST:PORT -> PROTOCOL HOST:PORT (TRANSPORT)`` (the
first address is the one it listens on: ``--listen 127.0.0.1:0`` picks a free port). Exits 1
with the PT's own error line when the handshake fails (ENV-ERROR, VERSION-ERROR, CMETHOD-ERROR, no
method before --timeout, or the PT exits); on SIGTERM/SIGINT it stops the PT and exits 0; if the PT
dies later it exits 1. The handshake parser is pure (``CmethodParser``) and unit-tested.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ClientMethod", "CmethodParser", "PtError", "managed_client_env", "main"]


class PtError(Exception):
    """The PT refused its configuration or never offered the transport."""


@dataclass(frozen=True, slots=True)
class ClientMethod:
    transport: str
    protocol: str  # socks4 | socks5 (pt-spec 3.3.2)
    host: str
    port: int


@dataclass(slots=True)
class CmethodParser:
    """Feed the PT's stdout lines; ``feed`` returns True at ``CMETHODS DONE``."""

    methods: list[ClientMethod] = field(default_factory=list)
    version: str | None = None

    def feed(self, line: str) -> bool:
        words = line.strip().split(" ")
        keyword = words[0]
        if keyword == "VERSION":
            self.version = words[1] if len(words) > 1 else ""
        elif keyword in ("ENV-ERROR", "VERSION-ERROR", "CMETHOD-ERROR", "PROXY-ERROR"):
            raise PtError(line.strip())
        elif keyword == "CMETHOD":
            if len(words) < 4:
                raise PtError(f"malformed CMETHOD line: {line.strip()!r}")
            host, sep, port = words[3].rpartition(":")
            if not sep or not port.isdigit():
                raise PtError(f"CMETHOD address is not HOST:PORT: {line.strip()!r}")
            self.methods.append(ClientMethod(words[1], words[2], host.strip("[]"), int(port)))
        elif keyword == "CMETHODS" and words[1:] == ["DONE"]:
            return True
        # LOG, STATUS, PROXY DONE and unknown keywords are informational (pt-spec: ignore unknown).
        return False

    def method(self, transport: str) -> ClientMethod:
        for m in self.methods:
            if m.transport == transport:
                return m
        offered = ", ".join(m.transport for m in self.methods) or "none"
        raise PtError(f"the PT offered no {transport} method (offered: {offered})")


def managed_client_env(base: dict[str, str], transport: str, state_dir: str) -> dict[str, str]:
    env = dict(base)
    env.update(
        TOR_PT_MANAGED_TRANSPORT_VER="1",
        TOR_PT_STATE_LOCATION=state_dir,
        TOR_PT_CLIENT_TRANSPORTS=transport,
        # The PT exits when this wrapper does, even after SIGKILL (its stdin pipe closes).
        TOR_PT_EXIT_ON_STDIN_CLOSE="1",
    )
    return env


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:1080")
    return host or "127.0.0.1", int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except (ConnectionError, OSError):
        writer.close()


async def _relay(target: ClientMethod, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()


async def _copy_lines(stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        print(line.decode(errors="replace").rstrip(), flush=True)


async def _run(args: argparse.Namespace) -> int:
    os.makedirs(args.state, exist_ok=True)
    env = managed_client_env(dict(os.environ), args.transport, args.state)
    try:
        pt = await asyncio.create_subprocess_exec(
            *args.command, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        print(f"ptclient: cannot start {args.command[0]}: {exc}", file=sys.stderr)
        return 1
    assert pt.stdout is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        parser = CmethodParser()
        try:
            async with asyncio.timeout(args.timeout):
                while not parser.feed(line := (await pt.stdout.readline()).decode(errors="replace")):
                    if not line:
                        raise PtError(f"{args.command[0]} exited before CMETHODS DONE (code {await pt.wait()})")
                    if line.startswith("CMETHOD "):
                        print(line.strip(), flush=True)
            method = parser.method(args.transport)
        except TimeoutError:
            print(f"ptclient: no CMETHODS DONE from {args.command[0]} within {args.timeout:g} s", file=sys.stderr)
            return 1
        except PtError as exc:
            print(f"ptclient: {exc}", file=sys.stderr)
            return 1
        # Keep reading what the PT says later (LOG/STATUS lines), so a full pipe never stalls it.
        drain = asyncio.ensure_future(_copy_lines(pt.stdout))
        host, port = args.listen
        server = await asyncio.start_server(lambda r, w: _relay(method, r, w), host, port, reuse_address=True)
        port = server.sockets[0].getsockname()[1]  # --listen HOST:0 picks a free port
        async with server:
            target = f"{method.protocol} {method.host}:{method.port} ({method.transport})"
            print(f"ready: {host}:{port} -> {target}", flush=True)
            exited = asyncio.ensure_future(pt.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if exited.done():
                print(f"ptclient: {args.command[0]} exited (code {exited.result()})", file=sys.stderr)
                return 1
            exited.cancel()
            drain.cancel()
            return 0
    finally:
        if pt.returncode is None:
            pt.terminate()
            try:
                await asyncio.wait_for(pt.wait(), 5)
            except TimeoutError:
                pt.kill()
                with contextlib.suppress(TimeoutError):  # a grandchild may still hold its stdout
                    await asyncio.wait_for(pt.wait(), 5)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.tools.ptclient", description=__doc__.split("\n\n")[0])
    ap.add_argument("--transport", required=True, help="the transport to ask for, e.g. obfs4")
    ap.add_argument("--state", required=True, help="TOR_PT_STATE_LOCATION (created if missing)")
    ap.add_argument("--listen", type=_hostport, default=("127.0.0.1", 1080), help="HOST:PORT (default 127.0.0.1:1080)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for CMETHODS DONE")
    ap.add_argument("command", nargs="+", help="the PT client and its arguments (after --)")
    args = ap.parse_args(argv)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())

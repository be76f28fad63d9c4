"""A QUIC / HTTP/3 fetch for probes: ``python -m testbed.tools.quicget [options] https://HOST[:PORT]/path``.

    --sni NAME       the TLS server name in the Initial (the censor's SNI); default: the URL's
                     host unless it is an IP address (then no SNI, as TLS requires). Like
                     ``curl --resolve NAME:443:ADDR https://NAME/``: connect to ADDR, say NAME.
    --cacert PEM     trust this certificate (``{cert:server}`` in a probe); the certificate is
                     checked against the SNI, or the address when there is none
    --insecure, -k   do not check the certificate
    --timeout S      give up after S seconds in all (default 10): exit 28, as curl's --max-time
    --output FILE    write the body there (default ``-``: standard output)

A one-line summary (status, bytes, seconds, SNI, ALPN) goes to standard error. Exit codes follow
curl's: 0 fetched, 2 usage, 6 the host does not resolve, 7 no socket/route, 22 HTTP status >= 400,
28 timed out, 35 QUIC/TLS handshake failed (the peer or we closed the connection), 56 the
connection closed during the transfer.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RESOLVE = 6
EXIT_CONNECT = 7
EXIT_HTTP = 22
EXIT_TIMEOUT = 28
EXIT_HANDSHAKE = 35
EXIT_RECV = 56


class UsageError(Exception):
    pass


class FetchError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str
    """Path and query, as sent in ``:path``."""


@dataclass(frozen=True, slots=True)
class Options:
    target: Target
    sni: str | None
    cacert: str | None
    insecure: bool
    timeout: float
    output: str

    @property
    def authority(self) -> str:
        host = self.sni or self.target.host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return host if self.target.port == 443 else f"{host}:{self.target.port}"


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    bytes: int
    seconds: float
    handshake_s: float
    alpn: str | None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_url(url: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"bad URL {url!r}: {e}") from None
    if parts.scheme != "https":
        raise UsageError(f"bad URL {url!r}: HTTP/3 needs an https:// URL")
    if not parts.hostname:
        raise UsageError(f"bad URL {url!r}: no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.hostname, port or 443, path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m testbed.tools.quicget", description="Fetch a URL over QUIC (HTTP/3, ALPN h3)."
    )
    p.add_argument("url")
    p.add_argument("--sni", help="TLS server name to send (default: the URL's host unless it is an IP)")
    p.add_argument("--cacert", help="PEM certificate(s) to trust")
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--timeout", "--max-time", type=float, default=10.0, help="overall limit in seconds (exit 28)")
    p.add_argument("-o", "--output", default="-", help="where the body goes (default: standard output)")
    return p


def parse_args(argv: Sequence[str]) -> Options:
    """The options, or UsageError (argparse's own errors exit 2 themselves)."""
    args = _parser().parse_args(list(argv))
    target = parse_url(args.url)
    if not (0 < args.timeout <= 3600):
        raise UsageError("--timeout must be in (0, 3600] seconds")
    sni = args.sni
    if sni is not None and (not sni or is_ip(sni)):
        raise UsageError("--sni must be a host name (TLS carries no IP address in SNI)")
    if sni is None and not is_ip(target.host):
        sni = target.host
    if args.cacert and args.insecure:
        raise UsageError("--cacert and --insecure contradict each other")
    return Options(target, sni, args.cacert, args.insecure, args.timeout, args.output)


def summary(opts: Options, result: Result, address: str) -> str:
    return (
        f"quicget: HTTP/3 {result.status}, {result.bytes} bytes in {result.seconds:.3f} s "
        f"(handshake {result.handshake_s:.3f} s) from {address}:{opts.target.port}, "
        f"sni {opts.sni or '-'}, alpn {result.alpn or '-'}"
    )


async def fetch(opts: Options, sink: IO[bytes], progress: list[str]) -> tuple[Result, str]:
    """Fetch ``opts.target``; (result, the address connected to). Raises FetchError.

    ``progress`` gets the phases reached (``handshake``, ``request``), for the timeout message."""
    # Imported here so that argument errors are reported without loading the QUIC stack.
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent

    # aioquic logs a failed handshake at WARNING through the "quic" logger; our message says it.
    logging.getLogger("quic").addHandler(logging.NullHandler())
    logging.getLogger("quic").propagate = False
    started = time.monotonic()  # the clock starts after the QUIC stack is loaded

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.h3 = H3Connection(self._quic)
            self.alpn: str | None = None
            self.status: int | None = None
            self.received = 0
            self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            # A close before the request was sent is reported by wait_connected(), not here.
            self.done.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.terminated: str | None = None

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, ProtocolNegotiated):
                self.alpn = event.alpn_protocol
            elif isinstance(event, ConnectionTerminated):
                self.terminated = f"error 0x{event.error_code:x}" + (
                    f": {event.reason_phrase}" if event.reason_phrase else ""
                )
                if not self.done.done():
                    self.done.set_exception(
                        FetchError(EXIT_RECV, f"connection closed during the transfer ({self.terminated})")
                    )
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

        def _h3_event(self, event: H3Event) -> None:
            if isinstance(event, HeadersReceived):
                status = dict(event.headers).get(b":status", b"0")
                self.status = int(status) if status.isdigit() else 0
            elif isinstance(event, DataReceived):
                self.received += len(event.data)
                sink.write(event.data)
            if getattr(event, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

    loop = asyncio.get_running_loop()
    host, port = opts.target.host, opts.target.port
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise FetchError(EXIT_RESOLVE, f"could not resolve {host!r}: {e}") from None
    family, _, _, _, addr = infos[0]
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=opts.sni or host)
    config.idle_timeout = opts.timeout + 5.0  # the overall --timeout decides, not aioquic
    if opts.insecure:
        config.verify_mode = ssl.CERT_NONE
    elif opts.cacert:
        try:
            config.load_verify_locations(cafile=opts.cacert)
        except (OSError, ssl.SSLError) as e:
            raise FetchError(EXIT_USAGE, f"cannot read --cacert {opts.cacert}: {e}") from None
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0))
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Client(QuicConnection(configuration=config)), sock=sock
        )
    except OSError as e:
        sock.close()
        raise FetchError(EXIT_CONNECT, f"cannot open a UDP socket: {e}") from None
    client: Client = proto
    try:
        progress.append("handshake")
        try:
            client.connect(addr)
            await client.wait_connected()
        except ConnectionError:
            raise FetchError(
                EXIT_HANDSHAKE, f"QUIC handshake with {addr[0]}:{port} failed ({client.terminated or 'closed'})"
            ) from None
        except OSError as e:  # e.g. no route: the kernel refuses the first datagram
            raise FetchError(EXIT_CONNECT, f"cannot send to {addr[0]}:{port}: {e}") from None
        handshake_s = time.monotonic() - started
        if client.alpn not in H3_ALPN:
            raise FetchError(EXIT_HANDSHAKE, f"the server negotiated ALPN {client.alpn!r}, not h3")
        progress.append("request")
        stream_id = client._quic.get_next_available_stream_id()
        client.h3.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", opts.authority.encode()),
                (b":path", opts.target.path.encode()),
                (b"user-agent", b"testbed-quicget"),
            ],
            end_stream=True,
        )
        client.transmit()
        await client.done
        finished = time.monotonic()
        client.close()
        try:
            async with asyncio.timeout(0.5):
                await client.wait_closed()
        except TimeoutError:
            pass
    finally:
        transport.close()
    result = Result(client.status or 0, client.received, finished - started, handshake_s, client.alpn)
    return result, str(addr[0])


async def _run(opts: Options, sink: IO[bytes]) -> int:
    progress: list[str] = []
    try:
        async with asyncio.timeout(opts.timeout):
            result, address = await fetch(opts, sink, progress)
    except TimeoutError:
        where = {
            "handshake": "no QUIC handshake (Initials dropped?)",
            "request": "handshake done, the response did not complete",
        }.get(progress[-1] if progress else "", "before sending anything")
        print(
            f"quicget: timed out after {opts.timeout:g} s fetching https://{opts.target.host}:{opts.target.port}"
            f"{opts.target.path} (sni {opts.sni or '-'}): {where}",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    except FetchError as e:
        print(f"quicget: {e}", file=sys.stderr)
        return e.code
    print(summary(opts, result, address), file=sys.stderr)
    if result.status >= 400:
        print(f"quicget: the server answered HTTP {result.status}", file=sys.stderr)
        return EXIT_HTTP
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    try:
        opts = parse_args(argv)
    except UsageError as e:
        print(f"quicget: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sink = sys.stdout.buffer if opts.output == "-" else open(opts.output, "wb")
    except OSError as e:
        print(f"quicget: cannot write {opts.output}: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(opts, sink))
    finally:
        sink.flush()
        if sink is not sys.stdout.buffer:
            sink.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The web server of scenario nodes, over TLS (``https`` service) or plain TCP (``http`` service).

    python -m testbed.services.https [OPTIONS] CERT KEY PORT     # HTTPS
    python -m testbed.services.https [OPTIONS] --plain PORT      # plain HTTP

Routes (testbed.services.routes): ``GET /`` -> "ok"; ``GET /bytes/N`` -> N bytes (download);
``POST|PUT /upload`` -> the body's byte count (upload). HTTPS answers any SNI with the same
certificate, whose subjectAltNames are the names the scenario lists, so a client chooses the SNI
the censor sees (``curl --resolve NAME:443:ADDR https://NAME/``); plain HTTP ignores ``Host``, so
a client chooses the Host header the censor sees. Prints ``ready PORT`` once listening.

Why each connection gets its own thread, TLS handshake included: a censor under test routinely
leaves clients half-way (a ClientHello dropped or answered with a forged RST, a flow frozen after
16 KB), and a handshake run in the accept loop made one such client hang the server for every
later one, which turned into false FAILs. So the accept loop only accepts; the handshake runs in
the connection's thread under ``--handshake-timeout``, every later read or write under
``--idle-timeout``, and at most ``--max-connections`` connections are served at once (beyond
that, accepting waits for a slot, and the kernel's backlog holds new clients; a stalled client
frees its slot within the timeouts).
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from testbed.services.routes import Route, RouteKind, route

MAX_BYTES = 1 << 30
# Writes go out in 16 KiB pieces (one TLS record each): the idle timeout bounds a wait for one
# piece, so a throttle down to ~1 kbit/s does not time out a transfer that still progresses.
_CHUNK = b"\0" * 16384
_READ_SIZE = 65536
_MAX_CHUNK_LINE = 1024


HANDSHAKE_TIMEOUT_S = 20.0
"""From accept to the end of the TLS handshake: a few round trips, even through a slow censor."""
IDLE_TIMEOUT_S = 120.0
"""Longest wait for one read or write once connected (and between keep-alive requests)."""
MAX_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class Limits:
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS


class NodeHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose TLS handshake runs in the connection's thread, with bounds."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: clients waiting while every slot is busy

    # One dual-stack socket on "::" serves IPv4 (as ::ffff:a.b.c.d) and IPv6 clients alike, so the
    # service answers on whatever families the run's network carries (``ip:``).
    address_family = socket.AF_INET6

    def __init__(self, port: int, tls: ssl.SSLContext | None, limits: Limits) -> None:
        self.tls = tls
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        super().__init__(("::", port), Handler)

    def server_bind(self) -> None:
        # Explicit, not the namespace's net.ipv6.bindv6only default.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()  # released by the connection's thread when it ends
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the TLS handshake (bounded), then HTTP."""
        sock: socket.socket = request
        sock.settimeout(self.limits.handshake_timeout_s)
        if self.tls is None:
            Handler(sock, client_address, self)
            return
        try:
            conn = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            _log(client_address, f"TLS setup failed: {exc}")
            return
        try:
            try:
                conn.do_handshake()
            except (OSError, ssl.SSLError) as exc:  # TimeoutError is an OSError
                _log(client_address, f"TLS handshake failed: {exc or type(exc).__name__}")
                return
            Handler(conn, client_address, self)
        finally:
            # The server's own shutdown_request() sees the plain socket, which the TLS one took over.
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished mid-request (reset, timeout) is routine under a censor: one line,
        # not a traceback.
        _log(client_address, f"connection ended: {sys.exc_info()[1]!r}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "testbed-web"
    server: NodeHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.idle_timeout_s)

    def do_GET(self) -> None:
        self._answer(route("GET", self.path, MAX_BYTES), head=False)

    def do_HEAD(self) -> None:
        self._answer(route("HEAD", self.path, MAX_BYTES), head=True)

    def do_POST(self) -> None:
        self._write_request("POST")

    def do_PUT(self) -> None:
        self._write_request("PUT")

    def _write_request(self, method: str) -> None:
        found = route(method, self.path, MAX_BYTES)
        if found.kind is not RouteKind.UPLOAD:
            self.close_connection = True  # its body stays unread
            self._answer(found, head=False)
            return
        count = self._discard_body()
        if count is None:
            return  # answered with an error
        self._answer(Route(RouteKind.OK, 200, f"{count}\n".encode()), head=False)

    def _discard_body(self) -> int | None:
        """Read the request body to its end, keeping only its length; None after an error answer."""
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                self._fail(501, f"transfer-encoding {coding!r} not supported (only chunked)")
                return None
            return self._discard_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            self._fail(411, "send Content-Length or Transfer-Encoding: chunked")
            return None
        if not length.strip().isdigit():
            self._fail(400, f"bad Content-Length {length!r}")
            return None
        n = int(length)
        self._discard(n)
        return n

    def _discard(self, n: int) -> None:
        while n > 0:
            data = self.rfile.read1(min(n, _READ_SIZE))
            if not data:
                raise ConnectionError(f"the client closed the connection with {n} body bytes unsent")
            n -= len(data)

    def _discard_chunked(self) -> int | None:
        total = 0
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                size = -1
            if not line.endswith(b"\n") or size < 0:
                self._fail(400, f"bad chunk size line {line[:40]!r}")
                return None
            if size == 0:
                break
            self._discard(size)
            total += size
            if self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n"):
                self._fail(400, "a chunk does not end with CRLF")
                return None
        while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields, ignored
        return total

    def _fail(self, status: int, message: str) -> None:
        self.close_connection = True
        self._answer(Route(RouteKind.ERROR, status, f"{message}\n".encode()), head=False)

    def _answer(self, found: Route, *, head: bool) -> None:
        length = found.size if found.kind is RouteKind.BYTES else len(found.body)
        self.send_response(found.status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if found.allow:
            self.send_header("Allow", found.allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        if found.kind is not RouteKind.BYTES:
            self.wfile.write(found.body)
            return
        n = found.size
        while n > 0:
            chunk = _CHUNK[: min(n, len(_CHUNK))]
            self.wfile.write(chunk)
            n -= len(chunk)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _log(client_address: Any, message: str) -> None:
    host = client_address[0] if isinstance(client_address, tuple) else client_address
    sys.stderr.write(f"{host} {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.services.https", description=__doc__.split("\n\n")[0])
    p.add_argument("--plain", action="store_true", help="plain HTTP: give only PORT")
    p.add_argument("--handshake-timeout", type=float, default=HANDSHAKE_TIMEOUT_S, metavar="S")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, metavar="S")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N")
    p.add_argument("args", nargs="+", metavar="CERT KEY PORT | PORT")
    return p


def main(argv: list[str]) -> int:
    parser = _parser()
    opts = parser.parse_args(argv)
    words: list[str] = opts.args
    if len(words) != (1 if opts.plain else 3) or not words[-1].isdigit() or int(words[-1]) > 65535:
        parser.print_usage(sys.stderr)
        print("give CERT KEY PORT, or --plain PORT", file=sys.stderr)
        return 2
    if opts.handshake_timeout <= 0 or opts.idle_timeout <= 0 or opts.max_connections < 1:
        print("timeouts must be > 0 and --max-connections >= 1", file=sys.stderr)
        return 2
    tls: ssl.SSLContext | None = None
    if not opts.plain:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(words[0], words[1])
        tls.set_alpn_protocols(["http/1.1"])
    limits = Limits(opts.handshake_timeout, opts.idle_timeout, opts.max_connections)
    with NodeHTTPServer(int(words[-1]), tls, limits) as httpd:
        print(f"ready {httpd.server_address[1]}", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""testbed.services.https on 127.0.0.1 (no root): a stalled client never blocks the others, and
every route answers as documented, over TLS and plain HTTP.

The server runs as it does in a node, as ``python -m testbed.services.https`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.errors import RunError, ScenarioError
from testbed.scenario.loader import parse_scenario
from testbed.services import ready
from testbed.services import run as service_run
from testbed.services.certs import make_certificate
from testbed.services.routes import RouteKind, route

# Generous: a healthy request on loopback takes milliseconds even on a loaded machine; the
# failure these tests catch is a hang (forever), not slowness.
CLIENT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Server:
    port: int
    cert: Path | None
    proc: subprocess.Popen[bytes]

    def connection(self) -> http.client.HTTPConnection:
        if self.cert is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.check_hostname = False  # the certificate names example.com; we dial 127.0.0.1
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S, context=ctx)

    def request(
        self, method: str, path: str, body: bytes | Iterable[bytes] | None = None, *, chunked: bool = False
    ) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, encode_chunked=chunked)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], port: int, cert: Path | None) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.services.https", *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert b"ready" in line, f"the service did not start: {line!r}"
        yield Server(port, cert, proc)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[Server]:
    cert, key = make_certificate(["example.com"], tmp_path, "srv", ["127.0.0.1"])
    port = _free_port()
    yield from _start([str(cert), str(key), str(port)], port, cert)


@pytest.fixture(params=["https", "http"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    if request.param == "http":
        yield from _start(["--plain", str(port)], port, None)
    else:
        cert, key = make_certificate(["example.com"], tmp_path, "srv", ["127.0.0.1"])
        yield from _start([str(cert), str(key), str(port)], port, cert)


def _client_hello() -> bytes:
    """A real ClientHello, as the first flight a TLS client sends."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # a TLS handshake record
    return hello


def test_stalled_clients_do_not_block_a_later_client(https_server: Server) -> None:
    # One client connects and never sends a byte; another sends half a ClientHello and stops
    # (what a client whose handshake the censor cut looks like to the server).
    idle = socket.create_connection(("127.0.0.1", https_server.port))
    half = socket.create_connection(("127.0.0.1", https_server.port))
    hello = _client_hello()
    half.sendall(hello[: len(hello) // 2])
    try:
        for _ in range(3):  # and not only the first later client
            status, body = https_server.request("GET", "/")
            assert (status, body) == (200, b"ok\n")
    finally:
        idle.close()
        half.close()


def test_a_stalled_client_is_dropped_after_the_handshake_timeout(tmp_path: Path) -> None:
    cert, key = make_certificate(["example.com"], tmp_path, "srv", ["127.0.0.1"])
    port = _free_port()
    for srv in _start(["--handshake-timeout", "1", str(cert), str(key), str(port)], port, cert):
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.settimeout(CLIENT_TIMEOUT_S)
            assert idle.recv(1) == b""  # the server closed it (a hang would raise TimeoutError)
        assert srv.request("GET", "/") == (200, b"ok\n")


def test_connections_are_bounded_and_a_full_server_still_serves_later(tmp_path: Path) -> None:
    # One slot, held by a client that never speaks: the next client waits in the backlog until
    # the handshake timeout frees the slot, then is served (bounded, never blocked for good).
    cert, key = make_certificate(["example.com"], tmp_path, "srv", ["127.0.0.1"])
    port = _free_port()
    argv = ["--max-connections", "1", "--handshake-timeout", "1", str(cert), str(key), str(port)]
    for srv in _start(argv, port, cert):
        with socket.create_connection(("127.0.0.1", port)):
            assert srv.request("GET", "/bytes/5") == (200, b"\0" * 5)


def test_routes(server: Server) -> None:
    assert server.request("GET", "/") == (200, b"ok\n")
    assert server.request("GET", "/?x=1") == (200, b"ok\n")
    assert server.request("GET", "/bytes/0") == (200, b"")
    assert server.request("GET", "/bytes/100000") == (200, b"\0" * 100000)
    assert server.request("HEAD", "/bytes/100000") == (200, b"")
    assert server.request("GET", "/nope")[0] == 404
    assert server.request("GET", "/bytes/x")[0] == 404
    assert server.request("GET", f"/bytes/{(1 << 30) + 1}")[0] == 400
    assert server.request("GET", "/upload")[0] == 405
    assert server.request("POST", "/", body=b"x")[0] == 405
    assert server.request("DELETE", "/")[0] == 501


def test_upload_counts_the_body(server: Server) -> None:
    body = bytes(range(256)) * 4000  # 1 MB
    assert server.request("POST", "/upload", body=body) == (200, b"1024000\n")
    assert server.request("PUT", "/upload", body=b"abc") == (200, b"3\n")
    assert server.request("POST", "/upload", body=b"") == (200, b"0\n")
    chunks = [b"a" * 70000, b"b", b"c" * 3]
    assert server.request("POST", "/upload", body=chunks, chunked=True) == (200, b"70004\n")


def test_upload_refuses_a_body_of_unknown_length(server: Server) -> None:
    conn = server.connection()
    try:
        conn.putrequest("POST", "/upload", skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 411 and b"Content-Length" in resp.read()
    finally:
        conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(server: Server) -> None:
    conn = server.connection()
    try:
        for path, expected in (("/", b"ok\n"), ("/bytes/3", b"\0\0\0"), ("/", b"ok\n")):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, expected)
        conn.request("POST", "/upload", body=b"12345")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"5\n")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "target", "kind", "status"),
    [
        ("GET", "/", RouteKind.OK, 200),
        ("HEAD", "/", RouteKind.OK, 200),
        ("GET", "/bytes/10", RouteKind.BYTES, 200),
        ("GET", "/bytes/11", RouteKind.ERROR, 400),
        ("GET", "/bytes/-1", RouteKind.ERROR, 404),
        ("POST", "/upload", RouteKind.UPLOAD, 200),
        ("PUT", "/upload?x", RouteKind.UPLOAD, 200),
        ("GET", "/upload", RouteKind.ERROR, 405),
        ("POST", "/bytes/1", RouteKind.ERROR, 405),
        ("GET", "/other", RouteKind.ERROR, 404),
    ],
)
def test_route_table(method: str, target: str, kind: RouteKind, status: int) -> None:
    found = route(method, target, max_bytes=10)
    assert (found.kind, found.status) == (kind, status)
    if status == 405:
        assert found.allow


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["a", "b"],
        ["--plain"],
        ["--plain", "a", "b", "80"],
        ["--plain", "99999"],
        ["--plain", "--max-connections", "0", "80"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.services.https", *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


# testbed.services.ready: the check the runner makes before it trusts a service (coturn).


def _stun_responder(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(2048)
        except TimeoutError:
            continue
        # A Binding success response (0x0101) with the request's cookie and transaction id.
        sock.sendto(b"\x01\x01\x00\x00" + data[4:20], peer)


def test_ready_passes_only_once_the_service_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()  # accepts connections, but never answers STUN
        udp_port, tcp_port = udp.getsockname()[1], tcp.getsockname()[1]
        checks = [ready.parse_check(f"stun-udp:127.0.0.1:{udp_port}"), ready.parse_check(f"tcp:127.0.0.1:{tcp_port}")]
        silent = ready.parse_check(f"stun-tcp:127.0.0.1:{tcp_port}")
        # Bound but not answering: not ready (a socket is not a service).
        assert ready.wait_ready([checks[0], silent], timeout_s=0.5) == [checks[0], silent]
        stop = threading.Event()
        worker = threading.Thread(target=_stun_responder, args=(udp, stop))
        worker.start()
        try:
            assert ready.wait_ready(checks, timeout_s=CLIENT_TIMEOUT_S) == []
            assert ready.wait_ready([silent], timeout_s=0.5) == [silent]
        finally:
            stop.set()
            worker.join()


def test_ready_binding_response_must_match_the_request() -> None:
    tid = b"\x07" * 12
    request = ready.binding_request(tid)
    assert len(request) == 20 and request[4:8] == b"\x21\x12\xa4\x42"
    assert ready.is_binding_success(b"\x01\x01\x00\x00" + request[4:20], tid)
    assert not ready.is_binding_success(b"\x01\x01\x00\x00" + request[4:8] + b"\x08" * 12, tid)  # other transaction
    assert not ready.is_binding_success(b"\x01\x11\x00\x00" + request[4:20], tid)  # error response
    assert not ready.is_binding_success(b"HTTP/1.1 400", tid)


@pytest.mark.parametrize("text", ["udp:1.2.3.4:5", "tcp:1.2.3.4", "tcp::5", "tcp:1.2.3.4:0", "tcp:1.2.3.4:x"])
def test_ready_refuses_bad_checks(text: str) -> None:
    with pytest.raises(ValueError, match="KIND:ADDR:PORT"):
        ready.parse_check(text)
    assert ready.main([text]) == 2


# The `http` service in the scenario schema.


def _nodes(services: str) -> str:
    return f"name: x\nnodes:\n  a: {{}}\n  b:\n    services: {services}\ncalls:\n  - {{name: c, from: a, to: b}}\n"


def test_http_service_in_the_schema() -> None:
    spec = parse_scenario(_nodes("[http, {https: {port: 443}}, {http: {port: 8080}}]")).nodes["b"]
    assert [(s.kind, s.sockets) for s in spec.services] == [
        ("http", (("tcp", 80),)),
        ("https", (("tcp", 443),)),
        ("http", (("tcp", 8080),)),
    ]


@pytest.mark.parametrize(
    ("services", "problem"),
    [
        ("[{http: {port: 443}}, {https: {port: 443}}]", "cannot share a port"),
        ("[{http: {port: 5201}}, iperf3]", "cannot share a port"),
        ("[{http: {port: 0}}]", "port"),
        ("[{http: {names: [a.example]}}]", "names"),
        ("[{http: {}, https: {}}]", "exactly one service"),
    ],
)
def test_http_service_errors(services: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(_nodes(services))
    assert problem in str(exc.value)


# The runner's wait for a service's ready marker (testbed.services.run).


async def _marker_wait(code: str, log: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        deadline = asyncio.get_running_loop().time() + CLIENT_TIMEOUT_S
        await service_run._wait_marker(proc, b"ready", "x on n:1", log, deadline)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def test_marker_after_a_long_line_without_newline(tmp_path: Path) -> None:
    # 100 KB before a newline: a line reader with asyncio's 64 KiB limit raised ValueError here.
    code = "import sys, time; sys.stdout.write('x' * 100000 + ' ready\\n'); sys.stdout.flush(); time.sleep(60)"
    asyncio.run(_marker_wait(code, tmp_path / "log"))
    assert (tmp_path / "log").read_bytes().endswith(b" ready\n")


def test_marker_never_printed_is_an_error_not_a_hang(tmp_path: Path) -> None:
    code = "import sys\nwhile True: sys.stdout.write('y' * 65536); sys.stdout.flush()"
    with pytest.raises(RunError, match="without its ready marker"):
        asyncio.run(_marker_wait(code, tmp_path / "log"))
    with pytest.raises(RunError, match="exited before it was ready: boom"):
        asyncio.run(_marker_wait("print('boom')", tmp_path / "log"))

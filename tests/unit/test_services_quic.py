"""testbed.services.quic on 127.0.0.1 (no root): the shared routes, upload included, and a client
that stops half-way (a truncated or garbage Initial) does not stop the server for the next one."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent

from testbed.services import quic as quic_server
from testbed.services.certs import make_certificate

CLIENT_TIMEOUT_S = 30.0  # a hang, not slowness, is what fails


class _Client(QuicConnectionProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.h3 = H3Connection(self._quic)
        self.status = 0
        self.body = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, DataReceived):
            self.body += event.data
        if getattr(event, "stream_ended", False) and not self.done.done():
            self.done.set_result(None)

    async def request(self, method: bytes, path: bytes, body: list[bytes]) -> tuple[int, bytes]:
        stream_id = self._quic.get_next_available_stream_id()
        headers = [(b":method", method), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", path)]
        self.h3.send_headers(stream_id, headers, end_stream=not body)
        for i, part in enumerate(body):
            self.h3.send_data(stream_id, part, end_stream=i == len(body) - 1)
        self.transmit()
        await self.done
        return self.status, self.body


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _requests(
    tmp_path: Path, requests: list[tuple[bytes, bytes, list[bytes]]], *, junk: bool = False
) -> list[tuple[int, bytes]]:
    cert, key = make_certificate(["example.com"], tmp_path, "srv", ["127.0.0.1"])
    port = _free_udp_port()
    server = await quic_server.start(str(cert), str(key), port, host="127.0.0.1")
    try:
        if junk:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                # A long-header Initial cut short, then bytes that are no QUIC at all.
                s.sendto(bytes([0xC0, 0, 0, 0, 1, 8]) + b"\x01" * 8 + b"\x00", ("127.0.0.1", port))
                s.sendto(b"\xff" * 1200, ("127.0.0.1", port))
        out = []
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="example.com")
        config.load_verify_locations(cafile=str(cert))
        for method, path, body in requests:
            async with asyncio.timeout(CLIENT_TIMEOUT_S):
                async with connect("127.0.0.1", port, configuration=config, create_protocol=_Client) as client:
                    assert isinstance(client, _Client)
                    out.append(await client.request(method, path, body))
        return out
    finally:
        server.close()


def test_upload_counts_the_body(tmp_path: Path) -> None:
    got = asyncio.run(
        _requests(
            tmp_path,
            [
                (b"POST", b"/upload", [b"a" * 70000, b"b" * 5]),
                (b"PUT", b"/upload", []),
                (b"GET", b"/upload", []),
                (b"GET", b"/bytes/7", []),
            ],
        )
    )
    assert got == [(200, b"70005\n"), (200, b"0\n"), (405, b"method not allowed\n"), (200, bytes(7))]


def test_junk_datagrams_do_not_stop_the_server(tmp_path: Path) -> None:
    assert asyncio.run(_requests(tmp_path, [(b"GET", b"/", [])], junk=True)) == [(200, b"ok\n")]


def test_respond_matches_the_shared_routes() -> None:
    assert quic_server.respond(b"POST", b"/upload", 12) == (200, b"12\n")
    assert quic_server.respond(b"GET", f"/bytes/{quic_server.MAX_BYTES + 1}".encode())[0] == 400

"""A small HTTP/3 server for scenario nodes: ``python -m testbed.services.quic CERT KEY PORT``.

The QUIC counterpart of ``testbed.services.https`` (aioquic): UDP ``PORT``, ALPN ``h3``, the same
routes — ``GET /`` -> "ok"; ``GET /bytes/N`` -> N bytes (at most 64 MiB: aioquic buffers a
response whole). It answers any SNI with the same certificate, so a client chooses the SNI the
censor sees in the Initial (``python -m testbed.tools.quicget --sni NAME https://ADDR/``).
Prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

MAX_BYTES = 1 << 26


def respond(method: bytes, path: bytes) -> tuple[int, bytes]:
    """(status, body) for a request: the routes of ``testbed.services.https``."""
    path = path.split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return 405, b"method not allowed\n"
    if path == b"/":
        return 200, b"ok\n"
    if path.startswith(b"/bytes/") and path[7:].isdigit() and int(path[7:]) <= MAX_BYTES:
        return 200, bytes(int(path[7:]))
    return 404, b"not found\n"


class H3Server(QuicConnectionProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._h3: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is not None:
            for h3_event in self._h3.handle_event(event):
                self._h3_event(self._h3, h3_event)

    def _h3_event(self, h3: H3Connection, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived):
            return  # request bodies are ignored
        headers = dict(event.headers)
        method, path = headers.get(b":method", b""), headers.get(b":path", b"/")
        status, body = respond(method, path)
        sys.stderr.write(f"{method.decode(errors='replace')} {path.decode(errors='replace')} {status} {len(body)}\n")
        h3.send_headers(
            event.stream_id,
            [
                (b":status", str(status).encode()),
                (b"server", b"testbed-quic"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
            end_stream=method == b"HEAD",
        )
        if method != b"HEAD":
            h3.send_data(event.stream_id, body, end_stream=True)
        self.transmit()


async def start(cert: str, key: str, port: int, host: str = "0.0.0.0") -> QuicServer:
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(cert, key)
    return await serve(host, port, configuration=config, create_protocol=H3Server)


async def serve_forever(cert: str, key: str, port: int) -> None:
    server = await start(cert, key, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[2].isdigit():
        print("usage: python -m testbed.services.quic CERT KEY PORT", file=sys.stderr)
        return 2
    asyncio.run(serve_forever(argv[0], argv[1], int(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

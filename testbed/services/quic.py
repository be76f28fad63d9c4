"""A small HTTP/3 server for scenario nodes: ``python -m testbed.services.quic CERT KEY PORT``.

The QUIC counterpart of ``testbed.services.https`` (aioquic): UDP ``PORT``, ALPN ``h3``, the same
routes (testbed.services.routes) — ``GET /`` -> "ok"; ``GET /bytes/N`` -> N bytes (at most 64 MiB:
aioquic buffers a response whole); ``POST|PUT /upload`` -> the body's byte count. It answers any
SNI with the same certificate, so a client chooses the SNI the censor sees in the Initial
(``python -m testbed.tools.quicget --sni NAME https://ADDR/``). Prints ``ready`` once listening.

One stalled client cannot block the others: every QUIC connection is its own state machine fed
from one UDP socket (aioquic), a packet that does not parse or decrypt is dropped, and a
connection whose peer goes silent ends after aioquic's idle timeout (60 s).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

from testbed.services.routes import RouteKind, route

MAX_BYTES = 1 << 26


def respond(method: bytes, path: bytes, uploaded: int = 0) -> tuple[int, bytes]:
    """(status, body) for a request whose body (if any) was ``uploaded`` bytes long."""
    found = route(method.decode("latin-1"), path.decode("latin-1"), MAX_BYTES)
    if found.kind is RouteKind.BYTES:
        return found.status, bytes(found.size)
    if found.kind is RouteKind.UPLOAD:
        return found.status, f"{uploaded}\n".encode()
    return found.status, found.body


class H3Server(QuicConnectionProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._h3: H3Connection | None = None
        self._uploads: dict[int, tuple[bytes, bytes, int]] = {}
        """Upload streams still receiving their body: stream id -> (method, path, bytes so far)."""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is not None:
            for h3_event in self._h3.handle_event(event):
                self._h3_event(self._h3, h3_event)

    def _h3_event(self, h3: H3Connection, event: H3Event) -> None:
        if isinstance(event, DataReceived):
            upload = self._uploads.get(event.stream_id)
            if upload is None:
                return  # the body of a request answered already: ignored
            method, path, count = upload
            count += len(event.data)  # counted, not kept
            if event.stream_ended:
                del self._uploads[event.stream_id]
                self._reply(h3, event.stream_id, method, path, count)
            else:
                self._uploads[event.stream_id] = (method, path, count)
            return
        if not isinstance(event, HeadersReceived):
            return
        headers = dict(event.headers)
        method, path = headers.get(b":method", b""), headers.get(b":path", b"/")
        is_upload = route(method.decode("latin-1"), path.decode("latin-1"), MAX_BYTES).kind is RouteKind.UPLOAD
        if is_upload and not event.stream_ended:
            self._uploads[event.stream_id] = (method, path, 0)
            return
        self._reply(h3, event.stream_id, method, path, 0)

    def _reply(self, h3: H3Connection, stream_id: int, method: bytes, path: bytes, uploaded: int) -> None:
        status, body = respond(method, path, uploaded)
        sys.stderr.write(f"{method.decode(errors='replace')} {path.decode(errors='replace')} {status} {len(body)}\n")
        h3.send_headers(
            stream_id,
            [
                (b":status", str(status).encode()),
                (b"server", b"testbed-quic"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
            end_stream=method == b"HEAD",
        )
        if method != b"HEAD":
            h3.send_data(stream_id, body, end_stream=True)
        self.transmit()


async def start(cert: str, key: str, port: int, host: str = "::") -> QuicServer:
    # "::" is one dual-stack socket (a namespace's net.ipv6.bindv6only is 0): IPv4 clients
    # arrive as ::ffff:a.b.c.d, so the service answers on whatever families the run carries.
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

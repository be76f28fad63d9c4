"""A small HTTPS server for scenario nodes: ``python -m testbed.services.https CERT KEY PORT``.

Routes: ``GET /`` -> "ok"; ``GET /bytes/N`` -> N bytes (for throughput and byte-count cut tests).
It answers any SNI with the same certificate, whose subjectAltNames are the names the scenario
lists, so a client chooses the SNI the censor sees (``curl --resolve NAME:443:ADDR https://NAME/``).
Prints ``ready`` once listening.
"""

from __future__ import annotations

import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BYTES = 1 << 30
_CHUNK = b"\0" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "testbed-https"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = b"ok\n"
            self._head(200, len(body))
            self.wfile.write(body)
        elif path.startswith("/bytes/") and path[7:].isdigit() and int(path[7:]) <= MAX_BYTES:
            n = int(path[7:])
            self._head(200, n)
            while n > 0:
                chunk = _CHUNK[: min(n, len(_CHUNK))]
                self.wfile.write(chunk)
                n -= len(chunk)
        else:
            body = b"not found\n"
            self._head(404, len(body))
            self.wfile.write(body)

    def _head(self, code: int, length: int) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m testbed.services.https CERT KEY PORT", file=sys.stderr)
        return 2
    cert, key, port = argv[0], argv[1], int(argv[2])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print("ready", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The routes every web service of a node serves (``http``, ``https``, ``quic``), decided in one place.

=================  =====================================================================
``GET|HEAD /``         200, body ``ok\\n``
``GET|HEAD /bytes/N``  200, ``N`` zero bytes (download throughput, byte-count cuts);
                       ``N`` at most the server's limit (1 GiB over TCP, 64 MiB over QUIC)
``POST|PUT /upload``   reads the request body, discards it, 200 with the byte count and a
                       newline (``12345\\n``): upload throughput (``curl --data-binary @f``,
                       ``curl -T f``)
other paths            404; a known path with another method: 405 (with ``Allow``)
=================  =====================================================================

Pure: no I/O, so both servers and the tests share exactly one answer per request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RouteKind(enum.Enum):
    OK = "ok"
    BYTES = "bytes"
    UPLOAD = "upload"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    status: int
    body: bytes = b""
    """The whole body for OK and ERROR (for UPLOAD the server writes the count it read)."""
    size: int = 0
    """For BYTES: how many bytes to send."""
    allow: str = ""
    """For a 405: the methods the path accepts."""


_READ = ("GET", "HEAD")
_WRITE = ("POST", "PUT")
_OK_BODY = b"ok\n"


def route(method: str, target: str, max_bytes: int) -> Route:
    """The answer to ``method target`` (the target's query string is ignored)."""
    path = target.split("?", 1)[0]
    if path == "/":
        allowed = _READ
        found = Route(RouteKind.OK, 200, _OK_BODY)
    elif path.startswith("/bytes/") and path[7:].isdigit():
        allowed = _READ
        n = int(path[7:])
        if n > max_bytes:
            found = Route(RouteKind.ERROR, 400, f"at most {max_bytes} bytes per request\n".encode())
        else:
            found = Route(RouteKind.BYTES, 200, size=n)
    elif path == "/upload":
        allowed = _WRITE
        found = Route(RouteKind.UPLOAD, 200)
    else:
        return Route(RouteKind.ERROR, 404, b"not found\n")
    if method not in allowed:
        return Route(RouteKind.ERROR, 405, b"method not allowed\n", allow=", ".join(allowed))
    return found

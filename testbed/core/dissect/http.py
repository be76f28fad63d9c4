"""HTTP/1.x message starts: a request line or a status line at the start of one TCP segment.

A request line is ``method SP request-target SP HTTP-version CRLF`` (RFC 9112 §3), a status line
``HTTP-version SP 3DIGIT SP reason CRLF`` (§4). Only methods registered for HTTP/1.x use are
recognised (RFC 9110 §9 plus PATCH, RFC 5789): they are what the Iran protocol filter accepted as
HTTP (GET, POST, HEAD, CONNECT, OPTIONS, DELETE, PUT; censor-behaviors.md H.24) and what nDPI's
HTTP dissector keys on. One segment at a time, no reassembly: a request line split over two
segments is not recognised, as it was not by the filters it models.

The Host header (RFC 9112 §3.2) is read when it sits in the same segment, so a policy or a
report can name the site of a plain-HTTP request as it names a TLS SNI.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HTTP_METHODS", "HttpRequest", "parse_request", "parse_status_line"]

HTTP_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"})
# The request line must end within this many bytes: servers commonly refuse longer ones (RFC 9112
# §3 recommends supporting at least 8000 octets), and a segment is at most ~64 KiB anyway.
_MAX_LINE = 8192
_MAX_HOST = 255  # a DNS name (RFC 1035 §2.3.4); longer values are not a host


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    version: str  # "1.0" or "1.1"
    host: str | None  # the Host header, if in this segment


def _version(v: bytes) -> str | None:
    # HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3); HTTP/2 and later do not use text lines.
    if len(v) == 8 and v[:7] == b"HTTP/1." and v[7:8] in (b"0", b"1"):
        return v[5:].decode("ascii")
    return None


def parse_request(payload: bytes) -> HttpRequest | None:
    """The request that opens ``payload``, or None if it does not open with an HTTP/1.x request line."""
    sp = payload.find(b" ", 0, 8)
    if sp < 3 or payload[:sp] not in HTTP_METHODS:
        return None
    end = payload.find(b"\r\n", sp, _MAX_LINE)
    if end < 0:
        return None
    line = payload[:end]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[1]:
        return None
    target = parts[1]
    # request-target: visible ASCII only (RFC 9112 §3.2; no whitespace or controls).
    if any(c <= 0x20 or c >= 0x7F for c in target):
        return None
    version = _version(parts[2])
    if version is None:
        return None
    return HttpRequest(parts[0].decode("ascii"), target.decode("ascii"), version, _host(payload, end + 2))


def _host(payload: bytes, start: int) -> str | None:
    """The first Host header among the fields that follow in this segment."""
    pos = start
    n = len(payload)
    while pos < n:
        end = payload.find(b"\r\n", pos)
        if end < 0 or end == pos:
            return None  # cut short, or the blank line that ends the header section
        colon = payload.find(b":", pos, end)
        if colon > pos and payload[pos:colon].lower() == b"host":
            value = payload[colon + 1 : end].strip(b" \t")
            if not value or len(value) > _MAX_HOST or any(c <= 0x20 or c >= 0x7F for c in value):
                return None
            host = value.decode("ascii").lower()
            # Drop a port (``example.com:8080``), keeping an IPv6 literal's brackets intact.
            if host.startswith("["):
                close = host.find("]")
                return host[: close + 1] if close > 0 else None
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        pos = end + 2
    return None


def parse_status_line(payload: bytes) -> int | None:
    """The status code if ``payload`` opens with an HTTP/1.x status line, else None."""
    if len(payload) < 13 or payload[:7] != b"HTTP/1.":
        return None
    if _version(payload[:8]) is None or payload[8:9] != b" " or payload[12:13] not in (b" ", b"\r"):
        return None
    code = payload[9:12]
    if not code.isdigit() or not b"100" <= code <= b"599":
        return None
    if payload.find(b"\r\n", 12, _MAX_LINE) < 0:
        return None
    return int(code)

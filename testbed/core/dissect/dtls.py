"""DTLS 1.0/1.2/1.3 records (RFC 6347 §4.1, RFC 9147 §4) and their ClientHello/ServerHello.

A datagram may carry several records; a handshake message may be split over records and
datagrams (RFC 6347 §4.2.3), which ``DtlsHandshakeAssembler`` puts back together. Hellos are
parsed by the shared code in ``tls.py``. Nothing here raises on bad bytes.

Byte rules (the 2021 Snowflake rule matched ``1D 00 17 00 18`` at offset 0x5A of the datagram
holding pion's ServerHello, censor-behaviors.md H.19) need the raw datagram, which the censor
already has; ``DtlsHello.record_offset`` tells where in it the handshake message began.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from testbed.core.dissect.tls import (
    ClientHello,
    ServerHello,
    parse_client_hello_body,
    parse_server_hello_body,
)

__all__ = [
    "DTLS_VERSIONS",
    "ContentType",
    "DtlsHandshakeAssembler",
    "DtlsRecord",
    "HandshakeType",
    "looks_like_dtls",
    "parse_records",
]


class ContentType(enum.IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24
    TLS12_CID = 25  # RFC 9146 connection ID record; DTLS 1.3 uses 26 for ACK
    ACK = 26


class HandshakeType(enum.IntEnum):
    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    NEW_SESSION_TICKET = 4
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


# Record-layer versions: 0xFEFF DTLS 1.0, 0xFEFD DTLS 1.2 (and DTLS 1.3's legacy_record_version),
# 0xFEFC DTLS 1.3 only inside supported_versions. 0x0100 is OpenSSL's pre-RFC DTLS (DTLS1_BAD_VER).
DTLS_VERSIONS = frozenset({0xFEFF, 0xFEFD, 0xFEFC, 0x0100})

_REC = struct.Struct("!BHH6sH")


@dataclass(frozen=True, slots=True)
class DtlsRecord:
    content_type: int
    version: int
    epoch: int
    sequence: int
    fragment: bytes
    offset: int  # of the record header within the datagram


def parse_records(payload: bytes) -> list[DtlsRecord] | None:
    """All plaintext-header records in a datagram, or None if it does not start with one.

    DTLS 1.3 encrypted records use the unified header (first bits 001, RFC 9147 §4); they are
    skipped (returned records stop there) because after the handshake we do not need them.
    """
    out: list[DtlsRecord] = []
    off = 0
    n = len(payload)
    while n - off >= 13:
        ctype, version, epoch, seq, ln = _REC.unpack_from(payload, off)
        if not 20 <= ctype <= 26 or version not in DTLS_VERSIONS or off + 13 + ln > n:
            break
        out.append(
            DtlsRecord(ctype, version, epoch, int.from_bytes(seq, "big"),
                       payload[off + 13 : off + 13 + ln], off)
        )  # fmt: skip
        off += 13 + ln
        if n - off >= 1 and payload[off] & 0xE0 == 0x20:
            break  # DTLS 1.3 unified header follows
    return out or None


def looks_like_dtls(payload: bytes) -> bool:
    """First record header well formed (content type, version, length within the datagram)."""
    if len(payload) < 13:
        return False
    ctype, version, _epoch, _seq, ln = _REC.unpack_from(payload)
    return 20 <= ctype <= 26 and version in DTLS_VERSIONS and 13 + ln <= len(payload)


@dataclass(frozen=True, slots=True)
class DtlsHello:
    client_hello: ClientHello | None
    server_hello: ServerHello | None
    record_offset: int


class DtlsHandshakeAssembler:
    """Collects epoch-0 handshake fragments per message_seq until a hello is whole (bounded)."""

    __slots__ = ("_parts", "_held")

    MAX_BYTES = 16384

    def __init__(self) -> None:
        self._parts: dict[tuple[int, int], tuple[int, bytearray, set[tuple[int, int]]]] = {}
        self._held = 0

    def feed(self, records: list[DtlsRecord]) -> list[DtlsHello]:
        hellos: list[DtlsHello] = []
        for rec in records:
            if rec.content_type != 22 or rec.epoch != 0:
                continue
            frag = rec.fragment
            off = 0
            while len(frag) - off >= 12:
                msg_type = frag[off]
                length = int.from_bytes(frag[off + 1 : off + 4], "big")
                msg_seq = (frag[off + 4] << 8) | frag[off + 5]
                f_off = int.from_bytes(frag[off + 6 : off + 9], "big")
                f_len = int.from_bytes(frag[off + 9 : off + 12], "big")
                body = frag[off + 12 : off + 12 + f_len]
                off += 12 + f_len
                if len(body) != f_len or f_off + f_len > length or length > self.MAX_BYTES:
                    break
                if msg_type not in (1, 2):
                    continue
                if f_off == 0 and f_len == length:
                    whole = bytes(body)
                else:
                    whole_or_none = self._add(msg_type, msg_seq, length, f_off, body)
                    if whole_or_none is None:
                        continue
                    whole = whole_or_none
                hello = self._hello(msg_type, whole, rec.offset)
                if hello is not None:
                    hellos.append(hello)
        return hellos

    def _add(self, msg_type: int, msg_seq: int, length: int, f_off: int, body: bytes) -> bytes | None:
        key = (msg_type, msg_seq)
        entry = self._parts.get(key)
        if entry is None:
            if self._held + length > self.MAX_BYTES:
                return None
            entry = (length, bytearray(length), set())
            self._parts[key] = entry
            self._held += length
        total, buf, ranges = entry
        if total != length:
            return None
        buf[f_off : f_off + len(body)] = body
        ranges.add((f_off, f_off + len(body)))
        covered = 0
        for start, end in sorted(ranges):
            if start > covered:
                return None
            covered = max(covered, end)
        if covered < total:
            return None
        del self._parts[key]
        return bytes(buf)

    @staticmethod
    def _hello(msg_type: int, body: bytes, offset: int) -> DtlsHello | None:
        # ``raw`` gets a TLS-style 4-byte header (type, uint24 length) so that it reads the same
        # for TLS, QUIC and DTLS hellos: the handshake message, type byte first. DTLS's own
        # 12-byte header (message_seq, fragment fields) differs per fragment, so it is dropped.
        raw = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
        if msg_type == 1:
            ch = parse_client_hello_body(body, dtls=True, raw=raw)
            return None if ch is None else DtlsHello(ch, None, offset)
        sh = parse_server_hello_body(body, raw=raw)
        return None if sh is None else DtlsHello(None, sh, offset)

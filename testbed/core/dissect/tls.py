"""TLS/DTLS ClientHello and ServerHello bodies, TLS records over TCP, JA3/JA4 fingerprints.

The hello parsers are shared by TLS over TCP, DTLS (``dtls.py``) and QUIC (``quic.py``): one
parser, three transports, as a censor would have it. They never raise; bytes that are not a
well-formed hello give ``None``.

Fingerprints:

* JA3 (Salesforce, 2017): ``version,ciphers,extensions,groups,point_formats`` in decimal with
  GREASE (RFC 8701) removed, and its MD5. JA3S for a ServerHello: ``version,cipher,extensions``.
* JA4 (FoxIO, 2023): ``{t|q|d}{ver}{d|i}{nn ciphers}{nn exts}{alpn}_{sha256/12 of sorted
  ciphers}_{sha256/12 of sorted exts minus SNI/ALPN, "_", sigalgs in order}``; ``ja4_r`` is the
  same with the lists in clear instead of hashed.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

__all__ = [
    "ClientHello",
    "ExtType",
    "ServerHello",
    "TlsHelloAssembler",
    "is_grease",
    "ja3",
    "ja3s",
    "ja4",
    "parse_client_hello",
    "parse_client_hello_body",
    "parse_server_hello_body",
    "parse_tls_client_hello_record",
    "parse_tls_handshake_records",
]


class ExtType(enum.IntEnum):
    """TLS extension code points (IANA TLS ExtensionType registry)."""

    SERVER_NAME = 0
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    USE_SRTP = 14
    ALPN = 16
    SUPPORTED_VERSIONS = 43
    KEY_SHARE = 51
    QUIC_TRANSPORT_PARAMETERS = 57
    ENCRYPTED_CLIENT_HELLO = 0xFE0D


def is_grease(v: int) -> bool:
    """RFC 8701 GREASE values 0x0A0A, 0x1A1A, ... 0xFAFA."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


_U16 = struct.Struct("!H")


class _Extensions:
    """Extension lookups shared by both hellos (extensions are kept in wire order)."""

    __slots__ = ()
    extensions: tuple[tuple[int, bytes], ...]

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(t for t, _ in self.extensions)

    def ext(self, ext_type: int) -> bytes | None:
        for t, d in self.extensions:
            if t == ext_type:
                return d
        return None


@dataclass(frozen=True, slots=True)
class ClientHello(_Extensions):
    """A parsed ClientHello; ``raw`` is the handshake message (type byte first) for byte rules."""

    version: int  # legacy_version
    random: bytes
    session_id: bytes
    cookie: bytes | None  # DTLS only
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...]  # (type, data), wire order
    raw: bytes

    @property
    def sni(self) -> str | None:
        """The first host_name in server_name (RFC 6066 §3)."""
        d = self.ext(ExtType.SERVER_NAME)
        if d is None or len(d) < 2:
            return None
        end = min(len(d), 2 + _U16.unpack_from(d)[0])
        off = 2
        while off + 3 <= end:
            name_type = d[off]
            ln = _U16.unpack_from(d, off + 1)[0]
            off += 3
            if off + ln > end:
                return None
            if name_type == 0:
                return d[off : off + ln].decode("ascii", "replace")
            off += ln
        return None

    @property
    def alpn(self) -> tuple[str, ...]:
        d = self.ext(ExtType.ALPN)
        return () if d is None else _alpn_list(d)

    @property
    def supported_groups(self) -> tuple[int, ...]:
        return _u16_list(self.ext(ExtType.SUPPORTED_GROUPS), 2)

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        return _u16_list(self.ext(ExtType.SIGNATURE_ALGORITHMS), 2)

    @property
    def supported_versions(self) -> tuple[int, ...]:
        d = self.ext(ExtType.SUPPORTED_VERSIONS)
        if not d:
            return ()
        return _u16_list(d, 1)

    @property
    def ec_point_formats(self) -> tuple[int, ...]:
        d = self.ext(ExtType.EC_POINT_FORMATS)
        if not d:
            return ()
        return tuple(d[1 : 1 + d[0]])

    @property
    def has_ech(self) -> bool:
        """An encrypted_client_hello extension (draft-ietf-tls-esni) is present (real or GREASE)."""
        return self.ext(ExtType.ENCRYPTED_CLIENT_HELLO) is not None

    @property
    def max_version(self) -> int:
        vs = [v for v in self.supported_versions if not is_grease(v)]
        if vs:
            # DTLS versions count down (0xFEFD = 1.2, 0xFEFC = 1.3).
            return min(vs) if vs[0] >= 0xFE00 else max(vs)
        return self.version


@dataclass(frozen=True, slots=True)
class ServerHello(_Extensions):
    version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]
    raw: bytes

    @property
    def selected_version(self) -> int:
        d = self.ext(ExtType.SUPPORTED_VERSIONS)
        if d is not None and len(d) == 2:
            return (d[0] << 8) | d[1]
        return self.version

    @property
    def supported_groups(self) -> tuple[int, ...]:
        return _u16_list(self.ext(ExtType.SUPPORTED_GROUPS), 2)

    @property
    def alpn(self) -> tuple[str, ...]:
        d = self.ext(ExtType.ALPN)
        return () if d is None else _alpn_list(d)


def _u16_list(d: bytes | None, prefix: int) -> tuple[int, ...]:
    if not d or len(d) < prefix:
        return ()
    n = d[0] if prefix == 1 else _U16.unpack_from(d)[0]
    body = d[prefix : prefix + n]
    return tuple(_U16.unpack_from(body, i)[0] for i in range(0, len(body) - 1, 2))


def _alpn_list(d: bytes) -> tuple[str, ...]:
    if len(d) < 2:
        return ()
    end = min(len(d), 2 + _U16.unpack_from(d)[0])
    off = 2
    out: list[str] = []
    while off < end:
        ln = d[off]
        off += 1
        if off + ln > end:
            break
        out.append(d[off : off + ln].decode("ascii", "replace"))
        off += ln
    return tuple(out)


def _parse_extensions(body: bytes, off: int) -> tuple[tuple[int, bytes], ...] | None:
    if off == len(body):
        return ()
    if off + 2 > len(body):
        return None
    total = _U16.unpack_from(body, off)[0]
    off += 2
    end = off + total
    if end > len(body):
        return None
    exts: list[tuple[int, bytes]] = []
    while off < end:
        if end - off < 4:
            return None
        t, ln = struct.unpack_from("!HH", body, off)
        off += 4
        if off + ln > end:
            return None
        exts.append((t, body[off : off + ln]))
        off += ln
    return tuple(exts)


def _hello_head(body: bytes) -> tuple[int, bytes, bytes, int] | None:
    """legacy_version, random, legacy_session_id and the offset after them: the start both
    hellos share (RFC 8446 §4.1.2-4.1.3). Raises IndexError on a short body."""
    if len(body) < 38:
        return None
    sid_len = body[34]
    if sid_len > 32:
        return None
    return _U16.unpack_from(body)[0], body[2:34], body[35 : 35 + sid_len], 35 + sid_len


def parse_client_hello_body(body: bytes, *, dtls: bool = False, raw: bytes = b"") -> ClientHello | None:
    """The ClientHello structure after the handshake header (RFC 8446 §4.1.2, RFC 6347 §4.2.1)."""
    try:
        head = _hello_head(body)
        if head is None:
            return None
        version, random, session_id, off = head
        cookie: bytes | None = None
        if dtls:
            clen = body[off]
            cookie = body[off + 1 : off + 1 + clen]
            off += 1 + clen
        cs_len = _U16.unpack_from(body, off)[0]
        off += 2
        if cs_len & 1 or off + cs_len > len(body):
            return None
        suites = tuple(_U16.unpack_from(body, off + i)[0] for i in range(0, cs_len, 2))
        off += cs_len
        comp_len = body[off]
        comp = body[off + 1 : off + 1 + comp_len]
        off += 1 + comp_len
        if off > len(body):
            return None
        exts = _parse_extensions(body, off)
        if exts is None:
            return None
        return ClientHello(version, random, session_id, cookie, suites, comp, exts, raw)
    except (IndexError, struct.error):
        return None


def parse_server_hello_body(body: bytes, *, raw: bytes = b"") -> ServerHello | None:
    """The ServerHello structure after the handshake header (same in TLS and DTLS)."""
    try:
        head = _hello_head(body)
        if head is None:
            return None
        version, random, session_id, off = head
        cipher = _U16.unpack_from(body, off)[0]
        comp = body[off + 2]
        exts = _parse_extensions(body, off + 3)
        if exts is None:
            return None
        return ServerHello(version, random, session_id, cipher, comp, exts, raw)
    except (IndexError, struct.error):
        return None


def parse_client_hello(handshake: bytes) -> ClientHello | None:
    """A TLS handshake message (4-byte header: type 1, uint24 length) holding a ClientHello."""
    if len(handshake) < 4 or handshake[0] != 1:
        return None
    ln = int.from_bytes(handshake[1:4], "big")
    if 4 + ln > len(handshake):
        return None
    return parse_client_hello_body(handshake[4 : 4 + ln], raw=handshake[: 4 + ln])


def parse_tls_handshake_records(stream: bytes) -> tuple[bytes, bool] | None:
    """Concatenate handshake-record fragments from the start of a TLS byte stream.

    Returns (handshake bytes so far, complete) where complete means the first handshake message
    is whole; ``None`` if the stream does not start with a TLS handshake record.
    """
    if (len(stream) >= 1 and stream[0] != 22) or (len(stream) >= 2 and stream[1] != 3):
        return None
    out = bytearray()
    off = 0
    while len(stream) - off >= 5:
        ctype, major, _minor, ln = struct.unpack_from("!BBBH", stream, off)
        # RFC 8446 §5.1: a record holds at most 2^14 bytes (+2048 for old ciphertext expansion).
        if ctype != 22 or major != 3 or ln == 0 or ln > 18432:
            if off == 0:
                return None
            break
        out += stream[off + 5 : off + 5 + ln]  # the last record may still be partial
        off += 5 + ln
        if _complete(out):
            return bytes(out), True
    return bytes(out), _complete(out)


def _complete(hs: bytearray | bytes) -> bool:
    return len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big")


def parse_tls_client_hello_record(stream: bytes) -> ClientHello | None:
    """A ClientHello from the first bytes a TLS client sent (records may be fragmented)."""
    r = parse_tls_handshake_records(stream)
    if r is None or not r[1]:
        return None
    return parse_client_hello(r[0])


class TlsHelloAssembler:
    """Reassembles the client's first bytes from TCP segments by sequence number.

    Bounded (``max_bytes``, ``max_segments``) because every byte held is a byte an attacker can
    make the censor hold. Out-of-order segments are kept; overlap keeps the first copy.
    """

    __slots__ = ("base", "segments", "max_bytes", "max_segments", "held")

    def __init__(self, max_bytes: int = 16384, max_segments: int = 16) -> None:
        self.base: int | None = None
        self.segments: dict[int, bytes] = {}
        self.max_bytes = max_bytes
        self.max_segments = max_segments
        self.held = 0

    def add(self, seq: int, data: bytes) -> bytes | None:
        """Add a segment; returns the contiguous stream from the first byte, or None if full."""
        if not data:
            return self.stream()
        if self.base is None:
            self.base = seq
        rel = (seq - self.base) & 0xFFFFFFFF
        if rel >= self.max_bytes:
            return self.stream()
        if len(self.segments) >= self.max_segments or self.held >= self.max_bytes:
            return None
        if rel not in self.segments:
            self.segments[rel] = data
            self.held += len(data)
        return self.stream()

    def stream(self) -> bytes:
        out = bytearray()
        for rel in sorted(self.segments):
            seg = self.segments[rel]
            if rel > len(out):
                break
            out += seg[len(out) - rel :]
        return bytes(out)


# --- fingerprints -----------------------------------------------------------------------------

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0200: "s2",
    0x0100: "s1",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def ja3(ch: ClientHello) -> str:
    """The JA3 string (hash with ``md5_hex``)."""
    ciphers = "-".join(str(c) for c in ch.cipher_suites if not is_grease(c))
    exts = "-".join(str(t) for t, _ in ch.extensions if not is_grease(t))
    groups = "-".join(str(g) for g in ch.supported_groups if not is_grease(g))
    pf = "-".join(str(p) for p in ch.ec_point_formats)
    return f"{ch.version},{ciphers},{exts},{groups},{pf}"


def ja3s(sh: ServerHello) -> str:
    exts = "-".join(str(t) for t, _ in sh.extensions if not is_grease(t))
    return f"{sh.version},{sh.cipher_suite},{exts}"


def md5_hex(s: str) -> str:
    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()


def _sha12(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:12]


def _alnum(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def ja4(ch: ClientHello, transport: str) -> tuple[str, str]:
    """(JA4, JA4_r) for a ClientHello seen over ``transport`` "t" (TCP), "q" (QUIC) or "d" (DTLS)."""
    ver = _JA4_VERSIONS.get(ch.max_version, "00")
    sni = "d" if ch.ext(ExtType.SERVER_NAME) is not None else "i"
    ciphers = [c for c in ch.cipher_suites if not is_grease(c)]
    ext_types = [t for t, _ in ch.extensions if not is_grease(t)]
    alpn_code = "00"
    d = ch.ext(ExtType.ALPN)
    if d is not None and len(d) >= 3 and d[2] > 0 and len(d) >= 3 + d[2]:
        first = d[3 : 3 + d[2]]
        if _alnum(first[0]) and _alnum(first[-1]):
            alpn_code = chr(first[0]) + chr(first[-1])
        else:
            h = first.hex()
            alpn_code = h[0] + h[-1]
    a = f"{transport}{ver}{sni}{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}{alpn_code}"
    cipher_list = ",".join(f"{c:04x}" for c in sorted(ciphers))
    ext_list = ",".join(f"{t:04x}" for t in sorted(ext_types) if t not in (0, 16))
    sigs = ",".join(f"{s:04x}" for s in ch.signature_algorithms if not is_grease(s))
    c_input = f"{ext_list}_{sigs}" if sigs else ext_list
    b = _sha12(cipher_list) if ciphers else "000000000000"
    c = _sha12(c_input) if ext_list else "000000000000"
    return f"{a}_{b}_{c}", f"{a}_{cipher_list}_{c_input}"


def client_hello_fingerprints(ch: ClientHello, transport: str) -> dict[str, str]:
    s = ja3(ch)
    j4, j4r = ja4(ch, transport)
    return {"ja3": s, "ja3_hash": md5_hex(s), "ja4": j4, "ja4_r": j4r}


def server_hello_fingerprints(sh: ServerHello) -> dict[str, str]:
    s = ja3s(sh)
    return {"ja3s": s, "ja3s_hash": md5_hex(s)}

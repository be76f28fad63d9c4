"""dissect.tls: ClientHello/ServerHello parsing, record reassembly, JA3/JA4."""

from __future__ import annotations

import hashlib
import struct

from _dpi_helpers import build_client_hello, tls_record

from testbed.core.dissect.tls import (
    TlsHelloAssembler,
    is_grease,
    ja3,
    ja4,
    parse_client_hello,
    parse_server_hello_body,
    parse_tls_client_hello_record,
    parse_tls_handshake_records,
)


def test_client_hello_fields() -> None:
    ch = parse_client_hello(build_client_hello(sni="www.example.com", alpn=[b"h2", b"http/1.1"], ech=True))
    assert ch is not None
    assert ch.sni == "www.example.com"
    assert ch.alpn == ("h2", "http/1.1")
    assert ch.supported_groups == (0x1A1A, 0x001D, 0x0017)
    assert ch.signature_algorithms == (0x0403, 0x0804)
    assert ch.max_version == 0x0304 and ch.has_ech
    assert ch.extension_types[:3] == (0x0A0A, 0, 10)  # order is kept, GREASE included
    assert ch.raw[:1] == b"\x01"


def test_ja3_drops_grease() -> None:
    ch = parse_client_hello(build_client_hello(alpn=[b"h2"]))
    assert ch is not None
    # version, ciphers, extensions (no 0x0a0a), groups (no 0x1a1a), point formats
    assert ja3(ch) == "771,4865-4866-49195,0-10-11-13-16-43,29-23,0"


def test_ja4_layout_and_hashes() -> None:
    ch = parse_client_hello(build_client_hello(alpn=[b"h2"]))
    assert ch is not None
    fp, raw = ja4(ch, "t")
    # t, TLS 1.3 from supported_versions, SNI present, 3 ciphers, 6 extensions, ALPN "h2"
    assert fp.startswith("t13d0306h2_")
    ciphers = "1301,1302,c02b"
    exts = "000a,000b,000d,002b"  # sorted, without SNI (0000) and ALPN (0010)
    sigs = "0403,0804"
    assert raw == f"t13d0306h2_{ciphers}_{exts}_{sigs}"
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12]  # noqa: E731
    assert fp == f"t13d0306h2_{sha(ciphers)}_{sha(exts + '_' + sigs)}"


def test_ja4_without_sni_or_alpn() -> None:
    ch = parse_client_hello(build_client_hello(sni=None, alpn=None))
    assert ch is not None
    assert ja4(ch, "q")[0].startswith("q13i030400_")  # groups, formats, sigalgs, versions


def test_grease() -> None:
    assert is_grease(0x0A0A) and is_grease(0xFAFA) and not is_grease(0x0A0B)


def test_records_split_and_reassembled() -> None:
    hs = build_client_hello(sni="split.example", pad=600)
    # one handshake message over two records, over three TCP segments
    recs = tls_record(hs[:300]) + tls_record(hs[300:])
    asm = TlsHelloAssembler()
    segs = [recs[:100], recs[100:400], recs[400:]]
    seq = 1000
    stream = b""
    for i in (0, 2, 1):  # out of order
        off = sum(len(s) for s in segs[:i])
        stream = asm.add(seq + off, segs[i]) or stream
    assert stream == recs
    ch = parse_tls_client_hello_record(stream)
    assert ch is not None and ch.sni == "split.example"
    partial = parse_tls_handshake_records(recs[:100])
    assert partial is not None and partial[1] is False
    assert parse_tls_client_hello_record(recs[:100]) is None


def test_not_tls() -> None:
    assert parse_tls_handshake_records(b"GET / HTTP/1.1\r\n") is None
    assert parse_client_hello(b"\x01\x00\x00\x05abcde") is None
    assert parse_client_hello(b"") is None


def test_server_hello() -> None:
    exts = struct.pack("!HHH", 43, 2, 0x0304)
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x13\x01" + b"\x00" + struct.pack("!H", len(exts)) + exts
    sh = parse_server_hello_body(body)
    assert sh is not None and sh.cipher_suite == 0x1301 and sh.selected_version == 0x0304

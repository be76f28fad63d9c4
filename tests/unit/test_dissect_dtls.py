"""dissect.dtls: records, fragmented handshakes, hellos, and the Snowflake byte rule."""

from __future__ import annotations

import struct

import pytest
from _dpi_helpers import SHARED_PCAPS, build_client_hello

from testbed.core.dissect.dtls import DtlsHandshakeAssembler, looks_like_dtls, parse_records


def dtls_handshake(msg_type: int, body: bytes, *, seq: int = 0, frag: tuple[int, int] | None = None) -> bytes:
    off, ln = frag or (0, len(body))
    return (
        bytes([msg_type]) + len(body).to_bytes(3, "big") + struct.pack("!H", seq)
        + off.to_bytes(3, "big") + ln.to_bytes(3, "big") + body[off : off + ln]
    )  # fmt: skip


def dtls_record(fragment: bytes, *, ctype: int = 22, version: int = 0xFEFD, epoch: int = 0, seq: int = 0) -> bytes:
    return (
        struct.pack("!BHH", ctype, version, epoch)
        + seq.to_bytes(6, "big")
        + struct.pack("!H", len(fragment))
        + fragment
    )


def pion_like_server_hello() -> bytes:
    """A DTLS 1.2 ServerHello datagram laid out like pion/dtls < 2.0.12's: supported_groups
    (x25519, P-256, P-384) lands at offset 0x5A of the datagram (censor-behaviors.md H.19)."""
    exts = (
        struct.pack("!HH", 0xFF01, 1) + b"\x00"  # renegotiation_info
        + struct.pack("!HH", 0x0017, 0)  # extended_master_secret
        + struct.pack("!HHHH", 0x000E, 5, 2, 0x0001) + b"\x00"  # use_srtp
        + struct.pack("!HHH", 0x000A, 8, 6) + bytes.fromhex("001d00170018")
    )  # fmt: skip
    body = b"\xfe\xfd" + b"\x22" * 32 + b"\x00" + b"\xc0\x2b" + b"\x00" + struct.pack("!H", len(exts)) + exts
    return dtls_record(dtls_handshake(2, body), seq=1)


def test_records_and_hello() -> None:
    ch = build_client_hello(dtls=True, sni="stun.example")[4:]
    dgram = dtls_record(dtls_handshake(1, ch))
    assert looks_like_dtls(dgram)
    recs = parse_records(dgram)
    assert recs is not None and recs[0].version == 0xFEFD
    (hello,) = DtlsHandshakeAssembler().feed(recs)
    assert hello.client_hello is not None and hello.client_hello.sni == "stun.example"
    assert hello.client_hello.cookie == b""


def test_fragmented_client_hello() -> None:
    ch = build_client_hello(dtls=True, pad=300)[4:]
    asm = DtlsHandshakeAssembler()
    a = dtls_record(dtls_handshake(1, ch, frag=(0, 200)))
    b = dtls_record(dtls_handshake(1, ch, frag=(200, len(ch) - 200)), seq=1)
    assert asm.feed(parse_records(b) or []) == []
    (hello,) = asm.feed(parse_records(a) or [])
    assert hello.client_hello is not None


def test_server_hello_snowflake_offset() -> None:
    dgram = pion_like_server_hello()
    assert dgram[:3] == b"\x16\xfe\xfd"
    assert dgram[0x5A : 0x5A + 5] == bytes.fromhex("1d00170018")
    (hello,) = DtlsHandshakeAssembler().feed(parse_records(dgram) or [])
    assert hello.server_hello is not None and hello.server_hello.supported_groups == (0x1D, 0x17, 0x18)


def test_not_dtls() -> None:
    assert parse_records(b"\x16\x03\x01\x00\x05hello") is None  # TLS, not DTLS
    assert parse_records(b"") is None
    assert not looks_like_dtls(b"\x17\xfe\xfd" + b"\0" * 8 + b"\xff\xff")


def test_real_dtls_capture() -> None:
    if not SHARED_PCAPS.is_dir():
        pytest.skip(f"shared captures not found at {SHARED_PCAPS}")
    from testbed.analysis.classify import run

    flows, _ = run(str(SHARED_PCAPS / "dtls2.pcap"))
    dtls = [f for f in flows if "dtls" in f.labels]
    assert dtls and any(f.fingerprints.get("ja4", "").startswith("d") for f in dtls)


def test_raw_is_the_handshake_message_like_tls() -> None:
    ch = build_client_hello(dtls=True)[4:]
    (hello,) = DtlsHandshakeAssembler().feed(parse_records(dtls_record(dtls_handshake(1, ch))) or [])
    assert hello.client_hello is not None
    assert hello.client_hello.raw == b"\x01" + len(ch).to_bytes(3, "big") + ch

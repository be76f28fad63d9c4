"""dissect.quic: Initial keys (RFC 9001 App. A, RFC 9369 App. A), decrypt, CRYPTO reassembly."""

from __future__ import annotations

from pathlib import Path

import pytest
from _dpi_helpers import SHARED_PCAPS, build_client_hello
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from testbed.core.dissect.quic import (
    QUIC_DRAFT29,
    QUIC_V1,
    QUIC_V2,
    QuicCryptoAssembler,
    derive_initial_keys,
    parse_gquic,
    parse_initial,
)
from testbed.core.dissect.tls import ExtType

DCID = bytes.fromhex("8394c8f03e515708")


def test_rfc9001_client_initial_keys() -> None:
    k = derive_initial_keys(QUIC_V1, DCID)
    assert k is not None
    assert k.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert k.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert k.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_rfc9369_v2_client_initial_keys() -> None:
    k = derive_initial_keys(QUIC_V2, DCID)
    assert k is not None
    assert k.key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert k.iv.hex() == "91f73e2351d8fa91660e909f"
    assert k.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"


def _varint(v: int) -> bytes:
    if v < 64:
        return bytes([v])
    if v < 16384:
        return (v | 0x4000).to_bytes(2, "big")
    return (v | 0x80000000).to_bytes(4, "big")


def build_initial(version: int, dcid: bytes, crypto: list[tuple[int, bytes]], pn: int = 0) -> bytes:
    """A client Initial protected as RFC 9001 §5 says, padded to 1200 bytes."""
    frames = b"".join(b"\x06" + _varint(o) + _varint(len(d)) + d for o, d in crypto)
    pn_bytes = pn.to_bytes(2, "big")
    ptype = 1 if version == QUIC_V2 else 0
    first = 0xC0 | (ptype << 4) | 0x01  # 2-byte packet number
    header_wo_len = bytes([first]) + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + b"\x00" + b"\x00"
    plain_len = max(len(frames), 1200 - len(header_wo_len) - 4 - 2 - 16)
    frames += b"\x00" * (plain_len - len(frames))
    length = 2 + plain_len + 16
    header = header_wo_len + (length | 0x4000).to_bytes(2, "big") + pn_bytes
    keys = derive_initial_keys(version, dcid)
    assert keys is not None
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    ct = AESGCM(keys.key).encrypt(nonce, frames, header)
    pn_offset = len(header) - 2
    sample = ct[4 - 2 : 4 - 2 + 16]
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    hb = bytearray(header)
    hb[0] ^= mask[0] & 0x0F
    hb[pn_offset] ^= mask[1]
    hb[pn_offset + 1] ^= mask[2]
    return bytes(hb) + ct


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2, QUIC_DRAFT29, 0xFF00001B, 0xFF000022])
def test_decrypt_and_reassemble_across_packets(version: int) -> None:
    ch = build_client_hello(sni="example.org", alpn=[b"h3"], pad=1500)
    half = len(ch) // 2
    p1 = build_initial(version, DCID, [(0, ch[:half])], pn=0)
    p2 = build_initial(version, DCID, [(half, ch[half:])], pn=1)
    asm = QuicCryptoAssembler()
    got = None
    for pkt in (p2, p1):  # out of order on purpose
        (ini,) = parse_initial(pkt)
        assert ini.version == version and ini.dcid == DCID
        got = asm.feed(ini.crypto) or got
    assert got is not None and got.sni == "example.org" and got.alpn == ("h3",)
    assert got.ext(ExtType.SERVER_NAME) is not None


def test_garbage_and_tampering_give_nothing() -> None:
    pkt = bytearray(build_initial(QUIC_V1, DCID, [(0, b"\x01\x00\x00\x00")]))
    pkt[-1] ^= 1
    assert parse_initial(bytes(pkt)) == []
    assert parse_initial(b"\xc0\x00\x00\x00\x01" + b"\xff" * 50) == []
    assert parse_initial(b"") == []


def test_gquic_chlo() -> None:
    # Legacy public header (flags 0x0d: version, 8-byte CID, 1-byte packet number) + CHLO.
    tags = [(b"SNI\x00", b"www.google.com"), (b"UAID", b"Chrome/49")]
    values = b"".join(v for _, v in tags)
    entries, end = b"", 0
    for t, v in tags:
        end += len(v)
        entries += t + end.to_bytes(4, "little")
    chlo = b"CHLO" + len(tags).to_bytes(2, "little") + b"\0\0" + entries + values
    pkt = b"\x0d" + b"\x11" * 8 + b"Q035" + b"\x01" + b"\0" * 12 + b"\xa0\x01\x00\x04" + chlo
    h = parse_gquic(pkt)
    assert h is not None and h.version == "Q035" and h.sni == "www.google.com"
    assert parse_gquic(b"\x0d" + b"\x11" * 8 + b"X035" + b"\0" * 10) is None


def test_real_draft29_capture() -> None:
    if not SHARED_PCAPS.is_dir():
        pytest.skip(f"shared captures not found at {SHARED_PCAPS}")
    from testbed.analysis.classify import run

    flows, _ = run(str(Path(SHARED_PCAPS) / "quic-29.pcap"))
    (f,) = [f for f in flows if "quic" in f.labels]
    assert f.sni and f.fingerprints["ja4"].startswith("q")

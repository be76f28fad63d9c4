"""QUIC Initial packets: derive the client's Initial keys, remove header protection, decrypt,
and collect CRYPTO frames until the ClientHello is whole (RFC 9000, RFC 9001 §5, RFC 9369 §3).

Anyone on the path can do this: Initial keys derive from the client's Destination Connection ID
and a public per-version salt, which is why censors read QUIC SNIs (censor-behaviors.md C).

Versions: 1 (RFC 9001), 2 (RFC 9369: other salt, labels "quicv2 ...", Initial type bits 0b01),
and draft-29 (0xff00001d, the last draft Chrome shipped widely). Never raises on bad bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from testbed.core.dissect.tls import ClientHello, parse_client_hello

__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "QUIC_DRAFT29",
    "InitialKeys",
    "QuicCryptoAssembler",
    "QuicInitial",
    "derive_initial_keys",
    "looks_like_quic_long_header",
    "parse_initial",
]

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF
QUIC_DRAFT29 = 0xFF00001D

# Initial salts: RFC 9001 §5.2, RFC 9369 §3.3.1, draft-ietf-quic-tls-29 §5.2.
_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_D29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_D23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")  # drafts 23-28
_SALTS = {
    QUIC_V1: _SALT_V1,
    QUIC_V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
    # drafts 29-32 share draft-29's salt; 33 and 34 already used v1's
    **{0xFF000000 + d: _SALT_D29 for d in range(29, 33)},
    **{0xFF000000 + d: _SALT_V1 for d in (33, 34)},
    **{0xFF000000 + d: _SALT_D23 for d in range(23, 29)},
    # Facebook's mvfst: 0xfaceb002 follows draft-27, 0xfaceb00e v1 (mvfst QuicVersion.h)
    0xFACEB002: _SALT_D23,
    0xFACEB00E: _SALT_V1,
}


def _hkdf_expand_label(secret: bytes, label: str, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, SHA-256, length <= 32."""
    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


@dataclass(frozen=True, slots=True)
class InitialKeys:
    key: bytes
    iv: bytes
    hp: bytes


def derive_initial_keys(version: int, dcid: bytes, *, server: bool = False) -> InitialKeys | None:
    salt = _SALTS.get(version)
    if salt is None:
        return None
    initial_secret = hmac.new(salt, dcid, hashlib.sha256).digest()  # HKDF-Extract
    secret = _hkdf_expand_label(initial_secret, "server in" if server else "client in", 32)
    prefix = "quicv2 " if version == QUIC_V2 else "quic "
    return InitialKeys(
        _hkdf_expand_label(secret, prefix + "key", 16),
        _hkdf_expand_label(secret, prefix + "iv", 12),
        _hkdf_expand_label(secret, prefix + "hp", 16),
    )


def _varint(buf: bytes, off: int) -> tuple[int, int]:
    """RFC 9000 §16 variable-length integer -> (value, new offset). IndexError if short."""
    first = buf[off]
    ln = 1 << (first >> 6)
    if off + ln > len(buf):
        raise IndexError("varint past end")
    v = first & 0x3F
    for i in range(1, ln):
        v = (v << 8) | buf[off + i]
    return v, off + ln


def looks_like_quic_long_header(payload: bytes) -> bool:
    """Long header with the fixed bit (RFC 9000 §17.2) and a version we know."""
    if len(payload) < 7 or payload[0] & 0xC0 != 0xC0:
        return False
    return int.from_bytes(payload[1:5], "big") in _SALTS


def looks_like_client_initial(payload: bytes) -> bool:
    """A long-header packet of a known or draft/vendor QUIC version in a datagram of at least
    1200 bytes, the size RFC 9000 §14.1 requires of datagrams carrying a client Initial.

    Enough to call a flow QUIC when decryption is impossible (a salt we do not have), and the
    shape of the 2022 TSPU rule (censor-behaviors.md, reference numbers).
    """
    if len(payload) < 1200 or payload[0] & 0xC0 != 0xC0:
        return False
    v = int.from_bytes(payload[1:5], "big")
    # known, IETF drafts (0xff0000xx), mvfst (0xfaceb0xx), or a GREASE-reserved 0x?a?a?a?a
    return (
        v in _SALTS
        or v >> 8 == 0xFF0000
        or v >> 8 == 0xFACEB0
        or v & 0x0F0F0F0F == 0x0A0A0A0A
        or payload[1:2] in (b"Q", b"T")
    )


@dataclass(frozen=True, slots=True)
class QuicInitial:
    version: int
    dcid: bytes
    scid: bytes
    packet_number: int
    frames: bytes  # decrypted payload
    crypto: tuple[tuple[int, bytes], ...]  # (offset, data) of CRYPTO frames


def _is_initial(first: int, version: int) -> bool:
    ptype = (first >> 4) & 0x3
    return ptype == (1 if version == QUIC_V2 else 0)


def parse_initial(payload: bytes, *, server: bool = False) -> list[QuicInitial]:
    """Decrypt every client (or server) Initial packet coalesced in one datagram. Never raises."""
    out: list[QuicInitial] = []
    off = 0
    for _ in range(4):  # RFC 9000 §12.2: a datagram may coalesce a few packets
        if len(payload) - off < 7 or payload[off] & 0xC0 != 0xC0:
            break
        try:
            pkt, end = _parse_one(payload, off, server)
        except (IndexError, ValueError, InvalidTag):
            break
        if pkt is not None:
            out.append(pkt)
        if end <= off:
            break
        off = end
    return out


def _parse_one(buf: bytes, start: int, server: bool) -> tuple[QuicInitial | None, int]:
    first = buf[start]
    version = int.from_bytes(buf[start + 1 : start + 5], "big")
    if version not in _SALTS:
        raise ValueError("unknown QUIC version")
    off = start + 5
    dcid_len = buf[off]
    if dcid_len > 20:
        raise ValueError("DCID too long")
    dcid = buf[off + 1 : off + 1 + dcid_len]
    off += 1 + dcid_len
    scid_len = buf[off]
    if scid_len > 20:
        raise ValueError("SCID too long")
    scid = buf[off + 1 : off + 1 + scid_len]
    off += 1 + scid_len
    initial = _is_initial(first, version)
    if initial:
        token_len, off = _varint(buf, off)
        off += token_len
    length, off = _varint(buf, off)
    pn_offset = off
    end = pn_offset + length
    if end > len(buf) or length < 20:
        raise ValueError("QUIC packet length past datagram")
    if not initial:
        return None, end
    keys = derive_initial_keys(version, dcid, server=server)
    if keys is None:
        return None, end
    sample = buf[pn_offset + 4 : pn_offset + 20]
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    first_plain = first ^ (mask[0] & 0x0F)  # RFC 9001 §5.4.1, long header: 4 bits
    pn_len = (first_plain & 0x03) + 1
    pn_bytes = bytes(buf[pn_offset + i] ^ mask[1 + i] for i in range(pn_len))
    pn = int.from_bytes(pn_bytes, "big")
    header = bytes([first_plain]) + buf[start + 1 : pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    plaintext = AESGCM(keys.key).decrypt(nonce, buf[pn_offset + pn_len : end], header)
    return QuicInitial(version, dcid, scid, pn, plaintext, _crypto_frames(plaintext)), end


def _crypto_frames(frames: bytes) -> tuple[tuple[int, bytes], ...]:
    """CRYPTO frames (type 0x06) of an Initial; stops at a frame type an Initial may not carry."""
    out: list[tuple[int, bytes]] = []
    off = 0
    n = len(frames)
    try:
        while off < n:
            ftype = frames[off]
            if ftype == 0x00:  # PADDING
                off += 1
            elif ftype == 0x01:  # PING
                off += 1
            elif ftype in (0x02, 0x03):  # ACK (RFC 9000 §19.3)
                off += 1
                _largest, off = _varint(frames, off)
                _delay, off = _varint(frames, off)
                count, off = _varint(frames, off)
                _first, off = _varint(frames, off)
                for _ in range(count):
                    _gap, off = _varint(frames, off)
                    _rng, off = _varint(frames, off)
                if ftype == 0x03:
                    for _ in range(3):
                        _ecn, off = _varint(frames, off)
            elif ftype == 0x06:  # CRYPTO
                c_off, off = _varint(frames, off + 1)
                c_len, off = _varint(frames, off)
                if off + c_len > n:
                    break
                out.append((c_off, frames[off : off + c_len]))
                off += c_len
            elif ftype in (0x1C, 0x1D):  # CONNECTION_CLOSE
                break
            else:
                break
    except IndexError:
        pass
    return tuple(out)


class QuicCryptoAssembler:
    """Joins CRYPTO frame data by offset across Initial packets until the ClientHello is whole.

    Chrome's ClientHello with a post-quantum key share spans two Initial packets.
    """

    __slots__ = ("_chunks", "_held", "done")

    MAX_BYTES = 16384

    def __init__(self) -> None:
        self._chunks: dict[int, bytes] = {}
        self._held = 0
        self.done = False

    def feed(self, crypto: tuple[tuple[int, bytes], ...]) -> ClientHello | None:
        for c_off, data in crypto:
            if c_off >= self.MAX_BYTES or self._held >= self.MAX_BYTES:
                continue
            if c_off not in self._chunks or len(self._chunks[c_off]) < len(data):
                self._held += len(data)
                self._chunks[c_off] = data
        stream = bytearray()
        for c_off in sorted(self._chunks):
            if c_off > len(stream):
                break
            data = self._chunks[c_off]
            stream += data[len(stream) - c_off :]
        if len(stream) < 4:
            return None
        need = 4 + int.from_bytes(stream[1:4], "big")
        if len(stream) < need:
            return None
        self.done = True
        return parse_client_hello(bytes(stream[:need]))


# --- Google QUIC (gQUIC, Q0xx) ------------------------------------------------------------------
# Chrome spoke gQUIC until ~2020 (Q043/Q046/Q050); its client hello (a "CHLO" tag-value message)
# travels in clear up to Q046, so a DPI reads its SNI directly. Layouts: Chromium
# "QUIC Wire Layout Specification" (public header) and "QUIC Crypto" (CHLO tag map).


@dataclass(frozen=True, slots=True)
class GQuicHello:
    version: str  # "Q043"
    sni: str | None
    user_agent: str | None


def _gquic_version(v: bytes) -> str | None:
    if len(v) == 4 and v[:1] in (b"Q", b"T") and v[1:].isdigit():
        return v.decode("ascii")
    return None


def parse_gquic(payload: bytes) -> GQuicHello | None:
    """A gQUIC client packet carrying a version (legacy public header or Q046+ long header)."""
    if len(payload) < 14:
        return None
    b0 = payload[0]
    if b0 & 0x80:
        # Q046+ use the IETF invariant long header (RFC 8999 §5.1) with a "Q0xx" version.
        version = _gquic_version(payload[1:5])
    elif b0 & 0x09 == 0x09 and not b0 & 0xC0:
        # Legacy public header: flags (VERSION 0x01, 8-byte connection id 0x08), CID, version.
        version = _gquic_version(payload[9:13])
    else:
        return None
    if version is None:
        return None
    sni = ua = None
    i = payload.find(b"CHLO", 0, 96)
    if i >= 0 and len(payload) >= i + 8:
        tags = _chlo_tags(payload, i)
        raw_sni = tags.get(b"SNI\x00")
        raw_ua = tags.get(b"UAID")
        sni = raw_sni.decode("ascii", "replace") if raw_sni else None
        ua = raw_ua.decode("ascii", "replace") if raw_ua else None
    return GQuicHello(version, sni, ua)


def _chlo_tags(buf: bytes, i: int) -> dict[bytes, bytes]:
    """The CHLO tag map: count (u16 LE), padding, then (tag, end offset u32 LE) pairs, values."""
    n = int.from_bytes(buf[i + 4 : i + 6], "little")
    if n > 64:
        return {}
    entries = i + 8
    values = entries + 8 * n
    if values > len(buf):
        return {}
    out: dict[bytes, bytes] = {}
    prev = 0
    for k in range(n):
        e = entries + 8 * k
        tag = buf[e : e + 4]
        end = int.from_bytes(buf[e + 4 : e + 8], "little")
        if end < prev or values + end > len(buf):
            break
        out[tag] = buf[values + prev : values + end]
        prev = end
    return out

"""RTP/RTCP (RFC 3550) header views and the heuristics a DPI uses to call a UDP flow RTP.

SRTP (RFC 3711) encrypts only the payload, so the same header rules recognise it. A single
packet proves little (any byte 0x80-0xBF looks like version 2), so ``RtpTracker`` wants a
stable SSRC with small sequence steps before it says "rtp", as nDPI does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["RtcpHeader", "RtpHeader", "RtpTracker", "parse_rtcp", "parse_rtp", "rtcp_compound_exact"]

_RTP = struct.Struct("!BBHII")
_RTCP = struct.Struct("!BBHI")

# RTCP packet types SR 200, RR 201, SDES 202, BYE 203, APP 204 (RFC 3550 §12.1), RTPFB 205,
# PSFB 206 (RFC 4585), XR 207 (RFC 3611). With RTP/RTCP multiplexing on one port (RFC 5761 §4)
# these are the RTP payload types 72-79 with the marker bit set, which RTP must therefore avoid.
RTCP_TYPES = frozenset(range(200, 208))


@dataclass(frozen=True, slots=True)
class RtpHeader:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_length: int


@dataclass(frozen=True, slots=True)
class RtcpHeader:
    packet_type: int
    count: int
    length_words: int
    ssrc: int


def parse_rtp(payload: bytes) -> RtpHeader | None:
    if len(payload) < 12:
        return None
    b0, b1, seq, ts, ssrc = _RTP.unpack_from(payload)
    if b0 & 0xC0 != 0x80:
        return None
    pt = b1 & 0x7F
    if 72 <= pt <= 79:  # would collide with RTCP, RFC 5761 §4
        return None
    hlen = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension (RFC 3550 §5.3.1)
        if len(payload) < hlen + 4:
            return None
        hlen += 4 + 4 * int.from_bytes(payload[hlen + 2 : hlen + 4], "big")
    if hlen > len(payload):
        return None
    return RtpHeader(bool(b1 & 0x80), pt, seq, ts, ssrc, hlen)


def parse_rtcp(payload: bytes) -> RtcpHeader | None:
    """The first RTCP packet of a (possibly compound) datagram, length-checked."""
    if len(payload) < 8:
        return None
    b0, pt, ln, ssrc = _RTCP.unpack_from(payload)
    if b0 & 0xC0 != 0x80 or pt not in RTCP_TYPES:
        return None
    if 4 * (ln + 1) > len(payload):
        return None
    return RtcpHeader(pt, b0 & 0x1F, ln, ssrc)


def rtcp_compound_exact(payload: bytes) -> bool:
    """Every packet of a compound RTCP datagram (RFC 3550 §6.1) is well formed and their
    lengths add up to the datagram exactly; SRTCP (RFC 3711 §3.4) adds a 4-byte index and a
    10-byte tag (or 4 with a shortened tag) after the first packet, so those tails also count."""
    off = 0
    n = len(payload)
    count = 0
    while n - off >= 8 and count < 8:
        b0, pt = payload[off], payload[off + 1]
        if b0 & 0xC0 != 0x80 or pt not in RTCP_TYPES:
            break
        off += 4 * (((payload[off + 2] << 8) | payload[off + 3]) + 1)
        count += 1
        if off == n:
            return True
    return count >= 1 and off < n and (n - off) in (8, 14, 18, 20)


class RtpTracker:
    """Per-flow, per-direction evidence: same SSRC and sequence numbers advancing by 1..``gap``."""

    __slots__ = ("_last", "hits", "rtcp_hits")

    def __init__(self) -> None:
        self._last: dict[tuple[bool, int], int] = {}  # (direction, ssrc) -> last seq
        self.hits = 0
        self.rtcp_hits = 0

    def feed(self, payload: bytes, original: bool, gap: int = 16) -> bool:
        """Account one datagram; True once the flow has enough evidence to be called RTP."""
        if len(payload) >= 8 and payload[1] in RTCP_TYPES:
            if rtcp_compound_exact(payload):
                self.rtcp_hits += 1
            return self.decided
        h = parse_rtp(payload)
        if h is None:
            return self.decided
        key = (original, h.ssrc)
        last = self._last.get(key)
        if last is not None and 0 < ((h.sequence - last) & 0xFFFF) <= gap:
            self.hits += 1
        if len(self._last) < 16:
            self._last[key] = h.sequence
        elif key in self._last:
            self._last[key] = h.sequence
        return self.decided

    @property
    def decided(self) -> bool:
        # One repeat of a 32-bit SSRC with the next sequence numbers is already a 1-in-2^32
        # coincidence for random bytes; so is an RTCP compound whose lengths tile the datagram.
        return self.hits >= 1 or self.rtcp_hits >= 1

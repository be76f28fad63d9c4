"""dissect.rtp: header parsing and the per-flow heuristic (SSRC stable, sequence advancing)."""

from __future__ import annotations

import struct

from testbed.core.dissect.rtp import RtpTracker, parse_rtcp, parse_rtp, rtcp_compound_exact


def rtp(seq: int, ssrc: int = 0xCAFE, pt: int = 111, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq, seq * 960, ssrc) + b"\x55" * 40


def test_parse_rtp_and_rtcp() -> None:
    h = parse_rtp(rtp(7))
    assert h is not None and (h.payload_type, h.sequence, h.ssrc) == (111, 7, 0xCAFE)
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0xCAFE) + b"\0" * 24
    r = parse_rtcp(rr)
    assert r is not None and r.packet_type == 201 and r.count == 1
    assert parse_rtp(b"\x40" + b"\0" * 20) is None  # version 1
    assert parse_rtp(rtp(1, pt=72, marker=True)) is None  # would be RTCP SR (RFC 5761)


def test_tracker_needs_continuity() -> None:
    t = RtpTracker()
    assert not t.feed(rtp(100), True)
    assert not t.feed(rtp(100, ssrc=9), False)  # other direction, other stream
    assert t.feed(rtp(101), True)


def test_rtcp_compound_and_srtcp_tail() -> None:
    sr = struct.pack("!BBHI", 0x80, 200, 6, 1) + b"\0" * 20
    sdes = struct.pack("!BBHI", 0x81, 202, 2, 1) + b"\x01\x02ab"
    assert rtcp_compound_exact(sr + sdes)
    assert rtcp_compound_exact(sr + b"\x80\0\0\x01" + b"\x11" * 10)  # SRTCP index + tag
    assert not rtcp_compound_exact(sr + sdes + b"\x00")
    t = RtpTracker()
    assert t.feed(sr + sdes, True) and t.rtcp_hits == 1


def test_tracker_rejects_random_v2_bytes() -> None:
    t = RtpTracker()
    for i in range(10):
        t.feed(struct.pack("!BBHII", 0x80, 0, (i * 7919) & 0xFFFF, 0, i * 1000003), True)
    assert not t.decided

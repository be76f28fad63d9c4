"""core.packet: IPv4/IPv6 (+ extension headers), TCP/UDP, fragments, malformed input."""

from __future__ import annotations

import struct

import pytest
from _dpi_helpers import ipv4, tcp, tcp4, udp, udp4

from testbed.core.packet import MalformedPacket, format_addr, format_endpoint, parse_ip

V6_SRC = bytes.fromhex("fd000000000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000002")


def ipv6(nxt: int, body: bytes, hlim: int = 55) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(body), nxt, hlim, V6_SRC, V6_DST) + body


def test_ipv4_udp() -> None:
    p = parse_ip(udp4("192.0.2.1", 5000, "198.51.100.2", 3478, b"hello"))
    assert (p.version, p.proto, p.sport, p.dport, p.payload) == (4, 17, 5000, 3478, b"hello")
    assert p.src == bytes([192, 0, 2, 1]) and p.dst == bytes([198, 51, 100, 2])
    assert p.length == 20 + 8 + 5 and p.ttl == 64
    assert p.tcp_flags is None and not p.is_fragment
    assert p.src_endpoint == "192.0.2.1:5000"


def test_ipv4_tcp_flags_seq_and_options() -> None:
    seg = tcp(443, 51000, b"", seq=7, flags=0x12)
    # add 12 bytes of options: data offset 8 words
    seg = seg[:12] + bytes([8 << 4]) + seg[13:] + b"\x01" * 12 + b"data"
    p = parse_ip(ipv4("10.0.0.1", "10.0.0.2", 6, seg))
    assert p.tcp_flags == 0x12 and p.tcp_seq == 7 and p.payload == b"data"


def test_ethernet_padding_is_ignored() -> None:
    raw = udp4("10.0.0.1", 1, "10.0.0.2", 2, b"ab") + b"\0" * 16
    assert parse_ip(raw).payload == b"ab"


def test_ipv6_with_extension_headers() -> None:
    # hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP
    hbh = bytes([60, 0]) + b"\x01\x04\0\0\0\0"
    dst = bytes([17, 1]) + b"\x01\x0c" + b"\0" * 12
    p = parse_ip(ipv6(0, hbh + dst + udp(1234, 443, b"q")))
    assert (p.version, p.proto, p.sport, p.dport, p.payload, p.ttl) == (6, 17, 1234, 443, b"q", 55)
    assert format_endpoint(p.src, p.sport) == "[fd00::1]:1234"


def test_ipv6_fragments() -> None:
    first = bytes([17, 0, 0, 1]) + struct.pack("!I", 99) + udp(1, 2, b"x" * 40)[:24]
    p = parse_ip(ipv6(44, first))
    assert p.is_fragment and p.more_fragments and p.frag_offset == 0 and p.frag_id == 99
    assert (p.sport, p.dport) == (1, 2)
    later = bytes([17, 0]) + struct.pack("!H", 24) + struct.pack("!I", 99) + b"y" * 16
    q = parse_ip(ipv6(44, later))
    assert q.is_fragment and q.frag_offset == 24 and (q.sport, q.dport) == (0, 0)
    assert q.payload == b"y" * 16 and not q.more_fragments


def test_ipv6_atomic_fragment_is_whole() -> None:
    atomic = bytes([17, 0, 0, 0]) + struct.pack("!I", 5) + udp(7, 8, b"z")
    p = parse_ip(ipv6(44, atomic))
    assert not p.is_fragment and p.payload == b"z"


def test_ipv4_fragments_first_and_later() -> None:
    full = udp(5000, 443, b"A" * 100)
    first = parse_ip(ipv4("10.0.0.1", "10.0.0.2", 17, full[:48], ident=77, frag=0x2000))
    assert first.is_fragment and first.more_fragments and first.frag_offset == 0
    assert (first.sport, first.dport) == (5000, 443) and first.frag_id == 77
    later = parse_ip(ipv4("10.0.0.1", "10.0.0.2", 17, full[48:], ident=77, frag=6))
    assert later.is_fragment and later.frag_offset == 48 and later.sport == 0
    # first fragment cut inside the UDP header: recognised, not misread, not an error
    tiny = parse_ip(ipv4("10.0.0.1", "10.0.0.2", 17, full[:4], ident=78, frag=0x2000))
    assert tiny.is_fragment and tiny.sport == 0


def test_other_protocols_have_no_ports() -> None:
    p = parse_ip(ipv4("10.0.0.1", "10.0.0.2", 1, b"\x08\0\0\0\0\0\0\0"))
    assert p.proto == 1 and (p.sport, p.dport) == (0, 0) and p.payload[:1] == b"\x08"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x45",
        b"\x50" + b"\0" * 30,  # version 5
        b"\x44" + b"\0" * 30,  # IHL 4 words
        bytes.fromhex("4500000a") + b"\0" * 16,  # total length < header
        udp4("10.0.0.1", 1, "10.0.0.2", 2, b"")[:24],  # UDP header cut
        tcp4("10.0.0.1", 1, "10.0.0.2", 2, b"")[:30],  # TCP header cut
        b"\x60" + b"\0" * 20,  # short IPv6
    ],
)
def test_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_ip(raw)


def test_tcp_bad_data_offset() -> None:
    seg = bytearray(tcp(1, 2, b""))
    seg[12] = 3 << 4
    with pytest.raises(MalformedPacket):
        parse_ip(ipv4("10.0.0.1", "10.0.0.2", 6, bytes(seg)))


def test_format() -> None:
    assert format_addr(bytes([1, 2, 3, 4])) == "1.2.3.4"
    assert format_endpoint(bytes([1, 2, 3, 4]), 5) == "1.2.3.4:5"
    assert format_endpoint(bytes.fromhex("fd00" + "00" * 13 + "01"), 5) == "[fd00::1]:5"

"""Crafted resets and ICMP errors, parsed back with the project's parser and an independent
checksum verifier."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.core.craft import (
    IcmpCode,
    checksum,
    icmp_unreachable,
    packet_bytes,
    rewrite_as_rst,
    rst_toward_receiver,
    rst_toward_sender,
    tcp_segment,
    udp_datagram,
)
from testbed.core.packet import TCPFlag, parse_ip

C4, S4 = ipaddress.ip_address("10.0.1.2").packed, ipaddress.ip_address("10.0.2.2").packed
C6, S6 = ipaddress.ip_address("fd00:1::2").packed, ipaddress.ip_address("fd00:2::2").packed


def ones_sum(data: bytes) -> int:
    """RFC 1071 sum written out byte-pair by byte-pair (not the code under test)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def verify(data: bytes) -> None:
    """Assert every checksum in an IPv4/IPv6 + TCP/UDP/ICMP/ICMPv6 packet (no ext headers)."""
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 0xF) * 4
        assert ones_sum(data[:ihl]) == 0xFFFF, "IPv4 header checksum"
        total = struct.unpack_from("!H", data, 2)[0]
        assert total == len(data)
        proto, src, dst, l4 = data[9], data[12:16], data[16:20], data[ihl:]
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    else:
        plen = struct.unpack_from("!H", data, 4)[0]
        assert plen == len(data) - 40
        proto, src, dst, l4 = data[6], data[8:24], data[24:40], data[40:]
        pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
    if proto == 1:
        assert ones_sum(l4) == 0xFFFF, "ICMP checksum"
    elif proto in (6, 17, 58):
        assert ones_sum(pseudo + l4) == 0xFFFF, f"proto {proto} checksum"


def test_checksum_matches_rfc1071_example() -> None:
    # RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (before complement).
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2 & 0xFFFF)
    assert checksum(b"\x01") == (~0x0100 & 0xFFFF)  # odd length pads with a zero byte


@pytest.mark.parametrize(("src", "dst"), [(C4, S4), (C6, S6)])
def test_tcp_and_udp_builders_parse_back_with_valid_checksums(src: bytes, dst: bytes) -> None:
    seg = tcp_segment(src, dst, 40000, 443, seq=1, ack=2, flags=TCPFlag.PSH | TCPFlag.ACK, payload=b"hi")
    verify(seg)
    p = parse_ip(seg)
    assert (p.src, p.dst, p.sport, p.dport, p.tcp_seq, p.tcp_ack, p.payload) == (src, dst, 40000, 443, 1, 2, b"hi")
    dg = udp_datagram(src, dst, 5000, 3478, b"stun")
    verify(dg)
    q = parse_ip(dg)
    assert (q.sport, q.dport, q.payload) == (5000, 3478, b"stun")


@pytest.mark.parametrize(("src", "dst"), [(C4, S4), (C6, S6)])
def test_rst_toward_sender_acknowledges_the_segment_and_uses_its_ack(src: bytes, dst: bytes) -> None:
    data = tcp_segment(src, dst, 40000, 443, seq=1000, ack=5000, flags=TCPFlag.PSH | TCPFlag.ACK, payload=b"x" * 10)
    rst = rst_toward_sender(parse_ip(data))
    verify(rst)
    r = parse_ip(rst)
    assert (r.src, r.dst, r.sport, r.dport) == (dst, src, 443, 40000)
    assert r.tcp_flags == TCPFlag.RST | TCPFlag.ACK
    assert r.tcp_seq == 5000  # RFC 9293 §3.10.7.1: SEQ = SEG.ACK
    assert r.tcp_ack == 1010  # SEG.SEQ + SEG.LEN
    assert r.payload == b""


def test_rst_answering_a_syn_has_seq_zero_and_acks_the_syn() -> None:
    syn = parse_ip(tcp_segment(C4, S4, 40000, 443, seq=999, ack=0, flags=TCPFlag.SYN))
    r = parse_ip(rst_toward_sender(syn))
    assert (r.tcp_seq, r.tcp_ack) == (0, 1000)  # the SYN counts one
    toward_server = parse_ip(rst_toward_receiver(syn))
    assert toward_server.tcp_flags == TCPFlag.RST and toward_server.tcp_seq == 1000


@pytest.mark.parametrize(("src", "dst"), [(C4, S4), (C6, S6)])
def test_rst_toward_receiver_is_next_in_the_senders_sequence(src: bytes, dst: bytes) -> None:
    data = tcp_segment(src, dst, 40000, 443, seq=1000, ack=5000, flags=TCPFlag.FIN | TCPFlag.ACK, payload=b"abc")
    rst = rst_toward_receiver(parse_ip(data))
    verify(rst)
    r = parse_ip(rst)
    assert (r.src, r.dst, r.sport, r.dport) == (src, dst, 40000, 443)
    assert (r.tcp_seq, r.tcp_ack) == (1004, 5000)  # 3 bytes + FIN
    assert r.tcp_flags == TCPFlag.RST | TCPFlag.ACK


def test_rst_needs_a_tcp_header() -> None:
    with pytest.raises(ValueError, match="TCP"):
        rst_toward_sender(parse_ip(udp_datagram(C4, S4, 1, 2, b"")))


@pytest.mark.parametrize(("src", "dst"), [(C4, S4), (C6, S6)])
def test_rewrite_as_rst_keeps_addresses_ports_numbers_and_ttl(src: bytes, dst: bytes) -> None:
    reply = tcp_segment(dst, src, 443, 40000, seq=7000, ack=1517, flags=TCPFlag.PSH | TCPFlag.ACK,
                        payload=b"\x16\x03\x03" + b"s" * 900, ttl=57, ident=4242)  # fmt: skip
    out = rewrite_as_rst(reply)
    verify(out)
    r = parse_ip(out)
    assert (r.src, r.dst, r.sport, r.dport, r.tcp_seq, r.tcp_ack) == (dst, src, 443, 40000, 7000, 1517)
    assert r.tcp_flags == TCPFlag.RST | TCPFlag.ACK and r.payload == b"" and r.ttl == 57
    if len(src) == 4:
        assert r.frag_id == 4242


@pytest.mark.parametrize("code", list(IcmpCode))
def test_icmpv4_unreachable_quotes_header_and_more_from_the_destination(code: IcmpCode) -> None:
    original = udp_datagram(C4, S4, 5000, 3478, b"p" * 1000)
    out = icmp_unreachable(original, code=code)
    verify(out)
    p = parse_ip(out)
    assert (p.src, p.dst, p.proto) == (S4, C4, 1)
    icmp = p.payload
    assert icmp[0] == 3 and icmp[1] == code.v4
    quote = icmp[8:]
    assert quote[:28] == original[:28]  # RFC 792: IP header + 64 bits of data, at least
    assert len(out) <= 576  # RFC 1812 §4.3.2.3
    assert {IcmpCode.PORT: 3, IcmpCode.ADMIN: 13}.get(code, icmp[1]) == icmp[1]


def test_icmpv6_unreachable_fits_the_minimum_mtu_and_has_a_pseudo_header_checksum() -> None:
    original = udp_datagram(C6, S6, 5000, 3478, b"p" * 1400)
    out = icmp_unreachable(original, code=IcmpCode.ADMIN, src=ipaddress.ip_address("fd00::1").packed)
    verify(out)
    p = parse_ip(out)
    assert p.proto == 58 and p.dst == C6 and p.src == ipaddress.ip_address("fd00::1").packed
    assert p.payload[0] == 1 and p.payload[1] == 1  # RFC 4443 §3.1: type 1, code 1 admin prohibited
    assert len(out) <= 1280
    assert p.payload[8:48] == original[:40]
    small = icmp_unreachable(udp_datagram(C6, S6, 1, 2, b"q"), code=IcmpCode.PORT)
    verify(small)
    assert parse_ip(small).payload[1] == 4


def test_packet_bytes_rebuilds_an_equivalent_datagram() -> None:
    original = tcp_segment(C4, S4, 40000, 443, seq=9, ack=10, flags=TCPFlag.ACK, payload=b"abc", ttl=33, ident=77)
    again = parse_ip(packet_bytes(parse_ip(original)))
    assert again == parse_ip(original)
    verify(packet_bytes(parse_ip(udp_datagram(C6, S6, 1, 2, b"x"))))


def test_icmp_refuses_non_ip() -> None:
    with pytest.raises(ValueError):
        icmp_unreachable(b"")
    with pytest.raises(ValueError):
        icmp_unreachable(b"\x50" + b"\0" * 30)


@given(
    v6=st.booleans(),
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 255),
    payload=st.binary(max_size=200),
)
def test_crafted_packets_always_parse_and_checksum(v6: bool, seq: int, ack: int, flags: int, payload: bytes) -> None:
    src, dst = (C6, S6) if v6 else (C4, S4)
    seg = tcp_segment(src, dst, 1, 2, seq=seq, ack=ack, flags=flags, payload=payload)
    p = parse_ip(seg)
    for out in (rst_toward_sender(p), rst_toward_receiver(p), rewrite_as_rst(seg), icmp_unreachable(seg)):
        verify(out)
        parse_ip(out)
    r = parse_ip(rst_toward_sender(p))
    seg_len = len(payload) + bool(flags & TCPFlag.SYN) + bool(flags & TCPFlag.FIN)
    assert r.tcp_ack == (seq + seg_len) & 0xFFFFFFFF

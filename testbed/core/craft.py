"""Raw IPv4/IPv6 packets the censor sends or substitutes: TCP resets and ICMP errors.

Rules of this module:

1. Sans-IO and pure: functions take packed addresses / parsed ``Packet`` s and return bytes with
   every length and checksum filled in (RFC 1071 one's-complement sum; TCP, UDP and ICMPv6 over
   the RFC 793 / RFC 8200 §8.1 pseudo-header; ICMPv4 over its own message only).
2. Resets follow RFC 9293 §3.10.7.1 ("reset generation"): a RST answering a segment that carried
   an ACK takes its sequence number from that ACK; otherwise it has sequence 0 and acknowledges
   SEG.SEQ + SEG.LEN (SYN and FIN each count one), with the ACK bit set.  Those are exactly the
   values a receiving stack checks before it accepts a RST (RFC 5961 §3.2 wants SEQ == RCV.NXT
   for an immediate reset), so the crafted RSTs tear a real connection down.
3. ICMP errors quote the offending datagram: IPv4 "internet header + 64 bits of data" at least
   (RFC 792), as much as fits in 576 bytes as routers do (RFC 1812 §4.3.2.3); ICMPv6 as much as
   fits in the minimum MTU, 1280 bytes (RFC 4443 §2.4 (c)).
4. The policy engine sees a parsed ``Packet``, not the bytes NFQUEUE delivered, so
   ``packet_bytes`` rebuilds an equivalent datagram (same addresses, ports, sequence numbers,
   TTL, IPv4 identification and payload; no IP/TCP options, TOS 0). Quoting that in an ICMP
   error is enough for a host to match the error to its socket (RFC 1122 §4.1.3.3, §4.2.3.9).
"""

from __future__ import annotations

import struct

from testbed.core.packet import IPProto, Packet, TCPFlag, parse_ip
from testbed.core.policy_kinds import IcmpCode  # re-exported: crafting names the codes by meaning

__all__ = [
    "IcmpCode",
    "checksum",
    "icmp_unreachable",
    "ip_packet",
    "packet_bytes",
    "rewrite_as_rst",
    "rst_in_place_of",
    "rst_toward_receiver",
    "rst_toward_sender",
    "tcp_segment",
    "udp_datagram",
]

DEFAULT_TTL = 64
# RFC 1812 §4.3.2.3: an ICMPv4 error should quote as much as fits in 576 bytes.
ICMPV4_MAX_ERROR = 576
# RFC 4443 §2.4 (c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
ICMPV6_MAX_ERROR = 1280


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's-complement sum."""
    if len(data) & 1:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data)) if data else 0
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)  # RFC 8200 §8.1


def ip_packet(src: bytes, dst: bytes, proto: int, l4: bytes, *, ttl: int = DEFAULT_TTL, ident: int = 0) -> bytes:
    """An IPv4 (4-byte addresses) or IPv6 (16-byte) packet around a finished transport message."""
    if len(src) != len(dst) or len(src) not in (4, 16):
        raise ValueError("src and dst must both be 4 (IPv4) or 16 (IPv6) packed bytes")
    if len(src) == 4:
        total = 20 + len(l4)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0, ttl, proto, 0, src, dst)
        hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        return hdr + l4
    return struct.pack("!IHBB16s16s", 0x6 << 28, len(l4), proto, ttl, src, dst) + l4


def tcp_segment(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    window: int = 0,
    ttl: int = DEFAULT_TTL,
    ident: int = 0,
) -> bytes:
    """A whole IP packet holding one TCP segment (20-byte header, no options)."""
    hdr = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags & 0xFF,
        window, 0, 0,
    )  # fmt: skip
    seg = hdr + payload
    csum = checksum(_pseudo_header(src, dst, IPProto.TCP, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", csum) + seg[18:]
    return ip_packet(src, dst, IPProto.TCP, seg, ttl=ttl, ident=ident)


def udp_datagram(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    ttl: int = DEFAULT_TTL,
    ident: int = 0,
) -> bytes:
    """A whole IP packet holding one UDP datagram, checksum computed (mandatory over IPv6)."""
    ln = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, ln, 0) + payload
    csum = checksum(_pseudo_header(src, dst, IPProto.UDP, ln) + dgram)
    # RFC 768: a computed zero is sent as all ones (zero means "no checksum").
    dgram = dgram[:6] + struct.pack("!H", csum or 0xFFFF) + dgram[8:]
    return ip_packet(src, dst, IPProto.UDP, dgram, ttl=ttl, ident=ident)


def _seg_len(packet: Packet) -> int:
    flags = packet.tcp_flags or 0
    return len(packet.payload) + bool(flags & TCPFlag.SYN) + bool(flags & TCPFlag.FIN)


def _require_tcp(packet: Packet) -> None:
    if packet.proto != IPProto.TCP or packet.tcp_seq is None or packet.tcp_ack is None:
        raise ValueError("a TCP reset needs a TCP segment with its header (not a later fragment)")


def rst_toward_sender(packet: Packet, *, ttl: int = DEFAULT_TTL) -> bytes:
    """A RST to the packet's sender, as if from its receiver (RFC 9293 §3.10.7.1)."""
    _require_tcp(packet)
    assert packet.tcp_seq is not None and packet.tcp_ack is not None
    flags = packet.tcp_flags or 0
    if flags & TCPFlag.ACK:
        # Pair the RST with an ACK of everything the sender sent: stacks and middleboxes
        # (and TSPU, censor-behaviors.md A.2) send RST/ACK, and it is accepted either way.
        seq = packet.tcp_ack
    else:
        seq = 0
    ack = packet.tcp_seq + _seg_len(packet)
    return tcp_segment(
        packet.dst, packet.src, packet.dport, packet.sport,
        seq=seq, ack=ack, flags=TCPFlag.RST | TCPFlag.ACK, ttl=ttl,
    )  # fmt: skip


def rst_toward_receiver(packet: Packet, *, ttl: int = DEFAULT_TTL) -> bytes:
    """A RST to the packet's receiver, as if from its sender, in sequence right after it."""
    _require_tcp(packet)
    assert packet.tcp_seq is not None and packet.tcp_ack is not None
    flags = packet.tcp_flags or 0
    seq = packet.tcp_seq + _seg_len(packet)
    if flags & TCPFlag.ACK:
        return tcp_segment(
            packet.src, packet.dst, packet.sport, packet.dport,
            seq=seq, ack=packet.tcp_ack, flags=TCPFlag.RST | TCPFlag.ACK, ttl=ttl,
        )  # fmt: skip
    # A SYN has no ACK yet: the receiver (a listener in SYN-RECEIVED at most) takes a bare RST
    # in window.
    return tcp_segment(
        packet.src, packet.dst, packet.sport, packet.dport,
        seq=seq, ack=0, flags=TCPFlag.RST, ttl=ttl,
    )  # fmt: skip


def rewrite_as_rst(data: bytes) -> bytes:
    """The same TCP segment turned into an empty RST/ACK: TSPU's SNI-I response, which rewrites
    the server's reply rather than injecting an extra packet (censor-behaviors.md A.2).

    Addresses, ports, sequence and acknowledgement numbers, TTL and the IPv4 identification are
    kept; options and payload are dropped; lengths and checksums are recomputed.
    """
    return rst_in_place_of(parse_ip(data))


def rst_in_place_of(packet: Packet) -> bytes:
    """``rewrite_as_rst`` for an already parsed segment."""
    _require_tcp(packet)
    if packet.is_fragment:
        raise ValueError("cannot rewrite a fragment into a RST")
    assert packet.tcp_seq is not None and packet.tcp_ack is not None
    return tcp_segment(
        packet.src, packet.dst, packet.sport, packet.dport,
        seq=packet.tcp_seq, ack=packet.tcp_ack, flags=TCPFlag.RST | TCPFlag.ACK,
        ttl=packet.ttl, ident=packet.frag_id,
    )  # fmt: skip


def packet_bytes(packet: Packet) -> bytes:
    """An equivalent datagram rebuilt from a parsed ``Packet`` (rule 4 of this module).

    Fragments are rebuilt as whole packets of their own bytes; use this for quoting, not sending.
    """
    if packet.proto == IPProto.TCP and packet.tcp_seq is not None and packet.tcp_ack is not None:
        return tcp_segment(
            packet.src, packet.dst, packet.sport, packet.dport,
            seq=packet.tcp_seq, ack=packet.tcp_ack, flags=packet.tcp_flags or 0,
            payload=packet.payload, window=0xFFFF, ttl=packet.ttl, ident=packet.frag_id,
        )  # fmt: skip
    if packet.proto == IPProto.UDP and packet.has_ports:
        return udp_datagram(
            packet.src, packet.dst, packet.sport, packet.dport, packet.payload,
            ttl=packet.ttl, ident=packet.frag_id,
        )  # fmt: skip
    return ip_packet(packet.src, packet.dst, packet.proto, packet.payload, ttl=packet.ttl, ident=packet.frag_id)


def icmp_unreachable(
    offending: bytes,
    *,
    code: IcmpCode = IcmpCode.PORT,
    src: bytes | None = None,
    ttl: int = DEFAULT_TTL,
) -> bytes:
    """An ICMP(v6) destination-unreachable error about ``offending`` (a whole IP packet), sent
    back to its source. ``src`` defaults to the offending packet's destination, which is what a
    host with a closed port would send (and what makes the error look like it came from there).
    """
    if not offending:
        raise ValueError("nothing to quote")
    version = offending[0] >> 4
    if version == 4:
        if len(offending) < 20:
            raise ValueError("IPv4 packet shorter than its header")
        o_src, o_dst = offending[12:16], offending[16:20]
        ihl = (offending[0] & 0x0F) * 4
        quote = offending[: max(ihl + 8, min(len(offending), ICMPV4_MAX_ERROR - 20 - 8))]
        msg = struct.pack("!BBHI", 3, code.v4, 0, 0) + quote
        msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
        return ip_packet(src or o_dst, o_src, IPProto.ICMP, msg, ttl=ttl)
    if version == 6:
        if len(offending) < 40:
            raise ValueError("IPv6 packet shorter than its header")
        o_src, o_dst = offending[8:24], offending[24:40]
        quote = offending[: ICMPV6_MAX_ERROR - 40 - 8]
        sender = src or o_dst
        msg = struct.pack("!BBHI", 1, code.v6, 0, 0) + quote
        csum = checksum(_pseudo_header(sender, o_src, IPProto.ICMPV6, len(msg)) + msg)
        msg = msg[:2] + struct.pack("!H", csum) + msg[4:]
        return ip_packet(sender, o_src, IPProto.ICMPV6, msg, ttl=ttl)
    raise ValueError(f"IP version {version} is neither 4 nor 6")

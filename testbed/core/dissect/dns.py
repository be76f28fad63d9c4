"""DNS messages (RFC 1035 §4.1) over UDP, and over TCP with the 2-byte length prefix (§4.2.2).

A header sanity check and a parse of the question section; nothing past the question is read.
What a message must show to count as DNS, chosen so random bytes almost never pass (odds under
one in a billion) while real queries, answers and mDNS (RFC 6762, the same format) do:

- opcode QUERY (0), NOTIFY (4) or UPDATE (5) (the IANA DNS OPCODE registry; IQUERY is obsolete,
  RFC 3425, and STATUS was never defined); the Z bit (RFC 1035 §4.1.1; the bit next to it is
  AD/CD, RFC 4035) zero; RCODE one of the assigned header values 0-11;
- QDCOUNT at least 1 (a query names what it asks: the Iran filter's DNS fingerprint wanted it
  too, censor-behaviors.md H.24), at most 16 (real messages carry one, mDNS a few);
- every question parses inside the message: labels of 1-63 bytes, a name of at most 255 bytes,
  a compression pointer only to an earlier offset (RFC 1035 §4.1.4), then a non-zero QTYPE and a
  QCLASS among IN, CH, HS, NONE, ANY (mDNS sets the top "unicast response" bit, RFC 6762 §5.4);
- the other counts fit: each resource record takes at least 11 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DnsMessage", "parse_dns", "parse_dns_tcp"]

_OPCODES = frozenset({0, 4, 5})
_QCLASSES = frozenset({1, 3, 4, 254, 255})
_MAX_QUESTIONS = 16
_MIN_RR = 11  # a root owner name (1) + type, class, TTL, RDLENGTH (10)


@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int
    response: bool
    opcode: int
    rcode: int
    qname: str  # the first question's name, dot-separated, "" for the root
    qtype: int
    qdcount: int


def parse_dns(data: bytes) -> DnsMessage | None:
    """A DNS message as carried in one UDP datagram, or None if ``data`` is not one."""
    if len(data) < 17:  # header (12) + root name (1) + QTYPE, QCLASS (4)
        return None
    flags = (data[2] << 8) | data[3]
    opcode = (flags >> 11) & 0xF
    rcode = flags & 0xF
    if opcode not in _OPCODES or flags & 0x0040 or rcode > 11:
        return None
    qd = (data[4] << 8) | data[5]
    others = ((data[6] << 8) | data[7]) + ((data[8] << 8) | data[9]) + ((data[10] << 8) | data[11])
    if not 1 <= qd <= _MAX_QUESTIONS:
        return None
    pos = 12
    first: tuple[str, int] | None = None
    for _ in range(qd):
        got = _name(data, pos)
        if got is None:
            return None
        name, pos = got
        if pos + 4 > len(data):
            return None
        qtype = (data[pos] << 8) | data[pos + 1]
        qclass = ((data[pos + 2] << 8) | data[pos + 3]) & 0x7FFF
        if qtype == 0 or qclass not in _QCLASSES:
            return None
        pos += 4
        if first is None:
            first = (name, qtype)
    if others * _MIN_RR > len(data) - pos:
        return None
    assert first is not None
    return DnsMessage((data[0] << 8) | data[1], bool(flags & 0x8000), opcode, rcode, first[0], first[1], qd)


def parse_dns_tcp(segment: bytes) -> DnsMessage | None:
    """The DNS message opening a TCP segment (length-prefixed). The segment may end inside the
    message's later sections, but the header and the questions must be in it."""
    if len(segment) < 2:
        return None
    length = (segment[0] << 8) | segment[1]
    if length < 17:
        return None
    msg = segment[2 : 2 + length]
    if len(msg) < length:
        # Cut by the segment: check what is there, without the record-count bound.
        return _parse_prefix(msg)
    return parse_dns(msg)


def _parse_prefix(msg: bytes) -> DnsMessage | None:
    # Zero the other counts so the size bound does not reject a message the segment cut short.
    if len(msg) < 12:
        return None
    return parse_dns(msg[:6] + b"\x00" * 6 + msg[12:])


def _name(data: bytes, pos: int) -> tuple[str, int] | None:
    """The name at ``pos`` and the offset after it (after the pointer, if it ends in one)."""
    labels: list[str] = []
    total = 0
    end: int | None = None
    n = len(data)
    jumps = 0
    while True:
        if pos >= n:
            return None
        ln = data[pos]
        if ln == 0:
            pos += 1
            break
        if ln & 0xC0 == 0xC0:
            if pos + 1 >= n:
                return None
            target = ((ln & 0x3F) << 8) | data[pos + 1]
            # Only backwards, into what precedes, and past the header: a pointer loop or a
            # pointer into the header is not DNS.
            if target < 12 or target >= pos or jumps >= 16:
                return None
            if end is None:
                end = pos + 2
            jumps += 1
            pos = target
            continue
        if ln > 63:
            return None  # 0x40/0x80 prefixes: extended label types, obsolete (RFC 6891 §5)
        if pos + 1 + ln > n:
            return None
        total += ln + 1
        if total > 255:
            return None
        labels.append(data[pos + 1 : pos + 1 + ln].decode("latin-1"))
        pos += 1 + ln
    return ".".join(labels), (end if end is not None else pos)

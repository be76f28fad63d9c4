"""Read pcap and pcapng captures as (timestamp, raw IP packet) for the sans-IO core.

Framing (record and block boundaries) is walked here so that every error can name the byte
offset where the capture stops making sense: dpkt's own readers hide the file position and end
silently on a truncated last record. The fiddly pcapng structures (interface description
blocks and their options: link type, snap length, if_tsresol, if_tsoffset) are decoded with
dpkt's block classes. Link layers are stripped here with slicing, not with dpkt's packet
objects, because this is the hot path of ``testbed classify``.

Supported: pcap (both byte orders, micro- and nanosecond magic), pcapng (both byte orders,
several sections and interfaces, EPB, SPB and the obsolete PB), link types Ethernet (with
802.1Q/802.1ad tags), raw IP (DLT_RAW 12/14/101, IPv4 228, IPv6 229), Linux cooked SLL (113)
and SLL2 (276), BSD loopback/null (0) and OpenBSD loop (108). GTP-U (UDP 2152) is not
decapsulated.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import dpkt  # type: ignore[import-untyped]

from testbed.errors import CaptureError

__all__ = ["CaptureRecord", "LinkType", "read_capture", "read_frames", "strip_link_layer"]


class LinkType:
    """LINKTYPE_* values (tcpdump.org/linktypes.html)."""

    NULL = 0
    ETHERNET = 1
    RAW = 101
    RAW_BSD_12 = 12
    RAW_BSD_14 = 14
    LOOP = 108
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


SUPPORTED_LINKTYPES = frozenset({0, 1, 12, 14, 101, 108, 113, 228, 229, 276})

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    timestamp: float
    linktype: int
    data: bytes  # the frame as captured
    offset: int  # of the record in the file


def strip_link_layer(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a frame, or None if it carries something else (ARP, LLDP...)."""
    if linktype == 1:
        if len(frame) < 14:
            return None
        et = (frame[12] << 8) | frame[13]
        off = 14
        while et in _VLAN_TYPES and len(frame) >= off + 4:
            et = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
        if et == _ETH_IPV4 or et == _ETH_IPV6:
            return frame[off:]
        return None
    if linktype in (101, 12, 14, 228, 229):
        return frame
    if linktype == 113:  # SLL: 16-byte header, protocol at 14
        if len(frame) < 16:
            return None
        et = (frame[14] << 8) | frame[15]
        return frame[16:] if et in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == 276:  # SLL2: 20-byte header, protocol at 0
        if len(frame) < 20:
            return None
        et = (frame[0] << 8) | frame[1]
        return frame[20:] if et in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype in (0, 108):  # 4-byte address family, host order (NULL) or network order (LOOP)
        if len(frame) < 5:
            return None
        v = frame[4] >> 4
        return frame[4:] if v in (4, 6) else None
    return None


def read_capture(path: str) -> Iterator[CaptureRecord]:
    """Records of a pcap or pcapng file; raises ``CaptureError`` naming the file and offset."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise CaptureError("no such file", file=path) from None
    except IsADirectoryError:
        raise CaptureError("is a directory, not a capture file", file=path) from None
    except OSError as exc:
        raise CaptureError(f"cannot open: {exc.strerror}", file=path) from exc
    try:
        magic = f.read(4)
        if len(magic) < 4:
            raise CaptureError("too short to be a capture (no pcap/pcapng magic number)", file=path, offset=0)
        f.seek(0)
        if magic == b"\x0a\x0d\x0d\x0a":
            yield from _read_pcapng(f, path)
        else:
            yield from _read_pcap(f, path, magic)
    finally:
        f.close()


def read_frames(path: str) -> Iterator[tuple[float, int, bytes]]:
    """``read_capture`` as plain (timestamp, linktype, frame) tuples, for ``testbed classify``'s
    hot loop: a pcap file is read in large chunks and its records cut with ``unpack_from``
    (no per-record ``read`` calls or record objects: a third of classify's time on small
    packets went there). Same records, same errors (tests/unit/test_classify_output_golden.py)."""
    try:
        f = open(path, "rb")
    except OSError:
        yield from ((r.timestamp, r.linktype, r.data) for r in read_capture(path))
        return
    with f:
        magic = f.read(4)
    if magic not in _PCAP_MAGICS:
        yield from ((r.timestamp, r.linktype, r.data) for r in read_capture(path))
        return
    yield from _read_pcap_chunked(path, magic)


# Bytes read per chunk by ``read_frames``: large enough that the per-chunk work is noise, small
# enough that memory stays flat whatever the capture's size.
_CHUNK = 1 << 20


def _read_pcap_chunked(path: str, magic: bytes) -> Iterator[tuple[float, int, bytes]]:
    endian, scale = _PCAP_MAGICS[magic]
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            raise CaptureError("truncated pcap file header", file=path, offset=len(hdr))
        fh = (dpkt.pcap.LEFileHdr if endian == "<" else dpkt.pcap.FileHdr)(hdr)
        linktype = fh.linktype & 0x0FFFFFFF
        if linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(f"unsupported link type {linktype}", file=path, offset=20)
        unpack_from = struct.Struct(endian + "IIII").unpack_from
        offset = 24  # file offset of buf[0]
        buf = b""
        pos = 0
        read = f.read
        while True:
            chunk = read(_CHUNK)
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            offset += pos
            pos = 0
            n = len(buf)
            while pos + 16 <= n:
                sec, frac, caplen, _origlen = unpack_from(buf, pos)
                if caplen > 0x40000:
                    raise CaptureError(
                        f"corrupt record: captured length {caplen} is implausible", file=path, offset=offset + pos
                    )
                end = pos + 16 + caplen
                if end > n:
                    break
                yield sec + frac * scale, linktype, buf[pos + 16 : end]
                pos = end
            if not chunk:
                left = n - pos
                if not left:
                    return
                if left < 16:
                    raise CaptureError(f"truncated record header ({left} of 16 bytes)", file=path, offset=offset + pos)
                caplen = unpack_from(buf, pos)[2]
                raise CaptureError(f"truncated record: {left - 16} of {caplen} bytes", file=path, offset=offset + pos)


_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


def _read_pcap(f: BinaryIO, path: str, magic: bytes) -> Iterator[CaptureRecord]:
    fmt = _PCAP_MAGICS.get(magic)
    if fmt is None:
        raise CaptureError(f"not a pcap or pcapng file (magic number {magic.hex()})", file=path, offset=0)
    endian, scale = fmt
    hdr = f.read(24)
    if len(hdr) < 24:
        raise CaptureError("truncated pcap file header", file=path, offset=len(hdr))
    fh = (dpkt.pcap.LEFileHdr if endian == "<" else dpkt.pcap.FileHdr)(hdr)
    linktype = fh.linktype & 0x0FFFFFFF  # upper bits: FCS info (pcap spec §"LinkType")
    if linktype not in SUPPORTED_LINKTYPES:
        raise CaptureError(f"unsupported link type {linktype}", file=path, offset=20)
    rec = struct.Struct(endian + "IIII")
    offset = 24
    read = f.read
    while True:
        h = read(16)
        if not h:
            return
        if len(h) < 16:
            raise CaptureError(f"truncated record header ({len(h)} of 16 bytes)", file=path, offset=offset)
        sec, frac, caplen, _origlen = rec.unpack(h)
        if caplen > 0x40000:  # 256 KiB: larger than any snaplen tcpdump/wireshark write
            raise CaptureError(f"corrupt record: captured length {caplen} is implausible", file=path, offset=offset)
        data = read(caplen)
        if len(data) < caplen:
            raise CaptureError(f"truncated record: {len(data)} of {caplen} bytes", file=path, offset=offset)
        yield CaptureRecord(sec + frac * scale, linktype, data, offset)
        offset += 16 + caplen


@dataclass(slots=True)
class _Iface:
    linktype: int
    snaplen: int
    divisor: float
    tsoffset: int


def _read_pcapng(f: BinaryIO, path: str) -> Iterator[CaptureRecord]:
    offset = 0
    endian = "<"
    ifaces: list[_Iface] = []
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 8:
            raise CaptureError("truncated pcapng block header", file=path, offset=offset)
        btype_raw = head[:4]
        if btype_raw == b"\x0a\x0d\x0d\x0a":
            if len(head) < 12:
                raise CaptureError("truncated section header block", file=path, offset=offset)
            bom = head[8:12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError(f"bad pcapng byte-order magic {bom.hex()}", file=path, offset=offset + 8)
            ifaces = []  # interface ids are per section
        btype, blen = struct.unpack(endian + "II", head[:8])
        if blen < 12 or blen % 4 or blen > 0x1000000:
            raise CaptureError(f"corrupt pcapng block length {blen}", file=path, offset=offset)
        rest = f.read(blen - len(head))
        if len(rest) < blen - len(head):
            raise CaptureError(
                f"truncated pcapng block: {len(head) + len(rest)} of {blen} bytes",
                file=path,
                offset=offset,
            )
        block = head + rest
        trailer = struct.unpack_from(endian + "I", block, blen - 4)[0]
        if trailer != blen:
            raise CaptureError(
                f"corrupt pcapng block: trailing length {trailer} != {blen}",
                file=path,
                offset=offset,
            )
        if btype == 1:
            ifaces.append(_idb(block, endian, path, offset))
        elif btype in (6, 2, 3) and blen < (16 if btype == 3 else 32):
            raise CaptureError(
                f"corrupt packet block: {blen} bytes is shorter than its header",
                file=path,
                offset=offset,
            )
        elif btype in (6, 2):
            if btype == 6:
                iface_id, ts_hi, ts_lo, caplen = struct.unpack_from(endian + "IIII", block, 8)
                start = 28
            else:  # obsolete Packet Block: 16-bit interface id and drops count
                iface_id = struct.unpack_from(endian + "H", block, 8)[0]
                ts_hi, ts_lo, caplen = struct.unpack_from(endian + "III", block, 12)
                start = 28
            if iface_id >= len(ifaces):
                raise CaptureError(
                    f"packet block names interface {iface_id}, but only {len(ifaces)} defined",
                    file=path,
                    offset=offset,
                )
            if start + caplen > blen - 4:
                raise CaptureError(
                    f"corrupt packet block: captured length {caplen} exceeds block",
                    file=path,
                    offset=offset,
                )
            ifc = ifaces[iface_id]
            ts = ifc.tsoffset + ((ts_hi << 32) | ts_lo) / ifc.divisor
            yield CaptureRecord(ts, ifc.linktype, block[start : start + caplen], offset)
        elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
            if not ifaces:
                raise CaptureError("simple packet block before any interface", file=path, offset=offset)
            origlen = struct.unpack_from(endian + "I", block, 8)[0]
            ifc = ifaces[0]
            caplen = min(origlen, blen - 16, ifc.snaplen or origlen)
            yield CaptureRecord(0.0, ifc.linktype, block[12 : 12 + caplen], offset)
        offset += blen


def _idb(block: bytes, endian: str, path: str, offset: int) -> _Iface:
    try:
        cls = dpkt.pcapng.InterfaceDescriptionBlockLE if endian == "<" else dpkt.pcapng.InterfaceDescriptionBlock
        idb = cls(block)
    except (dpkt.UnpackError, struct.error, ValueError) as exc:
        raise CaptureError(f"corrupt interface description block: {exc}", file=path, offset=offset) from exc
    divisor = 1e6
    tsoffset = 0
    for opt in idb.opts:
        if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            v = opt.data[0]
            divisor = float((2 if v & 0x80 else 10) ** (v & 0x7F))
        elif opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) == 8:
            tsoffset = struct.unpack(endian + "q", opt.data)[0]
    linktype = int(idb.linktype)
    if linktype not in SUPPORTED_LINKTYPES:
        raise CaptureError(f"unsupported link type {linktype}", file=path, offset=offset)
    return _Iface(linktype, int(idb.snaplen), divisor, tsoffset)

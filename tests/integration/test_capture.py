"""The censor's packet capture: pcapng layout (no root) and a real capture between namespaces (root).

The namespaces are ``tbt<hex>x`` and ``tbt<hex>y``, joined by a veth pair created from inside
``x`` with its peer placed straight into ``y``, so nothing ever appears in the host namespace;
both are removed in ``finally``.  Only 198.18.0.0/15 addresses are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import struct
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from testbed.analysis.classify import main as classify_main
from testbed.analysis.pcap import read_capture, strip_link_layer
from testbed.censor.capture import PcapngWriter, _timestamp_ns, running_capture
from testbed.core.packet import parse_ip
from testbed.errors import CensorError
from testbed.net.process import netns_process

ADDRESS_X = "198.18.251.1"
ADDRESS_Y = "198.18.251.2"
PORT_X, PORT_Y = 40001, 40002


def _frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(bytes(udp))
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=17, data=udp)
    ip.len = len(bytes(ip))
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
    return bytes(eth)


def _epb_flags(data: bytes) -> list[tuple[int, int]]:
    """(interface id, epb_flags) of every enhanced packet block, walking the file by hand."""
    out, off = [], 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if btype == 6:
            iface, _hi, _lo, caplen, _orig = struct.unpack_from("<IIIII", data, off + 8)
            opt = off + 28 + caplen + (-caplen % 4)
            flags = None
            while opt < off + blen - 4:
                code, length = struct.unpack_from("<HH", data, opt)
                if code == 0:
                    break
                if code == 2:
                    (flags,) = struct.unpack_from("<I", data, opt + 4)
                opt += 4 + length + (-length % 4)
            assert flags is not None
            out.append((iface, flags))
        off += blen
    return out


def test_pcapng_writer_round_trips(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = PcapngWriter(buf, ["tbc0", "tbc1"])
    a = _frame(ADDRESS_X, ADDRESS_Y, PORT_X, PORT_Y, b"hello")  # odd length: padding
    b = _frame(ADDRESS_Y, ADDRESS_X, PORT_Y, PORT_X, b"hi!!")
    writer.write_packet(0, 1_700_000_000_123_456_789, a, outbound=False, pkttype=0)
    writer.write_packet(1, 1_700_000_000_223_456_789, a, outbound=True, pkttype=4)
    writer.write_packet(1, 1_700_000_001_000_000_000, b, outbound=False, pkttype=3)
    data = buf.getvalue()
    assert writer.bytes_written == len(data)
    path = tmp_path / "x.pcapng"
    path.write_bytes(data)

    records = list(read_capture(str(path)))
    assert [r.data for r in records] == [a, a, b]
    assert records[0].timestamp == pytest.approx(1_700_000_000.123456, abs=1e-6)
    assert all(r.linktype == 1 for r in records)
    # Direction and reception type, as Wireshark shows them: inbound unicast, outbound, inbound promiscuous.
    assert _epb_flags(data) == [(0, 0b00101), (1, 0b10), (1, 0b10001)]
    # An independent reader agrees on the packets.
    with open(path, "rb") as f:
        assert [bytes(p) for _ts, p in dpkt.pcapng.Reader(f)] == [a, a, b]
    sizes = 2 * PcapngWriter.epb_size(len(a)) + PcapngWriter.epb_size(len(b))
    assert len(data) == _header_size(["tbc0", "tbc1"]) + sizes


def _header_size(ifnames: list[str]) -> int:
    return PcapngWriter(io.BytesIO(), ifnames).bytes_written


def test_kernel_timestamp_is_used_when_present() -> None:
    import socket

    cmsg = (socket.SOL_SOCKET, 35, struct.pack("qq", 12, 345))
    assert _timestamp_ns([cmsg]) == 12_000_000_345


# -- real capture (root) -------------------------------------------------------------------------


@contextlib.contextmanager
def _namespaces() -> Iterator[tuple[str, str]]:
    from pyroute2 import IPRoute, netns

    rid = secrets.token_hex(3)
    x, y = f"tbt{rid}x", f"tbt{rid}y"
    created: list[str] = []
    try:
        for name in (x, y):
            netns.create(name)
            created.append(name)
        with IPRoute(netns=x) as ipr:
            ipr.link("add", ifname="tbcap0", kind="veth", peer={"ifname": "tbcap1", "net_ns_fd": y})
        for name, ifname, address in ((x, "tbcap0", ADDRESS_X), (y, "tbcap1", ADDRESS_Y)):
            with IPRoute(netns=name) as ipr:
                (idx,) = ipr.link_lookup(ifname=ifname)
                ipr.addr("add", index=idx, address=address, prefixlen=30)
                ipr.link("set", index=idx, state="up")
        yield x, y
    finally:
        for name in reversed(created):
            with contextlib.suppress(OSError):
                netns.remove(name)


_SENDER = """
import socket, sys, time
src, sport, dst, dport, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, sport))
s.settimeout(0.01)
for i in range(n):
    s.sendto(b"testbed capture %d" % i, (dst, dport))
    try:
        s.recv(2048)
    except OSError:
        pass
"""


async def _send(netns: str, src: str, sport: int, dst: str, dport: int, n: int) -> None:
    argv = [sys.executable, "-c", _SENDER, src, str(sport), dst, str(dport), str(n)]
    async with netns_process(netns, argv) as proc:
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def _capture_exchange(x: str, y: str, path: Path, **limits: int) -> dict[str, object]:
    async with running_capture(x, ["tbcap0"], path, **limits) as handle:
        # Each side sends from its own bound port, so each sees the other's datagrams arrive.
        await asyncio.gather(
            _send(y, ADDRESS_Y, PORT_Y, ADDRESS_X, PORT_X, 15),
            _send(x, ADDRESS_X, PORT_X, ADDRESS_Y, PORT_Y, 25),
        )
    return handle.summary


@pytest.mark.netns
def test_capture_between_namespaces(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tmp_path / "censor.pcapng"
    with _namespaces() as (x, y):
        summary = asyncio.run(_capture_exchange(x, y, path))
    assert summary.get("error") is None, summary
    assert summary["limit"] is None

    udp = []
    for rec in read_capture(str(path)):
        ip = strip_link_layer(rec.linktype, rec.data)
        if ip is None:
            continue  # ARP
        p = parse_ip(ip)
        if p.proto == 17:
            udp.append((str(ip_address(p.src)), p.sport, str(ip_address(p.dst)), p.dport))
    out = udp.count((ADDRESS_X, PORT_X, ADDRESS_Y, PORT_Y))
    back = udp.count((ADDRESS_Y, PORT_Y, ADDRESS_X, PORT_X))
    assert (out, back) == (25, 15)
    assert summary["packets"] >= 40
    flags = _epb_flags(path.read_bytes())
    assert sum(1 for _i, f in flags if f & 0b11 == 0b10) >= 25  # outbound on x's veth
    assert sum(1 for _i, f in flags if f & 0b11 == 0b01) >= 15  # inbound

    # `testbed classify` reads it: one UDP flow between the two bound ports.
    out_text = io.StringIO()
    assert classify_main(str(path), as_json=True, inspect_packets=None, reassemble=True, out=out_text) == 0
    doc = json.loads(out_text.getvalue())
    endpoints = [sorted(f["endpoints"]) for f in doc["flows"] if f["transport"] == "udp"]
    assert sorted([f"{ADDRESS_X}:{PORT_X}", f"{ADDRESS_Y}:{PORT_Y}"]) in endpoints


@pytest.mark.netns
def test_capture_stops_writing_at_its_limit(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tmp_path / "censor.pcapng"
    with _namespaces() as (x, y):
        summary = asyncio.run(_capture_exchange(x, y, path, max_packets=10))
    assert summary["limit"] == "max_packets"
    assert summary["packets"] == 10
    assert len(list(read_capture(str(path)))) == 10  # a complete, readable file


@pytest.mark.netns
def test_capture_on_a_missing_interface_fails_clearly(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")

    async def go(x: str) -> None:
        async with running_capture(x, ["nosuch0"], tmp_path / "c.pcapng"):
            pass

    with _namespaces() as (x, _y), pytest.raises(CensorError, match="nosuch0"):
        asyncio.run(go(x))


@contextlib.contextmanager
def _forwarding_triple() -> Iterator[tuple[str, str, str]]:
    """x --veth-- c --veth-- y, with c forwarding between 198.18.252.0/30 and 198.18.252.4/30."""
    from pyroute2 import IPRoute, netns

    rid = secrets.token_hex(3)
    x, c, y = f"tbt{rid}x", f"tbt{rid}c", f"tbt{rid}y"
    created: list[str] = []
    try:
        for name in (x, c, y):
            netns.create(name)
            created.append(name)
        with IPRoute(netns=c) as ipr:
            ipr.link("add", ifname="tbc0", kind="veth", peer={"ifname": "tbx0", "net_ns_fd": x})
            ipr.link("add", ifname="tbc1", kind="veth", peer={"ifname": "tby0", "net_ns_fd": y})
        for name, ifname, address in (
            (c, "tbc0", "198.18.252.1"), (x, "tbx0", "198.18.252.2"),
            (c, "tbc1", "198.18.252.5"), (y, "tby0", "198.18.252.6"),
        ):  # fmt: skip
            with IPRoute(netns=name) as ipr:
                (idx,) = ipr.link_lookup(ifname=ifname)
                ipr.addr("add", index=idx, address=address, prefixlen=30)
                ipr.link("set", index=idx, state="up")
        for name, gateway in ((x, "198.18.252.1"), (y, "198.18.252.5")):
            with IPRoute(netns=name) as ipr:
                ipr.route("add", dst="198.18.252.0/24", gateway=gateway)
        yield x, c, y
    finally:
        for name in reversed(created):
            with contextlib.suppress(OSError):
                netns.remove(name)


async def _forwarded_exchange(x: str, c: str, y: str, path: Path) -> dict[str, object]:
    # /proc/sys/net is per namespace: this turns on forwarding in c only (c is removed afterwards).
    forward = [sys.executable, "-c", "open('/proc/sys/net/ipv4/ip_forward', 'w').write('1')"]
    async with netns_process(c, forward) as proc:
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    async with running_capture(c, ["tbc0", "tbc1"], path) as handle:
        await _send(x, "198.18.252.2", PORT_X, "198.18.252.6", PORT_Y, 12)
    return handle.summary


@pytest.mark.netns
def test_a_forwarded_packet_is_captured_on_both_links(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tmp_path / "censor.pcapng"
    with _forwarding_triple() as (x, c, y):
        summary = asyncio.run(_forwarded_exchange(x, c, y, path))
    assert summary.get("error") is None, summary
    data = path.read_bytes()
    seen = []
    for rec, (iface, flags) in zip(read_capture(str(path)), _epb_flags(data), strict=True):
        ip = strip_link_layer(rec.linktype, rec.data)
        if ip is None:
            continue
        p = parse_ip(ip)
        if p.proto == 17 and p.dport == PORT_Y:
            seen.append((iface, "in" if flags & 0b11 == 0b01 else "out"))
    # Every datagram arrives on tbc0 (interface 0) and leaves on tbc1 (interface 1).
    assert seen.count((0, "in")) == 12 and seen.count((1, "out")) == 12 and len(seen) == 24

"""A packet capture of the censor's links: ``python -m testbed.censor.capture OUT.pcapng IFNAME...``.

Run inside the censor namespace (the runner starts it through ``testbed.net.process.netns_process``,
see :func:`running_capture`).  One ``AF_PACKET`` raw socket per interface, bound to it with
``ETH_P_ALL``, so the capture sees every frame on the censor's side of each veth in both
directions.  A forwarded packet therefore appears twice, once arriving on its ingress link and
once leaving on its egress link; both copies are kept, because the difference is the censor's
work: a packet the censor dropped appears on its ingress link only, a held one leaves later than
it arrived.  (The packet socket taps ingress before netfilter and egress after it.)

The file is pcapng with one interface description block per interface (``if_name`` set), and each
enhanced packet block carries ``epb_flags`` with the direction (inbound/outbound) and the kernel's
packet type, so Wireshark shows "which link, which way".  Timestamps are the kernel's receive
time (``SO_TIMESTAMPNS``), in microseconds.

It speaks one JSON object per line on stdout, like the censor engine::

    {"event": "ready", "interfaces": [...]}   sockets bound: traffic may start
    {"event": "limit", "reason": "max_bytes"|"max_packets", ...}   stopped writing (bounded)
    {"event": "final", "packets": N, "bytes": B, "file_bytes": F, "limit": null|reason,
     "kernel_drops": {ifname: n}}   after SIGTERM/SIGINT, the file flushed and closed

It flushes at least every ``FLUSH_INTERVAL_S`` so a crash leaves a readable file, and stops
writing at ``--max-bytes`` or ``--max-packets`` so a long run cannot fill the disk.  Errors go to
stderr with a non-zero exit; a capture is a diagnostic, so the runner reports them but a run
does not fail because its capture stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from testbed.records.json import JsonObject

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PACKETS",
    "CaptureHandle",
    "PcapngWriter",
    "running_capture",
]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_PACKETS = 2_000_000
DEFAULT_SNAPLEN = 65535 + 14
FLUSH_INTERVAL_S = 0.5
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
RCVBUF_BYTES = 8 * 1024 * 1024
MAX_BATCH = 512

# Linux ABI constants (socket(7), packet(7)); Python only gained ETH_P_ALL in 3.12.
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # == SCM_TIMESTAMPNS; the 64-bit-time_t variant is only needed for year 2038+
SO_RCVBUFFORCE = 33
LINKTYPE_ETHERNET = 1

# pcapng (draft-ietf-opsawg-pcapng): block types and option codes.
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _OPT_SHB_USERAPPL, _OPT_IF_NAME, _OPT_EPB_FLAGS = 0, 4, 2, 2
_EPB_INBOUND, _EPB_OUTBOUND = 0b01, 0b10
# packet(7) sll_pkttype -> pcapng epb_flags reception type (bits 2-4).
_RECEPTION = {0: 1, 1: 3, 2: 2, 3: 4}  # HOST unicast, BROADCAST, MULTICAST, OTHERHOST promiscuous


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Little-endian pcapng: a section header, one IDB per interface, then enhanced packet blocks.

    Written with ``struct`` rather than dpkt's block objects: this runs once per packet on the
    censor's links, and the format is three fixed layouts.  The reader side (``testbed classify``,
    Wireshark, dpkt) checks it in the tests.
    """

    def __init__(self, f: BinaryIO, ifnames: Sequence[str], *, snaplen: int = DEFAULT_SNAPLEN) -> None:
        self.f = f
        self.bytes_written = 0
        shb = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1)
        shb += _option(_OPT_SHB_USERAPPL, b"testbed censor capture") + _option(_OPT_END, b"")
        self._write(_block(_SHB, shb))
        for name in ifnames:
            idb = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen)
            idb += _option(_OPT_IF_NAME, name.encode()) + _option(_OPT_END, b"")
            self._write(_block(_IDB, idb))

    @staticmethod
    def epb_size(caplen: int) -> int:
        return 12 + 20 + caplen + (-caplen % 4) + 8 + 4

    def write_packet(self, iface: int, ts_ns: int, frame: bytes, *, outbound: bool, pkttype: int = 0) -> None:
        ts_us = ts_ns // 1000
        flags = _EPB_OUTBOUND if outbound else (_EPB_INBOUND | (_RECEPTION.get(pkttype, 0) << 2))
        body = (
            struct.pack("<IIIII", iface, ts_us >> 32, ts_us & 0xFFFFFFFF, len(frame), len(frame))
            + _pad4(frame)
            + _option(_OPT_EPB_FLAGS, struct.pack("<I", flags))
            + _option(_OPT_END, b"")
        )
        self._write(_block(_EPB, body))

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        self.bytes_written += len(data)


def _open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _kernel_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped because this socket's buffer was full (resets on read)."""
    try:
        _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return int(drops)


def _timestamp_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return int(sec) * 1_000_000_000 + int(nsec)
    return time.time_ns()


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


@dataclass(slots=True)
class _Counters:
    packets: int = 0
    bytes: int = 0
    limit: str | None = None
    kernel_drops: dict[str, int] = field(default_factory=dict)


def capture(
    path: Path,
    ifnames: Sequence[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_packets: int = DEFAULT_MAX_PACKETS,
    snaplen: int = DEFAULT_SNAPLEN,
) -> _Counters:
    """Capture until SIGTERM/SIGINT; returns what was written."""
    counters = _Counters(kernel_drops={name: 0 for name in ifnames})
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    socks: list[socket.socket] = []
    try:
        for name in ifnames:
            socks.append(_open_socket(name))
        with open(path, "wb", buffering=1 << 20) as f:
            writer = PcapngWriter(f, ifnames, snaplen=snaplen)
            f.flush()
            poller = select.poll()
            by_fd = {s.fileno(): (i, s) for i, s in enumerate(socks)}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            poller.register(wake_r, select.POLLIN)
            _emit("ready", interfaces=list(ifnames), file=str(path))
            last_flush = time.monotonic()
            writing = True
            while not stop:
                for fd, _ev in poller.poll(FLUSH_INTERVAL_S * 1000):
                    if fd == wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 64)
                        continue
                    iface, sock = by_fd[fd]
                    writing = _drain(sock, iface, writer, counters, writing, max_bytes, max_packets, snaplen)
                    if not writing and counters.limit is not None and by_fd:
                        # Bounded: stop reading altogether; the kernel discards for closed sockets.
                        for s in socks:
                            counters.kernel_drops[ifnames[by_fd[s.fileno()][0]]] += _kernel_drops(s)
                            poller.unregister(s.fileno())
                        by_fd.clear()
                        f.flush()
                        _emit("limit", reason=counters.limit, packets=counters.packets, file_bytes=writer.bytes_written)
                        break
                now = time.monotonic()
                if now - last_flush >= FLUSH_INTERVAL_S:
                    f.flush()
                    last_flush = now
            # Whatever arrived before the signal is still in the socket buffers: keep it.
            for iface, sock in list(by_fd.values()):
                _drain(sock, iface, writer, counters, writing, max_bytes, max_packets, snaplen)
                counters.kernel_drops[ifnames[iface]] += _kernel_drops(sock)
            f.flush()
            file_bytes = writer.bytes_written
        _emit(
            "final",
            packets=counters.packets,
            bytes=counters.bytes,
            file_bytes=file_bytes,
            limit=counters.limit,
            kernel_drops=counters.kernel_drops,
        )
        return counters
    finally:
        for s in socks:
            s.close()
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


_buffers: dict[int, bytearray] = {}


def _buffer(size: int) -> bytearray:
    """One receive buffer per size, reused: a fresh 64 KiB allocation per frame would dominate."""
    buf = _buffers.get(size)
    if buf is None:
        buf = _buffers[size] = bytearray(size)
    return buf


def _drain(
    sock: socket.socket,
    iface: int,
    writer: PcapngWriter,
    counters: _Counters,
    writing: bool,
    max_bytes: int,
    max_packets: int,
    snaplen: int,
) -> bool:
    """Read what is queued on ``sock`` (up to a batch); returns whether writing may go on."""
    buf = _buffer(snaplen)
    for _ in range(MAX_BATCH):
        try:
            n, ancdata, _flags, addr = sock.recvmsg_into([buf], 64)
        except (BlockingIOError, InterruptedError):
            break
        frame = bytes(memoryview(buf)[:n])
        if not writing:
            continue
        if counters.packets >= max_packets:
            counters.limit = "max_packets"
            return False
        if writer.bytes_written + writer.epb_size(len(frame)) > max_bytes:
            counters.limit = "max_bytes"
            return False
        pkttype = addr[2] if len(addr) > 2 else 0
        writer.write_packet(iface, _timestamp_ns(ancdata), frame, outbound=pkttype == PACKET_OUTGOING, pkttype=pkttype)
        counters.packets += 1
        counters.bytes += len(frame)
    return writing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.censor.capture",
        description="Capture the censor's links to a pcapng file (run inside the censor namespace).",
    )
    parser.add_argument("out", type=Path, help="pcapng file to write")
    parser.add_argument("ifnames", nargs="+", metavar="IFNAME", help="interfaces to capture on")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="stop writing at this file size")
    parser.add_argument("--max-packets", type=int, default=DEFAULT_MAX_PACKETS, help="stop writing after N packets")
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN, help="bytes kept per frame")
    args = parser.parse_args(argv)
    try:
        capture(args.out, args.ifnames, max_bytes=args.max_bytes, max_packets=args.max_packets, snaplen=args.snaplen)
    except PermissionError as exc:
        print(f"capture: {exc}: packet sockets need CAP_NET_RAW (run as root)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"capture: {exc} (interfaces: {', '.join(args.ifnames)}; file: {args.out})", file=sys.stderr)
        return 2
    return 0


# -- the runner's side -------------------------------------------------------------------------


@dataclass(slots=True)
class CaptureHandle:
    """A running capture; after the ``running_capture`` block, ``summary`` says what it wrote."""

    path: Path
    summary: JsonObject = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))


@contextlib.asynccontextmanager
async def running_capture(
    netns: str,
    ifnames: list[str],
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_packets: int = DEFAULT_MAX_PACKETS,
) -> AsyncIterator[CaptureHandle]:
    """Capture ``ifnames`` in ``netns`` to ``path`` for the duration of the block.

    Returns once the capture says it is ready (so traffic sent inside the block is captured);
    on exit the capture is stopped with SIGTERM, flushed and reaped.  Start-up failure raises
    ``CensorError``; if the capture dies mid-run the block is not interrupted (it is a
    diagnostic): ``handle.summary["error"]`` says so afterwards.
    """
    from testbed.errors import CensorError
    from testbed.net.process import netns_process, terminate

    argv = [
        sys.executable, "-m", "testbed.censor.capture",
        "--max-bytes", str(max_bytes), "--max-packets", str(max_packets),
        str(path), *ifnames,
    ]  # fmt: skip
    handle = CaptureHandle(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with netns_process(netns, argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        ready = asyncio.Event()
        stdout, stderr = proc.stdout, proc.stderr

        async def read_stdout() -> None:
            async for raw in stdout:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    handle.stderr_tail.append(raw.decode(errors="replace").rstrip())
                    continue
                if msg.get("event") == "ready":
                    ready.set()
                elif msg.get("event") == "limit":
                    handle.summary["limit"] = msg.get("reason")
                elif msg.get("event") == "final":
                    handle.summary.update({k: v for k, v in msg.items() if k != "event"})

        async def read_stderr() -> None:
            async for raw in stderr:
                handle.stderr_tail.append(raw.decode(errors="replace").rstrip())

        # Readers are owned here and always cancelled and awaited in ``finally`` (not a
        # TaskGroup: a start-up failure must surface as CensorError, not as an exception group).
        readers = [asyncio.create_task(read_stdout()), asyncio.create_task(read_stderr())]
        try:
            waiter = asyncio.create_task(ready.wait())
            exited = asyncio.create_task(proc.wait())
            try:
                await asyncio.wait({waiter, exited}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                exited.cancel()
                await asyncio.gather(waiter, exited, return_exceptions=True)
            if not ready.is_set():
                await asyncio.wait(readers, timeout=2)
                said = "\n    ".join(handle.stderr_tail) or "(no output)"
                how = (
                    f"(exit code {proc.returncode})"
                    if proc.returncode is not None
                    else f"within {READY_TIMEOUT_S:.0f} s"
                )
                raise CensorError(
                    f"the packet capture of the censor's links ({', '.join(ifnames)}) did not start {how}:\n    {said}"
                )
            yield handle
            died_early = proc.returncode is not None
            await terminate(proc, STOP_TIMEOUT_S)
            await asyncio.wait(readers, timeout=2)
            if died_early or proc.returncode != 0 or "packets" not in handle.summary:
                handle.summary["error"] = (
                    f"the capture exited with code {proc.returncode}"
                    + (" before the run ended" if died_early else "")
                    + ": "
                    + ("; ".join(handle.stderr_tail) or "no output")
                )
        finally:
            for r in readers:
                r.cancel()  # a pipe kept open by something else must not hang the run
            await asyncio.gather(*readers, return_exceptions=True)


if __name__ == "__main__":
    sys.exit(main())

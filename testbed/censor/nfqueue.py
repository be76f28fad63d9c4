"""The only code that touches netfilterqueue: feed queued packets to the engine, carry out verdicts.

Driven from the event loop (``get_fd()`` + ``run(block=False)`` in a reader callback), so timers
for held packets and the engine share one thread and one clock: ``loop.time()``.

Fail closed: the queue is bound without ``--queue-bypass`` and without NFQA_CFG_F_FAIL_OPEN, so
if this process dies or falls behind, the kernel drops packets instead of letting them through
uninspected; an exception from the engine stops the censor rather than being logged and ignored.
"""

from __future__ import annotations

import asyncio
import heapq
import socket
from collections.abc import Callable
from typing import Protocol

from netfilterqueue import NetfilterQueue
from netfilterqueue import Packet as NfqPacket

from testbed.core.engine import CensorEngine
from testbed.core.offload import OffloadTable
from testbed.core.verdict import Action, Verdict

# Room in the netlink socket for every packet the kernel may queue (each message is the packet
# plus ~100 bytes of metadata; with offloads off packets are at most one MTU).
_PER_PACKET_SOCK_BYTES = 2048


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the adapter needs of the event loop to hold packets (a fake in the unit tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[int], object], hold_id: int, /) -> Timer: ...


class QueueAdapter:
    """Invariant: the adapter holds at most the policy's ``max_held`` packets. The policy counts
    a held packet as gone at its release time; a timer fires later than that (one
    ``run(block=False)`` drains a whole batch of packets before any timer can run, and a busy
    loop runs timers late), so before each packet reaches the engine, every held packet due by
    then is released here. That also keeps a flow's order: a packet accepted at once never
    overtakes an earlier one of its flow whose hold is over but whose timer has not fired."""

    def __init__(
        self,
        engine: CensorEngine,
        *,
        queue_num: int,
        max_len: int,
        on_fatal: Callable[[BaseException], None],
        clock: Clock | None = None,
        offload: OffloadTable | None = None,
        offload_mark: int = 0,
    ) -> None:
        """With ``offload``, an accepted packet of a flow that may leave the queue carries
        ``offload_mark``, which the censor's firewall saves as its connmark
        (``firewall.offload_rules``): the kernel forwards the flow's later packets itself."""
        self.engine = engine
        self.offload = offload
        self.offload_mark = offload_mark
        self.queue_num = queue_num
        self.max_len = max_len
        self.on_fatal = on_fatal
        self._loop = asyncio.get_running_loop()
        self._clock: Clock = clock if clock is not None else self._loop
        self._nfq: NetfilterQueue | None = None
        self._fd: int | None = None
        self._held: dict[int, tuple[NfqPacket, Timer]] = {}
        self._due: list[tuple[float, int]] = []  # (release time, hold id), a min-heap
        self._next_hold_id = 0
        self.held_max = 0
        self.injected = 0
        self.inject_errors = 0
        self._raw: dict[int, socket.socket] = {}

    def start(self) -> None:
        nfq = NetfilterQueue()
        nfq.bind(
            self.queue_num,
            self._on_packet,
            max_len=self.max_len,
            sock_len=self.max_len * _PER_PACKET_SOCK_BYTES,
        )
        self._nfq = nfq
        self._fd = nfq.get_fd()
        self._loop.add_reader(self._fd, self._readable)

    def close(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        # Packets still held at shutdown are dropped: the run is over, and releasing them late
        # would only blur the censor's counters.
        for pkt, timer in self._held.values():
            timer.cancel()
            pkt.drop()
        self._held.clear()
        self._due.clear()
        if self._nfq is not None:
            self._nfq.unbind()
            self._nfq = None
        for sock in self._raw.values():
            sock.close()
        self._raw.clear()

    def _inject(self, data: bytes) -> None:
        """Send a crafted IP packet (RST, ICMP error) from the censor; it leaves through OUTPUT,
        not FORWARD, so it is never queued back to us."""
        version = data[0] >> 4 if data else 0
        try:
            if version == 4:
                sock = self._raw.get(4)
                if sock is None:
                    sock = self._raw[4] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                sock.sendto(data, (socket.inet_ntop(socket.AF_INET, data[16:20]), 0))
            elif version == 6:
                sock = self._raw.get(6)
                if sock is None:
                    sock = self._raw[6] = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
                sock.sendto(data, (socket.inet_ntop(socket.AF_INET6, data[24:40]), 0))
            else:
                self.inject_errors += 1
                return
            self.injected += 1
        except OSError:
            # e.g. no route for a crafted packet: count it, the packet's own verdict still stands
            self.inject_errors += 1

    @property
    def held(self) -> int:
        return len(self._held)

    def _readable(self) -> None:
        nfq = self._nfq
        if nfq is None:
            return
        try:
            nfq.run(block=False)
        except BaseException as exc:
            if self._fd is not None:
                self._loop.remove_reader(self._fd)
                self._fd = None
            self.on_fatal(exc)

    def release_due(self, now: float) -> None:
        """Release, in order of release time, every held packet due by ``now``."""
        due = self._due
        while due and due[0][0] <= now:
            _, hold_id = heapq.heappop(due)
            entry = self._held.pop(hold_id, None)
            if entry is not None:  # else its timer released it already
                entry[1].cancel()
                entry[0].accept()

    def _on_packet(self, pkt: NfqPacket) -> None:
        now = self._clock.time()
        self.release_due(now)
        verdict: Verdict = self.engine.handle(pkt.get_payload(), now)
        action = verdict.action
        if verdict.inject:
            for data in verdict.inject:
                self._inject(data)
        if verdict.rewrite is not None:
            pkt.set_payload(verdict.rewrite)
        if action is Action.ACCEPT:
            offload = self.offload
            if offload is not None and verdict.rewrite is None:
                flow = self.engine.last_flow
                if flow is not None and offload.claim(flow):
                    pkt.set_mark(self.offload_mark)
            pkt.accept()
        elif action is Action.DROP:
            pkt.drop()
        elif action is Action.HOLD:
            assert verdict.until is not None
            pkt.retain()
            hold_id = self._next_hold_id
            self._next_hold_id += 1
            timer = self._clock.call_at(verdict.until, self._release, hold_id)
            self._held[hold_id] = (pkt, timer)
            heapq.heappush(self._due, (verdict.until, hold_id))
            self.held_max = max(self.held_max, len(self._held))
        else:
            # REJECT: the packet itself goes no further; the policy put the RST / ICMP error it
            # answers with into ``verdict.inject``.
            pkt.drop()

    def _release(self, hold_id: int) -> None:
        entry = self._held.pop(hold_id, None)
        if entry is not None:
            entry[0].accept()
        # Its heap entry goes when it comes to the top; drop settled ones now and then so the
        # heap stays as small as what is held.
        if len(self._due) > 2 * len(self._held) + 64:
            self._due = [e for e in self._due if e[1] in self._held]
            heapq.heapify(self._due)

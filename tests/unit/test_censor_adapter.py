"""The NFQUEUE adapter's bookkeeping of held packets, driven by fake packets on a virtual clock.

The real queue hands packets over in batches (one ``run(block=False)`` drains the socket) and the
event loop runs timers only between batches, and late when it is busy: the fake clock here fires
timers only when the test says so, which is the worst case of the same thing.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from test_policy_support import CALLEE, CALLER, engine, policy, udp

from testbed.censor.nfqueue import QueueAdapter


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Virtual time; timers run only in ``fire_due()`` (between batches)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Callable[[int], object], int, FakeTimer]] = []
        self._seq = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[int], object], hold_id: int, /) -> FakeTimer:
        timer = FakeTimer()
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, callback, hold_id, timer))
        return timer

    def fire_due(self) -> None:
        while self._timers and self._timers[0][0] <= self.now:
            _, _, callback, hold_id, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback(hold_id)


class FakePacket:
    """The part of ``netfilterqueue.Packet`` the adapter uses; records what became of it."""

    def __init__(self, payload: bytes, log: list[tuple[str, int]], n: int) -> None:
        self.payload = payload
        self.log = log
        self.n = n

    def get_payload(self) -> bytes:
        return self.payload

    def set_payload(self, payload: bytes) -> None:
        self.payload = payload

    def retain(self) -> None:
        pass

    def accept(self) -> None:
        self.log.append(("accept", self.n))

    def drop(self) -> None:
        self.log.append(("drop", self.n))


def test_adapter_never_holds_more_than_max_held_and_keeps_flow_order() -> None:
    async def scenario() -> None:
        p = policy("policy: {max_held: 10}\nrules:\n  - {name: d, action: {delay: 10ms}}\n")
        clock = FakeClock()
        adapter = QueueAdapter(engine(p), queue_num=0, max_len=1024, on_fatal=lambda exc: None, clock=clock)
        log: list[tuple[str, int]] = []
        n = 0
        # Batches of 8 packets every 5.25 ms, timers fired only after each batch: a packet held
        # at one batch is due two batches later, while the next batch is being read.
        for batch in range(40):
            clock.now = batch * 0.00525
            for _ in range(8):
                adapter._on_packet(FakePacket(udp(CALLER, 40000, CALLEE, 5000), log, n))  # type: ignore[arg-type]
                n += 1
                assert adapter.held <= p.max_held, f"adapter holds {adapter.held} > max_held {p.max_held}"
            clock.fire_due()
        assert adapter.held_max <= p.max_held
        assert p.summary()["rules"][0]["drops"].get("queue-full", 0) > 0  # the bound was reached
        accepted = [i for what, i in log if what == "accept"]
        assert accepted == sorted(accepted), "held packets of one flow left out of order"

    asyncio.run(scenario())


def test_held_now_is_the_count_at_the_end_of_the_run() -> None:
    p = policy("rules:\n  - {name: d, action: {delay: 100ms}}\n")
    e = engine(p)
    for i in range(5):
        e.handle(udp(CALLER, 40000, CALLEE, 5000), i * 0.01)
    assert e.summary(now=0.05)["held"]["now"] == 5
    # At 1 s every one of them has left: the summary must not repeat the count of the last hold.
    assert e.summary(now=1.0)["held"]["now"] == 0

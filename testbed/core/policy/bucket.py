"""Token buckets for ``throttle``: policing (drop the excess) and shaping (queue it, bounded).

Tokens are bytes; they accrue at ``rate`` bytes/s up to ``burst``. Time is an argument.

Policing is TSPU's 2021 Twitter throttler: a bucket per direction, excess dropped, ~130 kbit/s,
which delivered ~16 KB in 100 ms and then nothing for ~900 ms (censor-behaviors.md B.8).

Shaping lets the token count go negative: the debt is the bytes waiting, and a packet leaves
when the refill has paid for it, ``now + debt / rate``. Debts only grow with later packets, so
release times come out in arrival order (FIFO). The backlog is bounded in bytes and packets;
a packet that would exceed either is dropped and counted, never left for the kernel's queue.
"""

from __future__ import annotations

from collections import deque

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "last", "max_backlog", "max_packets", "_queued")

    def __init__(self, rate: float, burst: float, *, max_backlog: float = 0.0, max_packets: int = 0) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a token bucket needs rate > 0 and burst > 0")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)  # a new flow starts with a full bucket, as tc's tbf does
        self.last: float | None = None
        self.max_backlog = float(max_backlog)
        self.max_packets = max_packets
        self._queued: deque[float] = deque()  # release times of packets still waiting

    def _refill(self, now: float) -> None:
        last = self.last
        if last is not None and now > last:
            self.tokens = min(self.burst, self.tokens + (now - last) * self.rate)
        if last is None or now > last:
            self.last = now

    def police(self, size: int, now: float) -> bool:
        """Take ``size`` tokens if there are enough; False means drop the packet."""
        self._refill(now)
        if self.tokens >= size:
            self.tokens -= size
            return True
        return False

    def shape(self, size: int, now: float) -> float | None:
        """The time the packet may leave (``now`` if at once), or None if the backlog is full."""
        self._refill(now)
        queued = self._queued
        while queued and queued[0] <= now:
            queued.popleft()
        after = self.tokens - size
        if after >= 0:
            self.tokens = after
            return now
        if -after > self.max_backlog or len(queued) >= self.max_packets:
            return None
        self.tokens = after
        release = now + (-after) / self.rate
        queued.append(release)
        return release

    @property
    def backlog_packets(self) -> int:
        return len(self._queued)

"""Connection-count policing: the Nth connection with the same key within a window (F.16).

TSPU was reported (bbs #546) to freeze the 4th near-simultaneous connection to the same SNI from
the same client subnet within ~60 s, for ~120 s, when the TLS fingerprint also matched. This
matcher counts *flows*: each flow is counted once, at the first packet where every matcher
evaluated before it in the rule holds and its key is known (with ``sni`` in the key, once the
classifier has read the SNI), and it keeps that rank for its whole life. It is true for the flows
ranked ``count`` or later among those counted with the same key in the last ``window`` seconds.
The freeze itself is the action (``drop`` with ``block_after``).

The table lives in the rule (so in the policy): one entry per key, each holding at most ``count``
start times; at most ``max_keys`` keys, the least recently counted evicted first (counted in
``evicted``). Time is the ``now`` given to ``decide``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from testbed.core.policy.state import Context

__all__ = ["ConnectionKey", "ConnectionsMatch"]

MAX_KEYS = 65_536

_Key = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class ConnectionKey:
    """Which flows count together: all the parts given must be equal."""

    sni: bool = False
    server: bool = False  # the responder's address
    port: bool = False  # the responder's port
    client: bool = False  # the initiator's address
    client_prefix: int | None = None  # the initiator's first N bits (subnet/N)

    def of(self, ctx: Context) -> _Key | None:
        f = ctx.flow
        parts: list[object] = []
        if self.sni:
            if f.sni is None:
                return None
            parts.append(f.sni.lower())
        if self.server:
            parts.append(f.responder_addr)
        if self.port:
            parts.append(f.responder_port)
        if self.client:
            parts.append(f.initiator_addr)
        if self.client_prefix is not None:
            addr = f.initiator_addr
            bits = len(addr) * 8
            keep = min(self.client_prefix, bits)
            value = int.from_bytes(addr, "big") >> (bits - keep) if keep else 0
            parts.append((len(addr), keep, value))
        return tuple(parts)


class ConnectionsMatch:
    __slots__ = ("_table", "count", "evicted", "key", "max_keys", "window")

    def __init__(self, count: int, window: float, key: ConnectionKey, max_keys: int = MAX_KEYS) -> None:
        self.count = count
        self.window = window
        self.key = key
        self.max_keys = max_keys
        self.evicted = 0
        self._table: dict[_Key, deque[float]] = {}

    def __len__(self) -> int:
        return len(self._table)

    def _rank(self, key: _Key, now: float) -> int:
        table = self._table
        times = table.pop(key, None)  # re-inserted below: most recently counted at the back
        if times is None:
            times = deque(maxlen=self.count)
            while len(table) >= self.max_keys:
                del table[next(iter(table))]
                self.evicted += 1
        horizon = now - self.window
        while times and times[0] < horizon:
            times.popleft()
        rank = len(times) + 1
        times.append(now)
        table[key] = times
        return rank

    def __call__(self, ctx: Context) -> bool:
        marks = ctx.state.marks
        rank = marks.get(id(self))
        if rank is None:
            key = self.key.of(ctx)
            if key is None:
                return False
            rank = marks[id(self)] = self._rank(key, ctx.now)
        return rank >= self.count

"""Seeded randomness per (rule, flow, direction).

Every random choice of the policy (loss, jitter) is drawn from a ``random.Random`` seeded by the
scenario's ``seed`` *and* the rule, flow and direction it serves. Same seed and same traffic give
the same verdicts; and because each flow has its own stream, a flow's draws do not shift when
another flow's packets interleave differently (real time never interleaves twice the same way).
The seed material is hashed with BLAKE2b, not ``hash()``, which is salted per process.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["derive_rng", "derive_seed"]


def derive_seed(seed: int, *parts: bytes | str | int) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif isinstance(part, int):
            part = str(part).encode()
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return int.from_bytes(h.digest(), "big")


def derive_rng(seed: int, *parts: bytes | str | int) -> random.Random:
    return random.Random(derive_seed(seed, *parts))

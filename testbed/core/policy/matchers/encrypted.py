"""Fully encrypted traffic: the GFW's check on a TCP flow's first client data packet (I.26).

Wu et al., "How the Great Firewall of China Detects and Blocks Fully Encrypted Traffic" (USENIX
Security 2023, §4, Algorithm 1): the GFW looks at the first data packet the client sends on a TCP
connection and lets it go if any exemption holds; otherwise it blocks the connection with a
probability of ~26.3% (§6.3). The exemptions, in the paper's order:

- Ex1: the mean popcount (set bits) per byte is <= 3.4 or >= 4.6 (random bytes average 4.0);
- Ex2: the first 6 bytes are printable ASCII (0x20-0x7e);
- Ex3: more than 50% of the bytes are printable;
- Ex4: more than 20 contiguous bytes are printable;
- Ex5: the first bytes match a TLS or HTTP fingerprint: ``[\\x16-\\x17]\\x03[\\x00-\\x09]`` or
  ``GET ``/``PUT ``/``POST ``/``HEAD `` (§4.3).

Ex5 reads the bytes, not the classifier's ``tls``/``http`` labels: the GFW's fingerprint is this
crude prefix (an application-data record header ``17 03 03`` passes it too), and any HTTP request
line the classifier would label is all printable, so Ex2 exempts it anyway.

The blocking draw is per flow and reproducible: a hash of the policy's seed, the rule and the
flow's 5-tuple (``rng.derive_seed``), so a retransmission of the first data packet gets the same
answer and the same traffic gives the same verdicts on every run.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from testbed.core.flow import Direction
from testbed.core.policy.rng import derive_seed
from testbed.core.policy.state import Context

__all__ = ["Exemption", "FetThresholds", "FullyEncryptedMatch", "exemption"]

ORIGINAL = Direction.ORIGINAL
_PRINTABLE = bytes(range(0x20, 0x7F))
_HTTP_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ")
_TWO64 = float(2**64)


class Exemption(enum.Enum):
    POPCOUNT = "ex1-popcount"
    PRINTABLE_PREFIX = "ex2-printable-prefix"
    PRINTABLE_SHARE = "ex3-printable-share"
    PRINTABLE_RUN = "ex4-printable-run"
    PROTOCOL = "ex5-tls-http"


@dataclass(frozen=True, slots=True)
class FetThresholds:
    """The paper's values by default (Wu et al. 2023, §4.1-4.3)."""

    popcount_low: float = 3.4  # exempt at or below (bits per byte)
    popcount_high: float = 4.6  # exempt at or above
    printable_prefix: int = 6  # exempt when the first N bytes are printable (0: off)
    printable_share: float = 0.5  # exempt when more than this share of bytes is printable
    printable_run: int = 20  # exempt when more than N contiguous bytes are printable

    def run_re(self) -> re.Pattern[bytes]:
        return re.compile(rb"[\x20-\x7e]{%d}" % (self.printable_run + 1))


def _looks_tls_or_http(payload: bytes) -> bool:
    if len(payload) >= 3 and payload[0] in (0x16, 0x17) and payload[1] == 0x03 and payload[2] <= 0x09:
        return True
    return payload.startswith(_HTTP_METHODS)


def exemption(payload: bytes, th: FetThresholds, run_re: re.Pattern[bytes] | None = None) -> Exemption | None:
    """The first exemption that holds for ``payload`` (the paper's order), or None: it looks fully
    encrypted. Empty payloads are exempt (there is nothing to judge)."""
    n = len(payload)
    if n == 0:
        return Exemption.POPCOUNT  # no set bits at all
    bits = int.from_bytes(payload, "big").bit_count() / n
    if bits <= th.popcount_low or bits >= th.popcount_high:
        return Exemption.POPCOUNT
    k = th.printable_prefix
    if k > 0 and n >= k and not payload[:k].translate(None, _PRINTABLE):
        return Exemption.PRINTABLE_PREFIX
    printable = n - len(payload.translate(None, _PRINTABLE))
    if printable > th.printable_share * n:
        return Exemption.PRINTABLE_SHARE
    if (run_re or th.run_re()).search(payload) is not None:
        return Exemption.PRINTABLE_RUN
    if _looks_tls_or_http(payload):
        return Exemption.PROTOCOL
    return None


class FullyEncryptedMatch:
    """True on the first client->server data packet of a TCP flow when no exemption holds and
    the flow's seeded draw falls under ``probability``. Every other packet: false (use a residual
    block to keep blocking the flow, as the GFW does)."""

    __slots__ = ("_run_re", "probability", "seed", "thresholds")

    def __init__(self, thresholds: FetThresholds, probability: float, seed: int) -> None:
        self.thresholds = thresholds
        self.probability = probability
        self.seed = seed
        self._run_re = thresholds.run_re()

    def draw(self, ctx: Context) -> float:
        """The flow's uniform draw in [0, 1): the same for every packet of the flow."""
        k = ctx.flow.key
        return derive_seed(self.seed, "fet", k.proto, k.a_addr, k.a_port, k.b_addr, k.b_port) / _TWO64

    def __call__(self, ctx: Context) -> bool:
        p = ctx.packet
        if ctx.direction is not ORIGINAL or p.proto != 6 or not p.payload or p.frag_offset:
            return False
        if ctx.flow.data_orig != 1:  # a retransmission of the first data keeps number 1
            return False
        if exemption(p.payload, self.thresholds, self._run_re) is not None:
            return False
        return self.probability >= 1.0 or self.draw(ctx) < self.probability

    def over(self, ctx: Context) -> bool:
        # Past the first data packet (and a retransmission of it) the rule cannot match again.
        return ctx.packet.proto != 6 or ctx.flow.data_orig > 1

"""Protocol conformance of a flow's first client data packets, taken together (H.24).

Bock et al., "Detecting and Evading Censorship-in-Depth: A Case Study of Iran's Protocol Filter"
(FOCI 2020, §4): on TCP 53/80/443 the filter joined the payloads of the client's first two data
packets (no TCP reassembly: the segments as they came, retransmissions aside) and let the flow
through if they matched the fingerprint of DNS, HTTP or TLS; otherwise every packet after the
first was dropped. An HTTP method split over two segments therefore passed, which the classifier's
per-flow labels (read from the first segment) cannot express.

The runtime keeps the first ``packets`` client data payloads of every flow (at most
``MAX_BYTES`` of them) when a rule asks for ``conforms``; this matcher reads them, so it does not
matter whether the rule was evaluated on the earlier packets. Fingerprints, approximating §4.3:

- ``http``: at least 8 bytes, starting with ``GET ``, ``POST ``, ``HEAD ``, ``PUT ``,
  ``DELETE ``, ``OPTIONS `` or ``CONNECT `` (the list and the 8 bytes are the paper's);
- ``tls``: a handshake record header ``16 03 00-03`` and, once 6 bytes are there, handshake type
  01 (ClientHello);
- ``dns``: a whole TCP DNS query (RFC 1035 §4.2.2): a 2-byte length covering at least a header
  and a minimal question, all of it present, then a header with QR = 0, opcode 0, one question
  and no answers. (The paper reports a bug in the filter's
  DNS fingerprint that is not reproduced here.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from testbed.core.policy.state import Context

__all__ = ["MAX_BYTES", "ConformsMatch", "Protocol", "conforms"]

MAX_BYTES = 512  # far more than any fingerprint reads; bounds the per-flow copy
_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ")


class Protocol(str, enum.Enum):
    TLS = "tls"
    HTTP = "http"
    DNS = "dns"


def _http(data: bytes) -> bool:
    return len(data) >= 8 and data.startswith(_HTTP_METHODS)


def _tls(data: bytes) -> bool:
    if len(data) < 3 or data[0] != 0x16 or data[1] != 0x03 or data[2] > 0x03:
        return False
    return len(data) < 6 or data[5] == 0x01


def _dns(data: bytes) -> bool:
    if len(data) < 14:
        return False
    length = int.from_bytes(data[0:2], "big")
    if not 17 <= length <= len(data) - 2:  # a header and a minimal question, all present
        return False
    # QR = 0 (query) and opcode 0 (standard query); one question, no answers.
    return data[4] & 0xF8 == 0 and data[6:8] == b"\x00\x01" and data[8:10] == b"\x00\x00"


_CHECKS = {Protocol.TLS: _tls, Protocol.HTTP: _http, Protocol.DNS: _dns}


def conforms(data: bytes, protocols: frozenset[Protocol]) -> bool:
    return any(_CHECKS[p](data) for p in protocols)


@dataclass(frozen=True, slots=True)
class ConformsMatch:
    """The flow's first ``packets`` client data payloads so far, joined, match one of
    ``protocols``. Before the client sent any data: false."""

    protocols: frozenset[Protocol]
    packets: int

    def __call__(self, ctx: Context) -> bool:
        st = ctx.state
        if not st.first_data_n:
            return False
        data = st.first_data
        if st.first_data_n > self.packets:  # another rule keeps more packets than this one reads
            data = data[: st.first_data_ends[self.packets - 1]]
        return conforms(bytes(data), self.protocols)

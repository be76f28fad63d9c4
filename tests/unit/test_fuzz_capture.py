"""Fuzz: a corrupt capture gives records or a CaptureError, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

from _dpi_helpers import ether, stun_message, udp4, write_pcap, write_pcapng
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.analysis.pcap import read_capture
from testbed.errors import CaptureError

PKT = udp4("10.0.0.1", 1, "10.0.0.2", 3478, stun_message(0x0001, []))


def _good(kind: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x"
        if kind == "pcap":
            write_pcap(p, [(1.0, PKT), (2.0, PKT)])
        else:
            write_pcapng(p, [(1.0, ether(PKT)), (2.0, ether(PKT))])
        return p.read_bytes()


GOOD = {"pcap": _good("pcap"), "pcapng": _good("pcapng")}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["pcap", "pcapng"]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 200),
)
def test_mutated_capture(kind: str, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(GOOD[kind])
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    data = data[: len(data) - cut] if cut < len(data) else data[:1]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m"
        p.write_bytes(bytes(data))
        try:
            for _ in read_capture(str(p)):
                pass
        except CaptureError as exc:
            assert exc.file == str(p)

"""`testbed classify` on a capture of many flows: memory stays bounded (issue 14 item 6).

Flows are written out (``--jsonl``) or folded into a bounded selection (table, ``--json``) as
they leave the flow table, and forgotten. The checks count the ``Flow`` objects alive while the
output is written, and trace the memory of a smaller run; never time. Keeping every flow costs
about 1.7 KiB per flow (170 MB traced for 100k single-packet flows before this change).
"""

from __future__ import annotations

import gc
import io
import json
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from testbed.analysis.classify import main
from testbed.core.flow import Flow

# 100k flows: enough that keeping them all (~170 MB) dwarfs the bound, and a few seconds.
FLOWS = 100_000
# A small flow table so the bound is far below the cost of keeping every flow; the capture
# still exercises both ways a flow ends: eviction from the full table, and idle timeout.
TABLE = 2048
# Flows alive at any moment: the table's, plus a few in hand (the one being emitted, the
# classifier's last-fragment map is empty here).
ALIVE_LIMIT = TABLE + 16


def _alive_flows() -> int:
    gc.collect()  # count what is still reachable, not garbage awaiting the cycle collector
    return sum(1 for o in gc.get_objects() if type(o) is Flow)


def _udp(i: int) -> bytes:
    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    udp = struct.pack("!HHHH", 40000 + i % 10000, 5000, 12, 0) + b"abcd"
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, bytes([198, 18, 0, 1]))
    return hdr + udp


def _write_capture(path: Path, flows: int, bursts: int = 2) -> Path:
    """``flows`` single-packet UDP flows, 1 ms apart, in ``bursts`` separated by 300 s pauses
    (past the 120 s UDP idle timeout): a burst's flows end by expiry when the next one starts,
    or by eviction if the table fills first."""
    per_burst = -(-flows // bursts)
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=101)
        for i in range(flows):
            w.writepkt(_udp(i), ts=i * 0.001 + (i // per_burst) * 300.0)
    return path


@pytest.fixture(scope="module")
def many_flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_capture(tmp_path_factory.mktemp("stream") / "many.pcap", FLOWS)


# The bounded selections (--json, table) are checked on a fifth of it: still ten times the table.
SOME = FLOWS // 5


@pytest.fixture(scope="module")
def some_flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_capture(tmp_path_factory.mktemp("stream") / "some.pcap", SOME)


class _Stdout(io.TextIOBase):
    """A stdout that counts lines, keeps the first and last, and notes how many ``Flow``
    objects are alive at the first write and at every ``sample_every`` lines after."""

    def __init__(self, sample_every: int = 0) -> None:
        self.lines = 0
        self.first = ""
        self.last = ""
        self.initiators: set[str] = set()
        self.alive: list[int] = []
        self.sample_every = sample_every
        self._part = ""
        self.chunks: list[str] = []

    def write(self, s: str) -> int:
        if not self.alive or (self.sample_every and self.lines % self.sample_every == 0 and "\n" in s):
            self.alive.append(_alive_flows())
        self._part += s
        *done, self._part = self._part.split("\n")
        for line in done:
            self.lines += 1
            if not self.first:
                self.first = line
            self.last = line
            if self.sample_every:
                if line.startswith('{"transport"'):
                    self.initiators.add(line.split('"initiator":"', 1)[1].split('"', 1)[0])
            else:
                self.chunks.append(line)
        return len(s)


def test_jsonl_streams_every_flow_and_keeps_none(many_flows: Path) -> None:
    out = _Stdout(sample_every=FLOWS // 5)
    rc = main(str(many_flows), as_json=False, as_jsonl=True, inspect_packets=None,
              reassemble=True, out=out, max_flows=TABLE)  # fmt: skip
    assert rc == 0
    assert out.lines == FLOWS + 1  # one line per flow, then the summary
    assert len(out.initiators) == FLOWS  # every flow exactly once
    first = json.loads(out.first)
    assert first["packets"] == 1 and first["transport"] == "udp" and first["ended"] == "evicted"
    summary = json.loads(out.last)["summary"]
    assert summary["flows_total"] == FLOWS and summary["flows_listed"] == FLOWS
    assert summary["flows_dropped"] == 0 and summary["unlabelled"] == FLOWS
    assert summary["flows_evicted"] > 0 and summary["flows_idle"] > 0
    assert summary["capture"]["ip_packets"] == FLOWS
    assert len(out.alive) >= 5 and max(out.alive) <= ALIVE_LIMIT, out.alive


def test_json_keeps_a_bounded_number_of_flows(some_flows: Path) -> None:
    out = _Stdout()
    rc = main(str(some_flows), as_json=True, inspect_packets=None, reassemble=True, out=out,
              max_flows=TABLE, limit=500)  # fmt: skip
    assert rc == 0
    assert out.alive[0] <= ALIVE_LIMIT  # when the document is written, no flow is held
    assert out.lines == 1  # compact: one line, not the pure-Python indenting encoder
    doc = json.loads(out.chunks[0])
    assert len(doc["flows"]) == 500
    s = doc["summary"]
    assert s["flows_total"] == SOME and s["flows_listed"] == 500 and s["flows_dropped"] == SOME - 500
    assert s["labels"] == {} and s["unlabelled"] == SOME
    starts = [f["first_seen"] for f in doc["flows"]]
    assert starts == sorted(starts)  # listed in order of first packet, as before


def test_table_lists_the_largest_flows_and_counts_all(some_flows: Path) -> None:
    out = _Stdout()
    rc = main(str(some_flows), as_json=False, inspect_packets=None, reassemble=True, out=out,
              max_flows=TABLE)  # fmt: skip
    assert rc == 0
    assert out.alive[0] <= ALIVE_LIMIT
    rows = [ln for ln in out.chunks if ln.startswith("udp ")]
    assert len(rows) == 1000  # the default table limit
    text = "\n".join(out.chunks)
    assert f"{SOME} flows, {SOME} IP packets" in text
    assert "--jsonl for every flow" in text and f"unlabelled {SOME}" in text


def _traced_peak(fn: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("output", ["jsonl", "json"])
def test_traced_memory_stays_flat(tmp_path: Path, output: str) -> None:
    """Bytes, not only ``Flow`` objects: nothing else grows with the capture either (tracing
    is slow, so a smaller capture). Keeping every flow traced ~9 MB for these 5k flows; streaming, 0.25 MB."""
    pcap = _write_capture(tmp_path / "m.pcap", 5_000)

    def go() -> None:
        main(str(pcap), as_json=output == "json", as_jsonl=output == "jsonl", inspect_packets=None,
             reassemble=True, out=io.StringIO() if output != "jsonl" else _Sink(), max_flows=128,
             limit=None if output == "jsonl" else 100)  # fmt: skip

    peak = _traced_peak(go)
    assert peak < 2 * 2**20, f"traced peak {peak / 2**20:.1f} MiB: flows are being kept"


def test_default_table_forgets_flows_that_ended(tmp_path: Path) -> None:
    """The plain `testbed classify PCAP` (the signature it always had, default flow table):
    flows that went idle are forgotten, so memory follows the flows open at once (500 here),
    not the capture's 5000."""
    pcap = _write_capture(tmp_path / "b.pcap", 5_000, bursts=10)
    out = io.StringIO()
    peak = _traced_peak(lambda: main(str(pcap), as_json=False, inspect_packets=None,
                                     reassemble=True, out=out))  # fmt: skip
    assert "5000 flows, 5000 IP packets" in out.getvalue()
    assert peak < 3 * 2**20, f"traced peak {peak / 2**20:.1f} MiB: ended flows are being kept"


class _Sink(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def _sized_capture(path: Path) -> Path:
    """Five flows of 1..5 packets (flow k has k packets), first seen in order k = 0..4."""
    frames = [(k * 1.0 + j * 0.01, _udp(k)) for k in range(5) for j in range(k + 1)]
    frames.sort(key=lambda f: f[0])
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=101)
        for ts, frame in frames:
            w.writepkt(frame, ts=ts)
    return path


def test_limit_keeps_the_largest_flows_in_order_of_first_packet(tmp_path: Path) -> None:
    pcap = _sized_capture(tmp_path / "s.pcap")
    out = io.StringIO()
    main(str(pcap), as_json=True, inspect_packets=None, reassemble=True, out=out, limit=2)
    doc = json.loads(out.getvalue())
    assert [f["packets"] for f in doc["flows"]] == [4, 5]
    assert doc["summary"]["flows_dropped"] == 3 and doc["capture"]["ip_packets"] == 15
    assert all(f["ended"] is None for f in doc["flows"])  # still open when the capture ended
    out = io.StringIO()
    main(str(pcap), as_json=True, inspect_packets=None, reassemble=True, out=out, limit=0, pretty=True)
    doc = json.loads(out.getvalue())
    assert doc["flows"] == [] and doc["summary"]["flows_total"] == 5
    assert out.getvalue().startswith('{\n  "flows": []')  # --pretty indents


def test_jsonl_small_capture_matches_json(tmp_path: Path) -> None:
    pcap = _sized_capture(tmp_path / "s.pcap")
    a, b = io.StringIO(), io.StringIO()
    main(str(pcap), as_json=True, inspect_packets=None, reassemble=True, out=a)
    main(str(pcap), as_json=False, as_jsonl=True, inspect_packets=None, reassemble=True, out=b)
    doc = json.loads(a.getvalue())
    *flows, last = [json.loads(line) for line in b.getvalue().splitlines()]
    assert flows == doc["flows"]
    assert last == {"summary": {**doc["summary"], "capture": doc["capture"]}}


def test_jsonl_reader_going_away_is_not_an_error(tmp_path: Path) -> None:
    class ClosedPipe(io.TextIOBase):
        def write(self, s: str) -> int:
            raise BrokenPipeError

    pcap = _write_capture(tmp_path / "p.pcap", 300)
    assert main(str(pcap), as_json=False, as_jsonl=True, inspect_packets=None, reassemble=True,
                out=ClosedPipe(), max_flows=16) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "-1"], "--limit must be >= 0"),
        (["--jsonl", "--limit", "5"], "--jsonl always lists every flow"),
        (["--pretty"], "--pretty applies to --json only"),
        (["--jsonl", "--pretty"], "--pretty applies to --json only"),
        (["--max-flows", "0"], "--max-flows must be >= 1"),
    ],
)
def test_cli_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    from testbed.cli import main as cli_main

    pcap = _sized_capture(tmp_path / "s.pcap")
    assert cli_main(["classify", str(pcap), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_json_and_jsonl_are_exclusive(tmp_path: Path) -> None:
    from testbed.cli import main as cli_main

    with pytest.raises(SystemExit) as ei:
        cli_main(["classify", str(_sized_capture(tmp_path / "s.pcap")), "--json", "--jsonl"])
    assert ei.value.code == 2


def test_jsonl_corrupt_capture_exits_2_without_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main as cli_main

    pcap = _write_capture(tmp_path / "c.pcap", 300)
    pcap.write_bytes(pcap.read_bytes()[:-5])
    assert cli_main(["classify", str(pcap), "--jsonl", "--max-flows", "16"]) == 2
    captured = capsys.readouterr()
    assert "truncated" in captured.err and captured.err.count("\n") == 1
    lines = captured.out.splitlines()
    assert lines and all('"summary"' not in line for line in lines)  # flows so far, no summary

"""``testbed classify PCAP``: what the censor's DPI would see in a capture.

Runs every packet through the same ``core.classify.Classifier`` the censor engine uses. Memory
stays flat however large the capture is: each flow is handed to the output the moment it leaves
the bounded flow table (idle timeout or eviction; the rest when the capture ends) and then
forgotten. What each output keeps:

- ``--jsonl``: nothing. One flow object per line as flows end, then one summary line
  ``{"summary": {..., "capture": {...}}}``; every flow is listed.
- ``--json``: at most ``limit`` flows (default ``DEFAULT_JSON_LIMIT``), the ones with the most
  bytes, as compact JSON text; the document lists them in order of first packet, as
  ``{"flows": [...], "capture": {...}, "summary": {...}}``.
- the table: the same selection (default ``DEFAULT_TABLE_LIMIT`` rows) and a summary.
- ``--count``: nothing; only the table's counts line (how fast the DPI is, without output).

``summary`` counts every flow, listed or not (``flows_total``, ``flows_dropped``, per label).
The JSON shapes are a contract (fields only ever added). A flow object is a
``testbed.records.flow.FlowRecord``, the same object the censor's result lists:

    {"transport", "endpoints": [initiator, responder], "initiator", "responder", "packets",
     "bytes", "packets_orig", "packets_reply", "bytes_orig", "bytes_reply", "packets_by_direction",
     "bytes_by_direction", "labels", "sni", "alpn", "fingerprints", "first_seen", "last_seen",
     "first_seen_s", "last_seen_s", "ended", "verdicts", "rule", "rules", "settled", "held"}
"""

from __future__ import annotations

import enum
import heapq
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TextIO, TypedDict, TypeVar

from testbed.analysis.pcap import read_frames, strip_link_layer
from testbed.core.classify import DEFAULT_INSPECT_PACKETS, Classifier
from testbed.core.engine import flow_record
from testbed.core.flow import DEFAULT_MAX_FLOWS, EndReason, Flow
from testbed.core.packet import MalformedPacket, Packet, parse_ip
from testbed.errors import UsageError
from testbed.records.json import JsonObject

__all__ = [
    "DEFAULT_JSON_LIMIT",
    "DEFAULT_TABLE_LIMIT",
    "CaptureSummary",
    "FlowTally",
    "OutputFormat",
    "classify_capture",
    "flow_to_json",
    "main",
    "run",
    "stream_flows",
]

GTP_U_PORT = 2152

# What the two bounded outputs keep. A --json flow is ~400 bytes of compact text, so 100000
# of them stay under ~50 MB; a table longer than a thousand rows is read by a program, which
# should ask for --jsonl.
DEFAULT_JSON_LIMIT = 100_000
DEFAULT_TABLE_LIMIT = 1_000

# The C encoder, one line: the indenting encoder is pure Python (38% of a --json run's time on
# a 150k-packet capture, issue 11).
_COMPACT = (",", ":")


class _StreamOptions(TypedDict):
    """``stream_flows``'s keyword arguments, as ``main`` passes them on."""

    inspect_packets: int | None
    reassemble: bool
    port_guess: bool
    max_flows: int


class OutputFormat(enum.Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    COUNT = "count"


@dataclass(slots=True)
class CaptureSummary:
    file: str
    frames: int = 0
    ip_packets: int = 0
    non_ip: int = 0
    malformed: int = 0
    gtp_decapsulated: int = 0


def _gtp_inner(p: Packet) -> bytes | None:
    """The inner IP packet of a GTPv1-U G-PDU (3GPP TS 29.281 §5.1), as mobile-core DPIs see."""
    pl = p.payload
    if len(pl) < 8 or pl[0] >> 5 != 1 or not pl[0] & 0x10 or pl[1] != 0xFF:
        return None
    off = 8
    if pl[0] & 0x07:  # sequence number, N-PDU or extension header present
        off = 12
        next_ext = pl[11] if len(pl) >= 12 else 0
        while next_ext and off < len(pl):
            ext_len = pl[off] * 4
            if ext_len == 0:
                return None
            next_ext = pl[off + ext_len - 1] if off + ext_len <= len(pl) else 0
            off += ext_len
    inner = pl[off:]
    return inner if inner and inner[0] >> 4 in (4, 6) else None


def classify_capture(path: str, classifier: Classifier, *, decapsulate_gtp: bool = True) -> CaptureSummary:
    """Feed a capture through ``classifier``; returns counts of what could not be used."""
    summary = CaptureSummary(path)
    observe = classifier.observe
    frames = non_ip = malformed = gtp = ip_packets = 0
    try:
        for ts, linktype, frame in read_frames(path):
            frames += 1
            # Untagged Ethernet carrying IPv4, the common case, stripped inline (a call less per
            # packet); everything else goes through strip_link_layer.
            if linktype == 1 and frame[12:14] == b"\x08\x00":
                ip = frame[14:]
            else:
                stripped = strip_link_layer(linktype, frame)
                if stripped is None:
                    non_ip += 1
                    continue
                ip = stripped
            try:
                packet = parse_ip(ip)
                if (
                    decapsulate_gtp
                    and packet.proto == 17
                    and (packet.dport == GTP_U_PORT or packet.sport == GTP_U_PORT)
                ):
                    inner = _gtp_inner(packet)
                    if inner is not None:
                        packet = parse_ip(inner)
                        gtp += 1
            except MalformedPacket:
                malformed += 1
                continue
            ip_packets += 1
            observe(packet, ts)
    finally:
        # Local counters in the loop (attribute stores per packet cost ~5%); written back even
        # when the capture turns out corrupt halfway.
        summary.frames, summary.non_ip, summary.malformed = frames, non_ip, malformed
        summary.gtp_decapsulated, summary.ip_packets = gtp, ip_packets
    return summary


def flow_to_json(flow: Flow) -> JsonObject:
    """The flow's :class:`~testbed.records.flow.FlowRecord`, as JSON: the censor's result lists
    flows with the same record (no verdicts or rules here; times on the capture's clock).
    ``ended`` says why the flow left the table: "idle", "evicted" (the table was full: a flow that
    carried on is listed again as a new flow), or null (still open when the capture ended)."""
    return flow_record(flow).to_json()


def capture_to_json(summary: CaptureSummary) -> JsonObject:
    return {
        "file": summary.file,
        "frames": summary.frames,
        "ip_packets": summary.ip_packets,
        "non_ip_frames": summary.non_ip,
        "malformed_packets": summary.malformed,
        "gtp_decapsulated": summary.gtp_decapsulated,
    }


@dataclass(slots=True)
class FlowTally:
    """Counts over every flow of a capture, listed or not: what stays of a dropped flow."""

    total: int = 0
    listed: int = 0
    evicted: int = 0
    idle: int = 0
    unlabelled: int = 0
    labels: Counter[str] = field(default_factory=Counter)

    def add(self, flow: Flow) -> None:
        self.total += 1
        if flow.ended is EndReason.EVICTED:
            self.evicted += 1
        elif flow.ended is EndReason.IDLE:
            self.idle += 1
        if flow.labels:
            self.labels.update(flow.labels)
        else:
            self.unlabelled += 1

    @property
    def dropped(self) -> int:
        return self.total - self.listed

    def labels_by_count(self) -> list[tuple[str, int]]:
        return sorted(self.labels.items(), key=lambda kv: (-kv[1], kv[0]))

    def to_json(self) -> JsonObject:
        return {
            "flows_total": self.total,
            "flows_listed": self.listed,
            "flows_dropped": self.dropped,
            "flows_evicted": self.evicted,
            "flows_idle": self.idle,
            "labels": dict(self.labels_by_count()),
            "unlabelled": self.unlabelled,
        }


T = TypeVar("T")


class _Largest(Generic[T]):
    """The ``limit`` flows with the most bytes offered so far (on a tie, the earlier one), each
    kept as what ``render`` made of it: a min-heap, so memory is O(limit) and a flow that does not
    make the cut costs a comparison."""

    def __init__(self, limit: int, render: Callable[[Flow], T]) -> None:
        self.limit = limit
        self.render = render
        self._heap: list[tuple[int, int, float, T]] = []
        self._seq = 0

    def offer(self, flow: Flow) -> None:
        seq = self._seq
        self._seq += 1
        heap = self._heap
        if len(heap) < self.limit:
            heapq.heappush(heap, (flow.bytes, -seq, flow.created_at, self.render(flow)))
        elif heap and (flow.bytes, -seq) > heap[0][:2]:
            heapq.heapreplace(heap, (flow.bytes, -seq, flow.created_at, self.render(flow)))

    def in_order(self) -> list[T]:
        """Kept items by first packet, then in the order offered (the pre-streaming order)."""
        return [e[3] for e in sorted(self._heap, key=lambda e: (e[2], -e[1]))]


def stream_flows(
    pcap: str,
    emit: Callable[[Flow], None],
    *,
    inspect_packets: int | None = None,
    reassemble: bool = True,
    port_guess: bool = True,
    max_flows: int = DEFAULT_MAX_FLOWS,
    keep_hellos: bool = False,
) -> CaptureSummary:
    """Classify ``pcap``, calling ``emit(flow)`` once per flow as it leaves the flow table (idle
    timeout, or eviction when ``max_flows`` are open), then for the flows still open at the
    end, in order of first packet. Nothing here keeps a flow after ``emit``: memory is the flow
    table's, whatever the capture's size. Port guesses are applied before ``emit``."""
    classifier = Classifier(
        inspect_packets=DEFAULT_INSPECT_PACKETS if inspect_packets is None else inspect_packets,
        reassemble_tls=reassemble,
        port_guess=port_guess,
        max_flows=max_flows,
        on_flow_end=emit,
        keep_hellos=keep_hellos,
    )
    summary = classify_capture(pcap, classifier)
    for flow in classifier.flows():  # without retain_ended: only the flows still open
        emit(flow)
    return summary


def run(
    pcap: str,
    *,
    inspect_packets: int | None = None,
    reassemble: bool = True,
    port_guess: bool = True,
    max_flows: int = DEFAULT_MAX_FLOWS,
) -> tuple[list[Flow], CaptureSummary]:
    """Every flow of a capture, in order of first packet, as ``Flow`` objects (with their parsed
    hellos). Keeps them all: for captures that fit in memory (tests, notebooks);
    ``stream_flows`` is the bounded form."""
    flows: list[Flow] = []
    summary = stream_flows(
        pcap, flows.append, inspect_packets=inspect_packets, reassemble=reassemble,
        port_guess=port_guess, max_flows=max_flows, keep_hellos=True,
    )  # fmt: skip
    flows.sort(key=lambda f: f.created_at)
    return flows, summary


def _table_row(f: Flow) -> tuple[str, ...]:
    return (
        f.transport,
        f.initiator,
        f.responder,
        str(f.packets),
        str(f.bytes),
        ",".join(sorted(f.labels)) or "-",
        f.sni or "-",
        ",".join(f.alpn) or "-",
        f.fingerprints.get("ja4", "-"),
    )


_TABLE_HEAD = ("PROTO", "INITIATOR", "RESPONDER", "PKTS", "BYTES", "LABELS", "SNI", "ALPN", "JA4")


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    rows = [_TABLE_HEAD, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
        out.write(f"{line}  {r[-1]}\n".rstrip() + "\n")


def _flow_line(f: Flow) -> str:
    return json.dumps(flow_to_json(f), separators=_COMPACT)


def main(
    pcap: str,
    *,
    as_json: bool,
    inspect_packets: int | None,
    reassemble: bool,
    out: TextIO,
    port_guess: bool = True,
    as_jsonl: bool = False,
    count_only: bool = False,
    limit: int | None = None,
    pretty: bool = False,
    max_flows: int = DEFAULT_MAX_FLOWS,
) -> int:
    """Entry point of ``testbed classify``; ``CaptureError`` propagates to the CLI (exit 2).

    ``limit`` caps the flows the table and ``as_json`` list (defaults ``DEFAULT_TABLE_LIMIT``
    and ``DEFAULT_JSON_LIMIT``); ``as_jsonl`` lists every flow and keeps none."""
    if inspect_packets is not None and inspect_packets < 0:
        raise UsageError(f"--inspect-packets must be >= 0, got {inspect_packets}")
    if as_json + as_jsonl + count_only > 1:
        raise UsageError("--json, --jsonl and --count are different outputs: choose one")
    fmt = OutputFormat.JSONL if as_jsonl else OutputFormat.JSON if as_json else OutputFormat.TABLE
    if count_only:
        fmt = OutputFormat.COUNT
    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    if limit is not None and fmt is OutputFormat.JSONL:
        raise UsageError("--limit applies to the table and --json; --jsonl always lists every flow")
    if limit is not None and fmt is OutputFormat.COUNT:
        raise UsageError("--limit applies to the table and --json; --count lists no flow")
    if pretty and fmt is not OutputFormat.JSON:
        raise UsageError("--pretty applies to --json only (--jsonl is one flow per line)")
    if max_flows < 1:
        raise UsageError(f"--max-flows must be >= 1, got {max_flows}")
    options: _StreamOptions = {
        "inspect_packets": inspect_packets,
        "reassemble": reassemble,
        "port_guess": port_guess,
        "max_flows": max_flows,
    }
    try:
        if fmt is OutputFormat.JSONL:
            _write_jsonl(pcap, out, options)
        elif fmt is OutputFormat.COUNT:
            _write_count(pcap, out, options)
        elif fmt is OutputFormat.JSON:
            _write_json(pcap, out, options, DEFAULT_JSON_LIMIT if limit is None else limit, pretty)
        else:
            _write_table(pcap, out, options, DEFAULT_TABLE_LIMIT if limit is None else limit)
    except BrokenPipeError:
        # The reader went away (`testbed classify x.pcap | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    return 0


def _write_jsonl(pcap: str, out: TextIO, options: _StreamOptions) -> None:
    tally = FlowTally()
    write = out.write

    def emit(flow: Flow) -> None:
        tally.add(flow)
        write(_flow_line(flow) + "\n")

    summary = stream_flows(pcap, emit, **options)
    tally.listed = tally.total
    # The only line without "transport": a reader tells it apart by its one key. A capture that
    # turns out corrupt halfway has no summary line (the error goes to stderr, exit 2).
    doc = {"summary": {**tally.to_json(), "capture": capture_to_json(summary)}}
    write(json.dumps(doc, separators=_COMPACT) + "\n")


def _write_json(pcap: str, out: TextIO, options: _StreamOptions, limit: int, pretty: bool) -> None:
    tally = FlowTally()
    keep = _Largest(limit, _flow_line)

    def emit(flow: Flow) -> None:
        tally.add(flow)
        keep.offer(flow)

    summary = stream_flows(pcap, emit, **options)
    lines = keep.in_order()
    tally.listed = len(lines)
    if pretty:
        doc = {
            "flows": [json.loads(s) for s in lines],
            "capture": capture_to_json(summary),
            "summary": tally.to_json(),
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    # The kept flows are already compact JSON text: write the document around them rather
    # than decode and re-encode up to ``limit`` objects.
    out.write('{"flows":[')
    for i, s in enumerate(lines):
        out.write("," + s if i else s)
    out.write('],"capture":' + json.dumps(capture_to_json(summary), separators=_COMPACT))
    out.write(',"summary":' + json.dumps(tally.to_json(), separators=_COMPACT) + "}\n")


def _write_count(pcap: str, out: TextIO, options: _StreamOptions) -> None:
    tally = FlowTally()
    summary = stream_flows(pcap, tally.add, **options)
    out.write(
        f"{tally.total} flows, {summary.ip_packets} IP packets"
        f" ({summary.non_ip} non-IP frames, {summary.malformed} malformed skipped)\n"
    )


def _write_table(pcap: str, out: TextIO, options: _StreamOptions, limit: int) -> None:
    tally = FlowTally()
    keep = _Largest(limit, _table_row)

    def emit(flow: Flow) -> None:
        tally.add(flow)
        keep.offer(flow)

    summary = stream_flows(pcap, emit, **options)
    rows = keep.in_order()
    tally.listed = len(rows)
    _table(rows, out)
    out.write(
        f"\n{tally.total} flows, {summary.ip_packets} IP packets"
        f" ({summary.non_ip} non-IP frames, {summary.malformed} malformed skipped)\n"
    )
    if tally.dropped:
        out.write(
            f"listed: the {tally.listed} flows with the most bytes, in order of first packet"
            " (--limit N for more, --jsonl for every flow)\n"
        )
        counts = [f"{name} {n}" for name, n in tally.labels_by_count()]
        counts.append(f"unlabelled {tally.unlabelled}")
        out.write("flows by label: " + ", ".join(counts) + "\n")
    if tally.evicted:
        out.write(
            f"{tally.evicted} flows left the full flow table before going idle (--max-flows N"
            " raises the bound): a flow that carried on is listed again from that point\n"
        )

"""``testbed classify PCAP``: what the censor's DPI would see in a capture.

Runs every packet through the same ``core.classify.Classifier`` the censor engine uses and
prints one row per flow (or JSON). The JSON shape is a contract (fields only ever added):

    {"flows": [{"transport", "endpoints": [initiator, responder], "initiator", "packets",
                "bytes", "labels", "sni", "alpn", "fingerprints"}], "capture": {...}}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from testbed.analysis.pcap import read_capture, strip_link_layer
from testbed.core.classify import DEFAULT_INSPECT_PACKETS, Classifier
from testbed.core.flow import Flow
from testbed.core.packet import MalformedPacket, Packet, parse_ip

__all__ = ["CaptureSummary", "classify_capture", "flow_to_json", "main"]

GTP_U_PORT = 2152


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


def classify_capture(
    path: str, classifier: Classifier, *, decapsulate_gtp: bool = True
) -> CaptureSummary:
    """Feed a capture through ``classifier``; returns counts of what could not be used."""
    summary = CaptureSummary(path)
    observe = classifier.observe
    for rec in read_capture(path):
        summary.frames += 1
        ip = strip_link_layer(rec.linktype, rec.data)
        if ip is None:
            summary.non_ip += 1
            continue
        try:
            packet = parse_ip(ip)
            if decapsulate_gtp and packet.proto == 17 and (
                packet.dport == GTP_U_PORT or packet.sport == GTP_U_PORT
            ):
                inner = _gtp_inner(packet)
                if inner is not None:
                    packet = parse_ip(inner)
                    summary.gtp_decapsulated += 1
        except MalformedPacket:
            summary.malformed += 1
            continue
        summary.ip_packets += 1
        observe(packet, rec.timestamp)
    return summary


def flow_to_json(flow: Flow) -> dict[str, Any]:
    return {
        "transport": flow.transport,
        "endpoints": [flow.initiator, flow.responder],
        "initiator": flow.initiator,
        "packets": flow.packets,
        "bytes": flow.bytes,
        "labels": sorted(flow.labels),
        "sni": flow.sni,
        "alpn": list(flow.alpn),
        "fingerprints": dict(flow.fingerprints),
        "packets_by_direction": [flow.packets_orig, flow.packets_reply],
        "bytes_by_direction": [flow.bytes_orig, flow.bytes_reply],
        "first_seen": flow.created_at,
        "last_seen": flow.last_seen,
    }


def _table(flows: list[Flow], out: TextIO) -> None:
    rows: list[tuple[str, ...]] = [
        ("PROTO", "INITIATOR", "RESPONDER", "PKTS", "BYTES", "LABELS", "SNI", "ALPN", "JA4")
    ]
    for f in flows:
        rows.append(
            (
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
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
        out.write(f"{line}  {r[-1]}\n".rstrip() + "\n")


def run(
    pcap: str, *, inspect_packets: int | None = None, reassemble: bool = True, port_guess: bool = True
) -> tuple[list[Flow], CaptureSummary]:
    classifier = Classifier(
        inspect_packets=DEFAULT_INSPECT_PACKETS if inspect_packets is None else inspect_packets,
        reassemble_tls=reassemble,
        retain_ended=True,
        port_guess=port_guess,
    )
    summary = classify_capture(pcap, classifier)
    return list(classifier.flows()), summary


def iter_flows_json(flows: list[Flow]) -> Iterator[dict[str, Any]]:
    return (flow_to_json(f) for f in flows)


def main(
    pcap: str,
    *,
    as_json: bool,
    inspect_packets: int | None,
    reassemble: bool,
    out: TextIO,
    port_guess: bool = True,
) -> int:
    """Entry point of ``testbed classify``; ``CaptureError`` propagates to the CLI (exit 2)."""
    if inspect_packets is not None and inspect_packets < 0:
        from testbed.errors import UsageError

        raise UsageError(f"--inspect-packets must be >= 0, got {inspect_packets}")
    flows, summary = run(pcap, inspect_packets=inspect_packets, reassemble=reassemble, port_guess=port_guess)
    try:
        _write(flows, summary, as_json, out)
    except BrokenPipeError:
        # The reader went away (`testbed classify x.pcap | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    return 0


def _write(flows: list[Flow], summary: CaptureSummary, as_json: bool, out: TextIO) -> None:
    if as_json:
        doc = {
            "flows": list(iter_flows_json(flows)),
            "capture": {
                "file": summary.file,
                "frames": summary.frames,
                "ip_packets": summary.ip_packets,
                "non_ip_frames": summary.non_ip,
                "malformed_packets": summary.malformed,
                "gtp_decapsulated": summary.gtp_decapsulated,
            },
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        _table(flows, out)
        out.write(
            f"\n{len(flows)} flows, {summary.ip_packets} IP packets"
            f" ({summary.non_ip} non-IP frames, {summary.malformed} malformed skipped)\n"
        )

"""What the classifier makes of every shared capture, as JSON, to pin its behaviour across refactors.

``snapshot()`` replays each capture in ../shared/pcaps through ``Classifier`` under a few
configurations (default; no TLS reassembly, no hellos, short budget; long budget, no port guess,
a one-entry endpoint cache) and once more with payload bits flipped by a seeded generator (so
the dissectors' error paths are pinned too), and records per flow its labels, SNI, ALPN,
fingerprints, inspection counters, the packets on which ``Observation.changed`` was set, and per
run the classifier's counters. test_classify_golden.py compares it with data/classify_golden.json.

After an intended classification change, regenerate and review the diff:

    .venv/bin/python tests/unit/_classify_golden.py > tests/unit/data/classify_golden.json
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from _dpi_helpers import tcp4, udp4  # noqa: E402

from testbed.analysis.pcap import read_capture, strip_link_layer  # noqa: E402
from testbed.core.classify import Classifier  # noqa: E402
from testbed.core.flow import Flow  # noqa: E402
from testbed.core.packet import MalformedPacket, parse_ip  # noqa: E402

SHARED_PCAPS = HERE.parents[1].parent / "shared" / "pcaps"
GOLDEN = HERE / "data" / "classify_golden.json"

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "short": {"inspect_packets": 4, "reassemble_tls": False, "keep_hellos": False},
    "long": {"inspect_packets": 40, "port_guess": False, "endpoint_cache_size": 1},
}


def captures() -> list[Path]:
    return sorted(p for p in SHARED_PCAPS.glob("*") if p.suffix in (".pcap", ".pcapng"))


def _corrupt(ip: bytes, rng: random.Random) -> bytes:
    """Flip a few bits past the first 48 bytes (headers kept, so the packet still parses) in
    one packet of four."""
    if rng.random() >= 0.25 or len(ip) <= 48:
        return ip
    b = bytearray(ip)
    for _ in range(rng.randrange(1, 4)):
        b[rng.randrange(48, len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _flow_json(flow: Flow, changed: list[int]) -> dict[str, Any]:
    return {
        "flow": f"{flow.transport} {flow.initiator} > {flow.responder}",
        "packets": flow.packets,
        "labels": sorted(flow.labels),
        "sni": flow.sni,
        "alpn": list(flow.alpn),
        "fingerprints": dict(sorted(flow.fingerprints.items())),
        "inspected": flow.inspected,
        "inspecting": flow.inspecting,
        "hellos": [flow.client_hello is not None, flow.server_hello is not None],
        "changed_at": changed,
    }


def replay(path: Path, config: dict[str, Any], corrupt_seed: int | None = None) -> dict[str, Any]:
    c = Classifier(retain_ended=True, **config)
    rng = random.Random(corrupt_seed) if corrupt_seed is not None else None
    changed: dict[int, list[int]] = {}
    for rec in read_capture(str(path)):
        ip = strip_link_layer(rec.linktype, rec.data)
        if ip is None:
            continue
        if rng is not None:
            ip = _corrupt(ip, rng)
        try:
            packet = parse_ip(ip)
        except MalformedPacket:
            continue
        obs = c.observe(packet, rec.timestamp)
        if obs.changed:
            changed.setdefault(id(obs.flow), []).append(obs.flow.packets)
    flows = [_flow_json(f, changed.get(id(f), [])) for f in c.flows()]
    return {
        "counters": {
            "packets": c.packets,
            "fragments": c.fragments,
            "dissector_errors": c.dissector_errors,
            "endpoint_cache": [len(c.endpoint_cache), c.endpoint_cache.hits],
            "flows": c.table.created,
        },
        "flows": flows,
    }


# Endpoints for the shuffled run: plain ones, and ones in the shipped Telegram/WhatsApp ranges
# and on ports the classifier treats specially (reflectors, guesses, DNS, HTTP).
_ADDRS = ("10.0.0.2", "10.0.0.3", "198.51.100.9", "91.108.56.1", "157.240.1.1")
_PORTS = (443, 3478, 1194, 51820, 596, 1400, 53, 80, 5000, 40000)


def _payloads() -> dict[int, list[bytes]]:
    """Transport payloads of every shared capture, by transport (6, 17)."""
    out: dict[int, list[bytes]] = {6: [], 17: []}
    for path in captures():
        for rec in read_capture(str(path)):
            ip = strip_link_layer(rec.linktype, rec.data)
            if ip is None:
                continue
            try:
                packet = parse_ip(ip)
            except MalformedPacket:
                continue
            if packet.proto in out and packet.payload and not packet.is_fragment:
                out[packet.proto].append(bytes(packet.payload))
    return out


def shuffled(seed: int, gap: float, packets: int = 3000) -> dict[str, Any]:
    """Real payloads dealt at random to 60 synthetic 5-tuples (UDP ones over TCP too, some
    length-framed), cut short now and then: every
    dissector's state machine sees orders and mixes the captures never show. With a long
    ``gap`` the 5-tuples idle out often (many short flows, first-packet paths)."""
    rng = random.Random(seed)
    payloads = _payloads()
    flows = [
        (rng.choice((6, 17)), rng.choice(_ADDRS), rng.choice(_PORTS), rng.choice(_ADDRS), rng.choice(_PORTS))
        for _ in range(60)
    ]
    c = Classifier(retain_ended=True, udp_idle_timeout=30.0)
    changed: dict[int, list[int]] = {}
    t = 0.0
    seqs: dict[tuple[int, bool], int] = {}
    for _ in range(packets):
        t += rng.random() * gap
        i = rng.randrange(len(flows))
        proto, a, ap, b, bp = flows[i]
        reply = rng.random() < 0.4
        src, sport, dst, dport = (b, bp, a, ap) if reply else (a, ap, b, bp)
        payload = rng.choice(payloads[proto if rng.random() < 0.6 else 23 - proto])
        if rng.random() < 0.2:
            payload = payload[: rng.randrange(1, len(payload) + 1)]
        if proto == 6 and rng.random() < 0.3:
            # Datagrams framed by a 16-bit length, as DNS, OpenVPN and RTP are over TCP.
            payload = len(payload).to_bytes(2, "big") + payload
        if proto == 17:
            raw = udp4(src, sport, dst, dport, payload)
        else:
            seq = seqs.get((i, reply), rng.randrange(1 << 32))
            seqs[(i, reply)] = (seq + len(payload)) & 0xFFFFFFFF
            raw = tcp4(src, sport, dst, dport, payload, seq=seq)
        obs = c.observe(parse_ip(raw), t)
        if obs.changed:
            changed.setdefault(id(obs.flow), []).append(obs.flow.packets)
    return {
        "counters": {
            "packets": c.packets,
            "dissector_errors": c.dissector_errors,
            "endpoint_cache": [len(c.endpoint_cache), c.endpoint_cache.hits],
            "flows": c.table.created,
        },
        "flows": [_flow_json(f, changed.get(id(f), [])) for f in c.flows()],
    }


def snapshot() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, path in enumerate(captures()):
        runs = {name: replay(path, cfg) for name, cfg in CONFIGS.items()}
        runs["corrupted"] = replay(path, {}, corrupt_seed=1000 + i)
        out[path.name] = runs
    out["shuffled"] = {"seed-1": shuffled(1, 0.1), "seed-2": shuffled(2, 1.0)}
    return out


def dumps(snap: dict[str, Any]) -> str:
    """JSON with one flow per line: small, and a changed flow is one line of a diff."""
    lines = ["{"]
    for i, (capture, runs) in enumerate(sorted(snap.items())):
        lines.append(f"{json.dumps(capture)}: {{")
        for j, (name, run) in enumerate(sorted(runs.items())):
            lines.append(f'{json.dumps(name)}: {{"counters": {json.dumps(run["counters"], sort_keys=True)}, "flows": [')
            lines.append(",\n".join(json.dumps(f, sort_keys=True) for f in run["flows"]))
            lines.append("]}" + ("," if j < len(runs) - 1 else ""))
        lines.append("}" + ("," if i < len(snap) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps(snapshot()))

"""Helpers for the DPI tests: nDPI reference outputs, scoring, crafted packets.

Run as a script to print the per-capture agreement table kept in docs/classifiers.md:

    .venv/bin/python tests/unit/_dpi_helpers.py
"""

from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_PCAPS = REPO.parent / "shared" / "pcaps"

# nDPI protocol names -> our labels (the mapping). Names not here are not scored.
NDPI_TO_LABEL = {
    "STUN": "stun",
    "DTLS": "dtls",
    "SRTP": "rtp",
    "RTP": "rtp",
    "RTCP": "rtp",
    "TLS": "tls",
    "QUIC": "quic",
    "WireGuard": "wireguard",
    "OpenVPN": "openvpn",
    "DNS": "dns",
    "MDNS": "dns",  # the same message format (RFC 6762)
    "HTTP": "http",
    "WhatsAppCall": "whatsapp-call",
    "TelegramVoip": "telegram-call",
}
CALL_LABELS = frozenset({"whatsapp-call", "telegram-call"})

_LINE = re.compile(r"^\s*\d+\s+(?P<l4>UDP|TCP)\s+(?P<a>\S+)\s+(?:<->|->)\s+(?P<b>\S+)\s+\[proto:\s*(?P<proto>[^\]]+)\]")


@dataclass(frozen=True)
class NdpiFlow:
    transport: str
    endpoints: frozenset[str]
    names: tuple[str, ...]  # e.g. ("STUN", "WhatsAppCall")
    line: str

    @property
    def expected(self) -> frozenset[str]:
        return frozenset(NDPI_TO_LABEL[n] for n in self.names if n in NDPI_TO_LABEL)


def parse_ndpi_out(path: Path) -> list[NdpiFlow]:
    flows = []
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        proto = m["proto"]
        if ":" in proto.split("/")[0]:  # "GTP:30/DTLS": tunnelled, inner flow named
            proto = proto.split(":", 1)[1]
        names = tuple(proto.split("/", 1)[1].split(".")) if "/" in proto else ()
        flows.append(NdpiFlow(m["l4"].lower(), frozenset({m["a"], m["b"]}), names, line.strip()))
    return flows


@dataclass
class CaptureScore:
    capture: str
    scored: int = 0
    agreed: int = 0
    by_port: int = 0  # agreed only thanks to a port guess ("by-port" label)
    false_call_labels: int = 0
    misses: list[str] = field(default_factory=list)
    false_calls: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.agreed / self.scored if self.scored else 100.0


def score_capture(pcap: Path) -> CaptureScore:
    from testbed.analysis.classify import run

    ref = parse_ndpi_out(pcap.with_name(pcap.name + ".ndpi.out"))
    flows, _ = run(str(pcap))
    ours: dict[tuple[str, frozenset[str]], set[str]] = {}
    for f in flows:
        ours.setdefault((f.transport, frozenset({f.initiator, f.responder})), set()).update(f.labels)
    score = CaptureScore(pcap.name)
    for nf in ref:
        got = ours.get((nf.transport, nf.endpoints))
        if got is None:
            got = _fuzzy(ours, nf)
        if nf.expected:
            score.scored += 1
            if nf.expected <= got:
                score.agreed += 1
                if "by-port" in got:
                    score.by_port += 1
            else:
                score.misses.append(f"{nf.line[:120]} ... ours={sorted(got)}")
        wrong_calls = (got & CALL_LABELS) - nf.expected
        if wrong_calls:
            score.false_call_labels += 1
            score.false_calls.append(f"{nf.line[:120]} ... ours={sorted(got)}")
    # Flows nDPI does not list but we labelled as a call (should not happen: nDPI lists all).
    listed = {(nf.transport, nf.endpoints) for nf in ref}
    for key, labels in ours.items():
        if key not in listed and labels & CALL_LABELS:
            score.false_call_labels += 1
            score.false_calls.append(f"unlisted flow {key} ours={sorted(labels)}")
    return score


def _ports(endpoints: frozenset[str]) -> tuple[tuple[str, bool], ...]:
    return tuple(sorted((e.rsplit(":", 1)[1], e.startswith("[")) for e in endpoints))


def _fuzzy(ours: dict[tuple[str, frozenset[str]], set[str]], nf: NdpiFlow) -> set[str]:
    """nDPI prints some IPv6 addresses wrongly ("2600:1900:4160:5999::19::"): match those by
    transport, ports and family when exactly one of our flows fits."""
    want = _ports(nf.endpoints)
    cands = [v for (t, eps), v in ours.items() if t == nf.transport and _ports(eps) == want]
    return cands[0] if len(cands) == 1 else set()


def shared_captures() -> list[Path]:
    return sorted(
        p
        for p in SHARED_PCAPS.glob("*")
        if p.suffix in (".pcap", ".pcapng") and p.with_name(p.name + ".ndpi.out").exists()
    )


def score_table(scores: list[CaptureScore]) -> str:
    lines = [
        "| capture | flows scored | agreed | % | of which by port guess | false call-app labels |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.capture} | {s.scored} | {s.agreed} | {s.percent:.1f} | {s.by_port} | {s.false_call_labels} |"
        )
    total = sum(s.scored for s in scores)
    agreed = sum(s.agreed for s in scores)
    by_port = sum(s.by_port for s in scores)
    false = sum(s.false_call_labels for s in scores)
    pct = 100.0 * agreed / total if total else 100.0
    lines.append(f"| **total** | **{total}** | **{agreed}** | **{pct:.1f}** | **{by_port}** | **{false}** |")
    return "\n".join(lines)


# --- crafted packets ------------------------------------------------------------------------


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, l4: bytes, *, ident: int = 1, frag: int = 0, ttl: int = 64) -> bytes:
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, frag, ttl, proto, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + l4


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, payload: bytes, *, seq: int = 1000, flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp4(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    return ipv4(src, dst, 17, udp(sport, dport, payload))


def tcp4(src: str, sport: int, dst: str, dport: int, payload: bytes, **kw: int) -> bytes:
    return ipv4(src, dst, 6, tcp(sport, dport, payload, **kw))


def stun_message(msg_type: int, attrs: list[tuple[int, bytes]], txid: bytes = b"\x01" * 12) -> bytes:
    body = b""
    for t, v in attrs:
        body += struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)
    return struct.pack("!HHI", msg_type, len(body), 0x2112A442) + txid + body


if __name__ == "__main__":
    if not SHARED_PCAPS.is_dir():
        sys.exit(f"no shared captures at {SHARED_PCAPS}")
    sys.path.insert(0, str(REPO))
    results = [score_capture(p) for p in shared_captures()]
    print(score_table(results))
    if "-v" in sys.argv:
        for r in results:
            for m in r.misses:
                print("MISS", r.capture, m)
            for m in r.false_calls:
                print("FALSE-CALL", r.capture, m)


def _ext(t: int, body: bytes) -> bytes:
    return struct.pack("!HH", t, len(body)) + body


def build_client_hello(
    *,
    sni: str | None = "example.com",
    alpn: list[bytes] | None = None,
    ciphers: tuple[int, ...] = (0x0A0A, 0x1301, 0x1302, 0xC02B),
    groups: tuple[int, ...] = (0x1A1A, 0x001D, 0x0017),
    sigalgs: tuple[int, ...] = (0x0403, 0x0804),
    versions: tuple[int, ...] = (0x0304, 0x0303),
    ech: bool = False,
    dtls: bool = False,
    pad: int = 0,
) -> bytes:
    """A ClientHello handshake message (type 1 + uint24 length + body) with the usual extensions,
    GREASE first, as browsers send it."""
    exts = _ext(0x0A0A, b"")
    if sni is not None:
        name = sni.encode()
        exts += _ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
    exts += _ext(10, struct.pack("!H", 2 * len(groups)) + b"".join(struct.pack("!H", g) for g in groups))
    exts += _ext(11, b"\x01\x00")
    exts += _ext(13, struct.pack("!H", 2 * len(sigalgs)) + b"".join(struct.pack("!H", s) for s in sigalgs))
    if alpn:
        lst = b"".join(bytes([len(a)]) + a for a in alpn)
        exts += _ext(16, struct.pack("!H", len(lst)) + lst)
    exts += _ext(43, bytes([2 * len(versions)]) + b"".join(struct.pack("!H", v) for v in versions))
    if ech:
        exts += _ext(0xFE0D, b"\x00" * 8)
    if pad:
        exts += _ext(21, b"\x00" * pad)
    body = (0xFEFD if dtls else 0x0303).to_bytes(2, "big") + bytes(range(32)) + b"\x00"
    if dtls:
        body += b"\x00"  # empty cookie
    body += struct.pack("!H", 2 * len(ciphers)) + b"".join(struct.pack("!H", c) for c in ciphers)
    body += b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


def tls_record(handshake: bytes, version: int = 0x0301) -> bytes:
    return struct.pack("!BHH", 22, version, len(handshake)) + handshake


def write_pcap(
    path: Path, frames: list[tuple[float, bytes]], *, linktype: int = 101, nano: bool = False,
    big_endian: bool = False,
) -> None:  # fmt: skip
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for ts, data in frames:
        frac = int(round((ts % 1) * (1e9 if nano else 1e6)))
        out += struct.pack(e + "IIII", int(ts), frac, len(data), len(data)) + data
    path.write_bytes(out)


def write_pcapng(path: Path, frames: list[tuple[float, bytes]], *, linktype: int = 1, big_endian: bool = False) -> None:
    e = ">" if big_endian else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    out = block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    # IDB with if_tsresol = 9 (nanoseconds), then end of options
    opts = struct.pack(e + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(e + "HH", 0, 0)
    out += block(1, struct.pack(e + "HHI", linktype, 0, 65535) + opts)
    for ts, data in frames:
        t = int(round(ts * 1e9))
        out += block(6, struct.pack(e + "IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data)
    path.write_bytes(out)


def ether(ip: bytes, vlan: int | None = None) -> bytes:
    et = b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"
    tag = b"\x81\x00" + struct.pack("!H", vlan) if vlan is not None else b""
    return b"\x02" * 6 + b"\x04" * 6 + tag + et + ip

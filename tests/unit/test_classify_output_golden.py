"""`testbed classify`'s three outputs, byte for byte, on every shared capture, and the fast
paths of its hot loop against the general code they shortcut (issue 12).

data/classify_output_sha256.json holds the SHA-256 (first 16 hex digits) of the table, --json and
--jsonl text of each capture in ../shared/pcaps, recorded from main before the hot-path changes
(the capture's path replaced by its name). A difference is a behaviour change.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
from pathlib import Path

import pytest

from testbed.analysis import classify
from testbed.analysis.pcap import read_capture, read_frames
from testbed.core import packet as packet_mod
from testbed.errors import CaptureError

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1].parent / "shared" / "pcaps"
HASHES: dict[str, str] = json.loads((HERE / "data" / "classify_output_sha256.json").read_text())

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real captures not found at {SHARED}")


def _output(path: Path, *, as_json: bool = False, as_jsonl: bool = False) -> str:
    out = io.StringIO()
    classify.main(str(path), as_json=as_json, as_jsonl=as_jsonl, inspect_packets=None, reassemble=True, out=out)
    return out.getvalue().replace(str(path), path.name)


@needs_shared
@pytest.mark.parametrize("name", sorted({k.rsplit(".", 1)[0] for k in HASHES}))
def test_classify_outputs_unchanged(name: str) -> None:
    path = SHARED / name
    for suffix, kwargs in (("txt", {}), ("json", {"as_json": True}), ("jsonl", {"as_jsonl": True})):
        text = _output(path, **kwargs)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == HASHES[f"{name}.{suffix}"], (name, suffix)


@needs_shared
def test_read_frames_equals_read_capture() -> None:
    for path in sorted(SHARED.glob("*.pcap*")):
        if path.name.endswith(".ndpi.out"):
            continue
        slow = [(r.timestamp, r.linktype, r.data) for r in read_capture(str(path))]
        assert list(read_frames(str(path))) == slow, path.name


def _pcap(records: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for i, r in enumerate(records):
        out += struct.pack("<IIII", i, 0, len(r), len(r)) + r
    return out


def _error(fn: object, path: Path) -> tuple[str, int | None]:
    with pytest.raises(CaptureError) as ei:
        list(fn(str(path)))  # type: ignore[operator]
    return str(ei.value), getattr(ei.value, "offset", None)


def test_read_frames_chunks_and_errors_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records straddling chunk boundaries (a tiny chunk), then each kind of truncation: same
    # records and the same error (message and offset) as read_capture.
    from testbed.analysis import pcap

    monkeypatch.setattr(pcap, "_CHUNK", 7)
    rng = random.Random(5)
    data = _pcap([rng.randbytes(rng.randrange(0, 90)) for _ in range(40)])
    path = tmp_path / "a.pcap"
    path.write_bytes(data)
    assert list(read_frames(str(path))) == [(r.timestamp, r.linktype, r.data) for r in read_capture(str(path))]
    for cut in (len(data) - 1, len(data) - 60, 24 + 5, 30):
        path.write_bytes(data[:cut])
        assert _error(read_frames, path) == _error(read_capture, path), cut
    bad = bytearray(data)
    bad[24 + 8 : 24 + 12] = struct.pack("<I", 0x50000)
    path.write_bytes(bytes(bad))
    assert _error(read_frames, path) == _error(read_capture, path)


def _slow_parse(data: bytes) -> packet_mod.Packet:
    if not data:
        raise packet_mod.MalformedPacket("empty packet")
    if data[0] >> 4 == 4:
        return packet_mod._parse_ipv4(data)
    if data[0] >> 4 == 6:
        return packet_mod._parse_ipv6(data)
    raise packet_mod.MalformedPacket("version")


def test_parse_ip_fast_path_equals_general_path() -> None:
    # IPv4 TCP/UDP headers with every length field mutated: the fast path returns what the
    # general path returns, or both raise.
    rng = random.Random(12)
    base_udp = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 7, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
    base_udp += struct.pack("!HHHH", 1000, 2000, 20, 0) + b"x" * 12
    base_tcp = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 52, 7, 0x4000, 64, 6, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
    base_tcp += struct.pack("!HHIIBBHHH", 1000, 443, 1, 2, 0x50, 0x18, 100, 0, 0) + b"y" * 12
    checked = 0
    for _ in range(4000):
        data = bytearray(rng.choice((base_udp, base_tcp)))
        for _ in range(rng.randrange(1, 3)):
            pos = rng.choice((2, 3, 6, 7, 9, 24, 25, 32, 33, 40))
            if pos < len(data):
                data[pos] = rng.randrange(256)
        data = data[: rng.randrange(20, len(data) + 8)]
        try:
            want: object = _slow_parse(bytes(data))
        except packet_mod.MalformedPacket:
            want = packet_mod.MalformedPacket
        try:
            got: object = packet_mod.parse_ip(bytes(data))
        except packet_mod.MalformedPacket:
            got = packet_mod.MalformedPacket
        assert got == want, data.hex()
        checked += 1
    assert checked == 4000


def test_count_output_is_the_summary_line(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    udp = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 0, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
    path.write_bytes(_pcap([udp + struct.pack("!HHHH", 5, 6, 12, 0) + b"abcd"] * 3))
    out = io.StringIO()
    classify.main(str(path), as_json=False, count_only=True, inspect_packets=None, reassemble=True, out=out)
    assert out.getvalue() == "1 flows, 3 IP packets (0 non-IP frames, 0 malformed skipped)\n"


def test_count_rejects_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main as cli_main

    path = tmp_path / "c.pcap"
    path.write_bytes(_pcap([]))
    assert cli_main(["classify", str(path), "--count", "--limit", "5"]) == 2
    err = capsys.readouterr().err
    assert "--count lists no flow" in err and err.count("\n") == 1

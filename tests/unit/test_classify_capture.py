"""analysis.pcap + analysis.classify: capture formats, link types, errors, table and JSON output."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from _dpi_helpers import ether, stun_message, udp4, write_pcap, write_pcapng

from testbed.analysis.classify import main
from testbed.analysis.pcap import read_capture, strip_link_layer
from testbed.errors import CaptureError

STUN = udp4("192.168.1.10", 5000, "198.51.100.1", 3478, stun_message(0x0001, []))
V6_STUN = (
    struct.pack("!IHBB16s16s", 0x60000000, 28, 17, 64, bytes.fromhex("fd00" + "00" * 13 + "01"),
                bytes.fromhex("fd00" + "00" * 13 + "02"))
    + struct.pack("!HHHH", 5000, 3478, 28, 0) + stun_message(0x0001, [])[:20]
)  # fmt: skip


def run_json(path: Path) -> dict:  # type: ignore[type-arg]
    out = io.StringIO()
    assert main(str(path), as_json=True, inspect_packets=None, reassemble=True, out=out) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_pcap_variants(tmp_path: Path, nano: bool, big: bool) -> None:
    p = tmp_path / "a.pcap"
    write_pcap(p, [(1.5, STUN), (2.25, V6_STUN)], nano=nano, big_endian=big)
    doc = run_json(p)
    flows = {f["initiator"]: f for f in doc["flows"]}
    f4 = flows["192.168.1.10:5000"]
    assert f4["transport"] == "udp" and f4["endpoints"] == ["192.168.1.10:5000", "198.51.100.1:3478"]
    assert f4["labels"] == ["stun"] and f4["packets"] == 1 and f4["bytes"] == len(STUN)
    assert set(f4) >= {"sni", "alpn", "fingerprints"}
    assert flows["[fd00::1]:5000"]["labels"] == ["stun"]
    recs = list(read_capture(str(p)))
    assert abs(recs[1].timestamp - 2.25) < 1e-6


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_ethernet_vlan(tmp_path: Path, big: bool) -> None:
    p = tmp_path / "a.pcapng"
    write_pcapng(
        p, [(10.0, ether(STUN, vlan=5)), (10.5, ether(V6_STUN)), (11.0, b"\xff" * 14 + b"\x08\x06arp")], big_endian=big
    )
    doc = run_json(p)
    assert len(doc["flows"]) == 2 and doc["capture"]["non_ip_frames"] == 1
    assert abs(list(read_capture(str(p)))[1].timestamp - 10.5) < 1e-6


def test_link_layers() -> None:
    ip = STUN
    assert strip_link_layer(1, ether(ip)) == ip
    assert strip_link_layer(113, b"\0" * 14 + b"\x08\x00" + ip) == ip  # SLL
    assert strip_link_layer(276, b"\x08\x00" + b"\0" * 18 + ip) == ip  # SLL2
    assert strip_link_layer(0, b"\x02\0\0\0" + ip) == ip  # BSD null
    assert strip_link_layer(101, ip) == ip and strip_link_layer(12, ip) == ip
    assert strip_link_layer(1, b"\0" * 12 + b"\x08\x06" + b"\0" * 28) is None


def test_table_output(tmp_path: Path) -> None:
    p = tmp_path / "a.pcap"
    write_pcap(p, [(1.0, STUN)])
    out = io.StringIO()
    main(str(p), as_json=False, inspect_packets=4, reassemble=False, out=out)
    text = out.getvalue()
    assert "192.168.1.10:5000" in text and "stun" in text and "1 flows" in text


def test_missing_file() -> None:
    with pytest.raises(CaptureError, match="no such file"):
        main("/nonexistent/x.pcap", as_json=False, inspect_packets=None, reassemble=True, out=io.StringIO())


def test_not_a_capture(tmp_path: Path) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(b"hello world, not a pcap")
    with pytest.raises(CaptureError) as ei:
        run_json(p)
    assert ei.value.offset == 0 and str(p) in str(ei.value)


def test_truncated_record_names_offset(tmp_path: Path) -> None:
    p = tmp_path / "t.pcap"
    write_pcap(p, [(1.0, STUN), (2.0, STUN)])
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(CaptureError) as ei:
        run_json(p)
    assert ei.value.offset == 24 + 16 + len(STUN)
    assert "truncated" in str(ei.value)


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    p = tmp_path / "t.pcapng"
    write_pcapng(p, [(1.0, ether(STUN))])
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(CaptureError, match="truncated pcapng block"):
        run_json(p)


def test_corrupt_caplen(tmp_path: Path) -> None:
    p = tmp_path / "c.pcap"
    write_pcap(p, [(1.0, STUN)])
    b = bytearray(p.read_bytes())
    b[24 + 8 : 24 + 12] = struct.pack("<I", 0x7FFFFFFF)
    p.write_bytes(bytes(b))
    with pytest.raises(CaptureError, match="implausible"):
        run_json(p)


def test_cli_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main as cli_main

    p = tmp_path / "bad.pcap"
    p.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 8)
    assert cli_main(["classify", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.pcap" in err and "offset" in err and "Traceback" not in err


def test_gtp_u_is_decapsulated(tmp_path: Path) -> None:
    from _dpi_helpers import udp4 as mk

    inner = STUN
    gtp = b"\x30\xff" + struct.pack("!H", len(inner)) + b"\x00\x00\x00\x01" + inner
    outer = mk("10.1.0.1", 2152, "10.1.0.2", 2152, gtp)
    p = tmp_path / "gtp.pcap"
    write_pcap(p, [(1.0, outer)])
    doc = run_json(p)
    assert doc["capture"]["gtp_decapsulated"] == 1
    assert doc["flows"][0]["initiator"] == "192.168.1.10:5000" and doc["flows"][0]["labels"] == ["stun"]


def test_pcapng_two_interfaces_and_simple_packet_block(tmp_path: Path) -> None:
    e = "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack(e + "II", btype, 12 + len(body)) + body + struct.pack(e + "I", 12 + len(body))

    out = block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack(e + "HHI", 101, 0, 0))  # interface 0: raw IP
    out += block(1, struct.pack(e + "HHI", 113, 0, 0))  # interface 1: Linux SLL
    out += block(3, struct.pack(e + "I", len(STUN)) + STUN)  # simple packet block -> iface 0
    sll = b"\0" * 14 + b"\x08\x00" + STUN
    out += block(6, struct.pack(e + "IIIII", 1, 0, 5_000_000, len(sll), len(sll)) + sll)
    p = tmp_path / "two.pcapng"
    p.write_bytes(out)
    recs = list(read_capture(str(p)))
    assert [r.linktype for r in recs] == [101, 113]
    assert recs[1].timestamp == pytest.approx(5.0)
    assert run_json(p)["flows"][0]["packets"] == 2


def test_cli_no_port_guess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main as cli_main

    # Opaque bytes to UDP 3478: only the well-known port says "stun".
    p = tmp_path / "port.pcap"
    write_pcap(p, [(1.0, udp4("192.168.1.10", 5000, "198.51.100.1", 3478, b"\x99" * 40))])
    assert cli_main(["classify", str(p), "--json"]) == 0
    guessed = json.loads(capsys.readouterr().out)["flows"][0]["labels"]
    assert cli_main(["classify", str(p), "--json", "--no-port-guess"]) == 0
    content_only = json.loads(capsys.readouterr().out)["flows"][0]["labels"]
    assert "by-port" in guessed and content_only == []

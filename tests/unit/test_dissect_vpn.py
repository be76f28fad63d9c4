"""dissect.vpn: WireGuard message sizes/types, OpenVPN opcodes over UDP and TCP."""

from __future__ import annotations

import struct

from testbed.core.dissect.vpn import parse_openvpn, parse_wireguard


def test_wireguard_handshake() -> None:
    init = b"\x01\x00\x00\x00" + struct.pack("<I", 0x11223344) + b"\x00" * 140
    m = parse_wireguard(init)
    assert m is not None and m.msg_type == 1 and m.sender == 0x11223344
    resp = b"\x02\x00\x00\x00" + struct.pack("<II", 7, 0x11223344) + b"\x00" * 80
    r = parse_wireguard(resp)
    assert r is not None and r.msg_type == 2 and r.receiver == 0x11223344
    assert parse_wireguard(init[:-1]) is None  # 147 bytes
    assert parse_wireguard(b"\x01\x00\x00\x01" + init[4:]) is None  # reserved bytes
    assert parse_wireguard(b"\x04\x00\x00\x00" + b"\x00" * 30) is None  # not 16-aligned


def test_openvpn_udp_and_tcp() -> None:
    sid = bytes(range(8))
    reset = bytes([7 << 3]) + sid + b"\x00" + b"\x00\x00\x00\x00"
    p = parse_openvpn(reset)
    assert p is not None and p.opcode == 7 and p.key_id == 0 and p.session_id == sid
    q = parse_openvpn(struct.pack("!H", len(reset)) + reset, tcp=True)
    assert q is not None and q.opcode == 7
    assert parse_openvpn(bytes([31 << 3]) + sid + b"\x00" * 5) is None  # opcode 31 undefined
    assert parse_openvpn(b"") is None

"""WireGuard and OpenVPN handshakes, the two VPN templates TSPU is reported to match (F.14, F.15).

* WireGuard (whitepaper §5.4): handshake initiation is exactly 148 bytes starting 01 00 00 00,
  response 92 bytes starting 02 00 00 00 whose receiver index echoes the initiator's sender
  index, cookie reply 64 bytes (type 3), transport data type 4 padded to 16 bytes.
* OpenVPN (openvpn/src/openvpn/ssl_pkt.h, protocol doc "Packet format"): the first byte is
  opcode << 3 | key_id; a session starts P_CONTROL_HARD_RESET_CLIENT_V2/V3 (7/10, V1 = 1) and the
  server answers P_CONTROL_HARD_RESET_SERVER_V2 (8, V1 = 2) carrying the client's 8-byte session
  id in its ACK block. Over TCP each packet is prefixed by a 16-bit length.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "OpenVpnOpcode",
    "OpenVpnPacket",
    "WgMessage",
    "parse_openvpn",
    "parse_wireguard",
]


class WgType(enum.IntEnum):
    INITIATION = 1
    RESPONSE = 2
    COOKIE_REPLY = 3
    TRANSPORT = 4


_WG_SIZES = {1: 148, 2: 92, 3: 64}


@dataclass(frozen=True, slots=True)
class WgMessage:
    msg_type: int
    sender: int  # sender index (types 1, 2), 0 otherwise
    receiver: int  # receiver index (types 2, 3, 4), 0 otherwise


def parse_wireguard(payload: bytes) -> WgMessage | None:
    n = len(payload)
    if n < 32 or payload[1:4] != b"\x00\x00\x00":
        return None
    t = payload[0]
    if t in _WG_SIZES:
        if n != _WG_SIZES[t]:
            return None
        if t == 1:
            return WgMessage(1, struct.unpack_from("<I", payload, 4)[0], 0)
        if t == 2:
            s, r = struct.unpack_from("<II", payload, 4)
            return WgMessage(2, s, r)
        return WgMessage(3, 0, struct.unpack_from("<I", payload, 4)[0])
    if t == 4 and n % 16 == 0:  # 16-byte header + ciphertext padded to 16 + 16-byte tag
        return WgMessage(4, 0, struct.unpack_from("<I", payload, 4)[0])
    return None


class OpenVpnOpcode(enum.IntEnum):
    P_CONTROL_HARD_RESET_CLIENT_V1 = 1
    P_CONTROL_HARD_RESET_SERVER_V1 = 2
    P_CONTROL_SOFT_RESET_V1 = 3
    P_CONTROL_V1 = 4
    P_ACK_V1 = 5
    P_DATA_V1 = 6
    P_CONTROL_HARD_RESET_CLIENT_V2 = 7
    P_CONTROL_HARD_RESET_SERVER_V2 = 8
    P_DATA_V2 = 9
    P_CONTROL_HARD_RESET_CLIENT_V3 = 10
    P_CONTROL_WKC_V1 = 11


CLIENT_RESETS = frozenset({1, 7, 10})
SERVER_RESETS = frozenset({2, 8})


@dataclass(frozen=True, slots=True)
class OpenVpnPacket:
    opcode: int
    key_id: int
    session_id: bytes  # 8 bytes for control packets, b"" for data
    body: bytes  # everything after the session id


def parse_openvpn(payload: bytes, *, tcp: bool = False) -> OpenVpnPacket | None:
    """One OpenVPN packet (first of a TCP segment), loosely: the opcode must be defined."""
    if tcp:
        if len(payload) < 3:
            return None
        ln = (payload[0] << 8) | payload[1]
        if ln < 1 or ln > 1700 or ln + 2 < min(len(payload), 3):
            return None
        payload = payload[2 : 2 + ln]
    if not payload:
        return None
    opcode = payload[0] >> 3
    key_id = payload[0] & 0x07
    if not 1 <= opcode <= 11:
        return None
    if opcode in (6, 9):
        return OpenVpnPacket(opcode, key_id, b"", payload[1:])
    if len(payload) < 9 + 5:
        return None
    return OpenVpnPacket(opcode, key_id, payload[1:9], payload[9:])

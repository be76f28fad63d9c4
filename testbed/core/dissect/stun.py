"""STUN (RFC 3489 classic, RFC 5389/8489) and TURN (RFC 8656) messages, and TURN ChannelData.

Sans-IO: ``parse_stun(payload)`` returns a ``StunMessage`` or ``None`` for bytes that are not STUN;
it never raises. What "is STUN" means is deliberately strict, because the censor acts on it:

* RFC 5389+: top two bits zero, magic cookie 0x2112A442 at offset 4, length a multiple of 4, and
  the header length equal to the datagram's (over UDP one datagram is one message).
* RFC 3489 (no cookie): the same length rule *and* a message type from RFC 3489 §11.1 (or one of
  the vendor types below) *and* attributes that tile the body exactly; without a cookie nothing
  else separates STUN from random bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "MAGIC_COOKIE",
    "ChannelData",
    "StunAttr",
    "StunClass",
    "StunMessage",
    "StunMethod",
    "parse_channel_data",
    "parse_stun",
    "parse_stun_stream",
]

MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
_HDR = struct.Struct("!HHI12s")
_TLV = struct.Struct("!HH")


class StunClass(enum.IntEnum):
    """The two class bits C1 C0 of the message type (RFC 8489 §5)."""

    REQUEST = 0
    INDICATION = 1
    SUCCESS = 2
    ERROR = 3


class StunMethod(enum.IntEnum):
    """Methods from RFC 8489 §18.2 and TURN, RFC 8656 §17 (plus RFC 6062 TCP allocations)."""

    BINDING = 0x001
    SHARED_SECRET = 0x002  # RFC 3489 only
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


TURN_METHODS = frozenset(m.value for m in StunMethod if m.value >= 0x003)


class StunAttr(enum.IntEnum):
    """Attribute types (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1, RFC 3489 §11.2)."""

    MAPPED_ADDRESS = 0x0001
    RESPONSE_ADDRESS = 0x0002
    CHANGE_REQUEST = 0x0003
    SOURCE_ADDRESS = 0x0004
    CHANGED_ADDRESS = 0x0005
    USERNAME = 0x0006
    PASSWORD = 0x0007
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REFLECTED_FROM = 0x000B
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    CONNECTION_ID = 0x002A
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


# RFC 3489 §11.1 message types, for cookie-less messages.
_CLASSIC_TYPES = frozenset({0x0001, 0x0101, 0x0111, 0x0002, 0x0102, 0x0112})
# WhatsApp's relay protocol uses STUN framing with its own message types 0x0800-0x0802 (the
# type values nDPI's stun dissector attributes to WhatsAppCall; seen in real call captures).
WHATSAPP_MESSAGE_TYPES = frozenset({0x0800, 0x0801, 0x0802})
# ... and vendor attributes in 0x4000-0x4007 (comprehension-required range, unassigned by IANA).
WHATSAPP_ATTRS = frozenset(range(0x4000, 0x4008))


@dataclass(frozen=True, slots=True)
class StunMessage:
    msg_type: int
    length: int
    cookie: bool  # RFC 5389 magic cookie present (else RFC 3489 classic)
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...]  # (type, value) in wire order

    @property
    def method(self) -> int:
        t = self.msg_type
        return (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)

    @property
    def stun_class(self) -> StunClass:
        t = self.msg_type
        return StunClass(((t >> 4) & 1) | ((t >> 7) & 2))

    @property
    def is_turn(self) -> bool:
        return self.method in TURN_METHODS and self.msg_type not in WHATSAPP_MESSAGE_TYPES

    def attr(self, attr_type: int) -> bytes | None:
        for t, v in self.attributes:
            if t == attr_type:
                return v
        return None

    def text(self, attr_type: int) -> str | None:
        """A UTF-8 attribute (USERNAME, REALM, SOFTWARE, NONCE) as text, lossy."""
        v = self.attr(attr_type)
        return None if v is None else v.decode("utf-8", "replace")

    @property
    def realm(self) -> str | None:
        return self.text(StunAttr.REALM)

    @property
    def software(self) -> str | None:
        return self.text(StunAttr.SOFTWARE)

    @property
    def username(self) -> str | None:
        return self.text(StunAttr.USERNAME)

    def xor_mapped_address(self) -> tuple[bytes, int] | None:
        """XOR-MAPPED-ADDRESS decoded (RFC 8489 §14.2): (packed address, port)."""
        v = self.attr(StunAttr.XOR_MAPPED_ADDRESS)
        if v is None or len(v) < 8 or not self.cookie:
            return None
        port = int.from_bytes(v[2:4], "big") ^ (MAGIC_COOKIE >> 16)
        if v[1] == 1:
            addr = bytes(a ^ b for a, b in zip(v[4:8], _COOKIE_BYTES, strict=True))
        elif v[1] == 2 and len(v) >= 20:
            mask = _COOKIE_BYTES + self.transaction_id
            addr = bytes(a ^ b for a, b in zip(v[4:20], mask, strict=True))
        else:
            return None
        return addr, port


def _parse_attrs(body: bytes, padded: bool) -> tuple[tuple[int, bytes], ...] | None:
    attrs: list[tuple[int, bytes]] = []
    off = 0
    n = len(body)
    while off < n:
        if n - off < 4:
            return None
        t, ln = _TLV.unpack_from(body, off)
        off += 4
        if ln > n - off:
            return None
        attrs.append((t, body[off : off + ln]))
        off += (ln + 3) & ~3 if padded else ln
        if off > n:
            # RFC 3489 allowed no trailing padding on the last attribute.
            if padded and off - n < 4:
                break
            return None
    return tuple(attrs)


def parse_stun(payload: bytes, *, exact: bool = True) -> StunMessage | None:
    """One STUN message at the start of ``payload`` or ``None``. Never raises.

    ``exact`` (UDP) demands the message fill the datagram; over TCP (RFC 8489 §6.2.2) messages
    are back to back and the caller uses ``parse_stun_stream``.
    """
    if len(payload) < 20 or payload[0] & 0xC0:
        return None
    msg_type, length, cookie, txid = _HDR.unpack_from(payload)
    # RFC 8489 §5 wants the length 4-aligned; WhatsApp's relay omits the last attribute's
    # padding (0x4000 with length 102 seen in real calls), so unaligned lengths are accepted
    # with the cookie or a WhatsApp type, where those already make a false match unlikely.
    if length & 3 and cookie != MAGIC_COOKIE and msg_type not in WHATSAPP_MESSAGE_TYPES:
        return None
    end = 20 + length
    if end > len(payload) or (exact and end != len(payload)):
        return None
    body = payload[20:end]
    if cookie == MAGIC_COOKIE:
        attrs = _parse_attrs(body, True)
        if attrs is None:
            return None
        return StunMessage(msg_type, length, True, txid, attrs)
    if msg_type not in _CLASSIC_TYPES and msg_type not in WHATSAPP_MESSAGE_TYPES:
        return None
    attrs = _parse_attrs(body, True)
    if attrs is None:
        attrs = _parse_attrs(body, False)
        if attrs is None:
            return None
    full_txid = payload[4:20]
    return StunMessage(msg_type, length, False, full_txid, attrs)


def parse_stun_stream(data: bytes) -> list[StunMessage]:
    """STUN messages framed back to back over TCP (RFC 8489 §6.2.2); stops at the first non-STUN."""
    out: list[StunMessage] = []
    off = 0
    while len(data) - off >= 20 and len(out) < 16:
        length = int.from_bytes(data[off + 2 : off + 4], "big")
        msg = parse_stun(data[off : off + 20 + length])
        if msg is None:
            break
        out.append(msg)
        off += 20 + length
    return out


@dataclass(frozen=True, slots=True)
class ChannelData:
    """TURN ChannelData (RFC 8656 §12.4): channel number 0x4000-0x4FFF, length, application data."""

    channel: int
    data: bytes


def parse_channel_data(payload: bytes, *, udp: bool = True) -> ChannelData | None:
    """A ChannelData message or ``None``. Over UDP the datagram may carry padding to 4 bytes."""
    if len(payload) < 4:
        return None
    channel = (payload[0] << 8) | payload[1]
    # RFC 8656 narrowed the range to 0x4000-0x4FFF; RFC 5766 servers used up to 0x7FFE.
    if not 0x4000 <= channel <= 0x7FFE:
        return None
    length = (payload[2] << 8) | payload[3]
    total = 4 + length
    if udp:
        if not total <= len(payload) <= ((total + 3) & ~3):
            return None
    elif total > len(payload):
        return None
    return ChannelData(channel, payload[4:total])

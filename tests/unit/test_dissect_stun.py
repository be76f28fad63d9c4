"""dissect.stun: RFC 5769 test vectors, classic STUN, TURN, ChannelData, vendor framing."""

from __future__ import annotations

import struct

from _dpi_helpers import stun_message

from testbed.core.dissect.stun import (
    StunAttr,
    StunClass,
    StunMethod,
    parse_channel_data,
    parse_stun,
    parse_stun_stream,
)

# RFC 5769 §2.1 sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY,
# FINGERPRINT).
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)
# RFC 5769 §2.2 sample IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
RFC5769_RESPONSE_XMA = bytes.fromhex("002000080001a147e112a643")


def test_rfc5769_request() -> None:
    m = parse_stun(RFC5769_REQUEST)
    assert m is not None and m.cookie
    assert m.method == StunMethod.BINDING and m.stun_class is StunClass.REQUEST
    assert m.software == "STUN test client"
    assert m.username == "evtj:h6vY"
    assert [t for t, _ in m.attributes] == [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]
    assert not m.is_turn


def test_xor_mapped_address() -> None:
    body = RFC5769_RESPONSE_XMA
    msg = struct.pack("!HHI", 0x0101, len(body), 0x2112A442) + b"\x01" * 12 + body
    m = parse_stun(msg)
    assert m is not None and m.stun_class is StunClass.SUCCESS
    assert m.xor_mapped_address() == (bytes([192, 0, 2, 1]), 32853)


def test_turn_allocate_with_realm() -> None:
    m = parse_stun(stun_message(0x0003, [(StunAttr.REALM, b"telegram.org"), (0x0019, b"\x11\0\0\0")]))
    assert m is not None and m.is_turn and m.method == StunMethod.ALLOCATE
    assert m.realm == "telegram.org"


def test_classic_rfc3489_binding() -> None:
    # RFC 3489: 16-byte transaction id, no cookie; CHANGE-REQUEST attribute.
    msg = struct.pack("!HH", 0x0001, 8) + bytes(range(16)) + struct.pack("!HHI", 0x0003, 4, 0)
    m = parse_stun(msg)
    assert m is not None and not m.cookie and len(m.transaction_id) == 16


def test_whatsapp_unpadded_attribute() -> None:
    # WhatsApp's relay sends attribute 0x4000 with an odd length and no trailing padding.
    value = bytes(range(102))
    msg = struct.pack("!HHI", 0x0003, 106, 0x2112A442) + b"\x02" * 12 + struct.pack("!HH", 0x4000, 102) + value
    m = parse_stun(msg)
    assert m is not None and m.attr(0x4000) == value


def test_rejects_non_stun() -> None:
    assert parse_stun(b"") is None
    assert parse_stun(b"\x00\x01\x00\x00" + b"\x00" * 10) is None  # short
    assert parse_stun(RFC5769_REQUEST[:-4]) is None  # length mismatch
    assert parse_stun(b"\xc0" + RFC5769_REQUEST[1:]) is None  # top bits set
    # classic without a known type
    assert parse_stun(struct.pack("!HH", 0x0123, 0) + b"\x00" * 16) is None
    # attributes that overrun the body
    bad = bytearray(RFC5769_REQUEST)
    bad[22:24] = b"\x00\xff"
    assert parse_stun(bytes(bad)) is None


def test_stream_framing_over_tcp() -> None:
    two = RFC5769_REQUEST + RFC5769_REQUEST
    assert len(parse_stun_stream(two)) == 2
    assert parse_stun_stream(b"GET / HTTP/1.1\r\n\r\n") == []


def test_channel_data() -> None:
    cd = parse_channel_data(b"\x40\x01\x00\x03abc\x00")
    assert cd is not None and cd.channel == 0x4001 and cd.data == b"abc"
    assert parse_channel_data(b"\x40\x01\x00\x09abc") is None  # length past datagram
    assert parse_channel_data(b"\x30\x01\x00\x00") is None  # not a channel number


def test_two_messages_in_one_datagram_are_classified() -> None:
    from _dpi_helpers import udp4

    from testbed.core.classify import Classifier
    from testbed.core.packet import parse_ip

    c = Classifier()
    obs = c.observe(parse_ip(udp4("10.0.0.1", 1, "10.0.0.2", 3478, RFC5769_REQUEST * 2)), 0.0)
    assert "stun" in obs.flow.labels

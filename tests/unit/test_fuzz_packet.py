"""Fuzz: any bytes give a Packet or MalformedPacket; the classifier never raises on payloads."""

from __future__ import annotations

import struct

from _dpi_helpers import ipv4, tcp, udp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.core.classify import Classifier
from testbed.core.dissect.dtls import DtlsHandshakeAssembler, parse_records
from testbed.core.dissect.quic import parse_gquic, parse_initial
from testbed.core.dissect.rtp import parse_rtcp, parse_rtp
from testbed.core.dissect.stun import parse_channel_data, parse_stun, parse_stun_stream
from testbed.core.dissect.tls import parse_client_hello, parse_tls_client_hello_record
from testbed.core.dissect.vpn import parse_openvpn, parse_wireguard
from testbed.core.packet import MalformedPacket, Packet, parse_ip

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        p = parse_ip(data)
    except MalformedPacket:
        return
    assert isinstance(p, Packet) and p.version in (4, 6)


@FAST
@given(st.sampled_from([0x45, 0x46, 0x4F, 0x60]), st.binary(max_size=120))
def test_ip_like_bytes(first: int, rest: bytes) -> None:
    data = bytes([first]) + rest
    if first == 0x60 and len(data) >= 6:
        data = data[:4] + struct.pack("!H", max(0, len(data) - 40)) + data[6:]
    try:
        parse_ip(data)
    except MalformedPacket:
        pass


# payloads that start like the protocols the classifier looks for, then go wrong
PREFIXES = [b"", b"\x00\x01", b"\x00\x03\x00\x10\x21\x12\xa4\x42", b"\x08\x00", b"\x16\xfe\xfd", b"\x16\x03\x01",
            b"\x17\x03\x03", b"\x80", b"\x81\xc8", b"\xc3\x00\x00\x00\x01", b"\xc0\xff\x00\x00\x1d", b"\x01\x00\x00\x00",
            b"\x38", b"\x40\x01", b"\x0d" + b"\x00" * 8 + b"Q043"]  # fmt: skip


@FAST
@given(st.sampled_from(PREFIXES), st.binary(max_size=300), st.sampled_from([17, 6]), st.booleans())
def test_classifier_never_raises(prefix: bytes, tail: bytes, proto: int, reply: bool) -> None:
    payload = prefix + tail
    c = Classifier(inspect_packets=50)
    l4 = udp(3478, 5000, payload) if proto == 17 else tcp(443, 5000, payload)
    a, b = ("10.0.0.1", "10.0.0.2") if not reply else ("10.0.0.2", "10.0.0.1")
    for i in range(3):
        c.observe(parse_ip(ipv4(a, b, proto, l4)), float(i))
    assert c.dissector_errors == 0


@FAST
@given(st.sampled_from(PREFIXES), st.binary(max_size=300))
def test_dissectors_never_raise(prefix: bytes, tail: bytes) -> None:
    data = prefix + tail
    parse_stun(data)
    parse_stun_stream(data)
    parse_channel_data(data)
    recs = parse_records(data)
    if recs:
        DtlsHandshakeAssembler().feed(recs)
    parse_initial(data)
    parse_gquic(data)
    parse_rtp(data)
    parse_rtcp(data)
    parse_client_hello(data)
    parse_tls_client_hello_record(data)
    parse_openvpn(data)
    parse_openvpn(data, tcp=True)
    parse_wireguard(data)

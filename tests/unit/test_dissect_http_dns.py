"""dissect.http and dissect.dns: crafted bytes both ways, the classifier's labels, real captures."""

from __future__ import annotations

import random
import struct

import pytest
from _dpi_helpers import SHARED_PCAPS, tcp4, udp4
from hypothesis import given
from hypothesis import strategies as st

from testbed.core.classify import Classifier
from testbed.core.dissect.dns import parse_dns, parse_dns_tcp
from testbed.core.dissect.http import parse_request, parse_status_line
from testbed.core.packet import parse_ip

CLIENT = "192.168.1.10"
SERVER = "203.0.113.7"


def dns_query(name: str, qtype: int = 1, *, ident: int = 0x1234, flags: int = 0x0100,
              arcount: int = 0, extra: bytes = b"") -> bytes:  # fmt: skip
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    header = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, arcount)
    return header + qname + struct.pack("!HH", qtype, 1) + extra


OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)  # EDNS(0) OPT pseudo-RR (RFC 6891)


# --- HTTP -------------------------------------------------------------------------------------


def test_request_line_and_host() -> None:
    r = parse_request(b"GET /bytes/100 HTTP/1.1\r\nHost: Example.COM:8443\r\nAccept: */*\r\n\r\n")
    assert r is not None and (r.method, r.target, r.version, r.host) == ("GET", "/bytes/100", "1.1", "example.com")
    r = parse_request(b"HEAD / HTTP/1.0\r\nUser-Agent: x\r\nhost:[2001:db8::1]:80\r\n\r\n")
    assert r is not None and r.method == "HEAD" and r.host == "[2001:db8::1]"
    r = parse_request(b"CONNECT example.org:443 HTTP/1.1\r\n")
    assert r is not None and r.host is None  # the Host line is not in this segment


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/2.0\r\n\r\n",  # HTTP/2 has no text request line
        b"get / HTTP/1.1\r\n\r\n",  # methods are case-sensitive (RFC 9110 §9.1)
        b"FOO / HTTP/1.1\r\n\r\n",  # not a registered method
        b"GET / HTTP/1.1",  # the line does not end in this segment
        b"GET /a b HTTP/1.1\r\n",  # a space inside the target
        b"GET  HTTP/1.1\r\n",  # no target
        b"GET / HTTP/1.1 \r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"",
    ],
)
def test_not_a_request_line(data: bytes) -> None:
    assert parse_request(data) is None


def test_status_line() -> None:
    assert parse_status_line(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == 200
    assert parse_status_line(b"HTTP/1.0 404 \r\n") == 404
    assert parse_status_line(b"HTTP/1.1 700 Nope\r\n") is None
    assert parse_status_line(b"HTTP/1.1 2x0 OK\r\n") is None
    assert parse_status_line(b"HTTP/1.1 200 OK") is None  # no CRLF


# --- DNS --------------------------------------------------------------------------------------


def test_query_and_response() -> None:
    q = parse_dns(dns_query("www.example.com", 28, arcount=1, extra=OPT))
    assert q is not None and not q.response and (q.qname, q.qtype, q.opcode) == ("www.example.com", 28, 0)
    # A response: the question, then an answer whose owner is a pointer to offset 12.
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    body = dns_query("example.com")[12:] + answer
    resp = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + body
    r = parse_dns(resp)
    assert r is not None and r.response and r.rcode == 0 and r.qname == "example.com"
    # The root (a priming query) and mDNS's unicast-response bit in QCLASS.
    assert parse_dns(struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x00\x00\x02\x00\x01") is not None
    mdns = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0) + b"\x05_ipps\x04_tcp\x05local\x00\x00\x0c\x80\x01"
    assert parse_dns(mdns) is not None


def test_over_tcp_length_prefixed() -> None:
    q = dns_query("example.com")
    assert parse_dns_tcp(struct.pack("!H", len(q)) + q) is not None
    # The segment may end after the question (the rest of a long message follows).
    long = struct.pack("!HHHHHH", 7, 0x8180, 1, 30, 0, 0) + q[12:] + b"\xc0\x0c" * 10
    assert parse_dns_tcp(struct.pack("!H", len(long) + 400) + long) is not None
    assert parse_dns_tcp(q) is None  # no length prefix
    assert parse_dns_tcp(b"\x00") is None


@pytest.mark.parametrize(
    "data",
    [
        dns_query("example.com", flags=0x0100 | (1 << 11)),  # IQUERY (obsolete)
        dns_query("example.com", flags=0x0140),  # Z bit set
        dns_query("example.com", flags=0x010C),  # RCODE 12: unassigned
        dns_query("example.com", 0),  # QTYPE 0
        dns_query("example.com")[:-1],  # QCLASS cut short
        dns_query("example.com")[:4] + b"\x00\x00" + dns_query("example.com")[6:],  # QDCOUNT 0
        dns_query("example.com")[:4] + b"\x00\x11" + dns_query("example.com")[6:],  # QDCOUNT 17
        dns_query("example.com", arcount=3),  # 3 records announced, none there
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label > 63
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x02\x00\x01\x00\x01",  # pointer into the header
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # name > 255
        dns_query("example.com", flags=0x0100)[:16],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello start
    ],
)
def test_not_dns(data: bytes) -> None:
    assert parse_dns(data) is None


@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    parse_dns(data)
    parse_dns_tcp(data)
    parse_request(data)
    parse_status_line(data)


def test_random_bytes_are_neither() -> None:
    # 20,000 random first packets: the headers and questions are strict enough that none passes.
    r = random.Random(14)
    rnd = [r.randbytes(n) for n in (40, 100, 300, 1200) for _ in range(5000)]
    assert not [r for r in rnd if parse_dns(r) or parse_dns_tcp(r) or parse_request(r) or parse_status_line(r)]


# --- the classifier ---------------------------------------------------------------------------


def _feed(c: Classifier, raws: list[bytes]) -> None:
    for i, raw in enumerate(raws):
        c.observe(parse_ip(raw), i * 0.01)


def test_classifier_labels_http_and_host_any_port() -> None:
    c = Classifier()
    req = b"GET / HTTP/1.1\r\nHost: site.example\r\nUser-Agent: curl/8\r\n\r\n"
    _feed(c, [tcp4(CLIENT, 40000, SERVER, 80, b"", flags=0x02), tcp4(CLIENT, 40000, SERVER, 80, req),
              tcp4(CLIENT, 40001, SERVER, 53, b"POST /x HTTP/1.0\r\n\r\n"),
              tcp4(SERVER, 8080, CLIENT, 40002, b"HTTP/1.1 204 No Content\r\n\r\n")])  # fmt: skip
    flows = {f.responder_port if f.responder_port < 40000 else f.initiator_port: f for f in c.flows()}
    assert "http" in flows[80].labels and flows[80].fingerprints["http_host"] == "site.example"
    assert "http" in flows[53].labels and "dns" not in flows[53].labels
    assert "http" in flows[8080].labels


def test_classifier_labels_dns_udp_and_tcp_any_port() -> None:
    c = Classifier()
    q = dns_query("example.org")
    _feed(c, [udp4(CLIENT, 5000, SERVER, 53, q), udp4(CLIENT, 5001, SERVER, 443, q),
              tcp4(CLIENT, 40000, SERVER, 443, struct.pack("!H", len(q)) + q)])  # fmt: skip
    labelled = {(f.transport, f.responder_port): f for f in c.flows()}
    assert {k for k, f in labelled.items() if "dns" in f.labels} == {("udp", 53), ("udp", 443), ("tcp", 443)}
    assert labelled[("udp", 53)].fingerprints["dns_qname"] == "example.org"
    # Never added on top of a recognised protocol: a TLS flow stays TLS.
    assert "tls" not in labelled[("tcp", 443)].labels


def test_random_first_packet_gets_no_label() -> None:
    c = Classifier(port_guess=False)
    r = random.Random(11)
    _feed(c, [tcp4(CLIENT, 40000 + i, SERVER, 443, r.randbytes(200)) for i in range(200)]
          + [udp4(CLIENT, 40000 + i, SERVER, 53, r.randbytes(200)) for i in range(200)])  # fmt: skip
    assert all(not f.labels for f in c.flows())


@pytest.mark.skipif(not SHARED_PCAPS.is_dir(), reason=f"real captures not found at {SHARED_PCAPS}")
def test_real_captures_dns_flows() -> None:
    from testbed.analysis.classify import run

    flows, _ = run(str(SHARED_PCAPS / "signal.pcap"))
    dns = [f for f in flows if "dns" in f.labels]
    # signal.pcap: two lookups to the home router (nDPI: DNS.Signal and DNS), and nothing else.
    assert sorted(f.responder for f in dns) == ["192.168.2.1:53", "192.168.2.1:53"]
    assert {f.fingerprints["dns_qname"] for f in dns} == {
        "textsecure-service.whispersystems.org", "e673.dsce9.akamaiedge.net"
    }  # fmt: skip
    flows, _ = run(str(SHARED_PCAPS / "wa_voice.pcap"))
    mdns = [f for f in flows if "dns" in f.labels and f.responder.endswith(":5353")]
    assert len(mdns) == 2  # IPv4 and IPv6 mDNS, as nDPI lists them

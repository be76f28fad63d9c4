"""TCP: TLS (with or without ClientHello reassembly), HTTP, DNS, OpenVPN, STUN and RTP framed
over TCP, tried in that order on each inspected data segment."""

from __future__ import annotations

from testbed.core.classify.hellos import Hellos, label_dns
from testbed.core.classify.state import ClassifierState, TcpState, TlsState
from testbed.core.classify.stun import StunInspector
from testbed.core.classify.udp import rtp
from testbed.core.classify.vpn import openvpn
from testbed.core.dissect.dns import parse_dns_tcp
from testbed.core.dissect.http import parse_request, parse_status_line
from testbed.core.dissect.stun import parse_stun_stream
from testbed.core.dissect.tls import (
    TlsHelloAssembler,
    parse_server_hello_body,
    parse_tls_client_hello_record,
    parse_tls_handshake_records,
)
from testbed.core.flow import Flow
from testbed.core.labels import PROTOCOL_LABELS, Label
from testbed.core.packet import Packet

__all__ = ["TcpInspector"]


class TcpInspector:
    __slots__ = ("hellos", "stun", "reassemble_tls")

    def __init__(self, hellos: Hellos, stun: StunInspector, reassemble_tls: bool) -> None:
        self.hellos = hellos
        self.stun = stun
        self.reassemble_tls = reassemble_tls

    def inspect(self, flow: Flow, original: bool, packet: Packet, st: ClassifierState, now: float) -> None:
        payload = packet.payload
        if self._tls(flow, packet, original, st):
            return
        if _tls_record_start(payload):
            # Mid-stream pickup (the capture or the censor started after the handshake):
            # application data, alert or change-cipher-spec records are still unmistakable.
            flow.labels.add(Label.TLS)
            st.done = True
            return
        tcp = st.tcp
        if tcp is None:
            tcp = st.tcp = TcpState()
        if original:
            first_in_dir = not tcp.seen_orig
            tcp.seen_orig = True
        else:
            first_in_dir = not tcp.seen_reply
            tcp.seen_reply = True
        if _http(flow, payload, st):
            return
        if first_in_dir and label_dns(flow, parse_dns_tcp(payload)):
            return
        if (first_in_dir or st.openvpn is not None) and openvpn(flow, payload, original, st, tcp=True):
            return
        b0 = payload[0]
        if b0 < 0x40:  # STUN's two leading zero bits (RFC 8489 §5); WhatsApp's types are 0x08xx
            msgs = parse_stun_stream(payload)
            for msg in msgs:
                self.stun.message(flow, msg, st, now)
            if msgs:
                return
        if len(payload) >= 14 and payload[2] & 0xC0 == 0x80:
            # RTP/RTCP framed by a 16-bit length over TCP (RFC 4571 §2).
            ln = (payload[0] << 8) | payload[1]
            if 12 <= ln <= len(payload) - 2:
                rtp(flow, payload[2 : 2 + ln], original, st)

    def _tls(self, flow: Flow, packet: Packet, original: bool, st: ClassifierState) -> bool:
        """TLS handshake over TCP; the ClientHello's sender is the client whoever sent the SYN."""
        payload = packet.payload
        tls = st.tls
        if tls is None:
            if payload[0] != 22 or (len(payload) >= 2 and payload[1] != 3):
                return False
            if len(payload) < 6 or payload[5] == 1:
                client = original  # a ClientHello, perhaps cut after a byte or two
            elif payload[5] == 2:
                client = not original  # we missed the ClientHello; this is the server
            else:
                return False
            tls = st.tls = TlsState(client)
        if original == tls.client_is_orig:
            self._tls_client(flow, packet, tls)
        elif not tls.server_hello_done:
            tls.server_hello_done = True
            r = parse_tls_handshake_records(payload)
            if r is not None:
                hs = r[0]
                if len(hs) >= 4 and hs[0] == 2:
                    flow.labels.add(Label.TLS)
                    ln = int.from_bytes(hs[1:4], "big")
                    sh = parse_server_hello_body(hs[4 : 4 + ln], raw=hs[: 4 + ln])
                    if sh is not None:
                        self.hellos.server(flow, sh)
        if tls.client_hello_done and tls.server_hello_done:
            st.done = True
        return True

    def _tls_client(self, flow: Flow, packet: Packet, tls: TlsState) -> None:
        if tls.client_hello_done:
            return
        payload = packet.payload
        if self.reassemble_tls:
            asm = tls.assembler
            if asm is None:
                asm = tls.assembler = TlsHelloAssembler()
            stream = asm.add(packet.tcp_seq or 0, payload)
            if stream is None:
                tls.client_hello_done = True
                return
        else:
            # Without reassembly only the first data segment is read (TSPU's throttler,
            # censor-behaviors.md B): a ClientHello split over segments goes unseen.
            stream = payload
            tls.client_hello_done = True
        r = parse_tls_handshake_records(stream)
        if r is None:
            tls.client_hello_done = True
            return
        hs, complete = r
        if hs[:1] == b"\x01" or (not hs and len(stream) >= 5):
            flow.labels.add(Label.TLS)
        if complete:
            tls.client_hello_done = True
            ch = parse_tls_client_hello_record(stream)
            if ch is not None:
                self.hellos.client(flow, ch, "t")


def _http(flow: Flow, payload: bytes, st: ClassifierState) -> bool:
    """An HTTP/1.x request or status line opening the segment (any port: the Iran filter
    accepted HTTP on 53 and 443 too, H.24). The Host header is kept like an SNI, in
    ``fingerprints["http_host"]``."""
    if flow.labels & PROTOCOL_LABELS and Label.HTTP not in flow.labels:
        return False
    if payload[:5] == b"HTTP/":
        # A status line: the reply, or all we see of a flow picked up mid-stream.
        if parse_status_line(payload) is None:
            return False
        flow.labels.add(Label.HTTP)
        return True
    if not 0x43 <= payload[0] <= 0x54:  # the methods' first letters, C to T
        return False
    req = parse_request(payload)
    if req is None:
        return False
    flow.labels.add(Label.HTTP)
    if req.host is not None and "http_host" not in flow.fingerprints:
        flow.fingerprints["http_host"] = req.host
    # After CONNECT the tunnel's own protocol follows (TLS, usually): keep looking.
    if req.method != "CONNECT":
        st.done = True
    return True


def _tls_record_start(payload: bytes) -> bool:
    """A TLS record header (CCS, alert or application data; RFC 8446 §5.1) opens the segment."""
    if len(payload) < 6 or payload[0] not in (20, 21, 23) or payload[1] != 3 or payload[2] > 4:
        return False
    ln = (payload[3] << 8) | payload[4]
    if ln == 0 or ln > 18432:
        return False
    if payload[0] == 20:
        return ln == 1 and payload[5] == 1
    nxt = 5 + ln
    if nxt >= len(payload):
        return True  # the record fills or continues past this segment
    return len(payload) - nxt >= 3 and 20 <= payload[nxt] <= 23 and payload[nxt + 1] == 3

"""UDP: one datagram demultiplexed by its first byte (RFC 7983 §7) to the dissectors."""

from __future__ import annotations

from testbed.core.classify.attribution import CallAttribution
from testbed.core.classify.hellos import Hellos, label_dns, set_sni
from testbed.core.classify.state import ClassifierState
from testbed.core.classify.stun import StunInspector
from testbed.core.classify.vpn import RESET_FIRST_BYTES, openvpn, wireguard
from testbed.core.dissect.dns import parse_dns
from testbed.core.dissect.dtls import DtlsHandshakeAssembler, parse_records
from testbed.core.dissect.quic import (
    QuicCryptoAssembler,
    looks_like_client_initial,
    looks_like_quic_long_header,
    parse_gquic,
    parse_initial,
)
from testbed.core.dissect.rtp import RtpTracker
from testbed.core.dissect.stun import parse_channel_data, parse_stun, parse_stun_stream
from testbed.core.flow import Flow
from testbed.core.labels import PROTOCOL_LABELS, Label

__all__ = ["UdpInspector", "rtp"]

# By payload, wherever the reflector is: its ports (500-600, 1400) and the 12 x 0xFF marker that
# follows the 16-byte peer tag in the relay's own packets (nDPI's telegram dissector keys on it).
_TG_REFLECTOR_PORTS = frozenset(range(500, 601)) | {1400}
_TG_REFLECTOR_MARK = b"\xff" * 12

_AFTER_ICE = frozenset({Label.DTLS, Label.STUN, Label.TURN})


class UdpInspector:
    __slots__ = ("hellos", "stun", "calls")

    def __init__(self, hellos: Hellos, stun: StunInspector, calls: CallAttribution) -> None:
        self.hellos = hellos
        self.stun = stun
        self.calls = calls

    def inspect(self, flow: Flow, original: bool, payload: bytes, st: ClassifierState, now: float) -> None:
        b0 = payload[0]
        if not flow.labels & PROTOCOL_LABELS or Label.DNS in flow.labels:
            # A DNS message's first byte is its random ID, so it can fall in any of RFC 7983's
            # ranges below; its header and question are strict enough to try first (dns.py).
            if label_dns(flow, parse_dns(payload)):
                return
        if (
            len(payload) >= 40
            and (flow.responder_port in _TG_REFLECTOR_PORTS or flow.initiator_port in _TG_REFLECTOR_PORTS)
            and _TG_REFLECTOR_MARK in payload[:64]
        ):
            # tgcalls reflector packets: a 16-byte peer tag, then 12 bytes of 0xFF marking the
            # relay's own messages (the rule nDPI's telegram dissector also keys on), on the
            # reflector ports, wherever the reflector's address is.
            flow.labels.add(Label.TELEGRAM_CALL)
            flow.labels.add(Label.TELEGRAM)
            self.calls.learn(flow, st.stun.addrs if st.stun is not None else (), now)
            return
        if original and b0 & 0x09 == 0x09 and len(payload) >= 14 and payload[9] in (0x51, 0x54):
            if self._gquic(flow, payload, st):
                return
        if b0 < 4 or b0 == 8:
            # 0x08: WhatsApp's STUN-framed types 0x0800-0x0802 sit outside RFC 7983's 0-3.
            msg = parse_stun(payload)
            if msg is not None:
                self.stun.message(flow, msg, st, now)
                return
            msgs = parse_stun_stream(payload)
            if msgs and sum(20 + m.length for m in msgs) == len(payload):
                # several messages in one datagram (seen from some TURN clients)
                for m in msgs:
                    self.stun.message(flow, m, st, now)
                return
            if 1 <= b0 < 4:
                wireguard(flow, payload, st)
                return
        if b0 == 4:
            wireguard(flow, payload, st)
            return
        if 20 <= b0 <= 63:
            if (b0 in RESET_FIRST_BYTES or st.openvpn is not None) and openvpn(flow, payload, original, st, tcp=False):
                return
            self._dtls(flow, payload, st)
            return
        if 64 <= b0 <= 79 and (Label.STUN in flow.labels or Label.TURN in flow.labels):
            cd = parse_channel_data(payload)
            if cd is not None:
                flow.labels.add(Label.TURN)
                if cd.data:
                    # The relayed datagram is itself demultiplexed (RFC 8656 §12.4).
                    inner = cd.data
                    if inner[0] < 4:
                        inner_msg = parse_stun(inner)
                        if inner_msg is not None:
                            self.stun.message(flow, inner_msg, st, now)
                    elif 128 <= inner[0] <= 191:
                        rtp(flow, inner, original, st)
                    elif 20 <= inner[0] <= 63:
                        self._dtls(flow, inner, st)
                return
        if 128 <= b0 <= 191:
            rtp(flow, payload, original, st)
            return
        if b0 >= 192:
            # Either direction: if we missed a flow's first packet its client is the responder.
            # Server Initials simply fail to decrypt with the client's keys.
            if looks_like_quic_long_header(payload):
                self._quic(flow, payload, st)
            elif payload[1:2] in (b"Q", b"T"):
                self._gquic(flow, payload, st)
            if looks_like_client_initial(payload):
                flow.labels.add(Label.QUIC)
            return
        if b0 in RESET_FIRST_BYTES or st.openvpn is not None:
            openvpn(flow, payload, original, st, tcp=False)

    def _dtls(self, flow: Flow, payload: bytes, st: ClassifierState) -> None:
        records = parse_records(payload)
        if records is None:
            return
        flow.labels.add(Label.DTLS)
        asm = st.dtls
        if asm is None:
            asm = st.dtls = DtlsHandshakeAssembler()
        for hello in asm.feed(records):
            if hello.client_hello is not None:
                self.hellos.client(flow, hello.client_hello, "d")
            elif hello.server_hello is not None and "ja3s" not in flow.fingerprints:
                self.hellos.server(flow, hello.server_hello)

    def _quic(self, flow: Flow, payload: bytes, st: ClassifierState) -> None:
        packets = parse_initial(payload)
        if not packets:
            return
        flow.labels.add(Label.QUIC)
        asm = st.quic
        if asm is None:
            asm = st.quic = QuicCryptoAssembler()
        if asm.done:
            return
        for p in packets:
            ch = asm.feed(p.crypto)
            if ch is not None:
                self.hellos.client(flow, ch, "q")
                st.done = True
                return
            if asm.done:
                return

    @staticmethod
    def _gquic(flow: Flow, payload: bytes, st: ClassifierState) -> bool:
        hello = parse_gquic(payload)
        if hello is None:
            return False
        flow.labels.add(Label.QUIC)
        flow.fingerprints.setdefault("gquic_version", hello.version)
        if hello.sni and flow.sni is None:
            set_sni(flow, hello.sni)
        if hello.sni:
            st.done = True
        return True


def rtp(flow: Flow, payload: bytes, original: bool, st: ClassifierState) -> None:
    """RTP/RTCP (over UDP, TURN ChannelData, or RFC 4571 framing over TCP)."""
    tracker = st.rtp
    if tracker is None:
        tracker = st.rtp = RtpTracker()
    if tracker.feed(payload, original):
        flow.labels.add(Label.RTP)
        if tracker.rtcp_hits:
            flow.labels.add(Label.RTCP)
        # Media after an ICE/DTLS exchange on the same 5-tuple is SRTP (RFC 5764).
        if flow.labels & _AFTER_ICE:
            flow.labels.add(Label.SRTP)

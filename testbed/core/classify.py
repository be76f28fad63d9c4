"""The censor's eyes: runs the dissectors over each flow's first packets and labels the flow.

One classification path (ARCHITECTURE.md): the censor engine and ``testbed classify`` both call
``Classifier.observe(packet, now)``. Rules of this module:

1. Sans-IO and clock-free: ``now`` is passed in.
2. Never raises on traffic. Dissectors return ``None`` on bytes they do not understand; a bug in
   one is contained (counted in ``dissector_errors``, the flow stops being inspected) rather than
   taking the censor down.
3. Like a real DPI it inspects a flow's first ``inspect_packets`` payload-carrying packets, then
   stops: afterwards a packet costs a flow-table lookup and two counter updates.
4. Demultiplexing a UDP 5-tuple follows RFC 7983 §7 by first byte: 0-3 STUN, 20-63 DTLS,
   64-79 TURN ChannelData, 128-191 RTP/RTCP; QUIC long headers (192-255), WireGuard and
   OpenVPN are recognised by their own structure.
5. App labels (whatsapp-call, telegram-call) come only from evidence in the traffic: STUN
   message types/attributes (WhatsApp), STUN REALM (Telegram), STUN exchanged with the app's
   own servers, Telegram reflectors (their address ranges and ports, or the reflector marker
   on reflector ports), or a bounded, expiring cache of endpoints such evidence named. Never
   from ports alone, and port guesses (``by-port``) never give app labels.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple

from testbed.core.dissect.dns import DnsMessage, parse_dns, parse_dns_tcp
from testbed.core.dissect.dtls import DtlsHandshakeAssembler, parse_records
from testbed.core.dissect.http import parse_request, parse_status_line
from testbed.core.dissect.quic import (
    QuicCryptoAssembler,
    looks_like_client_initial,
    looks_like_quic_long_header,
    parse_gquic,
    parse_initial,
)
from testbed.core.dissect.rtp import RtpTracker
from testbed.core.dissect.stun import (
    WHATSAPP_ATTRS,
    WHATSAPP_MESSAGE_TYPES,
    StunAttr,
    StunMessage,
    parse_channel_data,
    parse_stun,
    parse_stun_stream,
)
from testbed.core.dissect.tls import (
    ClientHello,
    TlsHelloAssembler,
    client_hello_fingerprints,
    parse_server_hello_body,
    parse_tls_client_hello_record,
    parse_tls_handshake_records,
    server_hello_fingerprints,
)
from testbed.core.dissect.vpn import CLIENT_RESETS, SERVER_RESETS, parse_openvpn, parse_wireguard
from testbed.core.flow import (
    DEFAULT_MAX_FLOWS,
    DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_UDP_IDLE_TIMEOUT,
    Direction,
    Flow,
    FlowTable,
)
from testbed.core.labels import (
    CALL_APP_LABELS,
    PROTOCOL_LABELS,
    AddressList,
    Label,
    shipped_address_lists,
)
from testbed.core.packet import Packet

__all__ = [
    "DEFAULT_INSPECT_PACKETS",
    "PORT_GUESS_LABELS",
    "Classifier",
    "Observation",
    "without_port_guess",
]

# nDPI decides most flows within ~4-8 packets (the "DPI packets" column of its reference
# outputs in shared/pcaps); TSPU kept inspecting 15-20 packets after a TLS first packet
# (censor-behaviors.md, reference numbers). 12 payload-carrying packets is between the two;
# a scenario can set TSPU's figure.
DEFAULT_INSPECT_PACKETS = 12
DEFAULT_ENDPOINT_CACHE_SIZE = 4096
# A call's media flow starts within seconds of its STUN exchange; entries live 10 minutes
# (refreshed on use), long enough for a call's later flows, short enough that a reused local
# port soon stops inheriting a call label.
DEFAULT_ENDPOINT_CACHE_TTL = 600.0

# Telegram call reflectors: UDP 596-599 and 1400 on 91.108.x.x (censor-behaviors.md H.20,
# tgcalls "phoneConnection" entries). By address: 590-1400, and only with an endpoint inside
# Telegram's published ranges.
TELEGRAM_REFLECTOR_PORTS = range(590, 1401)
# By payload, wherever the reflector is: its ports (500-600, 1400) and the 12 x 0xFF marker that
# follows the 16-byte peer tag in the relay's own packets (nDPI's telegram dissector keys on it).
_TG_REFLECTOR_PORTS = frozenset(range(500, 601)) | {1400}
_TG_REFLECTOR_MARK = b"\xff" * 12

_WHATSAPP_SNI = ("whatsapp.net", "whatsapp.com", "wa.me")
_TELEGRAM_SNI = ("telegram.org", "t.me", "telegram.me", "telesco.pe", "tdesktop.com", "tg.dev")

_ORIGINAL = Direction.ORIGINAL

_MEDIA_LABELS = frozenset({Label.RTP, Label.DTLS})

# A flow already recognised as one of these is not re-read as OpenVPN.
_NOT_OPENVPN = frozenset(
    {Label.QUIC, Label.DTLS, Label.STUN, Label.TLS, Label.WIREGUARD, Label.RTP, Label.HTTP, Label.DNS}
)

# Well-known server ports of the protocols we label (IANA registry), for port guesses only.
_PORT_GUESSES: dict[tuple[int, int], str] = {
    (6, 443): Label.TLS,
    (6, 853): Label.TLS,
    (17, 443): Label.QUIC,
    (17, 3478): Label.STUN,
    (17, 51820): Label.WIREGUARD,
    (17, 1194): Label.OPENVPN,
    (6, 1194): Label.OPENVPN,
}

# What a port guess adds. A guess is only made on a flow with no protocol label, once inspection
# is over (or the flow ended), and no protocol label is learnt afterwards (the endpoint cache only
# carries app labels): so next to ``by-port``, every one of these is the guess.
PORT_GUESS_LABELS = frozenset({*_PORT_GUESSES.values(), Label.BY_PORT})


def without_port_guess(labels: AbstractSet[str]) -> AbstractSet[str]:
    """The labels learnt from the traffic (and address lists): ``labels`` less a port guess.

    Policies match these unless a rule asks for guesses: the guess appears when inspection
    ends, so a rule that saw it would change its verdict in the middle of a flow it had let
    through (a static-key OpenVPN tunnel on 1194 died after 14 pings, issue 14)."""
    if Label.BY_PORT not in labels:
        return labels
    return labels - PORT_GUESS_LABELS


_CALL_APP_OF: dict[str, str] = {Label.WHATSAPP_CALL: Label.WHATSAPP, Label.TELEGRAM_CALL: Label.TELEGRAM}


class Observation(NamedTuple):
    """What the classifier made of one packet: its flow, direction, and whether labels changed.

    A ``NamedTuple`` rather than a frozen dataclass because one is built per packet.
    """

    flow: Flow
    direction: Direction
    new_flow: bool
    changed: bool = False  # the flow's labels, SNI or fingerprints changed on this packet


class _EndpointCache:
    """Bounded LRU of (address, port) -> call-app labels, entries expiring after ``ttl`` s."""

    __slots__ = ("_d", "size", "ttl", "hits")

    def __init__(self, size: int, ttl: float) -> None:
        self._d: OrderedDict[tuple[bytes, int], tuple[float, frozenset[str]]] = OrderedDict()
        self.size = size
        self.ttl = ttl
        self.hits = 0

    def add(self, addr: bytes, port: int, labels: frozenset[str], now: float) -> None:
        if self.size <= 0 or not port:
            return
        k = (addr, port)
        old = self._d.pop(k, None)
        if old is not None and now - old[0] <= self.ttl:
            labels = labels | old[1]
        self._d[k] = (now, labels)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def get(self, addr: bytes, port: int, now: float) -> frozenset[str] | None:
        k = (addr, port)
        e = self._d.get(k)
        if e is None:
            return None
        if now - e[0] > self.ttl:
            del self._d[k]
            return None
        self._d[k] = (now, e[1])
        self._d.move_to_end(k)
        self.hits += 1
        return e[1]

    def __len__(self) -> int:
        return len(self._d)


class Classifier:
    """Owns a ``FlowTable``; ``observe`` counts each packet in its flow and labels the flow."""

    def __init__(
        self,
        *,
        inspect_packets: int = DEFAULT_INSPECT_PACKETS,
        reassemble_tls: bool = True,
        endpoint_cache_size: int = DEFAULT_ENDPOINT_CACHE_SIZE,
        endpoint_cache_ttl: float = DEFAULT_ENDPOINT_CACHE_TTL,
        address_lists: Mapping[str, AddressList] | None = None,
        extra_address_lists: Mapping[str, AddressList] | None = None,
        max_flows: int = DEFAULT_MAX_FLOWS,
        udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT,
        tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
        retain_ended: bool = False,
        port_guess: bool = True,
        on_flow_end: Callable[[Flow], None] | None = None,
        keep_hellos: bool = True,
    ) -> None:
        """``retain_ended`` keeps every flow that timed out or was evicted, for ``flows()``:
        memory then grows with the traffic (tests, small captures). The censor and ``testbed
        classify`` pass ``on_flow_end`` instead, to report each flow as it leaves the bounded
        table without keeping it. ``keep_hellos`` keeps the
        parsed ClientHello/ServerHello on the flow (a few KiB per TLS flow) for policies."""
        if inspect_packets < 0:
            raise ValueError(f"inspect_packets must be >= 0, got {inspect_packets}")
        self.inspect_packets = inspect_packets
        self.reassemble_tls = reassemble_tls
        lists = dict(shipped_address_lists() if address_lists is None else address_lists)
        if extra_address_lists:
            lists.update(extra_address_lists)
        self.address_lists: dict[str, AddressList] = lists
        self.retain_ended = retain_ended
        self.port_guess = port_guess
        self.on_flow_end = on_flow_end
        self.keep_hellos = keep_hellos
        self._ended: list[Flow] = []
        self.table = FlowTable(
            max_flows, udp_idle_timeout, tcp_idle_timeout, on_evict=self._on_end
        )
        self.endpoint_cache = _EndpointCache(endpoint_cache_size, endpoint_cache_ttl)
        # Live UDP flows by endpoint, so evidence learnt later reaches flows already running.
        self._udp_flows_at: dict[tuple[bytes, int], set[Flow]] = {}
        # First fragment's flow, so later fragments (no ports) are counted in the right flow.
        self._frag_flows: OrderedDict[tuple[bytes, bytes, int, int], Flow] = OrderedDict()
        self.packets = 0
        self.fragments = 0
        self.dissector_errors = 0

    # -- public --------------------------------------------------------------------------------

    def observe(self, packet: Packet, now: float) -> Observation:
        self.packets += 1
        if packet.is_fragment:
            return self._observe_fragment(packet, now)
        flow, direction, new = self.table.lookup(packet, now)
        # Flow.count, inlined: this is the per-packet cost of every uninspected packet.
        if direction is _ORIGINAL:
            flow.packets_orig += 1
            flow.bytes_orig += packet.length
        else:
            flow.packets_reply += 1
            flow.bytes_reply += packet.length
        flow.last_seen = now
        if packet.proto == 6 and packet.payload:
            flow.count_data(direction, packet)
        changed = self._on_new_flow(flow, packet, now) if new else False
        if flow.inspecting and packet.payload:
            try:
                changed = self._inspect(flow, direction, packet, now) or changed
            except Exception:  # noqa: BLE001 - rule 2: contain a dissector bug, never crash
                self.dissector_errors += 1
                flow.inspecting = False
        return Observation(flow, direction, new, changed)

    def expire(self, now: float) -> list[Flow]:
        return self.table.expire(now)

    def flows(self) -> Iterator[Flow]:
        """Ended flows (if ``retain_ended``) then live ones, in order of creation.

        A flow still unidentified gets its port guess here (the capture or the run is over).
        """
        out = list(self._ended)
        out.extend(self.table)
        out.sort(key=lambda f: f.created_at)
        if self.port_guess:
            for f in out:
                self._guess_by_port(f)
        return iter(out)

    def _guess_by_port(self, flow: Flow) -> None:
        """nDPI's "Match by port": a flow no dissector recognised, on a port that belongs to
        a protocol we label, gets that label plus ``by-port`` so a policy can tell guesses
        from recognitions: rules ignore them unless they ask (``without_port_guess``). Never
        an app or call label."""
        if flow.labels & PROTOCOL_LABELS:
            return
        proto = flow.key.proto
        label = _PORT_GUESSES.get((proto, flow.responder_port)) or _PORT_GUESSES.get(
            (proto, flow.initiator_port)
        )
        if label is not None:
            flow.labels.add(label)
            flow.labels.add(Label.BY_PORT)

    # -- internals -----------------------------------------------------------------------------

    def _on_end(self, flow: Flow) -> None:
        if flow.key.proto == 17:
            for ep in ((flow.initiator_addr, flow.initiator_port), (flow.responder_addr, flow.responder_port)):
                at = self._udp_flows_at.get(ep)
                if at is not None:
                    at.discard(flow)
                    if not at:
                        del self._udp_flows_at[ep]
        if self.port_guess:
            self._guess_by_port(flow)
        if self.retain_ended:
            self._ended.append(flow)
        if self.on_flow_end is not None:
            self.on_flow_end(flow)

    def _observe_fragment(self, packet: Packet, now: float) -> Observation:
        self.fragments += 1
        fkey = (packet.src, packet.dst, packet.frag_id, packet.proto)
        if packet.frag_offset:
            flow0 = self._frag_flows.get(fkey)
            if flow0 is not None and flow0.ended is None:
                d = (
                    Direction.ORIGINAL
                    if packet.src == flow0.initiator_addr
                    else Direction.REPLY
                )
                flow0.count(d, packet.length, now)
                flow0.fragments += 1
                return Observation(flow0, d, False)
        # A first fragment carries the ports: count it in its flow, but do not inspect its
        # payload, which is cut short (rule 3 of packet.py). Orphan later fragments get a
        # port-less flow of their own.
        flow, direction, new = self.table.lookup(packet, now)
        flow.count(direction, packet.length, now)
        flow.fragments += 1
        if packet.frag_offset == 0:
            if packet.proto == 6:
                flow.count_data(direction, packet)
            self._frag_flows[fkey] = flow
            if len(self._frag_flows) > 1024:
                self._frag_flows.popitem(last=False)
        changed = self._on_new_flow(flow, packet, now) if new else False
        return Observation(flow, direction, new, changed)

    def _on_new_flow(self, flow: Flow, packet: Packet, now: float) -> bool:
        before = len(flow.labels)
        if self.inspect_packets == 0:
            flow.inspecting = False
        for name, al in self.address_lists.items():
            if packet.src in al or packet.dst in al:
                flow.labels.add(name)
        if packet.proto == 17:
            tg = self.address_lists.get("telegram")
            if tg is not None and (
                (packet.dport in TELEGRAM_REFLECTOR_PORTS and packet.dst in tg)
                or (packet.sport in TELEGRAM_REFLECTOR_PORTS and packet.src in tg)
            ):
                flow.labels.add(Label.TELEGRAM_CALL)
            self._carry_from_cache(flow, now)
            if packet.sport and packet.dport:
                at = self._udp_flows_at
                at.setdefault((flow.initiator_addr, flow.initiator_port), set()).add(flow)
                at.setdefault((flow.responder_addr, flow.responder_port), set()).add(flow)
        return len(flow.labels) != before

    def _carry_from_cache(self, flow: Flow, now: float) -> bool:
        cache = self.endpoint_cache
        got = cache.get(flow.initiator_addr, flow.initiator_port, now)
        got2 = cache.get(flow.responder_addr, flow.responder_port, now)
        if got is None and got2 is None:
            return False
        before = len(flow.labels)
        for labels in (got, got2):
            for lbl in labels or ():
                flow.labels.add(lbl)
                app = _CALL_APP_OF.get(lbl)
                if app is not None:
                    flow.labels.add(app)
        return len(flow.labels) != before

    def _learn_endpoints(self, flow: Flow, now: float) -> None:
        """Remember the endpoints of a flow with a call-app label, and the addresses its STUN named."""
        apps = frozenset(flow.labels & CALL_APP_LABELS)
        if not apps:
            return
        st = flow.classifier_state
        cache = self.endpoint_cache
        # The initiator is the app's side: clients start STUN towards relays/peers. The relay's
        # service address:port (the responder) is shared by every user of that relay, so it is
        # not learnt; a relayed transport address (XOR-RELAYED-ADDRESS) is per allocation.
        learnt = [(flow.initiator_addr, flow.initiator_port), *st.get("stun_addrs", ())]
        for addr, port in learnt:
            cache.add(addr, port, apps, now)
            # Flows that started before the evidence (a P2P media flow racing the relay's STUN
            # exchange, or one already past its inspection budget) join the call too.
            for other in self._udp_flows_at.get((addr, port), ()):
                if not apps <= other.labels:
                    other.labels.update(apps)
                    other.labels.update(_CALL_APP_OF[a] for a in apps)

    def _inspect(self, flow: Flow, direction: Direction, packet: Packet, now: float) -> bool:
        st = flow.classifier_state
        flow.inspected += 1
        before = (len(flow.labels), flow.sni, len(flow.fingerprints))
        if packet.proto == 17:
            self._inspect_udp(flow, direction, packet.payload, st, now)
            if not (flow.labels & CALL_APP_LABELS):
                self._carry_from_cache(flow, now)
        elif packet.proto == 6:
            self._inspect_tcp(flow, direction, packet, st, now)
        budget = self.inspect_packets
        if Label.STUN in flow.labels and not flow.labels & _MEDIA_LABELS:
            # Like nDPI's extra dissection of STUN flows: ICE checks come first and the media
            # (DTLS, SRTP) they set up follows on the same 5-tuple, so look a little longer.
            budget *= 2
        if flow.inspected >= budget or st.get("done"):
            flow.inspecting = False
            st.clear()  # free dissector buffers; the labels are what we keep
            if self.port_guess:
                self._guess_by_port(flow)
        return before != (len(flow.labels), flow.sni, len(flow.fingerprints))

    # -- UDP -----------------------------------------------------------------------------------

    def _inspect_udp(
        self, flow: Flow, direction: Direction, payload: bytes, st: dict[str, Any], now: float
    ) -> None:
        b0 = payload[0]
        original = direction is Direction.ORIGINAL
        if not flow.labels & PROTOCOL_LABELS or Label.DNS in flow.labels:
            # A DNS message's first byte is its random ID, so it can fall in any of RFC 7983's
            # ranges below; its header and question are strict enough to try first (dns.py).
            if self._dns(flow, parse_dns(payload)):
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
            self._learn_endpoints(flow, now)
            return
        if original and b0 & 0x09 == 0x09 and len(payload) >= 14 and payload[9] in (0x51, 0x54):
            if self._gquic(flow, payload, st):
                return
        if b0 < 4 or b0 == 8:
            # 0x08: WhatsApp's STUN-framed types 0x0800-0x0802 sit outside RFC 7983's 0-3.
            msg = parse_stun(payload)
            if msg is not None:
                self._on_stun(flow, msg, st, now)
                return
            msgs = parse_stun_stream(payload)
            if msgs and sum(20 + m.length for m in msgs) == len(payload):
                # several messages in one datagram (seen from some TURN clients)
                for m in msgs:
                    self._on_stun(flow, m, st, now)
                return
            if 1 <= b0 < 4:
                self._wireguard(flow, payload, st)
                return
        if b0 == 4:
            self._wireguard(flow, payload, st)
            return
        if 20 <= b0 <= 63:
            if "ovpn" in st or b0 >> 3 in CLIENT_RESETS or b0 >> 3 in SERVER_RESETS:
                if self._openvpn(flow, payload, original, st, tcp=False):
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
                            self._on_stun(flow, inner_msg, st, now)
                    elif 128 <= inner[0] <= 191:
                        self._rtp(flow, inner, original, st)
                    elif 20 <= inner[0] <= 63:
                        self._dtls(flow, inner, st)
                return
        if 128 <= b0 <= 191:
            self._rtp(flow, payload, original, st)
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
        if "ovpn" in st or b0 >> 3 in CLIENT_RESETS or b0 >> 3 in SERVER_RESETS:
            self._openvpn(flow, payload, original, st, tcp=False)

    def _on_stun(self, flow: Flow, msg: StunMessage, st: dict[str, Any], now: float) -> None:
        flow.labels.add(Label.STUN)
        if msg.is_turn:
            flow.labels.add(Label.TURN)
        fp = flow.fingerprints
        if "stun_software" not in fp:
            sw = msg.attr(StunAttr.SOFTWARE)
            if sw is not None:
                fp["stun_software"] = sw[:64].decode("utf-8", "replace")
        if "stun_realm" not in fp:
            realm_v = msg.attr(StunAttr.REALM)
            if realm_v is not None:
                fp["stun_realm"] = realm_v[:64].decode("utf-8", "replace")
        app: Label | None = None
        if msg.msg_type in WHATSAPP_MESSAGE_TYPES or any(
            t in WHATSAPP_ATTRS for t, _ in msg.attributes
        ):
            app = Label.WHATSAPP_CALL
        else:
            realm = msg.attr(StunAttr.REALM)
            if realm is not None and b"telegram" in realm.lower():
                app = Label.TELEGRAM_CALL
            elif not flow.labels & CALL_APP_LABELS:
                # STUN with one of the app's own servers: the app's call signalling, not a web
                # page (nDPI attributes STUN to the app owning the server address likewise).
                app = self._stun_app_by_address(flow)
        # Addresses the exchange names (TURN peer and relayed addresses): a media flow to or
        # from them is part of the same call (nDPI's STUN cache learns them too).
        addrs: list[tuple[bytes, int]] = st.setdefault("stun_addrs", [])
        if len(addrs) < 8:
            for attr in (StunAttr.XOR_PEER_ADDRESS, StunAttr.XOR_RELAYED_ADDRESS):
                a = _xor_address(msg, attr)
                if a is not None and a not in addrs:
                    addrs.append(a)
        if app is not None:
            flow.labels.add(app)
            flow.labels.add(_CALL_APP_OF[app])
        if flow.labels & CALL_APP_LABELS:
            self._learn_endpoints(flow, now)

    def _stun_app_by_address(self, flow: Flow) -> Label | None:
        for name, label in (("whatsapp", Label.WHATSAPP_CALL), ("telegram", Label.TELEGRAM_CALL)):
            al = self.address_lists.get(name)
            if al is not None and (flow.responder_addr in al or flow.initiator_addr in al):
                return label
        return None

    def _wireguard(self, flow: Flow, payload: bytes, st: dict[str, Any]) -> None:
        m = parse_wireguard(payload)
        if m is None:
            return
        if m.msg_type == 1:
            st["wg_sender"] = m.sender
            flow.labels.add(Label.WIREGUARD)
        elif m.msg_type == 2:
            flow.labels.add(Label.WIREGUARD)
            st["done"] = True
        elif m.msg_type in (3, 4):
            # A cookie reply or transport data alone is weak (4 bytes + a size rule); wanting
            # the same receiver index twice in a row makes a random match very unlikely.
            seen: set[int] = st.setdefault("wg_receivers", set())
            if m.receiver in seen:
                flow.labels.add(Label.WIREGUARD)
                st["done"] = True
            elif len(seen) < 4:
                seen.add(m.receiver)

    def _openvpn(
        self, flow: Flow, payload: bytes, original: bool, st: dict[str, Any], *, tcp: bool
    ) -> bool:
        """OpenVPN by its handshake template (censor-behaviors.md F.15).

        Only a hard reset that opens its direction of the flow (key_id 0) starts a match, and
        it must look like one (``_reset_shaped``), because other protocols also carry a
        constant 8-byte id after one byte (a QUIC short header's connection id, gQUIC's).
        Then any of: (a) a reset from the other side that also opens its direction; (b) a
        P_CONTROL/P_ACK or repeated reset with the same session id in the same direction (one
        direction of a NATed or asymmetric path); (c) a reply echoing the client's session id.
        """
        p = parse_openvpn(payload, tcp=tcp)
        if p is None or not p.session_id or flow.labels & _NOT_OPENVPN:
            return False
        ovpn: dict[bool, tuple[int, bytes]] = st.setdefault("ovpn", {})
        opened: set[bool] = st.setdefault("ovpn_dirs", set())
        first_in_dir = original not in opened
        opened.add(original)
        mine = ovpn.get(original)
        other = ovpn.get(not original)
        if p.opcode in CLIENT_RESETS or p.opcode in SERVER_RESETS:
            if p.key_id != 0:
                return False
            if mine is not None and p.session_id == mine[1]:
                return self._openvpn_found(flow, st)  # (b) the reset retransmitted
            if not first_in_dir:
                return False
            echo = other is not None and other[1] in p.body
            if not (echo or _reset_shaped(p.body)):
                return False
            ovpn[original] = (p.opcode, p.session_id)
            if other is not None and (echo or (p.opcode in SERVER_RESETS) != (other[0] in SERVER_RESETS)):
                return self._openvpn_found(flow, st)  # (a), (c)
            return True
        if mine is not None and p.session_id == mine[1] and p.opcode in (4, 5):
            return self._openvpn_found(flow, st)  # (b)
        if other is not None and other[1] in p.body and p.opcode in (4, 5):
            return self._openvpn_found(flow, st)  # (c) an ACK of the other side's reset
        return False

    @staticmethod
    def _openvpn_found(flow: Flow, st: dict[str, Any]) -> bool:
        flow.labels.add(Label.OPENVPN)
        st["done"] = True
        return True

    def _dtls(self, flow: Flow, payload: bytes, st: dict[str, Any]) -> None:
        records = parse_records(payload)
        if records is None:
            return
        flow.labels.add(Label.DTLS)
        asm: DtlsHandshakeAssembler | None = st.get("dtls")
        if asm is None:
            asm = st["dtls"] = DtlsHandshakeAssembler()
        for hello in asm.feed(records):
            if hello.client_hello is not None:
                self._client_hello(flow, hello.client_hello, "d")
            elif hello.server_hello is not None and "ja3s" not in flow.fingerprints:
                flow.fingerprints.update(server_hello_fingerprints(hello.server_hello))
                if self.keep_hellos:
                    flow.server_hello = hello.server_hello

    def _rtp(self, flow: Flow, payload: bytes, original: bool, st: dict[str, Any]) -> None:
        tracker: RtpTracker | None = st.get("rtp")
        if tracker is None:
            tracker = st["rtp"] = RtpTracker()
        if tracker.feed(payload, original):
            flow.labels.add(Label.RTP)
            if tracker.rtcp_hits:
                flow.labels.add(Label.RTCP)
            # Media after an ICE/DTLS exchange on the same 5-tuple is SRTP (RFC 5764).
            if flow.labels & {Label.DTLS, Label.STUN, Label.TURN}:
                flow.labels.add(Label.SRTP)

    def _quic(self, flow: Flow, payload: bytes, st: dict[str, Any]) -> None:
        packets = parse_initial(payload)
        if not packets:
            return
        flow.labels.add(Label.QUIC)
        asm: QuicCryptoAssembler | None = st.get("quic")
        if asm is None:
            asm = st["quic"] = QuicCryptoAssembler()
        if asm.done:
            return
        for p in packets:
            ch = asm.feed(p.crypto)
            if ch is not None:
                self._client_hello(flow, ch, "q")
                st["done"] = True
                return
            if asm.done:
                return

    def _gquic(self, flow: Flow, payload: bytes, st: dict[str, Any]) -> bool:
        hello = parse_gquic(payload)
        if hello is None:
            return False
        flow.labels.add(Label.QUIC)
        flow.fingerprints.setdefault("gquic_version", hello.version)
        if hello.sni and flow.sni is None:
            self._set_sni(flow, hello.sni)
        if hello.sni:
            st["done"] = True
        return True

    # -- TCP -----------------------------------------------------------------------------------

    def _inspect_tcp(
        self, flow: Flow, direction: Direction, packet: Packet, st: dict[str, Any], now: float
    ) -> None:
        payload = packet.payload
        original = direction is Direction.ORIGINAL
        if self._tls(flow, packet, original, st):
            return
        if _tls_record_start(payload):
            # Mid-stream pickup (the capture or the censor started after the handshake):
            # application data, alert or change-cipher-spec records are still unmistakable.
            flow.labels.add(Label.TLS)
            st["done"] = True
            return
        firsts: set[bool] = st.setdefault("tcp_firsts", set())
        first_in_dir = original not in firsts
        firsts.add(original)
        if self._http(flow, payload, st):
            return
        if first_in_dir and self._dns(flow, parse_dns_tcp(payload)):
            return
        if (first_in_dir or "ovpn" in st) and self._openvpn(flow, payload, original, st, tcp=True):
            return
        b0 = payload[0]
        if b0 < 0x40:  # STUN's two leading zero bits (RFC 8489 §5); WhatsApp's types are 0x08xx
            msgs = parse_stun_stream(payload)
            for msg in msgs:
                self._on_stun(flow, msg, st, now)
            if msgs:
                return
        if len(payload) >= 14 and payload[2] & 0xC0 == 0x80:
            # RTP/RTCP framed by a 16-bit length over TCP (RFC 4571 §2).
            ln = (payload[0] << 8) | payload[1]
            if 12 <= ln <= len(payload) - 2:
                self._rtp(flow, payload[2 : 2 + ln], original, st)

    def _http(self, flow: Flow, payload: bytes, st: dict[str, Any]) -> bool:
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
            st["done"] = True
        return True

    @staticmethod
    def _dns(flow: Flow, msg: DnsMessage | None) -> bool:
        if msg is None:
            return False
        flow.labels.add(Label.DNS)
        if msg.qname and "dns_qname" not in flow.fingerprints:
            flow.fingerprints["dns_qname"] = msg.qname[:255]
        return True

    def _tls(self, flow: Flow, packet: Packet, original: bool, st: dict[str, Any]) -> bool:
        """TLS handshake over TCP; the ClientHello's sender is the client whoever sent the SYN."""
        payload = packet.payload
        client: bool | None = st.get("tls_client")
        if client is None:
            if payload[0] != 22 or (len(payload) >= 2 and payload[1] != 3):
                return False
            if len(payload) < 6 or payload[5] == 1:
                client = original  # a ClientHello, perhaps cut after a byte or two
            elif payload[5] == 2:
                client = not original  # we missed the ClientHello; this is the server
            else:
                return False
            st["tls_client"] = client
        if original == client:
            self._tls_client(flow, packet, st)
        elif not st.get("sh_done"):
            st["sh_done"] = True
            r = parse_tls_handshake_records(payload)
            if r is not None:
                hs = r[0]
                if len(hs) >= 4 and hs[0] == 2:
                    flow.labels.add(Label.TLS)
                    ln = int.from_bytes(hs[1:4], "big")
                    sh = parse_server_hello_body(hs[4 : 4 + ln], raw=hs[: 4 + ln])
                    if sh is not None:
                        flow.fingerprints.update(server_hello_fingerprints(sh))
                        if self.keep_hellos:
                            flow.server_hello = sh
        if st.get("ch_done") and st.get("sh_done"):
            st["done"] = True
        return True

    def _tls_client(self, flow: Flow, packet: Packet, st: dict[str, Any]) -> None:
        if st.get("ch_done"):
            return
        payload = packet.payload
        if self.reassemble_tls:
            asm: TlsHelloAssembler | None = st.get("tls_asm")
            if asm is None:
                asm = st["tls_asm"] = TlsHelloAssembler()
            stream = asm.add(packet.tcp_seq or 0, payload)
            if stream is None:
                st["ch_done"] = True
                return
        else:
            # Without reassembly only the first data segment is read (TSPU's throttler,
            # censor-behaviors.md B): a ClientHello split over segments goes unseen.
            stream = payload
            st["ch_done"] = True
        r = parse_tls_handshake_records(stream)
        if r is None:
            st["ch_done"] = True
            return
        hs, complete = r
        if hs[:1] == b"\x01" or (not hs and len(stream) >= 5):
            flow.labels.add(Label.TLS)
        if complete:
            st["ch_done"] = True
            ch = parse_tls_client_hello_record(stream)
            if ch is not None:
                self._client_hello(flow, ch, "t")

    # -- shared --------------------------------------------------------------------------------

    def _set_sni(self, flow: Flow, sni: str) -> None:
        flow.sni = sni
        low = sni.lower().rstrip(".")
        if any(low == d or low.endswith("." + d) for d in _WHATSAPP_SNI):
            flow.labels.add(Label.WHATSAPP)
        if any(low == d or low.endswith("." + d) for d in _TELEGRAM_SNI):
            flow.labels.add(Label.TELEGRAM)

    def _client_hello(self, flow: Flow, ch: ClientHello, transport: str) -> None:
        if transport == "t":
            flow.labels.add(Label.TLS)
        sni = ch.sni
        if sni and flow.sni is None:
            self._set_sni(flow, sni)
        if not flow.alpn:
            flow.alpn = list(ch.alpn)
        if "ja3" not in flow.fingerprints:
            flow.fingerprints.update(client_hello_fingerprints(ch, transport))
        if self.keep_hellos and flow.client_hello is None:
            flow.client_hello = ch
        if ch.has_ech:
            # Real or GREASE ECH look alike; the Cloudflare block (censor-behaviors.md G.18)
            # keyed on this extension together with the outer SNI cloudflare-ech.com.
            # Both forms are contract: the label and fingerprints["ech"] = "present".
            flow.labels.add(Label.ECH)
            flow.fingerprints["ech"] = "present"


def _reset_shaped(body: bytes) -> bool:
    """The bytes after a hard reset's session id look like OpenVPN's (ssl_pkt.h): with no
    control-channel wrapping, an ACK array (empty, or acks + the peer's session id) and message
    packet-id 0; with tls-crypt,
    replay packet-id 1 (then a timestamp); with tls-auth, packet-id 1 after a 20- or 32-byte
    HMAC. Random bytes pass with odds around 2^-32."""
    if body[:5] == b"\x00\x00\x00\x00\x00":
        return True
    n = body[0] if body else 0
    if 1 <= n <= 8 and body[1 + 4 * n + 8 : 1 + 4 * n + 12] == b"\x00\x00\x00\x00":
        return True  # a server reset acknowledging the client's: n acks, remote session id, 0
    return any(body[h : h + 4] == b"\x00\x00\x00\x01" for h in (0, 20, 32, 64))


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


def _xor_address(msg: StunMessage, attr: int) -> tuple[bytes, int] | None:
    v = msg.attr(attr)
    if v is None or len(v) < 8 or not msg.cookie:
        return None
    port = int.from_bytes(v[2:4], "big") ^ 0x2112
    cookie = b"\x21\x12\xa4\x42"
    if v[1] == 1:
        return bytes(a ^ b for a, b in zip(v[4:8], cookie, strict=True)), port
    if v[1] == 2 and len(v) >= 20:
        mask = cookie + msg.transaction_id
        return bytes(a ^ b for a, b in zip(v[4:20], mask, strict=True)), port
    return None

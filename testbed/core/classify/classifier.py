"""``Classifier``: the flow table, per-packet counting, and dispatch to the transport inspectors."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from testbed.core.classify.attribution import (
    DEFAULT_ENDPOINT_CACHE_SIZE,
    DEFAULT_ENDPOINT_CACHE_TTL,
    CallAttribution,
    EndpointCache,
)
from testbed.core.classify.hellos import Hellos
from testbed.core.classify.ports import guess_by_port
from testbed.core.classify.state import ClassifierState
from testbed.core.classify.stun import StunInspector
from testbed.core.classify.tcp import TcpInspector
from testbed.core.classify.udp import UdpInspector
from testbed.core.flow import (
    DEFAULT_MAX_FLOWS,
    DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_UDP_IDLE_TIMEOUT,
    Direction,
    Flow,
    FlowTable,
)
from testbed.core.labels import CALL_APP_LABELS, AddressList, Label, shipped_address_lists
from testbed.core.packet import Packet

__all__ = ["DEFAULT_INSPECT_PACKETS", "Classifier", "Observation"]

# nDPI decides most flows within ~4-8 packets (the "DPI packets" column of its reference
# outputs in shared/pcaps); TSPU kept inspecting 15-20 packets after a TLS first packet
# (censor-behaviors.md, reference numbers). 12 payload-carrying packets is between the two;
# a scenario can set TSPU's figure.
DEFAULT_INSPECT_PACKETS = 12

_ORIGINAL = Direction.ORIGINAL

_MEDIA_LABELS = frozenset({Label.RTP, Label.DTLS})


class Observation(NamedTuple):
    """What the classifier made of one packet: its flow, direction, and whether labels changed.

    A ``NamedTuple`` rather than a frozen dataclass because one is built per packet.
    """

    flow: Flow
    direction: Direction
    new_flow: bool
    changed: bool = False  # the flow's labels, SNI or fingerprints changed on this packet


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
        lists = dict(shipped_address_lists() if address_lists is None else address_lists)
        if extra_address_lists:
            lists.update(extra_address_lists)
        self.address_lists: dict[str, AddressList] = lists
        self.retain_ended = retain_ended
        self.port_guess = port_guess
        self.on_flow_end = on_flow_end
        self._ended: list[Flow] = []
        self.table = FlowTable(max_flows, udp_idle_timeout, tcp_idle_timeout, on_evict=self._on_end)
        self.endpoint_cache = EndpointCache(endpoint_cache_size, endpoint_cache_ttl)
        self._calls = CallAttribution(lists, self.endpoint_cache)
        self._hellos = Hellos(keep_hellos)
        stun = StunInspector(self._calls)
        self._udp = UdpInspector(self._hellos, stun, self._calls)
        self._tcp = TcpInspector(self._hellos, stun, reassemble_tls)
        # First fragment's flow, so later fragments (no ports) are counted in the right flow.
        self._frag_flows: OrderedDict[tuple[bytes, bytes, int, int], Flow] = OrderedDict()
        self.packets = 0
        self.fragments = 0
        self.dissector_errors = 0

    @property
    def reassemble_tls(self) -> bool:
        return self._tcp.reassemble_tls

    @property
    def keep_hellos(self) -> bool:
        return self._hellos.keep

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
            except Exception:
                self.dissector_errors += 1
                flow.inspecting = False
                flow.classifier_state = None
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
                guess_by_port(f)
        return iter(out)

    # -- internals -----------------------------------------------------------------------------

    def _on_end(self, flow: Flow) -> None:
        if flow.key.proto == 17:
            self._calls.forget(flow)
        if self.port_guess:
            guess_by_port(flow)
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
                d = Direction.ORIGINAL if packet.src == flow0.initiator_addr else Direction.REPLY
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
            self._calls.on_new_udp_flow(flow, packet, now)
        return len(flow.labels) != before

    def _inspect(self, flow: Flow, direction: Direction, packet: Packet, now: float) -> bool:
        st = flow.classifier_state
        if st is None:
            st = flow.classifier_state = ClassifierState()
        flow.inspected += 1
        labels = flow.labels
        before = (len(labels), flow.sni, len(flow.fingerprints))
        if packet.proto == 17:
            self._udp.inspect(flow, direction is _ORIGINAL, packet.payload, st, now)
            if not (labels & CALL_APP_LABELS):
                self._calls.carry_from_cache(flow, now)
        elif packet.proto == 6:
            self._tcp.inspect(flow, direction is _ORIGINAL, packet, st, now)
        budget = self.inspect_packets
        if Label.STUN in labels and not labels & _MEDIA_LABELS:
            # Like nDPI's extra dissection of STUN flows: ICE checks come first and the media
            # (DTLS, SRTP) they set up follows on the same 5-tuple, so look a little longer.
            budget *= 2
        if flow.inspected >= budget or st.done:
            flow.inspecting = False
            flow.classifier_state = None  # free dissector buffers; the labels are what we keep
            if self.port_guess:
                guess_by_port(flow)
        return before != (len(labels), flow.sni, len(flow.fingerprints))

"""Call-app attribution: which flows belong to a WhatsApp or Telegram call (rule 5 of the package).

Evidence is found by the dissectors (STUN message types, attributes and REALM, STUN with the
app's own servers, Telegram reflectors); this module spreads it: a bounded, expiring cache of
the endpoints that evidence named, handed to later flows from or to them, and to UDP flows
already running between them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from testbed.core.flow import Flow
from testbed.core.labels import CALL_APP_LABELS, AddressList, Label
from testbed.core.packet import Packet

__all__ = [
    "CALL_APP_OF",
    "DEFAULT_ENDPOINT_CACHE_SIZE",
    "DEFAULT_ENDPOINT_CACHE_TTL",
    "TELEGRAM_REFLECTOR_PORTS",
    "CallAttribution",
    "EndpointCache",
]

DEFAULT_ENDPOINT_CACHE_SIZE = 4096
# A call's media flow starts within seconds of its STUN exchange; entries live 10 minutes
# (refreshed on use), long enough for a call's later flows, short enough that a reused local
# port soon stops inheriting a call label.
DEFAULT_ENDPOINT_CACHE_TTL = 600.0

# Telegram call reflectors: UDP 596-599 and 1400 on 91.108.x.x (censor-behaviors.md H.20,
# tgcalls "phoneConnection" entries). By address: 590-1400, and only with an endpoint inside
# Telegram's published ranges.
TELEGRAM_REFLECTOR_PORTS = range(590, 1401)

# The app label each call-app label implies.
CALL_APP_OF: dict[str, str] = {Label.WHATSAPP_CALL: Label.WHATSAPP, Label.TELEGRAM_CALL: Label.TELEGRAM}

Endpoint = tuple[bytes, int]


class EndpointCache:
    """Bounded LRU of (address, port) -> call-app labels, entries expiring after ``ttl`` s."""

    __slots__ = ("_d", "size", "ttl", "hits")

    def __init__(self, size: int, ttl: float) -> None:
        self._d: OrderedDict[Endpoint, tuple[float, frozenset[str]]] = OrderedDict()
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


class CallAttribution:
    """The endpoint cache plus the live UDP flows by endpoint, so that evidence learnt on one
    flow reaches the call's other flows, later ones and those already running."""

    __slots__ = ("address_lists", "cache", "_udp_flows_at")

    def __init__(self, address_lists: Mapping[str, AddressList], cache: EndpointCache) -> None:
        self.address_lists = address_lists
        self.cache = cache
        self._udp_flows_at: dict[Endpoint, set[Flow]] = {}

    def on_new_udp_flow(self, flow: Flow, packet: Packet, now: float) -> None:
        """A Telegram reflector by address, what the cache knows of the endpoints, and the flow
        registered under both endpoints for later evidence."""
        tg = self.address_lists.get("telegram")
        if tg is not None and (
            (packet.dport in TELEGRAM_REFLECTOR_PORTS and packet.dst in tg)
            or (packet.sport in TELEGRAM_REFLECTOR_PORTS and packet.src in tg)
        ):
            flow.labels.add(Label.TELEGRAM_CALL)
        self.carry_from_cache(flow, now)
        if packet.sport and packet.dport:
            at = self._udp_flows_at
            at.setdefault((flow.initiator_addr, flow.initiator_port), set()).add(flow)
            at.setdefault((flow.responder_addr, flow.responder_port), set()).add(flow)

    def forget(self, flow: Flow) -> None:
        """A UDP flow ended: later evidence no longer reaches it."""
        for ep in ((flow.initiator_addr, flow.initiator_port), (flow.responder_addr, flow.responder_port)):
            at = self._udp_flows_at.get(ep)
            if at is not None:
                at.discard(flow)
                if not at:
                    del self._udp_flows_at[ep]

    def carry_from_cache(self, flow: Flow, now: float) -> bool:
        cache = self.cache
        got = cache.get(flow.initiator_addr, flow.initiator_port, now)
        got2 = cache.get(flow.responder_addr, flow.responder_port, now)
        if got is None and got2 is None:
            return False
        before = len(flow.labels)
        for labels in (got, got2):
            for lbl in labels or ():
                flow.labels.add(lbl)
                app = CALL_APP_OF.get(lbl)
                if app is not None:
                    flow.labels.add(app)
        return len(flow.labels) != before

    def learn(self, flow: Flow, named: Iterable[Endpoint], now: float) -> None:
        """Remember the endpoints of a flow with a call-app label, and those its STUN ``named``."""
        apps = frozenset(flow.labels & CALL_APP_LABELS)
        if not apps:
            return
        cache = self.cache
        # The initiator is the app's side: clients start STUN towards relays/peers. The relay's
        # service address:port (the responder) is shared by every user of that relay, so it is
        # not learnt; a relayed transport address (XOR-RELAYED-ADDRESS) is per allocation.
        for addr, port in ((flow.initiator_addr, flow.initiator_port), *named):
            cache.add(addr, port, apps, now)
            # Flows that started before the evidence (a P2P media flow racing the relay's STUN
            # exchange, or one already past its inspection budget) join the call too.
            for other in self._udp_flows_at.get((addr, port), ()):
                if not apps <= other.labels:
                    other.labels.update(apps)
                    other.labels.update(CALL_APP_OF[a] for a in apps)

    def app_by_address(self, flow: Flow) -> Label | None:
        """The call app whose own servers (address lists) are one end of ``flow``: STUN with
        them is the app's call signalling, not a web page (nDPI attributes STUN likewise)."""
        for name, label in (("whatsapp", Label.WHATSAPP_CALL), ("telegram", Label.TELEGRAM_CALL)):
            al = self.address_lists.get(name)
            if al is not None and (flow.responder_addr in al or flow.initiator_addr in al):
                return label
        return None

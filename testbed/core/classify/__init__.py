"""The censor's eyes: runs the dissectors over each flow's first packets and labels the flow.

One classification path (ARCHITECTURE.md): the censor engine and ``testbed classify`` both call
``Classifier.observe(packet, now)``. Rules of this package:

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
6. What a flow's inspection remembers is typed, per protocol (state.py), created when first
   needed and dropped when inspection ends.

Layout: classifier.py (``Classifier``: flow table, counting, dispatch, budget), udp.py and
tcp.py (one inspector per transport), stun.py, vpn.py, hellos.py (per-protocol inspection
shared by both transports), attribution.py (call-app evidence spread through the endpoint
cache), ports.py (port guesses), state.py (per-flow inspection state).
"""

from __future__ import annotations

from testbed.core.classify.attribution import (
    DEFAULT_ENDPOINT_CACHE_SIZE,
    DEFAULT_ENDPOINT_CACHE_TTL,
    TELEGRAM_REFLECTOR_PORTS,
    EndpointCache,
)
from testbed.core.classify.classifier import DEFAULT_INSPECT_PACKETS, Classifier, Observation
from testbed.core.classify.ports import PORT_GUESS_LABELS, without_port_guess
from testbed.core.classify.state import ClassifierState

__all__ = [
    "DEFAULT_ENDPOINT_CACHE_SIZE",
    "DEFAULT_ENDPOINT_CACHE_TTL",
    "DEFAULT_INSPECT_PACKETS",
    "PORT_GUESS_LABELS",
    "TELEGRAM_REFLECTOR_PORTS",
    "Classifier",
    "ClassifierState",
    "EndpointCache",
    "Observation",
    "without_port_guess",
]

"""Port guesses: nDPI's "Match by port", for flows no dissector recognised."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from testbed.core.flow import Flow
from testbed.core.labels import PROTOCOL_LABELS, Label

__all__ = ["PORT_GUESS_LABELS", "guess_by_port", "without_port_guess"]

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


def guess_by_port(flow: Flow) -> None:
    """A flow no dissector recognised, on a port that belongs to a protocol we label, gets that
    label plus ``by-port`` so a policy can tell guesses from recognitions: rules ignore them
    unless they ask (``without_port_guess``). Never an app or call label."""
    if flow.labels & PROTOCOL_LABELS:
        return
    proto = flow.key.proto
    label = _PORT_GUESSES.get((proto, flow.responder_port)) or _PORT_GUESSES.get((proto, flow.initiator_port))
    if label is not None:
        flow.labels.add(label)
        flow.labels.add(Label.BY_PORT)

"""``syn_from`` (censor-behaviors.md A.1): TSPU censors only connections whose first SYN came from
inside; a sequence that starts from the remote side never triggers, and a remote-sent SYN
un-blocks, sticky rules and residual blocks included."""

from __future__ import annotations

import pytest
from _dpi_helpers import build_client_hello, tls_record
from test_policy_iran import actions, rules_of
from test_policy_support import ACK, CALLEE, CALLER, SYN, SYNACK, engine, handshake, play, policy, tcp, udp

HELLO = tls_record(build_client_hello(sni="blocked.example"))


def hello(cport: int, t: float) -> tuple[float, bytes]:
    return (t, tcp(CALLER, cport, CALLEE, 443, seq=1000, payload=HELLO))


def data(cport: int, t: float, *, from_server: bool = False) -> tuple[float, bytes]:
    if from_server:
        return (t, tcp(CALLEE, 443, CALLER, cport, seq=5000, ack=1000 + len(HELLO), payload=b"s" * 50))
    return (t, tcp(CALLER, cport, CALLEE, 443, seq=1000 + len(HELLO), payload=b"c" * 50))


def remote_syn(cport: int, t: float) -> tuple[float, bytes]:
    """The server answers with a SYN of its own (simultaneous open; a server-side evasion)."""
    return (t, tcp(CALLEE, 443, CALLER, cport, flags=SYN, seq=4999, ack=0))


SNI_RULE = "{name: sni, match: {syn_from: inside, sni: blocked.example}, action: drop}"


def test_a_connection_started_from_inside_is_censored() -> None:
    vs = play(engine(policy(rules_of(SNI_RULE))), handshake(CALLER, 1, CALLEE, 443) + [hello(1, 0.1)])
    assert actions(vs) == ["accept"] * 3 + ["drop"]


def test_a_sequence_started_from_outside_never_triggers() -> None:
    # The server's SYN comes first (to the client's port 1): the outside sent the first SYN.
    pk = [remote_syn(1, 0.0), (0.01, tcp(CALLER, 1, CALLEE, 443, flags=SYNACK, seq=999, ack=5000)),
          (0.02, tcp(CALLEE, 443, CALLER, 1, flags=ACK, seq=5000, ack=1000)), hello(1, 0.1)]  # fmt: skip
    assert actions(play(engine(policy(rules_of(SNI_RULE))), pk)) == ["accept"] * 4


def test_a_remote_syn_after_the_clients_exempts_the_flow() -> None:
    pk = [(0.0, tcp(CALLER, 1, CALLEE, 443, flags=SYN, seq=999, ack=0)), remote_syn(1, 0.01),
          (0.02, tcp(CALLER, 1, CALLEE, 443, flags=SYNACK, seq=999, ack=5000)), hello(1, 0.1)]  # fmt: skip
    assert actions(play(engine(policy(rules_of(SNI_RULE))), pk)) == ["accept"] * 4


def test_a_remote_syn_unblocks_a_sticky_rule() -> None:
    p = policy(rules_of("{name: sni, sticky: true, match: {syn_from: inside, sni: blocked.example}, action: drop}"))
    e = engine(p)
    before = play(e, handshake(CALLER, 1, CALLEE, 443) + [hello(1, 0.1), data(1, 0.2), data(1, 0.3, from_server=True)])
    assert actions(before) == ["accept"] * 3 + ["drop"] * 3
    after = play(e, [remote_syn(1, 0.4), data(1, 0.5), data(1, 0.6, from_server=True)])
    assert actions(after) == ["accept"] * 3


def test_without_syn_from_a_remote_syn_changes_nothing() -> None:
    e = engine(policy(rules_of("{name: sni, sticky: true, match: {sni: blocked.example}, action: drop}")))
    play(e, handshake(CALLER, 1, CALLEE, 443) + [hello(1, 0.1)])
    assert actions(play(e, [remote_syn(1, 0.4), data(1, 0.5)])) == ["drop", "drop"]


def test_a_remote_syn_lets_a_flow_through_the_rules_residual_block() -> None:
    p = policy(rules_of("{name: sni, match: {syn_from: inside, sni: blocked.example}, "
                        "action: {drop: true, block_after: {for: 60s}}}"))  # fmt: skip
    e = engine(p)
    play(e, handshake(CALLER, 1, CALLEE, 443) + [hello(1, 0.1)])
    # A new connection to the blocked server: its SYN is caught by the residual block ...
    assert actions(play(e, [(1.0, tcp(CALLER, 2, CALLEE, 443, flags=SYN, seq=999, ack=0))])) == ["drop"]
    # ... until the server sends a SYN on it: then it goes through, the hello included.
    after = play(e, [remote_syn(2, 1.1), (1.2, tcp(CALLER, 2, CALLEE, 443, flags=SYNACK, seq=999, ack=5000)),
                     hello(2, 1.3)])  # fmt: skip
    assert actions(after) == ["accept"] * 3


def test_udp_uses_the_initiators_side() -> None:
    e = engine(policy(rules_of("{name: u, match: {transport: udp, syn_from: inside}, action: drop}")))
    assert actions(play(e, [(0.0, udp(CALLER, 1, CALLEE, 9)), (0.1, udp(CALLEE, 8, CALLER, 2))])) == ["drop", "accept"]


def test_syn_from_outside() -> None:
    e = engine(policy(rules_of("{name: o, match: {syn_from: outside}, action: drop}")))
    assert actions(play(e, [remote_syn(1, 0.0), (0.1, tcp(CALLER, 2, CALLEE, 443, flags=SYN, seq=1, ack=0))])) == [
        "drop",
        "accept",
    ]


def test_bad_value_is_a_load_error() -> None:
    with pytest.raises(ValueError, match="syn_from"):
        policy(rules_of("{name: x, match: {syn_from: server}, action: drop}"))

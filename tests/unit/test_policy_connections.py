"""Connection-count policing (censor-behaviors.md F.16): the Nth connection to one SNI from one
client subnet within a window, each flow counted once, the table bounded."""

from __future__ import annotations

import pytest
from _dpi_helpers import build_client_hello, tls_record
from test_policy_iran import actions, rules_of
from test_policy_support import CALLEE, CALLER, engine, handshake, play, policy, tcp

from testbed.core.policy.matchers.connections import ConnectionsMatch

RULE = ("{name: f16, match: {sni: {suffix: [site.example]}, connections: {count: 4, window: 60s, "
        "same: [sni, subnet/24]}}, action: drop}")  # fmt: skip


def hello_flow(cport: int, t: float, *, client: str = CALLER, sni: str = "site.example") -> list[tuple[float, bytes]]:
    """Handshake, ClientHello, one more client packet."""
    hello = tls_record(build_client_hello(sni=sni))
    return handshake(client, cport, CALLEE, 443, t=t) + [
        (t + 0.01, tcp(client, cport, CALLEE, 443, seq=1000, payload=hello)),
        (t + 0.02, tcp(client, cport, CALLEE, 443, seq=1000 + len(hello), payload=b"\x17\x03\x03\x00\x01x")),
    ]


def last_two(vs: list[str]) -> list[str]:
    return vs[-2:]


def test_the_fourth_connection_within_the_window_is_caught_and_stays_caught() -> None:
    p = policy(rules_of(RULE))
    e = engine(p)
    got = [last_two(actions(play(e, hello_flow(10 + i, t=0.4 * i)))) for i in range(5)]
    assert got == [["accept", "accept"]] * 3 + [["drop", "drop"]] * 2
    assert p.summary()["rules"][0]["matched_flows"] == 2


def test_connections_older_than_the_window_do_not_count() -> None:
    e = engine(policy(rules_of(RULE)))
    times = [0.0, 1.0, 2.0, 61.5, 62.5, 63.0, 63.5, 64.0]
    got = [last_two(actions(play(e, hello_flow(10 + i, t=t))))[0] for i, t in enumerate(times)]
    # At 61.5 only 2.0's connection is within 60 s (61.5 is the 2nd); at 62.5 only 61.5's (2nd
    # again); 63.0 is the 3rd, 63.5 the 4th.
    assert got == ["accept"] * 6 + ["drop", "drop"]


def test_the_key_parts_subnet_and_sni() -> None:
    e = engine(policy(rules_of(RULE)))
    flows = [
        hello_flow(10, 0.0),
        hello_flow(11, 0.1, client="10.0.1.77"),  # same /24
        hello_flow(12, 0.2, client="10.0.7.2"),  # another /24: its own count
        hello_flow(13, 0.3, sni="www.site.example"),  # another SNI: its own count
        hello_flow(14, 0.4, client="10.0.1.200"),
    ]  # the same /24 and SNI: the 3rd
    assert [last_two(actions(play(e, f)))[0] for f in flows] == ["accept"] * 5
    assert last_two(actions(play(e, hello_flow(15, 0.5))))[0] == "drop"  # the 4th


def test_flows_the_rest_of_the_match_refuses_are_not_counted() -> None:
    e = engine(policy(rules_of(RULE)))
    for i in range(5):
        play(e, hello_flow(10 + i, 0.1 * i, sni="other.example"))
    assert [last_two(actions(play(e, hello_flow(20 + i, 1 + 0.1 * i))))[0] for i in range(4)] == ["accept"] * 3 + [
        "drop"
    ]


def test_the_table_is_bounded() -> None:
    p = policy(rules_of("{name: c, match: {connections: {count: 2, window: 60s, same: [client]}}, action: drop}"))
    m = p.rules[0].dynamic[-1]
    assert isinstance(m, ConnectionsMatch)
    m.max_keys = 3
    e = engine(p)
    for i in range(10):
        play(e, handshake(f"10.0.1.{i + 10}", 1000, CALLEE, 443, t=i))
    assert len(m) == 3 and m.evicted == 7


@pytest.mark.parametrize(
    ("bad", "needle"),
    [("{count: 4}", "window"), ("{count: 0, window: 60s}", "count"), ("{count: 4, window: 0s}", "longer than 0"),
     ("{count: 4, window: 60s, same: [ip]}", "not a key part"),
     ("{count: 4, window: 60s, same: [subnet/200]}", "0-128"),
     ("{count: 4, window: 60s, same: [sni, sni]}", "once")],
)  # fmt: skip
def test_bad_values_are_load_errors(bad: str, needle: str) -> None:
    with pytest.raises(ValueError, match="connections") as err:
        policy(rules_of(f"{{name: x, match: {{connections: {bad}}}, action: drop}}"))
    assert needle in str(err.value)

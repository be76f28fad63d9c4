"""The policy IR: plain records in core, compiled from the schema, carried as JSON to the censor."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from test_policy_support import CALLEE, CALLER, INSIDE, NODES, engine, ir, play, tcp, udp

from testbed.core import craft, policy_kinds
from testbed.core.labels import AddressList
from testbed.core.policy import compile_policy
from testbed.core.policy_ir import (
    ActionIR,
    AddressesIR,
    MatchIR,
    PolicyIR,
    PolicyIRError,
    RuleIR,
    SettingsIR,
)
from testbed.core.policy_kinds import BlockKey, IcmpCode, PacketDirection, Transport
from testbed.scenario import policy_schema

# Every matcher and action kind, nested matches and lists: what the JSON form must carry.
RICH = """
lists:
  relays: [relay, 91.108.4.0/22]
  fromfile: {file: extra.txt}
rules:
  - name: everything
    sticky: true
    match:
      labels: {any: [stun, relays]}
      transport: [udp, tcp]
      src: caller
      dst: [{list: relays}, 10.9.0.0/16]
      addr: {addresses: [callee], list: [whatsapp]}
      src_port: [1000-2000]
      dst_port: 443
      port: [[1, 2], 5]
      initiator: inside
      direction: original
      sni: {exact: [A.example], suffix: [twitter.com], substring: [t.co], regex: ['^x+\\.com$']}
      alpn: [h2]
      ech: false
      fingerprint: {ja3: [ABCDEF], ja4: [t13d], ja3s: [x]}
      groups: {order: [x25519, 23], hello: server}
      payload: [{offset: 0x5A, hex: '1D 00', mask: 'FF 0F', in: client_hello}]
      size: 100-200
      payload_size: {max: 1200}
      packet_index: 3
      data_packet: 1-2
      flow_bytes: 16KB-1MB
      age: 1s-2s
      handshake: true
      time: {from: 5s, until: 100s, every: 10s, active: 3s}
      not: {dst_port: 53}
      any: [{transport: udp}, {labels: dtls}]
      all: [{size: {min: 40}}]
    action:
      throttle: {rate: 130kbit, mode: shape, per: flow}
      delay: {time: 50ms, jitter: 5ms, distribution: pareto, reorder: true}
      loss: {model: gilbert-elliott, p: 1%}
      cut: {after_packets: 25, after_bytes: 16KB, from: match, then: reject}
      block_after: {for: 75s, key: 3-tuple, then: reject, restart: true}
      direction: both
  - {name: refuse, match: {transport: udp}, action: {reject: {with: icmp, icmp: admin}}}
  - {name: rst, action: {reject: {with: rst, to: client}}}
policy: {inspect_packets: 5, max_events: 7, max_residual: 9, max_held: 11}
"""


def test_the_ir_round_trips_through_json_text() -> None:
    got = ir(RICH)
    text = json.dumps(got.to_json())
    assert PolicyIR.from_json(json.loads(text)) == got
    # Defaults and units are resolved on the scenario's side: the IR holds numbers.
    t = got.rules[0].action.throttle
    assert t is not None and (t.rate, t.burst, t.backlog) == (16250.0, 16250, 8125)
    loss = got.rules[0].action.loss
    assert loss is not None and (loss.r, loss.loss_bad, loss.loss_good) == (pytest.approx(0.99), 1.0, 0.0)
    assert got.rules[0].match.initiator_inside is True
    assert [ls.name for ls in got.lists] == ["relays", "fromfile"]
    assert got.settings == SettingsIR(5, 7, 9, 11)


def test_the_json_form_is_plain_data() -> None:
    data = ir(RICH).to_json()
    payload = data["rules"][0]["match"]["payload"][0]
    assert payload == {"hex": "1d00", "offset": 0x5A, "mask": "ff0f", "within": "client_hello"}
    assert data["rules"][0]["match"]["not"] == json.loads(json.dumps(data["rules"][0]["match"]["not"]))
    assert data["rules"][1]["action"]["reject"] == {"with": "icmp", "to": "both", "icmp": "admin"}
    assert data["rules"][0]["action"]["block_after"]["key"] == "3-tuple"


def _bad(path: list[Any], value: Any) -> dict[str, Any]:
    data = ir(RICH).to_json()
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["rules", 1, "action", "reject", "icmp"],
            "bogus",
            "policy.rules[1].action.reject.icmp: 'bogus' is not one of",
        ),  # fmt: skip
        (["rules", 0, "name"], KeyError, "policy.rules[0]: missing key 'name'"),
        (["rules", 0, "match", "size", "min"], "100", "policy.rules[0].match.size.min: expected float"),
        (["rules", 0, "match", "payload", 0, "hex"], "zz", "policy.rules[0].match.payload[0].hex: expected hex bytes"),
        (["rules", 0, "match", "port", 0], [1], "policy.rules[0].match.port[0]: expected 2 items"),
        (["rules", 0, "sticky"], 1, "policy.rules[0].sticky: expected bool"),
        (["settings", "max_held"], True, "policy.settings.max_held: expected int"),
        (["rules", 0, "match", "surprise"], 1, "policy.rules[0].match: unknown key(s) surprise"),
        (["lists"], {}, "policy.lists: expected an array"),
    ],
)
def test_from_json_names_the_bad_value(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(PolicyIRError) as err:
        PolicyIR.from_json(_bad(path, value))
    assert str(err.value).startswith(message)


def test_core_builds_a_policy_from_ir_alone() -> None:
    # No scenario schema involved: an IR written by hand is a policy.
    hand = PolicyIR(
        rules=(
            RuleIR(
                name="no-udp-to-callee",
                match=MatchIR(transport=(Transport.UDP,), dst=AddressesIR(addresses=("callee",))),
                action=ActionIR(direction=PacketDirection.BOTH, drop=True),
            ),
        ),
        lists=(),
        settings=SettingsIR(inspect_packets=20, max_events=10, max_residual=10, max_held=10),
    )
    from_yaml = ir("rules: [{name: no-udp-to-callee, match: {transport: udp, dst: callee}, action: drop}]")
    assert hand.rules == from_yaml.rules
    p = compile_policy(hand, resolve_node=NODES.__getitem__, inside_addresses=INSIDE, seed=1)
    vs = play(engine(p), [(0.0, udp(CALLER, 4000, CALLEE, 5000)), (0.1, tcp(CALLER, 4001, CALLEE, 443))])
    assert [v.action.value for v in vs] == ["drop", "accept"]
    assert p.rules[0].describe == "drop (both)"


def test_describe_matches_the_action() -> None:
    got = ir(RICH)
    assert got.rules[0].action.describe() == "cut+loss+throttle+delay+block_after (both)"
    assert ir("rules: [{name: d, action: {delay: 1s}}]").rules[0].action.describe() == "delay (original)"


def test_one_enum_per_concept() -> None:
    # The schema validates into the core's enums; nothing is converted by value any more.
    assert policy_schema.BlockKey is BlockKey and policy_schema.IcmpCode is IcmpCode
    assert craft.IcmpCode is policy_kinds.IcmpCode
    assert not hasattr(policy_schema, "IcmpKind")
    got = ir(RICH)
    block = got.rules[0].action.block_after
    assert block is not None and block.key is BlockKey.TUPLE3
    p = compile_policy(got, resolve_node=NODES.__getitem__, inside_addresses=INSIDE, seed=1,
                       read_file=lambda path: "192.0.2.0/24\n")  # fmt: skip
    residual = p.rules[0].residual
    assert residual is not None and residual.key is BlockKey.TUPLE3
    reject = p.rules[1].reject
    assert reject is not None and reject.icmp is IcmpCode.ADMIN and reject.icmp.v4 == 13


def test_address_list_merged_keeps_both_and_changes_neither() -> None:
    a = AddressList.from_networks("a", ["10.0.0.0/8", "fd00::/16"], source="x")
    b = AddressList.from_networks("b", ["192.0.2.1", "10.1.0.0/16"])
    m = a.merged(b)
    assert (m.name, m.source, len(m)) == ("a", "x", 4)
    for addr in ("10.2.3.4", "fd00::1", "192.0.2.1"):
        assert ipaddress.ip_address(addr).packed in m
    assert ipaddress.ip_address("192.0.2.1").packed not in a and len(a) == 2 and len(b) == 2

"""The policy schema: units, shorthands, precise error locations, round trips, references."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from testbed.scenario import common, model
from testbed.scenario.policy_schema import (
    BlockKey,
    Distribution,
    LossModel,
    PacketDirection,
    PayloadScope,
    PolicySpec,
    RejectWith,
    ThrottleMode,
    ThrottlePer,
    parse_duration,
    parse_probability,
    parse_rate,
    parse_size,
    policy_reference_problems,
)

EXAMPLE = """
lists:
  telegram: [relay, 91.108.4.0/22]
  hosting: {file: hosting.txt}
rules:
  - name: block-whatsapp-calls
    match: {labels: [whatsapp-call]}
    action: drop
  - name: twitter-throttle
    match: {sni: {suffix: [twimg.com, twitter.com], substring: [t.co]}, initiator: inside}
    action: {throttle: {rate: 130kbit, burst: 16KB, mode: police, per: direction}, direction: both}
  - name: l4-freeze
    match: {transport: tcp, dst: {list: hosting}}
    action: {cut: {after_bytes: 16KB, then: drop}}
  - name: lossy-stun
    match: {labels: [stun]}
    action:
      loss: {model: gilbert-elliott, p: 1%, r: 30%}
      delay: {time: 50ms, jitter: 20ms, distribution: normal}
      direction: both
  - name: quic-v1
    match:
      transport: udp
      dst_port: 443
      direction: original
      payload_size: {min: 1001}
      payload: {offset: 1, hex: "00 00 00 01"}
    action: {drop: true, block_after: {for: 420s, key: 3-tuple}}
  - name: lift-and-restore
    match: {time: {from: 10s, every: 60s, active: 30s}, not: {sni: example.com}}
    action: {reject: rst}
"""


def load(text: str) -> PolicySpec:
    return PolicySpec.model_validate(yaml.safe_load(text))


def errors_of(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        PolicySpec.model_validate(data)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def rule(action: Any, match: dict[str, Any] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"name": "r", "action": action}
    if match is not None:
        r["match"] = match
    return {"rules": [r]}


# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bytes_per_s"),
    [("130kbit", 16_250.0), ("1Mbit", 125_000.0), ("1mbit/s", 125_000.0), ("8bit", 1.0),
     ("16KB/s", 16_000.0), ("1KiB/s", 1024.0), ("2.5Gbit", 312_500_000.0)],
)  # fmt: skip
def test_rates(text: str, bytes_per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(bytes_per_s)


@pytest.mark.parametrize("text", ["100kbps", "1Mbps", "10Mb/s", "fast", "10 parsecs"])
def test_ambiguous_or_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "n"),
    [(1500, 1500), ("1500", 1500), ("1500B", 1500), ("16KB", 16_000), ("16kB", 16_000),
     ("16KiB", 16_384), ("1MB", 1_000_000), ("1.5KB", 1500)],
)  # fmt: skip
def test_sizes(text: Any, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["16kb", "16Kb", "16kbit", "big", True])
def test_bad_sizes(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_probabilities() -> None:
    assert parse_probability("1%") == pytest.approx(0.01)
    assert parse_probability("0.5%") == pytest.approx(0.005)
    assert parse_probability(0.3) == 0.3
    for bad in (5, "150%", "x", True):
        with pytest.raises(ValueError):
            parse_probability(bad)


@pytest.mark.parametrize("value", [5, 5.5, "5s", "250ms", "2m", "1.5h", "10min", " 3 s "])
def test_durations_agree_with_the_scenario_model(value: Any) -> None:
    # One parser for the whole scenario (testbed.scenario.common), the policy's included.
    assert parse_duration is common.parse_duration
    assert parse_duration(value) == common.parse_duration(value) > 0


def test_node_name_rule_agrees_with_the_scenario_model() -> None:
    from testbed.scenario import policy_schema

    assert policy_schema.NODE_NAME_RE == model.NODE_NAME_RE


# --- the example ------------------------------------------------------------------------------


def test_example_reads_naturally() -> None:
    spec = load(EXAMPLE)
    names = [r.name for r in spec.rules]
    assert names == ["block-whatsapp-calls", "twitter-throttle", "l4-freeze", "lossy-stun", "quic-v1",
                     "lift-and-restore"]  # fmt: skip
    assert spec.lists["telegram"].entries == ("relay", "91.108.4.0/22")
    assert spec.lists["hosting"].file == "hosting.txt"
    assert spec.rules[0].action.drop
    t = spec.rules[1].action.throttle
    assert t is not None and t.rate == 16_250 and t.burst == 16_000
    assert t.mode is ThrottleMode.POLICE and t.per is ThrottlePer.DIRECTION
    assert spec.rules[1].match.sni is not None and spec.rules[1].match.sni.substring == ("t.co",)
    cut = spec.rules[2].action.cut
    assert cut is not None and cut.after_bytes == 16_000
    assert spec.rules[2].match.dst is not None and spec.rules[2].match.dst.lists == ("hosting",)
    a = spec.rules[3].action
    assert a.loss is not None and a.loss.model is LossModel.GILBERT_ELLIOTT
    assert (a.loss.p, a.loss.effective_r, a.loss.effective_loss_bad, a.loss.effective_loss_good) == (
        0.01,
        0.3,
        1.0,
        0.0,
    )
    assert a.delay is not None and a.delay.distribution is Distribution.NORMAL and a.delay.time == 0.05
    assert a.effective_direction is PacketDirection.BOTH
    q = spec.rules[4]
    assert q.match.payload[0].hex == b"\x00\x00\x00\x01" and q.match.payload[0].within is PayloadScope.PACKET
    assert q.match.dst_port == ((443, 443),)
    assert q.action.block_after is not None and q.action.block_after.key is BlockKey.TUPLE3
    assert q.action.block_after.duration == 420.0
    w = spec.rules[5].match.time
    assert w is not None and (w.start, w.period, w.active) == (10.0, 60.0, 30.0)
    assert spec.rules[5].action.reject is not None and spec.rules[5].action.reject.with_ is RejectWith.RST


def test_dump_and_reload_round_trips() -> None:
    spec = load(EXAMPLE)
    again = PolicySpec.model_validate(spec.model_dump(mode="json", by_alias=True))
    assert again == spec


def test_shorthands() -> None:
    spec = load("""
rules:
  - {name: a, match: {labels: stun, transport: udp, dst: relay, port: "590-1400"}, action: {delay: 20ms}}
  - {name: b, match: {sni: [a.com, b.com]}, action: {loss: 2%}}
  - {name: c, match: {groups: [x25519, secp256r1, 24]}, action: reject}
  - {name: d, match: {dst: [relay, {list: telegram}, 10.0.0.0/8]}, action: {block_after: 75s, drop: true}}
  - {name: e, match: {size: "200-1500", packet_index: 3}, action: ignore}
""")
    a, b, c, d, e = spec.rules
    assert a.match.labels is not None and a.match.labels.any_ == ("stun",) and a.match.port == ((590, 1400),)
    assert a.action.delay is not None and a.action.delay.time == 0.02
    assert a.action.effective_direction is PacketDirection.ORIGINAL  # an impairment: one direction
    assert b.match.sni is not None and b.match.sni.exact == ("a.com", "b.com")
    assert b.action.loss is not None and b.action.loss.model is LossModel.BERNOULLI
    assert c.match.groups is not None and c.match.groups.order == (29, 23, 24)
    assert c.action.reject is not None and c.action.reject.with_ is RejectWith.AUTO
    assert d.match.dst is not None and d.match.dst.lists == ("telegram",)
    assert d.match.dst.addresses == ("relay", "10.0.0.0/8")
    assert d.action.block_after is not None and d.action.block_after.duration == 75
    assert e.match.size is not None and (e.match.size.min, e.match.size.max) == (200, 1500)
    assert e.match.packet_index is not None and e.match.packet_index.min == 3 == e.match.packet_index.max


# --- errors point at the key ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "loc", "text"),
    [
        (rule({"drop": True, "throttle": {"rate": "1Mbit"}}), ("rules", 0, "action", "throttle"), "cannot be combined"),
        (rule({"reject": "rst", "drop": True}), ("rules", 0, "action", "reject"), "exclude"),
        (rule({"loss": {"p": "1%", "r": "5%"}}), ("rules", 0, "action", "loss", "r"), "gilbert-elliott"),
        (rule({"loss": {"model": "gilbert-elliott", "p": "1%", "r": 0}}), ("rules", 0, "action", "loss", "r"), "r > 0"),
        (rule({"throttle": {"rate": "100kbps"}}), ("rules", 0, "action", "throttle", "rate"), "ambiguous"),
        (rule({"throttle": {"rate": "1Mbit", "burst": 100}}), ("rules", 0, "action", "throttle", "burst"), "1500"),
        (
            rule({"throttle": {"rate": "1Mbit", "backlog": "10KB"}}),
            ("rules", 0, "action", "throttle", "backlog"),
            "shape",
        ),
        (rule("drop", {"time": {"every": "10s", "active": "20s"}}), ("rules", 0, "match", "time", "active"), "between"),
        (rule("drop", {"time": {"from": "10s", "until": "5s"}}), ("rules", 0, "match", "time", "until"), "after"),
        (rule({"cut": {"then": "drop"}}), ("rules", 0, "action", "cut", "then"), "after_packets"),
        (rule("drop", {"dst": "Bad Name"}), ("rules", 0, "match", "dst", "addresses", 0), "node name"),
        (rule("dorp"), ("rules", 0, "action"), "unknown action"),
        (rule("drop", {"sni": {"regex": "("}}), ("rules", 0, "match", "sni", "regex"), "regular expression"),
        (rule("drop", {"payload": {"offset": 1, "hex": "zz"}}), ("rules", 0, "match", "payload", 0, "hex"), "hex"),
        (rule("drop", {"payload": {"hex": "0001", "mask": "ff"}}), ("rules", 0, "match", "payload", 0, "mask"), "mask"),
        (rule("drop", {"dst_port": "70000"}), ("rules", 0, "match", "dst_port"), "port"),
        (rule("drop", {"groups": ["x99999"]}), ("rules", 0, "match", "groups", "order", 0), "unknown group"),
        (rule({"delay": {"jitter": 0}}), ("rules", 0, "action", "delay"), "above 0"),
        (rule({}), ("rules", 0, "action"), "empty action"),
        (rule("drop", {"colour": "red"}), ("rules", 0, "match", "colour"), "Extra inputs"),
        ({"lists": {"Bad": ["10.0.0.0/8"]}}, ("lists",), "list name"),
        ({"lists": {"x": ["nope nope"]}}, ("lists", "x", "entries", 0), "node name"),
        ({"rules": [{"name": "a", "action": "drop"}, {"name": "a", "action": "drop"}]}, ("rules",), "twice"),
    ],
)
def test_errors_name_the_offending_key(data: dict[str, Any], loc: tuple[Any, ...], text: str) -> None:
    errs = errors_of(data)
    locs = [tuple(p for p in e[0] if not (isinstance(p, str) and "[" in p)) for e in errs]
    assert loc in locs, errs
    assert any(text in msg for _, msg in errs), errs


def test_yaml_on_off_keys_are_not_used() -> None:
    # YAML 1.1 reads `on:` as True; the periodic window says `active:` instead.
    with pytest.raises(ValidationError):
        load("rules: [{name: r, match: {time: {every: 10s, on: 5s}}, action: drop}]")


def test_reference_problems_name_nodes_lists_and_labels() -> None:
    spec = load("""
lists:
  mine: [relay, ghost]
rules:
  - {name: a, match: {dst: [nowhere], labels: [whatsap-call]}, action: drop}
  - {name: b, match: {any: [{src: {list: nolist}}, {labels: [mine]}]}, action: drop}
""")
    problems = policy_reference_problems(
        spec.rules, spec.lists, nodes={"caller", "callee", "relay"}, known_labels={"stun", "whatsapp-call"}
    )
    got = {(p, m) for p, m, _ in problems}
    assert (("censor", "lists", "mine"), "unknown node 'ghost'") in got
    assert (("censor", "rules", 0, "match", "dst", "addresses"), "unknown node 'nowhere'") in got
    assert (("censor", "rules", 0, "match", "labels"), "unknown label 'whatsap-call'") in got
    assert (("censor", "rules", 1, "match", "any", 0, "src", "list"), "unknown address list 'nolist'") in got
    assert len(problems) == 4  # `labels: [mine]` is fine: list names are labels too

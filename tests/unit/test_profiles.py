"""Censor profiles (testbed/scenario/profiles.py, testbed/data/censors): every shipped profile loads,
compiles and fires on the behaviour it models (and not beside it); the merge into a scenario's
censor (rule order and prefixes, lists, settings); errors at the right file:line."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from _dpi_helpers import build_client_hello, stun_message, tls_record
from test_dissect_dtls import dtls_handshake, dtls_record, pion_like_server_hello
from test_dissect_quic import DCID, build_initial
from test_policy_support import ACK, PSHACK, SYN, SYNACK, tcp, udp

from testbed.core.classify import Classifier
from testbed.core.dissect.quic import QUIC_V1
from testbed.core.engine import CensorEngine
from testbed.core.policy import compile_policy
from testbed.core.verdict import Action, Verdict
from testbed.errors import ScenarioError
from testbed.scenario.loader import load_scenario, parse_scenario
from testbed.scenario.model import CensorSpec
from testbed.scenario.policy_ir import policy_ir
from testbed.scenario.profiles import (
    apply_profiles,
    load_shipped_profile,
    shipped_profile_names,
)

CLIENT = "198.18.1.2"  # inside
SERVER = "198.18.2.2"  # outside (in the sandbox range the freeze and FET profiles' lists hold)
OTHER = "203.0.113.7"  # outside, not in the sandbox range
NODES = {"caller": [CLIENT], "server": [SERVER]}
Packets = list[tuple[float, bytes]]

REQUIRED = {
    "tspu-2021-twitter", "tspu-2022-sni", "tspu-2022-quic", "tspu-2023-quic-sni", "tspu-2024-youtube",
    "tspu-2025-calls", "tspu-2025-freeze", "tspu-2025-allowlist", "tspu-vpn", "gfw-fet-2023",
    "gfw-quic-sni-2024", "iran-2020-protocol-filter", "china-dtls", "snowflake-2021", "turkmenistan-udp3478",
}  # fmt: skip


def censor_for(names: Sequence[str], **own: object) -> CensorSpec:
    return apply_profiles(CensorSpec.model_validate(own), [load_shipped_profile(n) for n in names])


def engine_for(censor: CensorSpec, *, seed: int = 1) -> CensorEngine:
    policy = compile_policy(
        policy_ir(censor),
        resolve_node=NODES.__getitem__,
        inside_addresses=[CLIENT],
        seed=seed,
        start=0.0,
        read_file=lambda p: Path(p).read_text(encoding="utf-8"),
    )
    classifier = Classifier(
        inspect_packets=censor.inspect_packets,
        reassemble_tls=censor.reassemble_tls,
        extra_address_lists=dict(policy.address_lists),
    )
    return CensorEngine(classifier, policy, start=0.0)


def run(name: str, packets: Packets, **own: object) -> list[Verdict]:
    e = engine_for(censor_for([name], **own))
    return [e.handle(data, now) for now, data in packets]


def handshake(cport: int, server: str = SERVER, sport: int = 443, t: float = 0.0) -> Packets:
    return [
        (t, tcp(CLIENT, cport, server, sport, flags=SYN, seq=999, ack=0)),
        (t + 0.001, tcp(server, sport, CLIENT, cport, flags=SYNACK, seq=4999, ack=1000)),
        (t + 0.002, tcp(CLIENT, cport, server, sport, flags=ACK, seq=1000, ack=5000)),
    ]


def hello_flow(sni: str, cport: int = 40000, server: str = SERVER) -> Packets:
    rec = tls_record(build_client_hello(sni=sni))
    return handshake(cport, server) + [(0.01, tcp(CLIENT, cport, server, 443, seq=1000, payload=rec))]


def quic_initial(sni: str) -> bytes:
    return build_initial(QUIC_V1, DCID, [(0, build_client_hello(sni=sni, alpn=[b"h3"]))])


def wireguard_init() -> bytes:
    return b"\x01\x00\x00\x00" + struct.pack("<I", 5) + bytes(range(140))


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# --- the catalogue ------------------------------------------------------------------------------


def test_the_catalogue_ships_every_profile_the_issue_names() -> None:
    assert REQUIRED <= set(shipped_profile_names())


@pytest.mark.parametrize("name", shipped_profile_names())
def test_shipped_profile_loads_compiles_and_is_documented(name: str) -> None:
    profile = load_shipped_profile(name)
    spec = profile.spec
    assert spec.name == name  # the file name is the profile's name
    assert spec.summary and spec.country and spec.observed and spec.confidence and spec.notes is not None
    assert spec.catalogue_entries, "cite the catalogue entry (e.g. A.2)"
    assert [s for s in spec.sources if s not in spec.catalogue_entries], "cite a paper, thread or URL too"
    censor = censor_for([name])
    assert [r.name for r in censor.rules] == [f"{name}/{r.name}" for r in spec.rules]
    engine_for(censor)  # compiles, lists included
    docs = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text(encoding="utf-8")
    assert f"## {name}" in docs


# --- each profile's behaviour: one packet that must match, one that must not --------------------


def last(name: str, packets: Packets, **own: object) -> Verdict:
    return run(name, packets, **own)[-1]


def test_tspu_2021_twitter() -> None:
    v = last("tspu-2021-twitter", hello_flow("pbs.twimg.com"))
    assert v.rule == "tspu-2021-twitter/throttle"
    assert last("tspu-2021-twitter", hello_flow("microsoft.com")).rule == "tspu-2021-twitter/throttle"  # t.co
    assert last("tspu-2021-twitter", hello_flow("example.com")).rule is None
    # No reassembly (B.7): a ClientHello over two segments escapes the throttle.
    rec = tls_record(build_client_hello(sni="twitter.com"))
    split = handshake(40001) + [
        (0.01, tcp(CLIENT, 40001, SERVER, 443, seq=1000, payload=rec[:40])),
        (0.02, tcp(CLIENT, 40001, SERVER, 443, seq=1040, payload=rec[40:])),
    ]
    assert [v.rule for v in run("tspu-2021-twitter", split)] == [None] * 5


def test_tspu_2022_sni() -> None:
    answer = b"\x16\x03\x03" + bytes(60)
    reply = (0.02, tcp(SERVER, 443, CLIENT, 40000, seq=5000, ack=1200, flags=PSHACK, payload=answer))
    v = last("tspu-2022-sni", hello_flow("twitter.com") + [reply])
    assert v.rule == "tspu-2022-sni/sni-i" and v.action is Action.ACCEPT and v.rewrite is not None  # RST/ACK
    v = last("tspu-2022-sni", hello_flow("www.linkedin.com"))
    assert v.rule == "tspu-2022-sni/sni-iv" and v.action is Action.DROP
    assert last("tspu-2022-sni", hello_flow("example.com") + [reply]).rule is None


def test_tspu_2022_quic() -> None:
    big = b"\xc0\x00\x00\x00\x01" + bytes(1100)
    v = last("tspu-2022-quic", [(0.0, udp(CLIENT, 50000, SERVER, 443, big))])
    assert v.rule == "tspu-2022-quic/quic-v1" and v.action is Action.DROP
    small = b"\xc0\x00\x00\x00\x01" + bytes(990)  # 995 B of payload: under the 1001 B threshold
    assert last("tspu-2022-quic", [(0.0, udp(CLIENT, 50000, SERVER, 443, small))]).rule is None


def test_tspu_2023_quic_sni() -> None:
    v = last("tspu-2023-quic-sni", [(0.0, udp(CLIENT, 50000, SERVER, 443, quic_initial("api.twitter.com")))])
    assert v.rule == "tspu-2023-quic-sni/quic-sni" and v.action is Action.DROP
    other = [(0.0, udp(CLIENT, 50000, SERVER, 443, quic_initial("example.com")))]
    assert last("tspu-2023-quic-sni", other).rule is None


def test_tspu_2024_youtube() -> None:
    assert last("tspu-2024-youtube", hello_flow("rr1---sn-abc.googlevideo.com")).rule == "tspu-2024-youtube/googlevideo"
    assert last("tspu-2024-youtube", hello_flow("www.youtube.com")).rule is None


def test_tspu_2025_calls() -> None:
    wa = stun_message(0x0800, [(0x4001, b"\x00\x00\x00\x01"), (0x4000, bytes(20))])
    v = last("tspu-2025-calls", [(0.0, udp(CLIENT, 50000, OTHER, 3478, wa))])
    assert v.rule == "tspu-2025-calls/call-apps" and v.action is Action.DROP
    binding = stun_message(0x0001, [(0x0006, b"user:pass")])
    assert last("tspu-2025-calls", [(0.0, udp(CLIENT, 50000, OTHER, 3478, binding))]).rule is None


def _bulk(cport: int, dport: int, n: int) -> Packets:
    out = handshake(cport, sport=dport)
    for i in range(n):
        out.append((0.01 + i * 0.001, tcp(SERVER, dport, CLIENT, cport, seq=5000 + i * 1000, payload=bytes(1000))))
    return out


def test_tspu_2025_freeze() -> None:
    verdicts = run("tspu-2025-freeze", _bulk(40000, 443, 30))
    assert [v.action for v in verdicts[:25]] == [Action.ACCEPT] * 25  # 25 packets both ways get through
    assert verdicts[25].action is Action.DROP and verdicts[25].rule == "tspu-2025-freeze/freeze-tcp"
    assert {v.action for v in run("tspu-2025-freeze", _bulk(40001, 22, 30))} == {Action.ACCEPT}  # SSH exempt


def test_tspu_2025_allowlist() -> None:
    v = last("tspu-2025-allowlist", hello_flow("example.com"))
    assert v.rule == "tspu-2025-allowlist/tcp-data" and v.action is Action.DROP
    syn = run("tspu-2025-allowlist", hello_flow("example.com"))[0]
    assert syn.action is Action.ACCEPT  # the SYN passes
    v = last("tspu-2025-allowlist", hello_flow("www.gosuslugi.ru"))
    assert v.rule == "tspu-2025-allowlist/allowed-sni" and v.action is Action.ACCEPT


def test_tspu_vpn() -> None:
    v = last("tspu-vpn", [(0.0, udp(CLIENT, 50000, OTHER, 51820, wireguard_init()))])
    assert v.rule == "tspu-vpn/wireguard" and v.action is Action.DROP
    junk_first = [(0.0, udp(CLIENT, 50000, OTHER, 51820, random_bytes(60, 1))),
                  (0.01, udp(CLIENT, 50000, OTHER, 51820, wireguard_init()))]  # fmt: skip
    assert last("tspu-vpn", junk_first).rule is None  # AmneziaWG's junk first (F.14)


def test_tspu_vpn_connection_count() -> None:
    e = engine_for(censor_for(["tspu-vpn"]))
    rules = []
    for i in range(4):
        for now, data in hello_flow("vpn.example", cport=41000 + i):
            v = e.handle(data, now + i * 0.4)
        rules.append(v.rule)
    assert rules == [None, None, None, "tspu-vpn/connection-count"]


def test_gfw_fet_2023() -> None:
    def first_packet(payload: bytes, cport: int) -> Packets:
        # A port per connection: a block holds the (client, server, port) 3-tuple for 180 s.
        return handshake(cport, sport=cport) + [(0.01, tcp(CLIENT, cport, SERVER, cport, seq=1000, payload=payload))]

    e = engine_for(censor_for(["gfw-fet-2023"]), seed=3)
    blocked = 0
    for i in range(40):  # random-looking first packets: about 26% of the connections are blocked
        for now, data in first_packet(random_bytes(400, i), 42000 + i):
            v = e.handle(data, now + i)
        blocked += v.rule == "gfw-fet-2023/fully-encrypted" and v.action is Action.DROP
    assert 3 <= blocked <= 20  # 26.3% of 40 is 10.5
    e = engine_for(censor_for(["gfw-fet-2023"]), seed=3)
    printable = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n" + random_bytes(300, 0)
    for i in range(40):  # a printable prefix is exempt (Ex2), whatever the rest
        for now, data in first_packet(printable, 43000 + i):
            v = e.handle(data, now + i)
        assert v.rule is None


def test_gfw_quic_sni_2024() -> None:
    v = last("gfw-quic-sni-2024", [(0.0, udp(CLIENT, 50000, SERVER, 443, quic_initial("www.google.com")))])
    assert v.rule == "gfw-quic-sni-2024/quic-sni" and v.action is Action.DROP
    # The source port below the destination's: not inspected (I.27).
    low_port = [(0.0, udp(CLIENT, 400, SERVER, 443, quic_initial("www.google.com")))]
    assert last("gfw-quic-sni-2024", low_port).rule is None


def test_iran_2020_protocol_filter() -> None:
    junk = handshake(40000) + [(0.01, tcp(CLIENT, 40000, SERVER, 443, seq=1000, payload=random_bytes(100, 7)))]
    v = last("iran-2020-protocol-filter", junk)
    assert v.rule == "iran-2020-protocol-filter/protocol-filter" and v.action is Action.DROP
    assert last("iran-2020-protocol-filter", hello_flow("example.com")).rule is None


def test_china_dtls() -> None:
    hello = dtls_record(dtls_handshake(1, build_client_hello(dtls=True, sni="x.example", pad=300)[4:]))
    assert len(hello) > 300
    v = last("china-dtls", [(1.0, udp(CLIENT, 50000, OTHER, 40000, hello))])
    assert v.rule == "china-dtls/dtls-over-200" and v.action is Action.DROP
    # Outside the active half of the minute the block is lifted.
    assert last("china-dtls", [(45.0, udp(CLIENT, 50000, OTHER, 40000, hello))]).rule is None


def test_snowflake_2021() -> None:
    sh = pion_like_server_hello()
    v = last("snowflake-2021", [(0.0, udp(CLIENT, 50000, OTHER, 40000, sh))])
    assert v.rule == "snowflake-2021/pion-server-hello" and v.action is Action.DROP
    fixed = sh[:0x5A] + bytes.fromhex("1d00180017") + sh[0x5A + 5 :]  # the curves reordered
    assert last("snowflake-2021", [(0.0, udp(CLIENT, 50000, OTHER, 40000, fixed))]).rule is None


def test_turkmenistan_udp3478() -> None:
    assert last("turkmenistan-udp3478", [(0.0, udp(CLIENT, 50000, OTHER, 3478, b"x" * 40))]).action is Action.DROP
    assert last("turkmenistan-udp3478", [(0.0, udp(CLIENT, 50000, OTHER, 3479, b"x" * 40))]).rule is None


# --- merging into a scenario ----------------------------------------------------------------------

SCENARIO = """\
name: with-profiles
nodes:
  caller: {side: inside}
  server: {}
  relay: {}
censor:
%s
probes:
  - {name: p, node: caller, run: ["true"]}
"""


def write(tmp_path: Path, censor: str, name: str = "s.yaml", expect: str = "") -> Path:
    path = tmp_path / name
    path.write_text(SCENARIO % censor + expect, encoding="utf-8")
    return path


UDP_RULE = "  - {name: r, match: {transport: udp}, action: drop}"


def profile_text(name: str, *, lists: str = "", rules: str = UDP_RULE) -> str:
    return f"name: {name}\nsummary: a test profile\n{lists}rules:\n{rules}\n"


def test_own_rules_first_then_each_profile_in_order_with_prefixed_names(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(profile_text("mine"), encoding="utf-8")
    path = write(
        tmp_path,
        "  profiles: [tspu-2022-quic, ./mine.yaml]\n  rules: [{name: own, match: {dst_port: 9}, action: drop}]",
        expect="expect:\n  - censor: {rule: tspu-2022-quic/quic-v1, dropped: 0}\n",
    )
    loaded = load_scenario(path)
    assert [r.name for r in loaded.scenario.censor.rules] == ["own", "tspu-2022-quic/quic-v1", "mine/r"]
    assert loaded.scenario.censor.profiles == ("tspu-2022-quic", "./mine.yaml")
    assert loaded.own_censor is not None and [r.name for r in loaded.own_censor.rules] == ["own"]


def test_the_prefixed_name_is_the_deciding_rule_in_verdicts_and_counters() -> None:
    e = engine_for(censor_for(["turkmenistan-udp3478"]))
    v = e.handle(udp(CLIENT, 50000, OTHER, 3478, b"x" * 40), 0.0)
    assert v.rule == "turkmenistan-udp3478/udp-3478"
    summary = e.policy.summary()  # type: ignore[attr-defined]
    assert [r["name"] for r in summary["rules"]] == ["turkmenistan-udp3478/udp-3478"]
    assert summary["rules"][0]["dropped"] == 1


def test_a_scenario_list_points_a_profiles_list_at_its_nodes(tmp_path: Path) -> None:
    # tspu-2025-calls relies on the shipped telegram list; the scenario makes its relay Telegram.
    loaded = load_scenario(write(tmp_path, "  profiles: [tspu-2025-allowlist]\n  lists: {allowlist: [server]}"))
    assert loaded.scenario.censor.lists["allowlist"].entries == ("server",)
    censor = censor_for(["tspu-2025-allowlist"], lists={"allowlist": ["server"]})
    v = engine_for(censor).handle(hello_flow("example.com")[-1][1], 0.0)
    assert v.rule == "tspu-2025-allowlist/allowed-address" and v.action is Action.ACCEPT
    # Without the override the same flow is dropped.
    e = engine_for(censor_for(["tspu-2025-allowlist"]))
    assert [e.handle(d, t) for t, d in hello_flow("example.com")][-1].action is Action.DROP
    # And the freeze profile's hosting list shrinks to one node: another address is not frozen.
    censor = censor_for(["tspu-2025-freeze"], lists={"hosting": ["relay"]})
    NODES["relay"] = ["198.18.3.2"]
    try:
        e = engine_for(censor)
        assert {e.handle(d, t).action for t, d in _bulk(40000, 443, 30)} == {Action.ACCEPT}
    finally:
        del NODES["relay"]


def test_settings_merge_scenario_wins_else_largest_and_reassembly_off(tmp_path: Path) -> None:
    merged = censor_for(["tspu-2021-twitter", "tspu-2022-quic"])
    assert merged.reassemble_tls is False  # the 2021 throttler's parser
    assert censor_for(["tspu-2021-twitter"], reassemble_tls=True).reassemble_tls is True
    (tmp_path / "a.yaml").write_text(profile_text("a") + "policy: {inspect_packets: 30}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(profile_text("b") + "policy: {inspect_packets: 50}\n", encoding="utf-8")
    loaded = load_scenario(write(tmp_path, "  profiles: [./a.yaml, ./b.yaml]"))
    assert loaded.scenario.censor.policy.inspect_packets == 50
    loaded = load_scenario(write(tmp_path, "  profiles: [./a.yaml, ./b.yaml]\n  policy: {inspect_packets: 7}"))
    assert loaded.scenario.censor.policy.inspect_packets == 7


def test_profile_list_files_are_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "nets.txt").write_text("203.0.113.0/24\n", encoding="utf-8")
    (tmp_path / "p" / "x.yaml").write_text(
        profile_text("x", lists="lists: {nets: {file: nets.txt}}\n",
                     rules="  - {name: r, match: {dst: {list: nets}}, action: drop}"),
        encoding="utf-8",
    )  # fmt: skip
    loaded = load_scenario(write(tmp_path, "  profiles: [p/x.yaml]"))
    assert loaded.scenario.censor.lists["nets"].file == str((tmp_path / "p" / "nets.txt").resolve())
    v = engine_for(loaded.scenario.censor).handle(udp(CLIENT, 1, OTHER, 2, b"x"), 0.0)
    assert v.rule == "x/r" and v.action is Action.DROP


# --- errors -------------------------------------------------------------------------------------


def load_error(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_unknown_profile_name_at_its_line_with_did_you_mean(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "  profiles:\n    - tspu-2022-sni\n    - tspu-2025-cals"))
    assert (err.file, err.line, err.key) == (str(tmp_path / "s.yaml"), 9, "censor.profiles[1]")
    assert "unknown censor profile 'tspu-2025-cals'" in str(err) and "did you mean 'tspu-2025-calls'?" in str(err)


def test_profile_path_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    err = load_error(write(tmp_path, "  profiles: [./dir.yaml]"))
    assert err.line == 7 and "is a directory; only regular files are read" in str(err)
    err = load_error(write(tmp_path, "  profiles: [./missing.yaml]"))
    assert err.line == 7 and "no such file" in str(err)


def test_an_error_inside_a_profile_is_at_the_profiles_own_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        profile_text("bad", rules="  - {name: r, match: {transport: udp}, action: drop}\n"
                                  "  - {name: r2, match: {dst_prot: 3}, action: drop}"),
        encoding="utf-8",
    )  # fmt: skip
    err = load_error(write(tmp_path, "  profiles: [./bad.yaml]"))
    assert err.file is not None and err.file.endswith("bad.yaml") and err.line == 5
    assert "unknown key 'dst_prot'" in str(err) and "did you mean 'dst_port'" in str(err)
    assert "profile named at" in str(err) and "s.yaml:7" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: Bad Name\nsummary: x\nrules: [{name: r, action: drop}]\n", 1, "invalid name"),
        ("name: x\nsummary: x\nrules: []\n", 3, "at least one rule"),
        ("name: x\nsummary: x\nobserved: March 2021\nrules: [{name: r, action: drop}]\n", 3, "not a date range"),
        ("name: x\nsummary: x\nconfidence: Q\nrules: [{name: r, action: drop}]\n", 3, "Input should be"),
        ("name: x\nsummary: x\nrules: [{name: r, match: {dst: [server]}, action: drop}]\n", 3,
         "a profile cannot name a scenario's node"),
        ("name: x\nsummary: x\nrules: [{name: r, match: {dst: {list: nope}}, action: drop}]\n", 3,
         "unknown address list 'nope'"),
        ("- just a list\n", 1, "a censor profile is a mapping"),
    ],
)  # fmt: skip
def test_profile_schema_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    err = load_error(write(tmp_path, "  profiles: [./p.yaml]"))
    assert err.file is not None and err.file.endswith("p.yaml") and err.line == line, str(err)
    assert message in str(err)


def test_two_profiles_whose_lists_clash(tmp_path: Path) -> None:
    rules = "  - {name: r, match: {dst: {list: hosting}}, action: drop}"
    for name, net in (("a", "10.0.0.0/8"), ("b", "10.9.0.0/16"), ("c", "10.0.0.0/8")):
        text = profile_text(name, lists=f"lists: {{hosting: [{net}]}}\n", rules=rules)
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    err = load_error(write(tmp_path, "  profiles: [./a.yaml, ./b.yaml]"))
    assert err.line == 7 and err.key == "censor.profiles[1]"
    assert "profiles 'a' (" in str(err) and "'b' (" in str(err) and "both declare address list 'hosting'" in str(err)
    # The same definition twice is one list; a scenario list of that name replaces both.
    same = load_scenario(write(tmp_path, "  profiles: [./a.yaml, ./c.yaml]"))
    assert same.scenario.censor.lists["hosting"].entries == ("10.0.0.0/8",)
    merged = load_scenario(write(tmp_path, "  profiles: [./a.yaml, ./b.yaml]\n  lists: {hosting: [server]}"))
    assert merged.scenario.censor.lists["hosting"].entries == ("server",)


def test_a_profile_named_twice(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text(profile_text("tspu-2022-quic"), encoding="utf-8")
    err = load_error(write(tmp_path, "  profiles: [tspu-2022-quic, ./q.yaml]"))
    assert err.key == "censor.profiles[1]" and "named twice" in str(err)


def test_an_expectation_on_an_unknown_profile_rule(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "  profiles: [tspu-2022-quic]",
                           expect="expect:\n  - censor: {rule: tspu-2022-quic/quic-v2, dropped: 0}\n"))  # fmt: skip
    assert "unknown rule 'tspu-2022-quic/quic-v2'" in str(err) and "did you mean 'tspu-2022-quic/quic-v1'" in str(err)


def test_parse_scenario_resolves_paths_from_base_dir(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(profile_text("mine"), encoding="utf-8")
    text = SCENARIO % "  profiles: [mine.yaml]"
    assert [r.name for r in parse_scenario(text, "x.yaml", base_dir=tmp_path).censor.rules] == ["mine/r"]


# --- `testbed profiles` ---------------------------------------------------------------------------


def test_cli_lists_every_shipped_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["profile", "country", "observed", "summary"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == set(shipped_profile_names())
    assert "Russia" in rows["tspu-2021-twitter"] and "2021-03-10..2021-05-17" in rows["tspu-2021-twitter"]
    assert load_shipped_profile("gfw-fet-2023").spec.summary in rows["gfw-fet-2023"]


def test_cli_shows_one_profile_with_its_rules(capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    assert main(["profiles", "show", "tspu-2022-sni"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tspu-2022-sni: ")
    for text in ("confidence    M/S", "A.2", "emulated", "approximated", "left out", "tspu-2022-sni/sni-i",
                 "action: {reject: rewrite, block_after: {for: 75s, key: 3-tuple, then: reject}}"):  # fmt: skip
        assert text in out
    assert "..." not in out


def test_cli_shows_a_profile_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    (tmp_path / "mine.yaml").write_text(profile_text("mine"), encoding="utf-8")
    assert main(["profiles", "show", str(tmp_path / "mine.yaml")]) == 0
    assert "mine/r" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["profiles", "show", "tspu-2022-sn"],
            "unknown censor profile 'tspu-2022-sn'\n  hint: did you mean 'tspu-2022-sni'?",
        ),
        (["profiles", "show"], "needs a profile name"),
        (["profiles", "show", "/"], "is a directory; only regular files are read"),
    ],
)
def test_cli_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_docs_example_profile_file_loads(tmp_path: Path) -> None:
    from testbed.scenario.profiles import parse_profile

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text(encoding="utf-8")
    block = doc.split("## The profile file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "ranges.txt").write_text("203.0.113.0/24\n", encoding="utf-8")
    profile = parse_profile(block, "doc", base_dir=tmp_path)
    assert profile.name == "my-censor" and profile.spec.notes is not None
    engine_for(apply_profiles(CensorSpec.model_validate({}), [profile]))

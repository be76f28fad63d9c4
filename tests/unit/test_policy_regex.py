"""Policy regexes are RE2: linear-time matching, and constructs RE2 lacks refused at load (issue 14, item 3)."""

from __future__ import annotations

import pytest
from _dpi_helpers import build_client_hello, tls_record
from test_policy_support import CALLEE, CALLER, engine, handshake, play, policy, tcp

from testbed.core.policy_regex import RegexError, compile_regex
from testbed.errors import ScenarioError
from testbed.scenario.loader import parse_scenario


def _tls_flow(sni: str) -> list[tuple[float, bytes]]:
    ch = tls_record(build_client_hello(sni=sni))
    pk = handshake(CALLER, 40000, CALLEE, 443)
    pk.append((0.01, tcp(CALLER, 40000, CALLEE, 443, seq=1000, ack=5000, payload=ch)))
    pk.append((0.02, tcp(CALLEE, 443, CALLER, 40000, seq=5000, ack=1000 + len(ch), payload=b"s" * 100)))
    return pk


# With Python's backtracking `re`, `(a+)+$` against 28 a's and a '!' took ~26 s and each extra
# 'a' doubles it: 200 would not finish this century. The timeout is the guard, not a bound.
@pytest.mark.timeout(20)
@pytest.mark.parametrize(("sni", "hit"), [("a" * 200 + "!", None), ("a" * 200, "evil")])
def test_catastrophic_pattern_runs_in_linear_time_through_the_policy(sni: str, hit: str | None) -> None:
    e = engine(policy("rules:\n  - {name: evil, match: {sni: {regex: ['(a+)+$']}}, action: drop}\n"))
    got = [v.rule for v in play(e, _tls_flow(sni))]
    assert got == [None, None, None, hit, hit]
    assert e.classifier.table  # the flow was classified: the SNI was really looked at
    flow = next(iter(e.classifier.table))
    assert flow.sni == sni


def test_re2_semantics_match_pythons_for_ordinary_patterns() -> None:
    r = compile_regex(r"^r[0-9]+---sn-.*\.googlevideo\.com$")
    assert r.search("r4---sn-abc.googlevideo.com") and not r.search("r4---sn-abc.googlevideo.com.evil")
    assert compile_regex(r"(?i)twitter").search("x.twitter.com")


@pytest.mark.parametrize(
    ("pattern", "construct", "fix"),
    [
        (r"(a)\1", "backreference", "spell the repeated text out"),
        (r"(?P<x>a)(?P=x)", "named backreference", "spell the repeated text out"),
        (r"^(?!www\.)example\.com$", "lookahead", "not: {sni"),
        (r"(?<=cdn)\.example", "lookbehind", "anchor"),
        (r"a++", "possessive quantifier", "drop the trailing `+`"),
        (r"(?>ab)", "atomic group", "drop the `(?>...)`"),
        (r"example\.com\Z", r"`\Z`", r"write `\z`"),
    ],
)
def test_unsupported_constructs_are_named_with_a_fix(pattern: str, construct: str, fix: str) -> None:
    with pytest.raises(RegexError) as info:
        compile_regex(pattern)
    msg = str(info.value)
    assert construct in msg and fix in msg and "RE2" in msg


def test_scenario_with_a_backreference_is_an_error_at_its_line() -> None:
    text = (
        "name: x\n"
        'probes: [{name: p, node: caller, run: ["true"]}]\n'
        "censor:\n"
        "  rules:\n"
        "    - name: r\n"
        "      match:\n"
        "        sni: {regex: ['^(www)\\.\\1$']}\n"
        "      action: drop\n"
    )
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    err = info.value
    assert err.line == 7, str(err)
    assert str(err).startswith("s.yaml:7:")
    assert "backreference" in str(err) and "RE2" in str(err)


def test_scenario_with_a_syntax_error_says_re2() -> None:
    text = "name: x\nprobes: [{name: p, node: caller, run: [\"true\"]}]\ncensor:\n  rules:\n    - {name: r, match: {sni: {regex: ['(']}}, action: drop}\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    assert info.value.line == 5 and "bad regular expression" in str(info.value) and "RE2" in str(info.value)

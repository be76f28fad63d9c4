"""Apps and repeated probes, without namespaces: schema, placeholders, order, cycles, missing
programs, the bounded log, the socket check, the attempts' expectations, the records."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from testbed.apps import LOG_HEAD_BYTES, BoundedLog, listening
from testbed.errors import ScenarioError
from testbed.probes import ProbeResult, check_probe
from testbed.records.app import AppInfo, AppResult
from testbed.records.probe import ProbeAttempt
from testbed.scenario import template
from testbed.scenario.app_schema import AppSpec, app_order, binary_problems
from testbed.scenario.loader import parse_scenario

HEAD = """\
name: apps
vars: {secret: s3cr3t}
nodes:
  caller: {side: inside}
  server:
    services: [{https: {names: [example.com]}}]
    apps:
"""
PROBE = "probes: [{name: p, node: caller, run: ['true']}]\n"


def scenario(apps: str, probes: str = PROBE) -> str:
    return HEAD + apps + probes


def load(apps: str, probes: str = PROBE) -> ScenarioError:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(scenario(apps, probes), "s.yaml")
    return exc.value


def test_an_app_loads_with_every_key() -> None:
    sc = parse_scenario(
        scenario(
            """\
      - name: echo
        run: [socat, "TCP-LISTEN:7000,fork", "EXEC:cat", 7]
        files: {"conf/a.json": '{{"server": "{addr:server}", "key": "{secret}"}}'}
        env: {KEY: "{cert:server}", N: 5}
        ready: {tcp: 7000}
        ready_timeout: 3s
      - name: web
        after: [echo]
        run: ["{python}", -m, http.server, "--directory", "{dir}"]
        ready: {log: "Serving HTTP"}
"""
        )
    )
    echo, web = sc.nodes["server"].apps
    assert echo.run[-1] == "7" and echo.env["N"] == "5" and echo.ready_timeout == 3.0
    assert echo.ready is not None and echo.ready.tcp == 7000
    assert web.after == ("echo",)
    assert sc.variables == {"secret": "s3cr3t"}


def test_placeholders_render_with_literal_braces() -> None:
    value = template.lookup(
        addresses={"server": "198.18.0.2"},
        variables={"secret": "k"},
        certs={"server": ("/c.pem", "/c.key")},
        python="/py",
        rundir="/run/testbed/x",
        appdir="/run/testbed/x/apps/a",
    )
    text = (
        '{{"s": "{addr:server}:{secret}", "c": "{cert:server}", "k": "{key:server}"}} {dir} {rundir} {python} {server}'
    )
    assert template.render(text, value) == (
        '{"s": "198.18.0.2:k", "c": "/c.pem", "k": "/c.key"} /run/testbed/x/apps/a /run/testbed/x /py 198.18.0.2'
    )
    assert template.render("%{{http_code}}", value) == "%{http_code}"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("{nope}", "unknown placeholder {nope}"),
        ("{addr6:server}", "network is IPv4-only (`ip: v4`, the default); set `ip: dual`"),
        ("{addr:ghost}", "{addr:ghost} names no node"),
        ("{cert:caller}", "runs no https or quic service"),
        ("{cert}", "{cert} needs a node"),
        ("{foo:bar}", "unknown placeholder {foo:bar}"),
        ("a { b", "a lone '{'"),
        ("a } b", "a lone '}'"),
        ("%{http_code}", "unknown placeholder {http_code}"),
    ],
)
def test_bad_placeholders_are_errors_at_their_line(word: str, expected: str) -> None:
    err = load(f'      - {{name: a, run: [socat, "{word}"]}}\n')
    assert expected in str(err)
    assert err.line == 8 and err.key == "nodes.server.apps[0].run[1]"


def test_placeholders_in_env_files_and_probes_are_checked_too() -> None:
    assert "nodes.server.apps[0].env.K" in str(load('      - {name: a, run: [socat], env: {K: "{x}"}}\n'))
    assert "nodes.server.apps[0].files.f" in str(load('      - {name: a, run: [socat], files: {f: "{x}"}}\n'))
    err = load("      - {name: a, run: [socat]}\n", 'probes: [{name: p, node: caller, run: [echo, "{dir}"]}]\n')
    assert "a probe has none" in str(err)


def test_probes_keep_their_placeholders() -> None:
    sc = parse_scenario(
        scenario(
            "      - {name: a, run: [socat]}\n",
            'probes: [{name: p, node: caller, run: [curl, "{server}", "{cert:server}", "{python}", "{secret}"]}]\n',
        )
    )
    assert sc.probes[0].run[1] == "{server}"


def test_after_names_an_unknown_app() -> None:
    err = load("      - {name: a, run: [socat], after: [b]}\n")
    assert "unknown app 'b'" in str(err) and err.key == "nodes.server.apps[0].after[0]"


def test_after_cycle_is_an_error_naming_the_cycle() -> None:
    err = load(
        "      - {name: a, run: [socat], after: [c]}\n"
        "      - {name: b, run: [socat], after: [a]}\n"
        "      - {name: c, run: [socat], after: [b]}\n"
    )
    assert "cycle: a -> c -> b -> a" in str(err) and err.line == 8


def test_app_names_are_unique_across_nodes() -> None:
    text = HEAD + "      - {name: a, run: [socat]}\n" + "  other:\n    apps: [{name: a, run: [socat]}]\n" + PROBE
    with pytest.raises(ScenarioError, match="app name 'a' is used twice"):
        parse_scenario(text)


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ("{name: a, run: socat}", "list of words"),
        ("{name: a, run: [yes]}", "quote it"),
        ("{name: a, run: [socat], ready: {tcp: 1, udp: 2}}", "exactly one of"),
        ("{name: a, run: [socat], ready: {log: '(?=x)'}}", "lookahead"),
        ("{name: a, run: [socat], files: {../x: y}}", "relative path"),
        ("{name: a, run: [socat], env: {1X: y}}", "environment variable name"),
        ("{name: a, run: [socat], readyy: {tcp: 1}}", "unknown key 'readyy'"),
    ],
)
def test_bad_app_keys(app: str, expected: str) -> None:
    assert expected in str(load(f"      - {app}\n"))


def test_vars_may_not_shadow_builtins_or_nodes() -> None:
    with pytest.raises(ScenarioError, match="built in"):
        parse_scenario(scenario("      - {name: a, run: [socat]}\n").replace("{secret: s3cr3t}", "{dir: x}"))
    with pytest.raises(ScenarioError, match="a node's address"):
        parse_scenario(scenario("      - {name: a, run: [socat]}\n").replace("{secret: s3cr3t}", "{server: x}"))


def test_a_missing_program_is_a_scenario_error_naming_the_package() -> None:
    apps = {"server": [AppSpec.model_validate({"name": "ss", "run": ["ss-local", "-s", "x"]})]}
    ((path, msg, _),) = binary_problems(apps, which=lambda _w: None)
    assert path == ("nodes", "server", "apps", 0, "run", 0)
    assert "'ss-local' is not installed" in msg and "apt-get install shadowsocks-libev" in msg
    assert binary_problems(apps, which=lambda w: f"/usr/bin/{w}") == []
    # Through the loader, with a program no machine has: exit 2 at the right line.
    err = load("      - {name: a, run: [tb-no-such-program-xyz]}\n")
    assert err.exit_code == 2 and err.line == 8 and "is not installed" in str(err)


def test_programs_known_only_at_run_time_are_not_checked_at_load() -> None:
    apps = {"n": [AppSpec.model_validate({"name": "a", "run": ["{dir}/start.sh"]})]}
    assert binary_problems(apps, which=lambda _w: None) == []


def test_app_order_follows_after_then_the_file() -> None:
    def app(name: str, *after: str) -> tuple[str, AppSpec]:
        return ("n", AppSpec.model_validate({"name": name, "run": ["x"], "after": list(after)}))

    order = app_order([app("client", "server", "relay"), app("server"), app("relay", "server"), app("other")])
    assert [a.name for _, a in order] == ["server", "relay", "client", "other"]


def test_the_log_keeps_its_head_and_last_lines_and_counts_the_rest(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "a.log", head=100, tail_lines=3)
    lines = []
    for i in range(1000):
        lines += log.write(f"line {i:04d}\n".encode())
    log.close()
    text = (tmp_path / "a.log").read_text()
    assert text.startswith("line 0000\nline 0001\n")
    assert text.endswith(("line 0997\nline 0998\nline 0999\n", "line 0998\nline 0999\n"))
    assert "bytes of output left out here" in text
    assert log.total_bytes == 10_000 and 0 < log.dropped_bytes < 10_000
    assert len(text) < 400  # 100 bytes of head, a note, three lines
    assert lines[-1] == b"line 0999" and len(lines) == 1000
    assert log.recent()[-1] == "line 0999" and len(log.recent()) == 20


def test_the_log_bounds_one_endless_line(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "a.log", head=LOG_HEAD_BYTES)
    for _ in range(40):
        assert log.write(b"y" * 65536) == []
    log.close()
    assert (tmp_path / "a.log").stat().st_size < LOG_HEAD_BYTES + 20_000
    assert log.dropped_bytes > 0 and len(log.recent()[-1]) <= 8192


def test_a_short_log_is_written_as_it_is(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "a.log")
    log.write(b"hello\nwor")
    log.write(b"ld\n")
    log.close()
    assert (tmp_path / "a.log").read_bytes() == b"hello\nworld\n" and log.dropped_bytes == 0
    assert log.recent() == ["hello", "world"]


def test_listening_reads_the_process_namespace_tables() -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        udp.bind(("127.0.0.1", 0))
        tport, uport = tcp.getsockname()[1], udp.getsockname()[1]
        assert not listening(os.getpid(), "tcp", tport)  # bound, not listening yet
        tcp.listen()
        assert listening(os.getpid(), "tcp", tport)
        assert listening(os.getpid(), "udp", uport)
        assert not listening(os.getpid(), "udp", tport) or tport == uport


REPEATED = """\
name: r
probes:
  - name: loop
    node: caller
    run: ["true"]
    repeat: {every: 1s, until: 10s}
    expect: EXPECT
"""


def repeated(expect: str) -> ProbeResult:
    return parse_scenario(REPEATED.replace("EXPECT", expect)).probes[0]  # type: ignore[return-value]


def result(exits: list[int | None], start: float = 0.5) -> ProbeResult:
    attempts = tuple(ProbeAttempt(start + i, e, 0.1) for i, e in enumerate(exits))
    return ProbeResult("loop", "caller", ("true",), exits[-1], len(exits), start, "", "", attempts)


def test_success_pct_over_the_attempts() -> None:
    spec = parse_scenario(REPEATED.replace("EXPECT", "{success_pct: {min: 80}}")).probes[0]
    ((what, ok, detail),) = check_probe(spec, result([0] * 9 + [1]))
    assert ok and "9/10 attempts succeeded (90.0%)" in detail and "80%" in what
    ((_, ok, _),) = check_probe(spec, result([0] * 7 + [1, None, 1]))
    assert not ok


def test_blocked_within_needs_an_early_failure_and_no_success_after() -> None:
    spec = parse_scenario(REPEATED.replace("EXPECT", "{blocked_within: 5s}")).probes[0]
    assert check_probe(spec, result([0, 0, 0, 1, 1, None, 1]))[0][1]
    assert not check_probe(spec, result([0] * 7 + [1, 1]))[0][1]  # first failure after 7 s
    ((_, ok, detail),) = check_probe(spec, result([0, 0, 1, 0, 1]))
    assert not ok and "succeeded after it" in detail
    assert not check_probe(spec, result([0] * 5))[0][1]


def test_a_repeated_probe_without_expectations_must_always_succeed() -> None:
    spec = parse_scenario(REPEATED.replace("    expect: EXPECT\n", "")).probes[0]
    ((what, ok, _),) = check_probe(spec, result([0, 0, 1]))
    assert not ok and "100%" in what


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (REPEATED.replace("EXPECT", "{exit: 1}"), "checked over its attempts"),
        (
            REPEATED.replace("    repeat: {every: 1s, until: 10s}\n", "").replace("EXPECT", "{blocked_within: 1s}"),
            "need `repeat",
        ),
        (REPEATED.replace("until: 10s", "until: 0.5s").replace("EXPECT", "{}"), "until must be at least every"),
    ],
)
def test_bad_repeats(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError, match=expected):
        parse_scenario(text)


def test_results_carry_attempts_and_their_summary() -> None:
    doc = result([0, 1, 0, None]).to_json()
    assert doc["success_pct"] == 50.0 and doc["first_failure_s"] == 1.5
    assert [ProbeAttempt.from_json(a) for a in doc["attempts"]] == list(result([0, 1, 0, None]).attempts)
    assert "attempts" not in ProbeResult("p", "n", (), 0, 1.0, 0.0, "", "").to_json()


def test_app_records_round_trip() -> None:
    r = AppResult("echo", "server", 0.001, 0.4, -15, True, "/tmp/x.log", 12)
    assert AppResult.from_json(r.to_json()) == r
    assert set(r.to_json()) >= {"name", "node", "started_s", "ready_s", "exit_code", "alive_at_end", "log"}
    i = AppInfo("echo", "server", 123, "/tmp/x.log")
    assert AppInfo.from_json(i.to_json()) == i


def test_blocked_within_0s_holds_when_the_first_attempt_fails() -> None:
    # The first attempt starts a moment after the probe itself: "0 s" counts from that attempt.
    spec = parse_scenario(REPEATED.replace("EXPECT", "{blocked_within: 0s}")).probes[0]
    r = result([1, 1, 1])
    r = ProbeResult(r.name, r.node, r.argv, r.exit_code, r.duration_s, 0.49, "", "", r.attempts)
    ((_, ok, detail),) = check_probe(spec, r)
    assert ok, detail
    assert not check_probe(spec, result([0, 1, 1]))[0][1]


def test_a_variable_may_use_the_builtin_placeholders() -> None:
    value = template.lookup(
        addresses={"server": "198.18.0.2"},
        variables={"ca": "{rundir}/ca.pem", "peer": "{addr:server}:51820"},
        certs={},
        python="/py",
        rundir="/run/testbed/x",
    )
    assert template.render("--ca {ca} --peer {peer}", value) == "--ca /run/testbed/x/ca.pem --peer 198.18.0.2:51820"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("{nope}/x", "unknown placeholder {nope}"), ("{other}", "unknown placeholder {other}"), ("{dir}", "{dir}")],
)
def test_a_variable_with_a_bad_placeholder_is_an_error_at_its_line(value: str, expected: str) -> None:
    text = f"name: v\nvars:\n  other: o\n  bad: '{value}'\nprobes: [{{name: p, node: caller, run: ['true']}}]\n"
    with pytest.raises(ScenarioError, match=re.escape(expected)) as err:
        parse_scenario(text)
    assert err.value.line == 4, str(err.value)

"""Node services through a real censor, with real curl: a stalled TLS client does not take the
https service down for later clients; the plain-HTTP service, its Host header under DPI, and
uploads counted by the server through a throttle."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (apt-get install curl)"),
]

CLI = [sys.executable, "-m", "testbed.cli"]
# Probe words substitute {name}; curl's write-out variables take the literal-brace escape
# (%{{http_code}}, doubled again here by the f-string).


def _run(tmp_path: Path, text: str) -> dict[str, Any]:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text)
    out = tmp_path / "out.json"
    proc = subprocess.run([*CLI, "run", str(scenario), "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert out.exists(), proc.stdout + proc.stderr
    (sc,) = json.loads(out.read_text())["scenarios"]
    assert sc["error"] is None, sc["error"]
    return dict(sc)


def _probes(sc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in sc["probes"]}


def _rule(sc: dict[str, Any], name: str) -> dict[str, Any]:
    censor = sc["censor"]
    rules = censor.get("rules") or censor.get("policy", {}).get("rules")
    return dict(next(r for r in rules if r["name"] == name))


def test_stalled_tls_clients_do_not_block_later_ones(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    # An idle TCP connection to :443 and a handshake whose ServerHello the censor rewrites into
    # an RST both leave the server waiting for a client that will never speak; a later client
    # with an allowed SNI must still get its page (it hung forever when the handshake ran in the
    # accept loop).
    idle = "import socket, time; s = socket.create_connection(('{server}', 443)); time.sleep(15)"
    sc = _run(
        tmp_path,
        f"""
name: stalled-tls-clients
nodes:
  caller: {{side: inside}}
  server:
    services: [{{https: {{names: [blocked.example, allowed.example]}}}}]
censor:
  rules:
    - name: sni-rewrite
      match: {{sni: blocked.example}}
      action: {{reject: rewrite}}
probes:
  - name: idle
    node: caller
    run: ["{{python}}", -c, "{idle}"]
  - name: blocked
    node: caller
    start: 1s
    run: [curl, -sS, -o, /dev/null, --max-time, "10", --cacert, "{{cert:server}}", --resolve, "blocked.example:443:{{server}}", "https://blocked.example/"]
    expect: {{exit: nonzero}}
  - name: allowed
    node: caller
    start: 3s
    run: [curl, -sS, --max-time, "40", --cacert, "{{cert:server}}", --resolve, "allowed.example:443:{{server}}", -w, " %{{{{http_code}}}}", "https://allowed.example/"]
    expect: {{exit: 0}}
""",
    )
    probes = _probes(sc)
    assert probes["blocked"]["exit_code"] == 35  # curl: TLS connect error (the forged RST)
    assert _rule(sc, "sni-rewrite")["rewritten"] >= 1
    assert probes["allowed"]["exit_code"] == 0, probes["allowed"]
    assert probes["allowed"]["stdout_tail"] == "ok\n 200"
    assert probes["idle"]["exit_code"] == 0
    assert sc["passed"] is True


HOST_AT = 22  # len("GET / HTTP/1.1\r\nHost: "): curl sends its Host header first


def test_plain_http_service_routes_host_dpi_and_uploads(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    upload = 1_000_000
    sc = _run(
        tmp_path,
        f"""
name: http-service
nodes:
  caller: {{side: inside}}
  server:
    services:
      - http: {{port: 80}}
      - https: {{names: [upload.example]}}
censor:
  rules:
    - name: host-block
      match: {{transport: tcp, dst_port: [80], payload: {{offset: {HOST_AT}, hex: "{b"blocked.example".hex()}"}}}}
      action: {{reject: {{with: rst, to: both}}}}
    - name: upload-throttle
      match: {{transport: tcp, dst_port: [80]}}
      action: {{throttle: {{rate: 2Mbit, burst: 16KB, mode: shape, backlog: 256KB}}}}
probes:
  - name: host-allowed
    node: caller
    run: [curl, -sS, --max-time, "20", -H, "Host: allowed.example", -w, " %{{{{http_code}}}}", "http://{{server}}/"]
  - name: host-blocked
    node: caller
    run: [curl, -sS, --max-time, "20", -H, "Host: blocked.example", "http://{{server}}/"]
    expect: {{exit: nonzero}}
  - name: download
    node: caller
    run: [curl, -sS, --max-time, "20", -o, /dev/null, -w, "%{{{{http_code}}}} %{{{{size_download}}}}", "http://{{server}}/bytes/12345"]
  - name: upload-throttled
    node: caller
    start: 1s
    run: [sh, -c, "head -c {upload} /dev/zero | curl -sS --max-time 60 --data-binary @- -w ' %{{{{http_code}}}} %{{{{size_upload}}}} %{{{{speed_upload}}}}' http://{{server}}/upload"]
  - name: upload-chunked-tls
    node: caller
    run: [sh, -c, "head -c 100000 /dev/zero | curl -sS --max-time 30 -T - --cacert {{cert:server}} --resolve upload.example:443:{{server}} -w ' %{{{{http_code}}}}' https://upload.example/upload"]
  - name: wrong-method
    node: caller
    run: [curl, -sS, --max-time, "20", -o, /dev/null, -w, "%{{{{http_code}}}}", "http://{{server}}/upload"]
""",
    )
    probes = _probes(sc)
    assert sc["passed"] is True, probes
    assert probes["host-allowed"]["stdout_tail"] == "ok\n 200"
    assert probes["host-blocked"]["exit_code"] in (52, 56)  # empty reply / connection reset by the RST
    assert _rule(sc, "host-block")["rejected"] >= 1
    assert probes["download"]["stdout_tail"] == "200 12345"
    # The server counted every byte; the throttle held the upload (shaping) on its way.
    counted, status, sent, speed = probes["upload-throttled"]["stdout_tail"].split()
    assert (counted, status, sent) == (str(upload), "200", str(upload))
    assert float(speed) < 2 * 2_000_000 / 8  # bytes/s: at most about the shaped rate, never faster
    assert _rule(sc, "upload-throttle")["delayed"] > 0
    assert probes["upload-chunked-tls"]["stdout_tail"] == "100000\n 200"
    assert probes["wrong-method"]["stdout_tail"] == "405"


def test_up_lists_the_http_service_and_exec_reaches_it(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    scenario = tmp_path / "up.yaml"
    scenario.write_text(
        "name: http-up\nnodes:\n  caller: {side: inside}\n  server:\n    services: [{http: {port: 8080}}]\n"
        'probes:\n  - {name: p, node: caller, run: ["true"]}\n'
    )
    up = subprocess.run([*CLI, "up", str(scenario)], capture_output=True, text=True, timeout=120)
    # Name the run: other sessions may be up on the same host (parallel tests, a user's own).
    rid = re.search(r"\(run ([0-9a-f]{6})\)", up.stdout)
    run = ["--run", rid.group(1)] if rid else []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert run, up.stdout
        line = next(ln for ln in up.stdout.splitlines() if "service http" in ln)
        assert ":8080" in line and "url http://" in line
        url = line.split("url ", 1)[1].strip() + "upload"
        got = subprocess.run(
            [
                *CLI,
                "exec",
                *run,
                "caller",
                "--",
                "curl",
                "-sS",
                "--max-time",
                "20",
                "--data-binary",
                "hello",
                "-w",
                " %{http_code}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout == "5\n 200"
    finally:
        down = subprocess.run([*CLI, "down", *run], capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr

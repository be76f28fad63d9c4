"""Apps end to end, with real programs in namespaces: socat and python's http.server as apps, a
repeated probe through them, and every kind of bad app (crash, never ready, ignores SIGTERM,
floods its output, missing, in a cycle): each a clear error, and no process outlives its run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

CLI = [sys.executable, "-m", "testbed.cli"]


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (a unique port or sleep length per test)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and "pytest" not in cmd:
                out.append(int(entry))
    return out


def _gone(marker: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pids_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _run(tmp_path: Path, text: str, *extra: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess[str], dict]:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text)
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [*CLI, "run", str(scenario), "--json", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    doc = json.loads(out.read_text())["scenarios"][0] if out.exists() else {}
    return proc, doc


ECHO = """\
name: apps-echo
vars: {greeting: hello-apps}
nodes:
  caller: {side: inside}
  server:
    side: outside
    apps:
      - name: echo
        run: [socat, "TCP-LISTEN:7311,fork,reuseaddr", "EXEC:cat"]
        ready: {tcp: 7311}
      - name: web
        after: [echo]
        run: ["{python}", -m, http.server, "8311", --bind, "{addr:server}", --directory, "{dir}"]
        files: {"index.html": "{greeting}\\n"}
        ready: {log: "Serving HTTP"}
        env: {PYTHONUNBUFFERED: "1"}
probes:
  - name: echo-loop
    node: caller
    run: [sh, -c, "echo ping-{greeting} | socat -t 2 - TCP:{addr:server}:7311"]
    repeat: {every: 0.5s, until: 3s}
    expect: {success_pct: {min: 80}}
  - name: web
    node: caller
    start: 0.5s
    run: [curl, -sS, --max-time, "10", -w, " %{{http_code}}", "http://{addr:server}:8311/index.html"]
"""


def test_apps_serve_a_repeated_probe_and_stop_with_the_run(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    proc, sc = _run(tmp_path, ECHO, "--report", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    echo, web = sc["apps"]
    assert (echo["name"], echo["node"], web["name"]) == ("echo", "server", "web")
    assert echo["ready_s"] is not None and web["started_s"] >= echo["ready_s"]  # `after` order
    assert echo["alive_at_end"] and web["alive_at_end"]
    assert Path(web["log"]).is_file() and "Serving HTTP" in Path(web["log"]).read_text()
    loop = next(p for p in sc["probes"] if p["name"] == "echo-loop")
    assert len(loop["attempts"]) >= 4 and loop["success_pct"] >= 80 and loop["stdout_tail"].strip() == "ping-hello-apps"
    web_probe = next(p for p in sc["probes"] if p["name"] == "web")
    assert web_probe["stdout_tail"].split() == ["hello-apps", "200"]
    assert "apps" in sc["timeline_origin"]
    html = (tmp_path / "report" / "apps-echo.html").read_text()
    assert "logs/apps-echo-" in html and "echo-loop" in html
    assert _gone("TCP-LISTEN:7311") and _gone("8311")


BAD = """\
name: apps-bad
nodes:
  caller: {side: inside}
  server:
    apps:
APP
probes: [{name: p, node: caller, run: ["true"]}]
"""


def test_an_app_that_crashes_at_start_fails_the_run_with_its_output(
    tmp_path: Path, unchanged_host: dict[str, str]
) -> None:
    app = '      - {name: crash, run: [sh, -c, "echo starting 7312; echo no config file >&2; exit 3"], ready: {tcp: 7312}}'
    proc, sc = _run(tmp_path, BAD.replace("APP", app))
    assert proc.returncode == 1
    assert "app 'crash' on server exited with code 3 before it was ready" in sc["error"]
    assert "no config file" in sc["error"] and "Traceback" not in proc.stderr
    (crash,) = sc["apps"]
    assert crash["exit_code"] == 3 and crash["ready_s"] is None and not crash["alive_at_end"]


def test_an_app_that_never_gets_ready_fails_the_run(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    app = '      - {name: idle, run: [sh, -c, "echo waiting; exec sleep 7313"], ready: {udp: 7313}, ready_timeout: 2s}'
    proc, sc = _run(tmp_path, BAD.replace("APP", app))
    assert proc.returncode == 1
    assert "app 'idle' on server was not ready (UDP port 7313 bound) within its ready_timeout of 2 s" in sc["error"]
    assert "waiting" in sc["error"]
    assert _gone("sleep 7313")


def test_an_app_that_dies_mid_run_fails_the_run(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    app = '      - {name: short, run: [sh, -c, "sleep 1; echo bye 7317; exit 4"]}'
    text = BAD.replace("APP", app).replace('run: ["true"]', "run: [sleep, '20']")
    proc, sc = _run(tmp_path, text)
    assert proc.returncode == 1
    assert "app 'short' on server exited with code 4 during the run" in sc["error"] and "bye 7317" in sc["error"]


def test_an_app_that_ignores_sigterm_is_killed_with_its_children(
    tmp_path: Path, unchanged_host: dict[str, str]
) -> None:
    app = """      - {name: stubborn, run: [sh, -c, 'trap "" TERM; sleep 7314'], ready: {after: 0.5s}}"""
    proc, sc = _run(tmp_path, BAD.replace("APP", app))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (stubborn,) = sc["apps"]
    assert stubborn["alive_at_end"] and stubborn["exit_code"] == -9  # SIGKILL after the grace period
    assert _gone("sleep 7314", timeout_s=1.0)  # the shell's child went with it


def test_an_app_flooding_its_output_has_a_bounded_log(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    app = "      - {name: flood, run: ['yes', flood-7315], ready: {after: 3s}}"
    proc, sc = _run(tmp_path, BAD.replace("APP", app), "--report", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (flood,) = sc["apps"]
    log = Path(flood["log"])
    assert flood["dropped_bytes"] > 1 << 20  # more was written than kept
    assert log.stat().st_size < (1 << 20) + 100_000
    text = log.read_text()
    assert "bytes of output left out here" in text and text.rstrip().endswith("flood-7315")
    assert _gone("flood-7315")


def test_missing_program_and_cycle_are_scenario_errors(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    app = "      - {name: ss, run: [ss-local-not-installed-7316, -l, '1080']}"
    proc, _ = _run(tmp_path, BAD.replace("APP", app))
    assert proc.returncode == 2 and "s.yaml:6" in proc.stderr and "is not installed" in proc.stderr
    cycle = "      - {name: a, run: [socat], after: [b]}\n      - {name: b, run: [socat], after: [a]}"
    proc, _ = _run(tmp_path, BAD.replace("APP", cycle))
    assert proc.returncode == 2 and "cycle: a -> b -> a" in proc.stderr and "Traceback" not in proc.stderr


UP = """\
name: apps-up
nodes:
  caller: {side: inside}
  server:
    apps:
      - name: web
        run: ["{python}", -m, http.server, "8318", --bind, "{addr:server}", --directory, "{dir}"]
        files: {"index.html": "up-apps\\n"}
        ready: {tcp: 8318}
"""


def test_up_starts_apps_exec_uses_them_down_stops_them(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    scenario = tmp_path / "up.yaml"
    scenario.write_text(UP)
    up = subprocess.run([*CLI, "up", str(scenario)], capture_output=True, text=True, timeout=120, check=False)
    rid = next((ln.split("(run ")[1].rstrip(")") for ln in up.stdout.splitlines() if ln.startswith("up:")), None)
    try:
        assert up.returncode == 0 and rid is not None, up.stdout + up.stderr
        assert "app web on server" in up.stdout
        got = subprocess.run(
            [
                *CLI,
                "exec",
                "--run",
                rid,
                "caller",
                "--",
                "sh",
                "-c",
                "curl -sS --max-time 10 http://$TESTBED_ADDR_SERVER:8318/",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.stdout.strip() == "up-apps", got.stderr
    finally:
        subprocess.run([*CLI, "down", *(["--run", rid] if rid else [])], capture_output=True, timeout=60, check=False)
    assert _gone("8318")

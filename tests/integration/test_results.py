"""Results survive any traffic, and the CLI never claims success without them (issue 14).

A probe that sends one datagram to each of 250 ports made a censor summary far over the 64 KiB
a pipe line could carry: the run ended in a traceback with no JSON, and `testbed down` said
"removed" without writing its --json file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from testbed.net import names
from testbed.net.runs import owner_alive

pytestmark = pytest.mark.netns

CLI = [sys.executable, "-m", "testbed.cli"]
PORTS = 250
# One datagram to each of 250 ports: 250 flows, each a record in the censor's summary.
SEND_250 = (
    "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    f"[s.sendto(b'x' * 200, (sys.argv[1], p)) for p in range(20000, 20000 + {PORTS})]"
)


def _scenario(tmp_path: Path, *, probe: bool) -> Path:
    name = f"results-{uuid.uuid4().hex[:8]}"
    text = f"name: {name}\nnodes:\n  caller: {{side: inside}}\n  server: {{side: outside}}\n"
    text += "censor:\n  rules:\n    - {name: watch-dns, match: {dst_port: 53}, action: drop}\n"
    if probe:
        text += (
            "probes:\n  - name: udp-250\n    node: caller\n"
            f'    run: ["{{python}}", -c, "{SEND_250}", "{{server}}"]\n'
            "    expect: {exit: 0}\n"
        )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _closed_pipe_run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has gone (``| head -1`` once head has its line)."""
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    try:
        return subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env, check=False)
    finally:
        os.close(w)


def _session_of(scenario: str) -> dict[str, Any]:
    for state_file in names.RUN_ROOT.glob("*/state.json"):
        state = json.loads(state_file.read_text())
        if state["scenario"] == scenario and owner_alive(state_file.parent):
            return dict(state)
    raise AssertionError(f"no live session of {scenario}")


def _up(scenario: Path, json_out: Path) -> str:
    proc = subprocess.run(
        [*CLI, "up", str(scenario), "--json", str(json_out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return str(_session_of(scenario.stem)["run_id"])


def _down(rid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "down", "--run", rid], capture_output=True, text=True, timeout=120)


def test_run_with_a_probe_to_250_ports_keeps_its_results(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run([*CLI, "run", str(_scenario(tmp_path, probe=True)), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sc,) = json.loads(out.read_text())["scenarios"]
    censor = sc["censor"]
    assert censor["flows_total"] >= PORTS
    assert len(censor["flows"]) + censor["flows_omitted"] == censor["flows_total"]
    ports = {int(e.rsplit(":", 1)[1]) for f in censor["flows"] for e in f["endpoints"]}
    assert set(range(20000, 20000 + PORTS)) <= ports
    assert censor["held"]["now"] == 0


def test_up_with_nothing_to_run_exec_250_ports_and_down_writes_the_counters(
    tmp_path: Path, unchanged_host: dict[str, str]
) -> None:
    # `up` takes a scenario with no call or probe: the network is for the user's own tools.
    scenario = _scenario(tmp_path, probe=False)
    json_out = tmp_path / "censor.json"
    rid = _up(scenario, json_out)
    try:
        server = _session_of(scenario.stem)["nodes"]["server"]["addresses"][0]
        sent = subprocess.run([*CLI, "exec", "--run", rid, "caller", "--", sys.executable, "-c", SEND_250, server],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    finally:
        down = _down(rid)
    assert down.returncode == 0, down.stderr
    assert f"down: run {rid} removed" in down.stdout
    doc = json.loads(json_out.read_text())
    assert doc["run_id"] == rid
    assert doc["censor"]["flows_total"] >= PORTS and doc["censor"]["packets"] >= PORTS


def test_down_fails_when_the_counters_were_not_written(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    out_dir = tmp_path / "gone"
    out_dir.mkdir()
    json_out = out_dir / "censor.json"
    rid = _up(_scenario(tmp_path, probe=False), json_out)
    out_dir.rmdir()  # the supervisor cannot write the file any more
    down = _down(rid)
    assert down.returncode == 1, down.stdout + down.stderr
    assert "removed" not in down.stdout
    assert f"run {rid} removed, but the censor's counters are not in {json_out}" in down.stderr
    assert "Traceback" not in down.stderr
    assert not names.run_dir(rid).exists()


def test_up_into_a_closed_pipe_keeps_the_network_up(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    # `testbed up X | head -1`: the reader leaves after one line; the network stays up, `up`
    # says nothing more and succeeds, and `down` takes it down as usual.
    scenario = _scenario(tmp_path, probe=False)
    proc = _closed_pipe_run([*CLI, "up", str(scenario)])
    assert proc.stderr == ""
    assert proc.returncode == 0
    rid = str(_session_of(scenario.stem)["run_id"])
    assert os.path.exists(f"/run/netns/{names.netns_name(rid, 'caller')}")
    down = _down(rid)
    assert down.returncode == 0, down.stderr


def test_run_into_a_closed_pipe_ends_quietly(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    # `testbed run X | head -1` once head has gone: the first result cannot be written; the run
    # stops without a traceback, with SIGPIPE's status, and leaves nothing behind (the fixture).
    out = tmp_path / "out.json"
    proc = _closed_pipe_run([*CLI, "run", "-q", str(_scenario(tmp_path, probe=True)), "--json", str(out)], timeout=300)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141, proc.stderr
    assert json.loads(out.read_text())["scenarios"][0]["passed"] is True  # what finished is kept

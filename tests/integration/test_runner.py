"""End to end: scenario -> namespaces -> NFQUEUE censor -> aiortc call -> JSON -> clean host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.net import names
from testbed.net.strays import pids_in_netns as _pids_in_netns

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "testbed.cli"]


def _long_scenario(tmp_path: Path, seconds: int = 30) -> Path:
    p = tmp_path / "long.yaml"
    p.write_text(
        "name: long-call\n"
        "calls:\n"
        f"  - name: long\n    duration: {seconds}s\n"
        "expect:\n  - call: long\n    connected: true\n"
    )
    return p


def _wait_for_netns(owner_pid: int, suffix: str, timeout_s: float = 30.0) -> str:
    """The namespace ``tb-<rid>-*<suffix>`` of the run owned by ``owner_pid`` (never another run's)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_dir in names.RUN_ROOT.glob("*/owner.json"):
            try:
                owner = json.loads(run_dir.read_text())
            except (OSError, ValueError):
                continue
            if owner.get("pid") == owner_pid:
                ns = names.netns_name(run_dir.parent.name, "censor").removesuffix("-censor") + suffix
                if os.path.exists(f"/run/netns/{ns}"):
                    return ns
        time.sleep(0.1)
    raise AssertionError(f"the run of process {owner_pid} never created its *{suffix} namespace")


def _wait_for_censor_traffic(ns: str, timeout_s: float = 30.0) -> None:
    """Wait until the call's media is flowing: the endpoints' processes are up in the namespace."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _pids_in_netns(Path("/run/netns") / ns.replace("-censor", "-caller")):
            time.sleep(4.0)  # process start + ICE + DTLS: well into the media phase afterwards
            return
        time.sleep(0.1)
    raise AssertionError("the caller endpoint never started")


def test_baseline_call_connects_through_the_censor(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    out = tmp_path / "out.json"
    started = time.monotonic()
    proc = subprocess.run(
        [*CLI, "run", str(REPO / "scenarios" / "baseline.yaml"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    (sc,) = doc["scenarios"]
    assert sc["passed"] is True and sc["error"] is None
    (call,) = sc["calls"]
    assert call["connected"] is True
    assert call["setup_ms"] > 0
    for endpoint in ("caller", "callee"):
        (rx,) = [
            s
            for s in call["streams"]
            if s["endpoint"] == endpoint and s["kind"] == "audio" and s["direction"] == "recv"
        ]
        # 5 s of 20 ms Opus frames is 250 packets; allow for start-up and drain.
        assert rx["packets_received"] > 150, rx
    censor = sc["censor"]
    assert censor["packets"] > 0
    assert censor["kernel"].get("queue_dropped", 0) == 0
    # Every media packet crossed the censor, so it saw at least what the endpoints received.
    audio_rx = sum(s["packets_received"] for s in call["streams"] if s["kind"] == "audio" and s["direction"] == "recv")
    assert censor["packets"] >= audio_rx
    flows = censor["flows"]
    assert any(f["transport"] == "udp" and f["packets_orig"] > 0 and f["packets_reply"] > 0 for f in flows)
    print(f"baseline wall time {wall:.1f} s, censor packets {censor['packets']}")


def test_sigkill_mid_call_then_clean_leaves_nothing(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*CLI, "run", str(_long_scenario(tmp_path)), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ns = _wait_for_netns(proc.pid, "-censor")
        _wait_for_censor_traffic(ns)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # The run's children die with it (PR_SET_PDEATHSIG); give the kernel a moment.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            _pids_in_netns(Path("/run/netns") / n) for n in os.listdir("/run/netns") if n.startswith(ns[:10])
        ):
            time.sleep(0.1)
        leftovers = [n for n in os.listdir("/run/netns") if n.startswith(ns[:10])]
        assert leftovers, "a SIGKILLed run cannot clean up; its namespaces are expected to remain until clean"
        for n in leftovers:
            assert _pids_in_netns(Path("/run/netns") / n) == [], f"processes survived in {n}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        clean = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "removed namespace" in clean.stdout


def test_sigterm_mid_call_cleans_up_by_itself(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*CLI, "run", str(_long_scenario(tmp_path)), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ns = _wait_for_netns(proc.pid, "-censor")
        _wait_for_censor_traffic(ns)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "terminated" in err


def test_censor_killed_mid_call_fails_the_run_clearly(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [*CLI, "run", str(_long_scenario(tmp_path)), "-q", "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ns = _wait_for_netns(proc.pid, "-censor")
        _wait_for_censor_traffic(ns)
        censor_pids = _pids_in_netns(Path("/run/netns") / ns)
        assert censor_pids, "the censor process runs inside the censor namespace"
        for pid in censor_pids:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stdout + stderr
    assert "censor engine exited unexpectedly" in stdout
    doc = json.loads(out.read_text())
    (sc,) = doc["scenarios"]
    assert sc["passed"] is False and "censor engine exited unexpectedly" in sc["error"]


def test_bad_scenario_is_exit_2_without_traceback(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncalls:\n  - name: a\n    duraton: 5\n")
    proc = subprocess.run([*CLI, "run", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{bad}:4" in proc.stderr and "did you mean 'duration'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _apps_scenario(tmp_path: Path, marker: int) -> Path:
    """A run with apps that would outlive it if they could: one ignores SIGTERM and has a child."""
    p = tmp_path / "apps.yaml"
    p.write_text(
        "name: long-apps\n"
        "nodes:\n  caller: {side: inside}\n  server:\n    apps:\n"
        f"      - {{name: stubborn, run: [sh, -c, 'trap \"\" TERM; sleep {marker}'], ready: {{after: 0.2s}}}}\n"
        f"      - {{name: echo, run: [socat, 'TCP-LISTEN:{marker},fork', 'EXEC:cat'], ready: {{tcp: {marker}}}}}\n"
        "probes: [{name: wait, node: caller, run: [sleep, '60']}]\n"
    )
    return p


def _processes_with(marker: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and "pytest" not in cmd:
                out.append(int(entry))
    return out


def _wait_for_app(marker: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_processes_with(marker)) < 2:  # sh + sleep, socat
        assert time.monotonic() < deadline, "the apps never started"
        time.sleep(0.1)


def test_sigkill_with_apps_then_clean_leaves_no_app(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    marker = "7421"
    proc = subprocess.Popen(
        [*CLI, "run", str(_apps_scenario(tmp_path, int(marker))), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_netns(proc.pid, "-server")
        _wait_for_app(marker)
        time.sleep(1.0)  # both apps ready, the probe running
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        clean = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # The apps' leaders die with the runner (PDEATHSIG); the shell's child is found by namespace.
    assert _processes_with(f"sleep {marker}") == [] and _processes_with(f"TCP-LISTEN:{marker}") == []


def test_sigterm_with_apps_stops_them_all(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    marker = "7422"
    proc = subprocess.Popen(
        [*CLI, "run", str(_apps_scenario(tmp_path, int(marker))), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_netns(proc.pid, "-server")
        _wait_for_app(marker)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert _processes_with(f"sleep {marker}") == [] and _processes_with(f"TCP-LISTEN:{marker}") == []

"""The WireGuard recipe of scenarios/tools/wireguard.yaml leaves nothing behind, even after kill -9.

wireguard-go keeps its control socket in /run/wireguard/<ifname>.sock, on the host's file system
whatever the network namespace: the shipped recipe runs it in a private mount namespace instead,
and exec's it so the kernel kills it with the run (PR_SET_PDEATHSIG). These tests run the
recipe's apps (taken from the shipped file, so they test what users copy) in a short run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.net import names
from testbed.net.strays import pids_in_netns as _pids_in_netns

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "testbed.cli"]
WIREGUARD = REPO / "scenarios" / "tools" / "wireguard.yaml"
HOST_WG_DIR = Path("/run/wireguard")


def _tunnel_scenario(tmp_path: Path, *, hold_s: int) -> Path:
    """The shipped scenario's two WireGuard ends and key step, with a ping through the tunnel
    for ``hold_s`` seconds as the only workload (no call, no services)."""
    shipped: dict[str, Any] = yaml.safe_load(WIREGUARD.read_text())
    nodes = shipped["nodes"]
    scenario = {
        "name": "wg-recipe",
        "nodes": {
            "caller": {"side": "inside", "apps": nodes["caller"]["apps"]},
            "server": {"side": "outside", "apps": nodes["server"]["apps"]},
        },
        "probes": [
            {
                "name": "ping-through-tunnel",
                "node": "caller",
                "timeout": f"{hold_s + 10}s",
                "run": ["ping", "-n", "-c", str(hold_s * 2), "-i", "0.5", "198.19.200.1"],
            },
        ],  # fmt: skip
    }
    path = tmp_path / "wg-recipe.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def _host_wg_entries() -> set[str]:
    return set(os.listdir(HOST_WG_DIR)) if HOST_WG_DIR.is_dir() else set()


def _wg_mounts() -> list[str]:
    return [ln for ln in Path("/proc/self/mounts").read_text().splitlines() if "/run/wireguard" in ln]


def _run_dir_of(owner_pid: int, timeout_s: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for owner in names.RUN_ROOT.glob("*/owner.json"):
            try:
                if json.loads(owner.read_text()).get("pid") == owner_pid:
                    return owner.parent
            except (OSError, ValueError):
                continue
        time.sleep(0.1)
    raise AssertionError(f"process {owner_pid} never made its run directory")


def _wait_for_probe(run_dir: Path, timeout_s: float = 30.0) -> None:
    """The apps are ready and the ping probe runs: a ``ping`` process in the caller's namespace."""
    caller = Path("/run/netns") / names.netns_name(run_dir.name, "caller")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in _pids_in_netns(caller):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "ping":
                    time.sleep(1.0)
                    return
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError("the ping probe never started (the WireGuard apps never got ready?)")


def _run_netns(run_dir: Path) -> list[Path]:
    prefix = names.netns_name(run_dir.name, "censor").removesuffix("censor")
    return [Path("/run/netns") / n for n in os.listdir("/run/netns") if n.startswith(prefix)]


def test_wireguard_recipe_passes_and_leaves_no_socket_on_the_host(
    tmp_path: Path, unchanged_host: dict[str, str]
) -> None:
    before = _host_wg_entries()
    out = tmp_path / "out.json"
    proc = subprocess.run([*CLI, "run", str(_tunnel_scenario(tmp_path, hold_s=3)), "--json", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())["scenarios"][0]
    probe = result["probes"][0]
    assert probe["exit_code"] == 0, probe  # the tunnel carried the pings
    apps = {a["name"]: a for a in result["apps"]}
    assert apps["wg-client"]["alive_at_end"] and apps["wg-server"]["alive_at_end"]
    assert _host_wg_entries() == before, "wireguard-go's control socket reached the host's /run/wireguard"
    assert _wg_mounts() == []


def test_wireguard_recipe_dies_with_a_sigkilled_run(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    before = _host_wg_entries()
    proc = subprocess.Popen([*CLI, "run", str(_tunnel_scenario(tmp_path, hold_s=40)), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        run_dir = _run_dir_of(proc.pid)
        _wait_for_probe(run_dir)
        # While it runs: each end's socket is in its own mount namespace, not on the host.
        assert _host_wg_entries() == before
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        namespaces = _run_netns(run_dir)
        assert namespaces, "a SIGKILLed run cannot clean up; its namespaces remain until clean"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_pids_in_netns(ns) for ns in namespaces):
            time.sleep(0.1)
        # wireguard-go (and everything else) died with the run, without `testbed clean`.
        for ns in namespaces:
            assert _pids_in_netns(ns) == [], f"processes survived in {ns.name}"
        assert _host_wg_entries() == before
        assert _wg_mounts() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        clean = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr

"""Chromium (libwebrtc) call endpoints between two namespaces (root, the Debian chromium package).

A call connects and reports the same samples as an aiortc call; a browser killed mid-call ends
the call as failed with the browser's last log lines; an endpoint killed by SIGKILL takes its
browser with it (PDEATHSIG); nothing of either is left running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from _calls_fixtures import NamespacePair, netns_pair

from testbed.calls import CallOptions, CallResult, Kind, judged, run_call
from testbed.calls.chromium.browser import ChromiumMissing, find_chromium
from testbed.calls.engine import Engine
from testbed.calls.signalling import Role
from testbed.records.timeline import TimelineEntry

pytestmark = pytest.mark.netns

__all__ = ["netns_pair"]

BOTH = {Role.CALLER: Engine.CHROMIUM, Role.CALLEE: Engine.CHROMIUM}


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    try:
        find_chromium()
    except ChromiumMissing as exc:
        pytest.skip(str(exc))


def _pids_with(needle: str) -> list[int]:
    """Processes whose command line mentions ``needle`` (a call's own profile directory)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if needle.encode() in cmdline and state != "Z":
                out.append(int(entry.name))
    return out


def _wait_gone(needle: str, timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _pids_with(needle)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_chromium_call_connects_and_reports_samples(netns_pair: NamespacePair, tmp_path: Path) -> None:
    options = CallOptions(name="cc", duration_s=4.0, audio=True, video=True, data_channel=True, connect_timeout_s=30.0)
    result = asyncio.run(
        run_call(options, caller_netns=netns_pair.a, callee_netns=netns_pair.b, workdir=tmp_path, engines=BOTH)
    )
    assert result.connected, result.error
    assert result.error is None
    pair = result.selected_candidate_pair
    assert pair is not None
    assert {pair.local_address, pair.remote_address} == {netns_pair.address_a, netns_pair.address_b}
    for endpoint in ("caller", "callee"):
        audio = result.stream(endpoint, Kind.AUDIO, "recv")
        assert audio.codec == "audio/opus" and audio.packets_received and audio.packets_received > 50
        assert audio.packets_received == audio.packets_sent  # nothing lost on a bare veth
        video = result.stream(endpoint, Kind.VIDEO, "recv")
        assert video.codec == "video/VP8" and video.frames and video.frames > 10
        data = result.stream(endpoint, Kind.DATA, "recv")
        # The channel is reliable and ordered, so nothing is lost; but the peer's last message can
        # still be in flight when the call hangs up (seen once in CI with two workers: 40 of 41).
        assert data.messages and data.packets_sent is not None
        assert data.packets_sent - 1 <= data.messages <= data.packets_sent
        # Both ends share CLOCK_MONOTONIC: one-way delay on a veth is small and never negative
        # by more than the clock-offset error.
        assert data.latency_ms_median is not None and -20 < data.latency_ms_median < 500
        seconds = [
            s
            for s in result.samples
            if s["endpoint"] == endpoint and s["kind"] == "audio" and s["direction"] == "recv" and s["packets"] > 0
        ]
        assert len(seconds) >= 3
        assert all(s["mos"] is not None and s["mos"] > 4.0 for s in seconds)
        assert any(s["rtt_ms"] is not None for s in result.samples if s["endpoint"] == endpoint)
    judged_result = judged(result)
    assert judged_result.outcome == "ok", judged_result.outcome_reasons
    for role in ("caller", "callee"):
        assert not _wait_gone(str(tmp_path / f"cc.{role}.chromium"))
        assert not (tmp_path / f"cc.{role}.chromium").exists()  # the profile went with the browser


def test_browser_killed_mid_call_fails_the_call_with_its_log(netns_pair: NamespacePair, tmp_path: Path) -> None:
    options = CallOptions(name="crash", duration_s=15.0, audio=True, data_channel=False, connect_timeout_s=30.0)
    profile = str(tmp_path / "crash.caller.chromium")
    connected = asyncio.Event()
    killed: list[int] = []

    def watch(entry: TimelineEntry) -> None:
        if entry.label == "relay:call:connected":
            connected.set()

    async def scenario() -> CallResult:
        call = asyncio.create_task(
            run_call(
                options,
                caller_netns=netns_pair.a,
                callee_netns=netns_pair.b,
                workdir=tmp_path,
                engines=BOTH,
                observer=watch,
            )
        )
        await asyncio.wait_for(connected.wait(), 60)
        await asyncio.sleep(1.5)
        # The browser itself: the process whose command line is Chromium's with this profile
        # (not the endpoint, whose command line does not name the profile).
        for pid in _pids_with(f"--user-data-dir={profile}"):
            if b"--type=" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return await asyncio.wait_for(call, 60)

    result = asyncio.run(scenario())
    assert killed, "found no browser to kill"
    assert result.connected
    assert result.error is not None
    assert "caller browser (chromium) was killed by SIGKILL" in result.error
    assert "its last log lines:" in result.error
    assert any(e.label == "caller:connection:failed" for e in result.state_timeline)
    verdict = judged(result)
    assert verdict.outcome == "blocked", verdict.outcome_reasons
    # The media it measured before the crash is still reported.
    assert result.stream("callee", Kind.AUDIO, "recv").packets_received
    assert not _wait_gone(profile)
    assert not _wait_gone(str(tmp_path / "crash.callee.chromium"))


def test_endpoint_killed_takes_its_browser_with_it(netns_pair: NamespacePair, tmp_path: Path) -> None:
    """PDEATHSIG: SIGKILL of the endpoint process (as ``kill -9`` of a run does to everything)
    kills its browser; the call is a failed call, not a hung one."""
    options = CallOptions(name="orphan", duration_s=15.0, audio=True, data_channel=False, connect_timeout_s=30.0)
    config = str(tmp_path / "orphan.caller.json")
    profile = str(tmp_path / "orphan.caller.chromium")
    connected = asyncio.Event()

    def watch(entry: TimelineEntry) -> None:
        if entry.label == "relay:call:connected":
            connected.set()

    async def scenario() -> CallResult:
        call = asyncio.create_task(
            run_call(
                options,
                caller_netns=netns_pair.a,
                callee_netns=netns_pair.b,
                workdir=tmp_path,
                engines=BOTH,
                observer=watch,
            )
        )
        await asyncio.wait_for(connected.wait(), 60)
        assert _pids_with(profile), "the browser is running"
        endpoint = [p for p in _pids_with(config) if b"chromium.endpoint" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert endpoint
        os.kill(endpoint[0], signal.SIGKILL)
        return await asyncio.wait_for(call, 60)

    result = asyncio.run(scenario())
    assert result.error is not None and "caller endpoint was killed by SIGKILL" in result.error
    assert judged(result).outcome == "blocked"
    assert not _wait_gone(profile)


def test_chromium_call_that_never_connects_times_out(netns_pair: NamespacePair, tmp_path: Path) -> None:
    from pyroute2 import IPRoute

    with IPRoute(netns=netns_pair.a) as ipr:
        ipr.route("add", dst=f"{netns_pair.address_b}/32", type="blackhole")
    options = CallOptions(name="never", duration_s=5.0, audio=True, data_channel=False, connect_timeout_s=4.0)
    result = asyncio.run(
        run_call(
            options,
            caller_netns=netns_pair.a,
            callee_netns=netns_pair.b,
            workdir=tmp_path,
            engines={Role.CALLER: Engine.CHROMIUM, Role.CALLEE: Engine.AIORTC},
        )
    )
    assert not result.connected
    assert result.error is not None and "not connected within 4 s" in result.error
    assert judged(result).outcome == "blocked"
    assert not _wait_gone(str(tmp_path / "never.caller.chromium"))

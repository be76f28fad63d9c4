"""Real calls between two network namespaces joined by a veth pair (root; ``-m netns``).

Only 198.18.250.0/30 is used.  Every test checks that the host's namespaces and veth links are
the same before and after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _calls_fixtures import NAME_PREFIX, NamespacePair, netns_pair
from pyroute2 import IPRoute

from testbed.calls import CallOptions, CallResult, IceServer, IceTransportPolicy, Kind, run_call
from testbed.errors import CallError
from testbed.net.process import netns_process
from testbed.records.timeline import TimelineEntry

pytestmark = pytest.mark.netns

__all__ = ["netns_pair"]  # the fixture, re-exported for pytest

AUDIO_PACKETS_PER_S = 50  # 20 ms Opus frames


def _host_state() -> tuple[list[str], list[str]]:
    """The host objects these tests could leak: ``tbt*`` namespaces and veth links that are ours
    (named ``veth0`` or pointing into a ``tbt*`` namespace).  Scoped to our prefix because other
    runs may create and remove their own namespaces on the same host at the same time."""
    if shutil.which("ip") is None:
        return ([], [])
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    veth = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    # namespace_pair() names its pair tbt<6 hex>a / tbt<6 hex>b; other suites use tbt* too.
    ours = re.compile(rf"^{NAME_PREFIX}[0-9a-f]{{6}}[ab]\b")
    ours_ns = [line for line in netns.splitlines() if ours.match(line)]
    ours_veth = [
        line
        for line in veth.splitlines()
        if ": veth0@" in line or re.search(rf"link-netns {NAME_PREFIX}[0-9a-f]{{6}}[ab]\b", line)
    ]
    return (ours_ns, ours_veth)


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = _host_state()
    yield
    assert _host_state() == before


def _call(pair: NamespacePair, options: CallOptions, workdir: Path) -> CallResult:
    return asyncio.run(run_call(options, caller_netns=pair.a, callee_netns=pair.b, workdir=workdir))


def _endpoint_pid(config: Path) -> int | None:
    needle = str(config).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def _assert_no_endpoints_left(workdir: Path, name: str) -> None:
    for role in ("caller", "callee"):
        assert _endpoint_pid(workdir / f"{name}.{role}.json") is None


def test_baseline_audio_and_data_call(netns_pair: NamespacePair, tmp_path: Path) -> None:
    duration = 5.0
    started = time.monotonic()
    result = _call(netns_pair, CallOptions(name="baseline", duration_s=duration), tmp_path)
    wall = time.monotonic() - started

    assert result.connected, result.error
    assert result.error is None
    assert result.setup_ms is not None and 0 < result.setup_ms < 2000
    # start + setup + teardown: generous, a loaded 2-core machine starts endpoints slowly
    assert result.media_s is not None and wall < result.media_s + 30.0
    expected = duration * AUDIO_PACKETS_PER_S
    hangup = next(e.t for e in result.state_timeline if e.label == "relay:signalling:hangup")
    for endpoint in ("caller", "callee"):
        recv = result.stream(endpoint, Kind.AUDIO, "recv")
        assert recv.packets_received is not None
        assert 0.7 * expected <= recv.packets_received <= 1.1 * expected + 5  # a loaded machine sends late, never more
        assert recv.packets_received == recv.packets_sent  # nothing lost on a bare veth
        assert recv.codec == "audio/opus" and recv.bytes and recv.bytes > 0
        # Audio flowed until the hang-up without a stall (20 ms packets; 1 s: a loaded machine).
        assert recv.max_gap_ms is not None and recv.max_gap_ms < 1000
        assert recv.last_received_t_s is not None and abs(recv.last_received_t_s - hangup) < 2.0
        assert recv.received_per_s is not None
        assert sum(recv.received_per_s) == recv.packets_received
        assert (
            max(recv.received_per_s) <= AUDIO_PACKETS_PER_S * 1.5
        )  # paced, not dumped (catch-up after a stall allowed)
        data = result.stream(endpoint, Kind.DATA, "recv")
        assert data.messages is not None and data.messages >= duration / 0.1 * 0.9
        # The source counts what its clock made due, so frames never sent are measured.
        send = result.stream(endpoint, Kind.AUDIO, "send")
        assert send.frames is not None and send.frames_due is not None
        assert send.frames == send.packets_sent and send.frames_due >= send.frames > 0
        # Received audio is counted per reassembled frame (not decoded): one per 20 ms packet, but
        # the jitter buffer still holds the last few at hang-up.
        assert recv.frames is not None and 0.9 * recv.packets_received <= recv.frames <= recv.packets_received
    # Each endpoint reports its CPU: start-up (first frame out) and total.
    assert result.cpu_s is not None and set(result.cpu_s) == {"caller", "callee"}
    for cpu in result.cpu_s.values():
        at_media, total = cpu["at_media"], cpu["total"]
        assert at_media is not None and total is not None and 0 < at_media <= total
    pair = result.selected_candidate_pair
    assert pair is not None
    assert (pair.local_address, pair.remote_address) == (netns_pair.address_a, netns_pair.address_b)
    assert (pair.local_type, pair.remote_type) == ("host", "host")
    labels = [e.label for e in result.state_timeline]
    for label in (
        "caller:signalling:offer-sent",
        "callee:connection:connected",
        "caller:dtls:connected",
        "callee:data-channel:open",
        "caller:media:first-audio-received",
        "callee:signalling:bye-received",
        "caller:connection:closed",
        "relay:call:ended",
    ):
        assert label in labels
    assert not list(tmp_path.glob("*.sock"))
    _assert_no_endpoints_left(tmp_path, "baseline")
    doc = result.to_json()
    assert doc["connected"] is True and len(doc["streams"]) == 8


def test_video_call(netns_pair: NamespacePair, tmp_path: Path) -> None:
    options = CallOptions(name="video", duration_s=2.0, video=True, data_channel=False)
    result = _call(netns_pair, options, tmp_path)
    assert result.connected, result.error
    for endpoint in ("caller", "callee"):
        video = result.stream(endpoint, Kind.VIDEO, "recv")
        assert video.codec == "video/VP8"
        assert video.packets_received and video.packets_received > 2 * options.video_fps
        assert video.frames and video.frames >= 1.5 * options.video_fps


def test_callee_killed_mid_call(netns_pair: NamespacePair, tmp_path: Path) -> None:
    options = CallOptions(name="killed", duration_s=30.0)

    async def scenario() -> CallResult:
        connected = asyncio.Event()

        def observe(entry: TimelineEntry) -> None:
            if entry.label == "relay:call:connected":
                connected.set()

        async with asyncio.TaskGroup() as tg:
            call = tg.create_task(
                run_call(
                    options,
                    caller_netns=netns_pair.a,
                    callee_netns=netns_pair.b,
                    workdir=tmp_path,
                    observer=observe,
                )
            )
            async with asyncio.timeout(20):
                await connected.wait()
            await asyncio.sleep(1.0)
            pid = _endpoint_pid(tmp_path / "killed.callee.json")
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        return call.result()

    started = time.monotonic()
    result = asyncio.run(scenario())
    assert time.monotonic() - started < 10.0  # ended at the kill, not after 30 s
    assert result.connected
    assert result.error is not None and "callee endpoint was killed by SIGKILL" in result.error
    labels = [e.label for e in result.state_timeline]
    assert "callee:endpoint:lost" in labels and labels[-1] == "relay:call:ended"
    # The survivor still reported: it received audio until the kill.
    recv = result.stream("caller", Kind.AUDIO, "recv")
    assert recv.packets_received and recv.packets_received > 25
    assert result.stream("callee", Kind.AUDIO, "recv").packets_received is None
    _assert_no_endpoints_left(tmp_path, "killed")


def test_unreachable_callee_is_a_measured_connect_timeout(netns_pair: NamespacePair, tmp_path: Path) -> None:
    # Black-hole the callee's address in the caller's namespace: ICE checks cannot complete.
    with IPRoute(netns=netns_pair.a) as ipr:
        ipr.route("add", dst=f"{netns_pair.address_b}/32", type="blackhole")
    started = time.monotonic()
    result = _call(netns_pair, CallOptions(name="blocked", duration_s=5.0, connect_timeout_s=2.0), tmp_path)
    assert time.monotonic() - started < 8.0
    assert not result.connected and result.setup_ms is None
    assert result.error is not None and result.error.startswith("not connected within 2 s")
    assert "relay:call:timeout" in [e.label for e in result.state_timeline]
    _assert_no_endpoints_left(tmp_path, "blocked")


@pytest.mark.parametrize("deep", [False, True], ids=["workdir", "deep-workdir"])
def test_endpoint_that_cannot_start_is_a_call_error(tmp_path: Path, deep: bool) -> None:
    # No such namespace: nsexec fails before the endpoint exists -- a harness failure.
    # A workdir too deep for sun_path (107 bytes) puts the socket in a private temporary dir.
    workdir = tmp_path / ("d" * 120) if deep else tmp_path
    private_dirs = set(Path(tempfile.gettempdir()).glob("testbed-sig-*"))
    with pytest.raises(CallError, match=r"(?s)endpoint exited with code 126 before it was ready.*nsexec"):
        asyncio.run(
            run_call(
                CallOptions(name="nostart", duration_s=1.0),
                caller_netns="tbt-missing-ns",
                callee_netns="tbt-missing-ns",
                workdir=workdir,
            )
        )
    assert not list(workdir.glob("*.sock"))
    assert set(Path(tempfile.gettempdir()).glob("testbed-sig-*")) == private_dirs
    config = json.loads((workdir / "nostart.caller.json").read_text())
    assert len(config["socket"]) <= 107 and ("/testbed-sig-" in config["socket"]) == deep


def test_cancelled_call_cleans_up(netns_pair: NamespacePair, tmp_path: Path) -> None:
    # The runner's scenario timeout cancels run_call: endpoints must go, and the socket with them.
    options = CallOptions(name="cancelled", duration_s=30.0)

    async def scenario() -> None:
        connected = asyncio.Event()

        def observe(entry: TimelineEntry) -> None:
            if entry.label == "relay:call:connected":
                connected.set()

        call = asyncio.create_task(
            run_call(
                options,
                caller_netns=netns_pair.a,
                callee_netns=netns_pair.b,
                workdir=tmp_path,
                observer=observe,
            )
        )
        async with asyncio.timeout(20):
            await connected.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 10.0
    assert not list(tmp_path.glob("*.sock"))
    _assert_no_endpoints_left(tmp_path, "cancelled")


COTURN_READY = b"Total General servers"  # coturn prints this once its listeners are up


def _coturn_config(workdir: Path, address: str) -> Path:
    conf = workdir / "turnserver.conf"
    conf.write_text(
        "\n".join(
            [
                f"listening-ip={address}",
                f"relay-ip={address}",
                "listening-port=3478",
                "fingerprint",
                "lt-cred-mech",
                "user=tb:secret",
                "realm=testbed.invalid",
                "no-cli",
                "no-tls",
                "no-dtls",
                "no-multicast-peers",
                # coturn refuses special-purpose ranges as peers unless told; the sandbox is one.
                "allowed-peer-ip=198.18.0.0-198.19.255.255",
                "log-file=stdout",
                "simple-log",
                f"pidfile={workdir / 'turnserver.pid'}",
                f"userdb={workdir / 'turndb'}",
            ]
        )
        + "\n"
    )
    return conf


@pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed")
def test_call_relayed_through_turn(netns_pair: NamespacePair, tmp_path: Path) -> None:
    # coturn in the callee's namespace; both endpoints may use relay candidates only.
    turnserver = shutil.which("turnserver")
    assert turnserver is not None
    conf = _coturn_config(tmp_path, netns_pair.address_b)
    server = IceServer(
        urls=(f"turn:{netns_pair.address_b}:3478?transport=udp",),
        username="tb",
        credential="secret",
    )
    options = CallOptions(
        name="relayed",
        duration_s=2.0,
        ice_servers=(server,),
        ice_transport_policy=IceTransportPolicy.RELAY,
    )

    async def scenario() -> CallResult:
        argv = [turnserver, "-c", str(conf)]
        async with netns_process(
            netns_pair.b, argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        ) as coturn:
            assert coturn.stdout is not None
            async with asyncio.timeout(10):
                while COTURN_READY not in await coturn.stdout.readline():
                    pass

            async def drain() -> None:  # keep coturn's stdout pipe from filling up
                assert coturn.stdout is not None
                while await coturn.stdout.read(65536):
                    pass

            async with asyncio.TaskGroup() as tg:
                drainer = tg.create_task(drain())
                try:
                    return await run_call(
                        options,
                        caller_netns=netns_pair.a,
                        callee_netns=netns_pair.b,
                        workdir=tmp_path,
                    )
                finally:
                    drainer.cancel()

    result = asyncio.run(scenario())
    assert result.connected, result.error
    pair = result.selected_candidate_pair
    assert pair is not None and pair.local_type == "relay" and pair.remote_type == "relay"
    assert pair.local_address == pair.remote_address == netns_pair.address_b
    for endpoint in ("caller", "callee"):
        recv = result.stream(endpoint, Kind.AUDIO, "recv")
        assert recv.packets_received and recv.packets_received >= 0.8 * 2.0 * AUDIO_PACKETS_PER_S
    _assert_no_endpoints_left(tmp_path, "relayed")

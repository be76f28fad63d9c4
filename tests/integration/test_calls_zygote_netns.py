"""aiortc endpoints forked from a zygote (calls/zygote.py, calls/forkclient.py; root, ``-m netns``):
a call works the same, its endpoints skip aiortc's import, and nothing outlives the zygote."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from _calls_fixtures import NamespacePair, netns_pair

from testbed.calls import CallOptions, Kind, run_call
from testbed.calls.session import endpoint_zygote

pytestmark = pytest.mark.netns

__all__ = ["netns_pair"]  # the fixture, re-exported for pytest


def _pids_with(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _import_cpu_s() -> float:
    """CPU a fresh endpoint process spends importing what it needs (measured now, on this load)."""
    code = "import time, testbed.calls.endpoint; print(time.process_time())"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_forked_endpoints_call_and_skip_the_import(netns_pair: NamespacePair, tmp_path: Path) -> None:
    async def scenario() -> tuple[object, Path | None, list[int]]:
        async with endpoint_zygote(tmp_path) as zygote:
            assert zygote is not None and zygote.exists()
            running = _pids_with(str(zygote))
            result = await run_call(
                CallOptions(name="forked", duration_s=3.0, data_channel=False),
                caller_netns=netns_pair.a,
                callee_netns=netns_pair.b,
                workdir=tmp_path,
                zygote=zygote,
            )
        return result, zygote, running

    result, zygote, running = asyncio.run(scenario())
    import_cpu = _import_cpu_s()
    from testbed.calls import CallResult

    assert isinstance(result, CallResult)
    assert result.connected and result.error is None, result.error
    for endpoint in ("caller", "callee"):
        recv = result.stream(endpoint, Kind.AUDIO, "recv")
        assert recv.packets_received and recv.packets_received == recv.packets_sent
    # Each endpoint's CPU by its first frame (ICE, DTLS included) is below what importing aiortc
    # alone costs a fresh process: they were forked with it imported.
    assert result.cpu_s is not None and set(result.cpu_s) == {"caller", "callee"}
    for cpu in result.cpu_s.values():
        at_media = cpu["at_media"]
        assert at_media is not None and at_media < import_cpu
    # The zygote ran during the call and is gone with its socket after it.
    assert running
    assert zygote is not None and not zygote.exists()
    assert _pids_with(str(zygote)) == []
    assert _pids_with(str(tmp_path / "forked.caller.json")) == []

"""The runner's side of the censor process: reading its output, whatever its size."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from testbed.censor.control import CensorHandle, bounded_lines
from testbed.censor.main import write_final


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()  # the default 64 KiB line limit of subprocess pipes
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_bounded_lines_cut_long_lines_instead_of_failing() -> None:
    async def lines() -> list[bytes]:
        data = b'{"event":"ready"}\n' + b"y" * 300_000 + b"\n" + b'{"event":"stats"}\n' + b"tail"
        return [line async for line in bounded_lines(_reader(data), max_bytes=1000)]

    out = asyncio.run(lines())
    assert out == [b'{"event":"ready"}\n', b"y" * 1000, b'{"event":"stats"}\n', b"tail"]


class FakeProc:
    def __init__(self, stdout: asyncio.StreamReader) -> None:
        self.stdout = stdout
        self.returncode = 0


def test_a_summary_of_many_flows_reaches_the_runner(tmp_path: Path) -> None:
    # 250 flows of ~0.5 KB each: far over the 64 KiB a pipe line may carry.
    summary = {"packets": 250, "flows": [{"endpoints": [f"198.18.2.2:{p}"], "pad": "z" * 500} for p in range(250)]}
    final = tmp_path / "censor-final.json"
    write_final(final, summary)
    events = [{"event": "ready", "t0": 1.0}, {"event": "stats", "packets": 250}, {"event": "final", "file": str(final)}]

    async def read() -> CensorHandle:
        reader = _reader(b"".join(json.dumps(e).encode() + b"\n" for e in events))
        handle = CensorHandle(FakeProc(reader))  # type: ignore[arg-type]
        await handle.read_stdout()
        return handle

    handle = asyncio.run(read())
    assert handle.final == summary and handle.final_error is None
    assert len(json.dumps(summary)) > 65536

"""The runner's side of the censor process: reading its output, whatever its size."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from testbed.censor.control import CensorHandle, bounded_lines
from testbed.censor.main import write_final
from testbed.records import censor_message
from testbed.records.censor_message import CensorFinal, CensorReady, CensorStats


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
    events = [
        CensorReady(queue_num=0, t0=1.0),
        CensorStats(t_s=1.0, packets=250, bytes=25000, flows=250, held=0),
        CensorFinal(file=str(final)),
    ]

    async def read() -> CensorHandle:
        reader = _reader("".join(censor_message.encode(e) for e in events).encode())
        handle = CensorHandle(FakeProc(reader))  # type: ignore[arg-type]
        await handle.read_stdout()
        return handle

    handle = asyncio.run(read())
    assert handle.final == summary and handle.final_error is None
    assert len(json.dumps(summary)) > 65536


def test_the_handle_reads_typed_messages_and_keeps_a_bad_one_as_output(tmp_path: Path) -> None:
    final = tmp_path / "censor-final.json"
    write_final(final, {"packets": 1})
    lines = [
        censor_message.encode(CensorReady(queue_num=0, t0=12.5)),
        '{"event":"stats","t_s":1,"packets":"many"}\n',  # mistyped: not a message, kept as output
        censor_message.encode(CensorStats(t_s=1.0, packets=3, bytes=300, flows=1, held=0)),
        censor_message.encode(CensorFinal(file=str(final), error="RuntimeError: boom")),
    ]

    async def read() -> CensorHandle:
        handle = CensorHandle(FakeProc(_reader("".join(lines).encode())))  # type: ignore[arg-type]
        await handle.read_stdout()
        return handle

    handle = asyncio.run(read())
    assert handle.ready.is_set() and handle.t0 == 12.5
    assert handle.last_stats == CensorStats(t_s=1.0, packets=3, bytes=300, flows=1, held=0)
    assert handle.final == {"packets": 1} and handle.final_error == "RuntimeError: boom"
    assert len(handle.stderr_tail) == 1 and "'packets' must be an integer" in handle.stderr_tail[0]

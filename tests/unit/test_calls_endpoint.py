"""The endpoint process: its offer (host candidates only, one codec per medium) and its exits.

Gathering binds UDP sockets on the host's interfaces but sends nothing: with no ICE server named
there is nobody to send to.  (aiortc's default, stun.l.google.com, would show up as a
server-reflexive candidate or a hang, which is exactly what this guards against.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from testbed.calls.endpoint import Endpoint, EndpointConfig
from testbed.calls.endpoint import run as endpoint_run
from testbed.calls.endpoint_report import EndpointReport
from testbed.calls.options import CallOptions
from testbed.calls.signalling import (
    Decoder,
    Dial,
    HangUp,
    Hello,
    Layer,
    Message,
    Offer,
    Role,
    StateChange,
    decode_line,
    encode,
)


class FakeRelayLink:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _offer(options: CallOptions) -> tuple[str, list[Message], list[str]]:
    link = FakeRelayLink()
    async with Endpoint(EndpointConfig(Role.CALLER, Path("/nonexistent"), options), link.send) as endpoint:
        async with asyncio.timeout(10):
            await endpoint.dial()
        report = await endpoint.report()
    offers = [m for m in link.sent if isinstance(m, Offer)]
    assert len(offers) == 1
    # What goes on the wire reads back as the same record.
    assert EndpointReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    return offers[0].sdp, link.sent, [s["type"] for s in report.to_json()["stats"]]


def test_offer_has_host_candidates_only_and_one_codec_per_kind() -> None:
    sdp, sent, stat_types = asyncio.run(
        _offer(CallOptions(name="c", duration_s=1.0, audio=True, video=True, data_channel=True))
    )
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates, sdp
    assert all(" typ host" in line for line in candidates), candidates
    rtpmaps = [line.split(" ", 1)[1] for line in sdp.splitlines() if line.startswith("a=rtpmap:")]
    assert sorted(rtpmaps) == ["VP8/90000", "opus/48000/2", "rtx/90000"]
    assert "m=application" in sdp
    labels = [f"{m.layer}:{m.state}" for m in sent if isinstance(m, StateChange)]
    assert "signalling:offer-sent" in labels
    assert f"{Layer.ICE_GATHERING}:complete" in labels
    assert "outbound-rtp" in stat_types


def test_audio_only_offer_has_no_video_or_application() -> None:
    sdp, _, _ = asyncio.run(_offer(CallOptions(name="c", duration_s=1.0, data_channel=False)))
    assert "m=audio" in sdp and "m=video" not in sdp and "m=application" not in sdp


def _config(tmp_path: Path) -> tuple[Path, Path]:
    sock = tmp_path / "relay.sock"
    config = tmp_path / "caller.json"
    options = CallOptions(name="c", duration_s=1.0)
    config.write_text(json.dumps(EndpointConfig(Role.CALLER, sock, options).to_json()))
    return sock, config


async def _serve_once(
    sock: Path, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
) -> asyncio.Server:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    return await asyncio.start_unix_server(on_connect, path=str(sock))


def test_endpoint_exits_when_the_relay_goes_away(tmp_path: Path) -> None:
    sock, config = _config(tmp_path)

    async def scenario() -> int:
        async def hello_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            assert decode_line(line.rstrip(b"\n")) == Hello(role=Role.CALLER, pid=os.getpid())

        server = await _serve_once(sock, hello_then_hang_up)
        async with server:
            async with asyncio.timeout(10):
                return await endpoint_run(EndpointConfig.load(config))

    assert asyncio.run(scenario()) == 0


def test_endpoint_exits_on_sigterm(tmp_path: Path) -> None:
    sock, config = _config(tmp_path)

    async def scenario() -> tuple[int, float]:
        said_hello = asyncio.Event()

        async def wait_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            said_hello.set()
            await reader.read()  # until the endpoint closes its end

        server = await _serve_once(sock, wait_forever)
        async with server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "testbed.calls.endpoint",
                "--config",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(20):
                    await said_hello.wait()
                proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                async with asyncio.timeout(5):
                    code = await proc.wait()
                return code, time.monotonic() - started
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    code, _ = asyncio.run(scenario())
    assert code == 0  # exited cleanly within the 5 s bound above


def test_hang_up_during_negotiation_still_reports_and_exits(tmp_path: Path) -> None:
    sock, config = _config(tmp_path)
    received: list[Message] = []

    async def scenario() -> int:
        async def dial_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = Decoder()
            writer.write(encode(Dial()) + encode(HangUp(reason="changed my mind")))
            while data := await reader.read(65536):
                received.extend(decoder.feed(data))

        server = await _serve_once(sock, dial_then_hang_up)
        async with server:
            async with asyncio.timeout(10):
                return await endpoint_run(EndpointConfig.load(config))

    assert asyncio.run(scenario()) == 0
    kinds = [m.type.value for m in received]
    assert kinds[0] == "hello"
    assert "failure" not in kinds
    # The hang-up ran to the end: Bye to the (absent) peer, statistics, then Done.
    assert kinds.index("bye") < kinds.index("stats") < kinds.index("done")
    assert kinds[-1] == "done"


# -- structured concurrency: every task belongs to the endpoint ---------------------------------


def test_an_error_in_an_endpoint_task_surfaces() -> None:
    """A task that fails (here: reporting a state change) ends the endpoint with that error,
    instead of being logged as 'never retrieved' while the call goes on."""

    class Broken(RuntimeError):
        pass

    async def send(message: Message) -> None:
        if isinstance(message, StateChange):
            raise Broken("relay link broke")

    async def scenario() -> None:
        options = CallOptions(name="c", duration_s=1.0, data_channel=False)
        async with Endpoint(EndpointConfig(Role.CALLER, Path("/nonexistent"), options), send) as ep:
            async with asyncio.timeout(10):
                await ep.dial()
            await asyncio.sleep(1.0)  # the group cancels this once a child fails

    try:
        asyncio.run(scenario())
    except* Broken as group:
        assert str(group.exceptions[0]) == "relay link broke"
    else:
        raise AssertionError("the failed task's error was lost")


def test_no_task_and_no_turn_hook_outlive_the_endpoint() -> None:
    import aioice.turn

    unhooked = aioice.turn.create_turn_endpoint

    async def scenario() -> None:
        link = FakeRelayLink()
        options = CallOptions(name="c", duration_s=1.0, audio=True, video=True, data_channel=True)
        endpoint = Endpoint(EndpointConfig(Role.CALLER, Path("/nonexistent"), options), link.send)
        async with endpoint:
            assert aioice.turn.create_turn_endpoint is not unhooked  # hooked while it runs
            async with asyncio.timeout(10):
                await endpoint.dial()
            mine = set(endpoint._tasks)
            assert mine  # state reports, the sampler
        assert aioice.turn.create_turn_endpoint is unhooked
        assert all(task.done() for task in mine)
        assert not endpoint._tasks

    asyncio.run(scenario())

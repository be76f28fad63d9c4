"""One end of a call as a headless Chromium: ``python -m testbed.calls.chromium.endpoint --config FILE``.

The same contract as the aiortc endpoint (``testbed.calls.endpoint``): the same config file, the
same messages to and from the relay (Hello, StateChange, Offer/Answer/Bye, Stats, Failure, Done)
and the same final :class:`~testbed.calls.endpoint_report.EndpointReport`, so the relay, the
conductor, metrics and verdicts never know which engine ran an end, and aiortc <-> Chromium calls
work.  This process runs in the node's namespace and

1. launches Chromium there (``browser.launch``: PDEATHSIG, own process group, profile and log in
   the call's directory) with the DevTools protocol on a pipe (``cdp``), loads ``page.js`` from
   a ``file://`` page (getUserMedia needs a secure context), binds ``tbEmit`` for state changes;
2. says Hello, then bridges: Dial -> ``tb.offer()`` -> Offer; Offer -> ``tb.answer()`` -> Answer;
   Answer -> ``tb.accept()``; the page's state changes -> StateChange (CLOCK_MONOTONIC times);
3. polls ``tb.poll()`` (getStats) every ``stats.POLL_INTERVAL_S`` for arrival timing and takes a
   snapshot on the call's one-second grid (``stats``);
4. on HangUp/Bye: stops media, says Bye, drains, reports Stats, closes the browser, says Done.

If the browser dies, the endpoint reports its connection ``failed`` and a Failure carrying the
browser's last log lines, then answers the hang-up with what it measured until then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from testbed.calls.chromium import stats as chrome_stats
from testbed.calls.chromium.audio import write_speech_wav
from testbed.calls.chromium.browser import Browser, ChromiumMissing, chromium_flags, find_chromium, launch
from testbed.calls.chromium.cdp import BrowserGone, CdpError, CdpPipe
from testbed.calls.endpoint_config import EndpointConfig
from testbed.calls.endpoint_report import EndpointReport, Snapshot
from testbed.calls.options import AUDIO_CODECS, VIDEO_CODECS
from testbed.calls.signalling import (
    Answer,
    Bye,
    Decoder,
    Dial,
    Done,
    Failure,
    HangUp,
    Hello,
    Layer,
    Message,
    Offer,
    Role,
    SignallingProtocolError,
    StateChange,
    Stats,
    encode,
)
from testbed.records.json import JsonObject

PAGE_JS = Path(__file__).with_name("page.js")
START_TIMEOUT_S = 20.0  # browser start + page load; the relay waits 30 s for Hello
STEP_TIMEOUT_S = 60.0  # one offer/answer step (gathering over TURN/TLS included)
CLOSE_GRACE_S = 2.0
MAX_SNAPSHOTS = 7200
BINDING = "tbEmit"

Send = Callable[[Message], Awaitable[None]]


class PageError(RuntimeError):
    """The page's JavaScript threw."""


class ChromiumEndpoint:
    def __init__(self, config: EndpointConfig, send: Send, workdir: Path) -> None:
        self.config = config
        self.role = config.role
        self.options = config.options
        self._send = send
        self._workdir = workdir
        stem = f"{self.options.name}.{self.role}"
        self.profile = workdir / f"{stem}.chromium"
        self.log = workdir / f"{stem}.chromium.log"
        self.browser: Browser | None = None
        self.cdp: CdpPipe | None = None
        self._session: str | None = None
        self._offset_ms = 0.0
        self._reception = chrome_stats.Reception(config.t0)
        self._snapshots: list[Snapshot] = []
        self._last_poll: chrome_stats.Poll | None = None
        self._hanging_up = False
        self._dead = False
        self._tasks: list[asyncio.Task[None]] = []
        self.gone = asyncio.Event()
        self.hello_sent = False

    # -- browser ------------------------------------------------------------------------------

    async def start(self) -> None:
        binary = find_chromium()
        self.profile.mkdir(parents=True, exist_ok=True)
        audio = write_speech_wav(self._workdir / "speech-16k.wav") if self.options.audio else None
        self.browser = await launch(binary, chromium_flags(user_data_dir=self.profile, fake_audio=audio), log=self.log)
        self.cdp = CdpPipe(self.browser.reader, self.browser.writer, self._on_event)
        self._tasks.append(asyncio.create_task(self._watch_browser()))
        async with asyncio.timeout(START_TIMEOUT_S):
            targets = await self.cdp.send("Target.getTargets")
            page = next(t for t in targets.get("targetInfos", []) if t.get("type") == "page")
            attached = await self.cdp.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})
            self._session = str(attached["sessionId"])
            await self._cmd("Runtime.enable")
            await self._cmd("Page.enable")
            await self._cmd("Runtime.addBinding", {"name": BINDING})
            html = self.profile / "page.html"
            script = PAGE_JS.read_text()
            html.write_text(f"<!doctype html><meta charset=utf-8><title>testbed</title><script>{script}</script>")
            await self._cmd("Page.navigate", {"url": html.as_uri()})
            while not await self._eval("typeof window.tb === 'object'"):  # noqa: ASYNC110 (polls the page)
                await asyncio.sleep(0.05)
            self._offset_ms = await self._clock_offset_ms()
            await self._eval(f"tb.setup({json.dumps(self._page_config())}, {self._offset_ms!r})")

    async def _clock_offset_ms(self, tries: int = 7) -> float:
        """CLOCK_MONOTONIC ms minus the page's performance.now() (which counts the same clock
        from the page's origin on Linux), from the quickest of a few round trips (NTP's rule:
        the shortest round trip bounds the error best)."""
        best: tuple[float, float] | None = None
        for _ in range(tries):
            before = time.monotonic()
            page_now = float(await self._eval("tb.now()"))
            after = time.monotonic()
            rtt = after - before
            if best is None or rtt < best[0]:
                best = (rtt, (before + after) / 2 * 1000.0 - page_now)
        assert best is not None
        return best[1]

    def _page_config(self) -> JsonObject:
        o = self.options
        return {
            "ice_servers": [{k: v for k, v in s.to_json().items() if v is not None} for s in o.ice_servers],
            "ice_transport_policy": o.ice_transport_policy.value,
            "audio": o.audio,
            "video": o.video,
            "video_width": o.video_width,
            "video_height": o.video_height,
            "video_fps": o.video_fps,
            "audio_mime": AUDIO_CODECS[o.audio_codec],
            "video_mime": VIDEO_CODECS[o.video_codec],
            "data_channel": o.data_channel,
            "data_reliable": o.data_reliable,
            "data_interval_s": o.data_interval_s,
            "data_message_bytes": o.data_message_bytes,
        }

    async def _cmd(self, method: str, params: JsonObject | None = None) -> JsonObject:
        assert self.cdp is not None
        return await self.cdp.send(method, params, session_id=self._session)

    async def _eval(self, expression: str) -> Any:
        reply = await self._cmd(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "error")
            raise PageError(str(text).splitlines()[0])
        return reply.get("result", {}).get("value")

    def _on_event(self, method: str, params: JsonObject, session: str | None) -> None:
        if method != "Runtime.bindingCalled" or params.get("name") != BINDING:
            return
        try:
            event = json.loads(params.get("payload", ""))
            layer = Layer(event["layer"])
            state = str(event["state"])
            t = float(event["t"])
        except (ValueError, KeyError, TypeError):
            return
        if layer is Layer.ENDPOINT:
            return  # the page's own life ("page-ready"): not a call state
        self.emit(layer, state, t)

    def emit(self, layer: Layer, state: str, t: float | None = None) -> None:
        if self.hello_sent:  # before Hello the relay takes nothing else
            self._spawn(StateChange(t=time.monotonic() if t is None else t, layer=layer, state=state))

    def _spawn(self, message: Message) -> None:
        async def guarded() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                await self._send(message)

        self._tasks.append(asyncio.create_task(guarded()))

    async def _watch_browser(self) -> None:
        assert self.cdp is not None and self.browser is not None
        await self.cdp.run()
        self.gone.set()
        if self._hanging_up or not self.hello_sent:
            return  # closing, or still starting (run() reports a failed start)
        # The browser died under the call: the connection is gone with it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.browser.process.wait()
        self._dead = True
        how = self.browser.describe_exit()
        self.emit(Layer.CONNECTION, "failed")
        tail = self.browser.log_tail()
        print(f"chromium {how}; its last log lines:\n{tail}", file=sys.stderr)
        with contextlib.suppress(ConnectionError, OSError):
            await self._send(
                Failure(f"the {self.role} browser (chromium) {how}; its last log lines: {_one_line(tail)}")
            )

    # -- call flow ----------------------------------------------------------------------------

    def start_sampling(self) -> None:
        if not any(t.get_name() == "sampling" for t in self._tasks):
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="sampling"))

    async def _poll_loop(self) -> None:
        interval = chrome_stats.POLL_INTERVAL_S
        per_sample = max(1, round(self.options.sample_interval_s / interval))
        origin = self.config.t0 if self.config.t0 is not None else time.monotonic()
        k = int((time.monotonic() - origin) / interval) + 1
        while not self._hanging_up and not self._dead:
            await asyncio.sleep(max(0.0, origin + k * interval - time.monotonic()))
            if self._hanging_up or self._dead:
                return
            try:
                await self.poll(snapshot=k % per_sample == 0)
            except (CdpError, PageError):
                return  # the browser is going away: the watcher reports it
            k = max(k + 1, int((time.monotonic() - origin) / interval) + 1)

    async def poll(self, *, snapshot: bool) -> chrome_stats.Poll:
        raw = await self._eval("tb.poll()")
        now = time.monotonic()
        poll = chrome_stats.parse_poll(json.loads(raw))
        self._last_poll = poll
        for kind in self._reception.update(now, poll):
            self.emit(Layer.MEDIA, f"first-{kind.value}-received")
        if snapshot and len(self._snapshots) < MAX_SNAPSHOTS:
            self._snapshots.append(chrome_stats.snapshot(now, poll, data_channel=self.options.data_channel))
        return poll

    async def dial(self) -> None:
        self.start_sampling()
        sdp = await self._eval("tb.offer()")
        await self._send(Offer(sdp=str(sdp)))
        self.emit(Layer.SIGNALLING, "offer-sent")

    async def on_offer(self, sdp: str) -> None:
        self.start_sampling()
        self.emit(Layer.SIGNALLING, "offer-received")
        answer = await self._eval(f"tb.answer({json.dumps(sdp)})")
        await self._send(Answer(sdp=str(answer)))
        self.emit(Layer.SIGNALLING, "answer-sent")

    async def on_answer(self, sdp: str) -> None:
        self.emit(Layer.SIGNALLING, "answer-received")
        await self._eval(f"tb.accept({json.dumps(sdp)})")

    async def hang_up(self, *, say_bye: bool, reason: str) -> None:
        if self._hanging_up:
            return
        alive = not self._dead and not self.gone.is_set()
        if alive and len(self._snapshots) < MAX_SNAPSHOTS:
            with contextlib.suppress(CdpError, PageError, ValueError):
                await self.poll(snapshot=True)  # the last partial interval
        self._hanging_up = True
        if alive:
            with contextlib.suppress(CdpError, PageError):
                await self._eval("tb.stop()")
        self.emit(Layer.MEDIA, "stopped")
        if say_bye:
            await self._send(Bye(reason=reason))
            self.emit(Layer.SIGNALLING, "bye-sent")
        await asyncio.sleep(self.options.drain_s)
        await self._send(Stats(t=time.monotonic(), report=(await self.report(alive)).to_json()))
        await self.close()
        await self._send(Done())

    async def report(self, alive: bool) -> EndpointReport:
        poll, delays = self._last_poll, []
        if alive:
            try:
                async with asyncio.timeout(2.0):
                    poll = chrome_stats.parse_poll(json.loads(await self._eval("tb.poll()")))
                    delays = [float(d) for d in json.loads(await self._eval("tb.delays()"))]
            except (CdpError, PageError, ValueError, TimeoutError):
                pass
        if poll is None:
            return EndpointReport(snapshots=tuple(self._snapshots))
        return chrome_stats.report(
            poll,
            self._reception,
            snapshots=self._snapshots,
            data_channel=self.options.data_channel,
            delays_ms=delays,
        )

    async def close(self) -> None:
        """Close the page's peer connection and the browser, then kill what is left of it."""
        for task in self._tasks:
            if task.get_name() == "sampling":
                task.cancel()
        if self.browser is None:
            return
        if self.cdp is not None and not self.gone.is_set():
            with contextlib.suppress(CdpError, PageError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._eval("tb.close()")
            with contextlib.suppress(CdpError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.cdp.send("Browser.close")
        await self.browser.stop(CLOSE_GRACE_S)
        shutil.rmtree(self.profile, ignore_errors=True)

    async def aclose(self) -> None:
        self._hanging_up = True
        with contextlib.suppress(Exception):
            await self.close()
        if self.browser is not None:
            self.browser.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-1500:]


# -- process ------------------------------------------------------------------------------------


async def run(config: EndpointConfig, workdir: Path) -> int:
    reader, writer = await asyncio.open_unix_connection(str(config.socket))
    lock = asyncio.Lock()

    async def send(message: Message) -> None:
        async with lock:
            writer.write(encode(message))
            await writer.drain()

    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main.cancel)
    endpoint = ChromiumEndpoint(config, send, workdir)
    try:
        try:
            await endpoint.start()
        except ChromiumMissing as exc:
            print(f"endpoint {config.role}: {exc}", file=sys.stderr)
            return 2
        except (CdpError, PageError, TimeoutError, StopIteration, KeyError) as exc:
            tail = endpoint.browser.log_tail() if endpoint.browser else ""
            what = f"{type(exc).__name__}: {exc}"
            print(f"endpoint {config.role}: chromium did not start: {what}\n{tail}", file=sys.stderr)
            return 1
        return await _follow_relay(endpoint, reader, send)
    except asyncio.CancelledError:
        return 0
    finally:
        await endpoint.aclose()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _follow_relay(endpoint: ChromiumEndpoint, reader: asyncio.StreamReader, send: Send) -> int:
    """As the aiortc endpoint: Hello, then offer/answer steps in order in a worker beside the
    read loop, so a HangUp is heard while the page is still gathering."""
    await send(Hello(role=endpoint.role, pid=os.getpid()))
    endpoint.hello_sent = True
    decoder = Decoder()
    steps: asyncio.Queue[Message] = asyncio.Queue()
    worker = asyncio.create_task(_negotiate_in_order(endpoint, steps, send))
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return 0
            for message in decoder.feed(data):
                if isinstance(message, Bye | HangUp):
                    worker.cancel()
                    await asyncio.wait([worker])
                    with contextlib.suppress(ConnectionError, OSError):
                        if isinstance(message, Bye):
                            endpoint.emit(Layer.SIGNALLING, "bye-received")
                            await endpoint.hang_up(say_bye=False, reason=message.reason)
                        else:
                            await endpoint.hang_up(say_bye=True, reason=message.reason)
                    return 0
                steps.put_nowait(message)
    except SignallingProtocolError as exc:
        print(f"endpoint {endpoint.role}: bad message from relay: {exc}", file=sys.stderr)
        return 3
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def _negotiate_in_order(endpoint: ChromiumEndpoint, steps: asyncio.Queue[Message], send: Send) -> None:
    while True:
        message = await steps.get()
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                match message:
                    case Dial() if endpoint.role is Role.CALLER:
                        await endpoint.dial()
                    case Offer(sdp=sdp) if endpoint.role is Role.CALLEE:
                        await endpoint.on_offer(sdp)
                    case Answer(sdp=sdp) if endpoint.role is Role.CALLER:
                        await endpoint.on_answer(sdp)
                    case _:
                        await send(Failure(f"the chromium {endpoint.role} cannot handle {message.type} here"))
        except (ConnectionError, OSError):
            pass
        except BrowserGone:
            pass  # the watcher reports the browser's death with its log
        except (CdpError, PageError, TimeoutError) as exc:
            with contextlib.suppress(ConnectionError, OSError):
                await send(Failure(f"chromium {endpoint.role}: {type(exc).__name__}: {exc}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.calls.chromium.endpoint")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = EndpointConfig.load(args.config)
    return asyncio.run(run(config, args.config.resolve().parent))


if __name__ == "__main__":
    sys.exit(main())

"""The DevTools protocol over Chromium's ``--remote-debugging-pipe``: :class:`CdpPipe`.

Why a pipe and no client library: with ``--remote-debugging-pipe`` Chromium reads commands from
fd 3 and writes replies and events to fd 4, each message one JSON object ended by a NUL byte.
There is no port to open in the node's namespace (nothing for the censor to see, no collision
between browsers), no HTTP discovery step, and the pipe's EOF is the browser's death, seen the
instant it happens.  What testbed sends is a handful of commands (Target.attachToTarget,
Runtime.addBinding/evaluate, Page.navigate, Browser.close), so the protocol fits in this module;
the PyPI clients were weighed and not needed (docs/calls.md, "Engines").

:class:`MessageSplitter` (the framing) is sans-IO and unit-tested; :class:`CdpPipe` is the thin
asyncio edge around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from testbed.records.json import JsonObject

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A getStats reply is tens of KB; Chromium itself caps pipe messages far below this."""


class CdpError(RuntimeError):
    """A command failed: the browser answered with an error, or it went away before answering."""


class BrowserGone(CdpError):
    """The pipe closed: the browser exited or crashed."""


class MessageSplitter:
    """NUL-delimited JSON messages out of a byte stream (sans-IO)."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list[JsonObject]:
        self._buffer += data
        out: list[JsonObject] = []
        while (end := self._buffer.find(b"\0")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            try:
                message = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CdpError(f"the browser sent a message that is not JSON: {exc}") from None
            if isinstance(message, dict):
                out.append(message)
        if len(self._buffer) > self._max:
            raise CdpError(f"a DevTools message longer than {self._max} bytes")
        return out


def encode(message_id: int, method: str, params: JsonObject | None, session_id: str | None) -> bytes:
    message: JsonObject = {"id": message_id, "method": method, "params": params or {}}
    if session_id is not None:
        message["sessionId"] = session_id
    return json.dumps(message, separators=(",", ":")).encode() + b"\0"


EventHandler = Callable[[str, JsonObject, str | None], None]
"""on_event(method, params, session_id)."""


class CdpPipe:
    """Commands and events over the two pipe ends (``reader``: the browser's fd 4, ``writer``:
    its fd 3).  :meth:`run` reads until EOF; every command still waiting then fails with
    :class:`BrowserGone`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_event: EventHandler) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[JsonObject]] = {}
        self._splitter = MessageSplitter()
        self.closed = asyncio.Event()

    async def run(self) -> None:
        try:
            while data := await self._reader.read(1 << 16):
                for message in self._splitter.feed(data):
                    self._dispatch(message)
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserGone("the browser closed its DevTools pipe"))
            self._pending.clear()

    def _dispatch(self, message: JsonObject) -> None:
        message_id = message.get("id")
        if isinstance(message_id, int):
            future = self._pending.pop(message_id, None)
            if future is not None and not future.done():
                error = message.get("error")
                if error is not None:
                    future.set_exception(CdpError(f"{error.get('message', error)}"))
                else:
                    result = message.get("result")
                    future.set_result(result if isinstance(result, dict) else {})
            return
        method = message.get("method")
        if isinstance(method, str):
            params = message.get("params")
            session = message.get("sessionId")
            self._on_event(
                method, params if isinstance(params, dict) else {}, session if isinstance(session, str) else None
            )

    async def send(self, method: str, params: JsonObject | None = None, *, session_id: str | None = None) -> JsonObject:
        if self.closed.is_set():
            raise BrowserGone("the browser closed its DevTools pipe")
        self._next_id += 1
        future: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        try:
            self._writer.write(encode(self._next_id, method, params, session_id))
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._pending.pop(self._next_id, None)
            raise BrowserGone(f"cannot write to the browser's DevTools pipe: {exc}") from None
        return await future

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()

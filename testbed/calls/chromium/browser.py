"""A headless Chromium owned by one endpoint process: found, launched, watched, killed.

Ownership (so no browser outlives its call, whatever happens to the run):

* the browser is launched through ``testbed.net.nsexec --parent <endpoint pid>``, which sets
  ``PR_SET_PDEATHSIG=SIGKILL``: if the endpoint dies (even by SIGKILL), the kernel kills the
  browser, as for every other process of a run;
* it leads its own process group (``start_new_session``), and :meth:`Browser.kill` SIGKILLs the
  whole group (renderer, GPU, network and zygote processes run in it: with ``--no-sandbox``
  Chromium makes no namespaces of its own);
* every one of its processes is inside the node's network namespace, where ``testbed clean``
  kills whatever a killed run left behind;
* its profile (``--user-data-dir``) is in the call's directory under ``/run/testbed/<rid>/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DEBIAN_PACKAGE = "chromium"
# The real binary first: Debian's /usr/bin/chromium is a shell wrapper that reads
# /etc/chromium.d and adds flags of its own.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
LOG_TAIL_LINES = 12


class ChromiumMissing(RuntimeError):
    pass


def find_chromium() -> str:
    """The Chromium binary, or :class:`ChromiumMissing` naming the package to install."""
    for name in CANDIDATES:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    raise ChromiumMissing(f"engine chromium needs Chromium: apt-get install {DEBIAN_PACKAGE} (or run scripts/setup.sh)")


def chromium_flags(*, user_data_dir: Path, fake_audio: Path | None, extra: tuple[str, ...] = ()) -> list[str]:
    """Command-line switches for a headless call endpoint (why each one is there)."""
    flags = [
        "--headless=new",
        "--no-sandbox",  # root inside a namespace: the setuid/user-namespace sandbox cannot start
        "--remote-debugging-pipe",  # DevTools on fds 3/4: no port in the node (see cdp.py)
        f"--user-data-dir={user_data_dir}",
        "--use-fake-device-for-media-stream",  # a synthetic camera (Chromium's test pattern) and mic
        "--use-fake-ui-for-media-stream",  # getUserMedia without a permission prompt
        # Real host addresses in candidates (not name.local mDNS): there is no mDNS in a namespace.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        # coturn's TLS listener has the run's self-signed certificate (aiortc does not verify it
        # either: a censor sees the same handshake).
        "--ignore-certificate-errors",
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",  # no update, safe-browsing or metrics traffic
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-gpu",
        "--mute-audio",
        "--disable-background-timer-throttling",  # pacing of data-channel sends in a hidden page
        "--disable-renderer-backgrounding",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
    ]
    if fake_audio is not None:
        flags.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    return [*flags, *extra, "about:blank"]


@dataclass
class Browser:
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    """The browser's fd 4: replies and events."""
    writer: asyncio.StreamWriter
    """The browser's fd 3: commands."""
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the browser's whole process group (idempotent)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the browser to exit (after Browser.close), then kill the
        group and reap it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self.process.wait()
        self.kill()
        await self.process.wait()
        self.writer.close()

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is None:
            return "closed its DevTools pipe"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
            return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log, lines)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-16384:]
    except OSError as exc:
        return f"(no browser log: {exc})"
    text = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return "\n".join(text[-lines:]) or "(the browser logged nothing)"


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered >= 10 (close-on-exec off), so the shell can move it to 3/4."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


def _log_file(path: Path) -> BinaryIO:
    return path.open("wb")  # the browser's stdout and stderr; closed here once it has its copy


async def launch(binary: str, flags: list[str], *, log: Path) -> Browser:
    """Start Chromium in this process's namespace, tied to this process (see the module)."""
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    child_in, child_out = _high_fd(to_browser_r), _high_fd(from_browser_w)
    # Chromium wants its DevTools pipe on exactly fds 3 and 4: a tiny Python step moves them
    # there (dash cannot name fds above 9), then becomes nsexec, which becomes Chromium.
    me = os.getpid()
    nsexec = [
        sys.executable,
        "-m",
        "testbed.net.nsexec",
        "--parent",
        str(me),
        f"/proc/{me}/ns/net",
        "--",
        binary,
        *flags,
    ]
    mover = (
        "import os, sys; "
        f"os.dup2({child_in}, 3); os.dup2({child_out}, 4); os.close({child_in}); os.close({child_out}); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    log_file = _log_file(log)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            mover,
            *nsexec,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            pass_fds=(child_in, child_out),
            start_new_session=True,
        )
    finally:
        log_file.close()
        os.close(child_in)
        os.close(child_out)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_browser_r, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), os.fdopen(to_browser_w, "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return Browser(process=process, reader=reader, writer=writer, log=log)

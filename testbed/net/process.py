"""Child processes inside network namespaces, owned by an async context manager."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any


def netns_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns`` and dies with this process."""
    return [sys.executable, "-m", "testbed.net.nsexec", "--parent", str(os.getpid()), netns, "--", *argv]


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = 3.0) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL and reap.

    If the caller is cancelled while waiting, the child is SIGKILLed before the cancellation
    propagates, so cancellation can never leave a process running.
    """
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise


def signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``proc`` leads (``netns_process`` starts each child in
    a session of its own): a shell's pipeline and background children go with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@contextlib.asynccontextmanager
async def netns_process(
    netns: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    grace_s: float = 3.0,
    **kwargs: Any,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv`` in ``netns``; on exit (normal, error or cancellation) terminate and reap it."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = await asyncio.create_subprocess_exec(
        *netns_argv(netns, argv), env=full_env, start_new_session=True, **kwargs
    )
    try:
        yield proc
    finally:
        await terminate(proc, grace_s)

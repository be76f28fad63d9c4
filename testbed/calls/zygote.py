"""A pre-imported parent for aiortc endpoint processes: ``python -m testbed.calls.zygote --socket PATH``.

Starting an aiortc endpoint used to cost ~0.3-0.5 s of CPU before its first frame, most of it
importing aiortc, av and cryptography; a scenario starts two per call, all at once.  The zygote
imports ``testbed.calls.endpoint`` once, prints ``ready``, and then forks a child per request,
which carries on from there without importing anything (docs/performance.md, "Calls").

The orchestrator still starts one process per endpoint in the endpoint's namespace, as for any
engine: ``testbed.calls.forkclient`` (tiny: it imports nothing heavy).  The client sends the
zygote its stdin/stdout/stderr and its network namespace (file descriptors, SCM_RIGHTS) and the
config path; the zygote forks, the child joins that namespace (``setns``, allowed: the child is
single-threaded, like the zygote), takes over those descriptors and runs ``endpoint.main``.  The
zygote answers ``pid N``, later ``exit CODE``; the client forwards SIGTERM/SIGINT to the child and
exits with its code, so the orchestrator handles it exactly like an endpoint process.

Nothing outlives its owner: the zygote dies with its parent (PR_SET_PDEATHSIG), children with
the zygote; a client that goes away (even SIGKILLed) closes its connection, and the zygote
SIGKILLs that client's child.  Python's ``random`` is reseeded in each child by Python itself,
OpenSSL reseeds on fork; ``secrets`` reads the kernel.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from pathlib import Path

from testbed.calls import endpoint
from testbed.net.nsexec import die_with_parent, enter_netns

MAX_FDS = 4  # stdin, stdout, stderr, the network namespace
MAX_REQUEST = 65536


def _child(request: dict[str, object], fds: list[int], keep_closed: list[int]) -> None:
    """In the forked child: become the endpoint; never returns."""
    code = 1
    try:
        for fd in keep_closed:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        die_with_parent()
        stdin, stdout, stderr, netns = fds
        enter_netns(f"/proc/self/fd/{netns}")
        for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        code = endpoint.main(["--config", str(request["config"])])
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Zygote:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._children: dict[int, socket.socket | None] = {}  # child pid -> its client (None: gone)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._wake_w)
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "sigchld")
        while True:
            for key, _ in self._selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "sigchld":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    self._reap()
                else:
                    self._client_event(key.data)

    def _accept(self) -> None:
        conn, _ = self._listener.accept()
        try:
            data, fds = _recv_fds(conn)
            request = json.loads(data)
            if len(fds) != MAX_FDS or not isinstance(request, dict) or "config" not in request:
                raise ValueError("a request is {'config': PATH} with stdin, stdout, stderr and a netns fd")
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                conn.sendall(f"error {exc}\n".encode())
            conn.close()
            return
        keep_closed = [self._listener.fileno(), self._wake_r, self._wake_w, conn.fileno()]
        keep_closed += [c.fileno() for c in self._children.values() if c is not None]
        pid = os.fork()
        if pid == 0:
            _child(request, fds, keep_closed)
        for fd in fds:
            os.close(fd)
        self._children[pid] = conn
        self._selector.register(conn, selectors.EVENT_READ, pid)
        with contextlib.suppress(OSError):
            conn.sendall(f"pid {pid}\n".encode())

    def _client_event(self, pid: int) -> None:
        conn = self._children.get(pid)
        if conn is None:
            return
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if not data:
            # The client went away (killed): its endpoint must not outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._selector.unregister(conn)
            conn.close()
            self._children[pid] = None  # reaped later

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self._children.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._selector.unregister(conn)
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


def _recv_fds(conn: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancdata, _flags, _addr = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.calls.zygote")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        args.socket.unlink()  # a leftover of a killed run with the same workdir
    listener.bind(str(args.socket))
    os.chmod(args.socket, 0o600)  # only root may have endpoints forked
    listener.listen(128)
    # Pre-encode the tone of a call without a profile (both sides): every child inherits it.
    endpoint.warm_up()
    print("ready", flush=True)
    try:
        Zygote(listener).serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

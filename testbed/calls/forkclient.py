"""An aiortc endpoint, forked from the run's zygote: ``python -S -I .../forkclient.py --config FILE``.

Started by the orchestrator in the endpoint's namespace like any endpoint process (``engine``).
If the config names a zygote (``testbed.calls.zygote``) that answers, this process hands it its
stdio and network namespace, forwards SIGTERM/SIGINT to the child it forks and exits with the
child's code; otherwise it becomes the endpoint itself (``exec``), as before.  It imports nothing
heavy (only the standard library, so it runs without site): that is the point.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

CONNECT_TIMEOUT_S = 5.0


def _exec_endpoint(config: str) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "testbed.calls.endpoint", "--config", config])


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--config":
        print("usage: python -m testbed.calls.forkclient --config FILE", file=sys.stderr)
        return 2
    config = argv[1]
    try:
        with open(config) as f:
            zygote = json.load(f).get("zygote")
    except (OSError, ValueError, AttributeError):
        zygote = None  # the endpoint reports a bad config itself
    if not isinstance(zygote, str):
        _exec_endpoint(config)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(zygote)
        socket.send_fds(conn, [json.dumps({"config": config}).encode()], [0, 1, 2, netns])
        answers = conn.makefile("rb")
        answer = answers.readline().decode(errors="replace")
        if not answer.startswith("pid "):
            raise OSError(f"zygote answered {answer.strip()!r}")
        pid = int(answer.split()[1])
    except (OSError, ValueError) as exc:
        print(f"forkclient: no zygote at {zygote} ({exc}); starting the endpoint itself", file=sys.stderr)
        conn.close()
        _exec_endpoint(config)
    os.close(netns)
    conn.settimeout(None)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    for raw in answers:  # a signal interrupts the read, runs forward() and the read goes on
        line = raw.decode(errors="replace")
        if line.startswith("exit "):
            return int(line.split()[1])
    print("forkclient: the zygote went away before the endpoint exited", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

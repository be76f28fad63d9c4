"""iptables rules that send forwarded traffic to the censor's queue (inside the censor namespace).

iptables is the one external tool the censor needs: this kernel has no nft ``queue`` expression,
but the iptables NFQUEUE target works (with either iptables backend).  Every rule carries a
comment with the run id, and is removed by the same context manager that added it.

IPv6: the same FORWARD rule in ip6tables, built by :func:`rule_argv` beside the IPv4 one, and
installed by ``queue_rules`` when the run's network carries IPv6 (``ip: v6`` or ``dual``).  Both
families feed the one queue, so one engine sees a call's IPv4 and IPv6 candidates together.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from testbed.core.policy_kinds import Family


class FirewallError(Exception):
    pass


TOOLS = {Family.V4: "iptables", Family.V6: "ip6tables"}
"""The command per family; both come with Debian's iptables package."""


def _tool_path(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise FirewallError(
            f"{tool} is not installed; run the setup command from the README (apt-get install iptables)"
        )
    return path


def queue_rule(queue_num: int, tag: str) -> list[str]:
    # No --queue-bypass: with nobody bound to the queue the kernel drops (fail closed).  The rule
    # reads the same in ip6tables: FORWARD, comment and NFQUEUE take no family-specific option.
    return ["FORWARD", "-m", "comment", "--comment", f"testbed:{tag}", "-j", "NFQUEUE", "--queue-num", str(queue_num)]


def rule_argv(op: str, queue_num: int, tag: str, family: Family = Family.V4) -> list[str]:
    """The whole command that appends (``-A``) or deletes (``-D``) the queue rule of ``family``
    (the tool's name, not its path: the caller resolves it)."""
    if op not in ("-A", "-D"):
        raise ValueError(f"op is -A or -D, not {op!r}")
    return [TOOLS[family], "-w", "5", op, *queue_rule(queue_num, tag)]


def _run(argv: list[str]) -> None:
    tool, *args = argv
    proc = subprocess.run([_tool_path(tool), *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        msg = proc.stderr.strip() or proc.stdout.strip()
        hint = ""
        if "NFQUEUE" in msg or "No chain/target/match" in msg:
            hint = " (the kernel lacks the NFQUEUE target: load xt_NFQUEUE / nfnetlink_queue)"
        raise FirewallError(f"{tool} {' '.join(args[2:])} failed: {msg}{hint}")


@contextlib.contextmanager
def queue_rules(queue_num: int, *, tag: str, families: tuple[Family, ...] = (Family.V4,)) -> Iterator[None]:
    """The queue rule of each family, each removed on exit (those added before a failure too)."""
    with contextlib.ExitStack() as stack:
        for family in families:
            _run(rule_argv("-A", queue_num, tag, family))
            stack.callback(_remove, rule_argv("-D", queue_num, tag, family))
        yield


def _remove(argv: list[str]) -> None:
    with contextlib.suppress(FirewallError, subprocess.TimeoutExpired):
        _run(argv)


def queue_counters(queue_num: int) -> dict[str, int]:
    """Kernel-side counters of our queue (drops the engine never saw), from /proc of this netns."""
    # Columns (net/netfilter/nfnetlink_queue.c): queue, portid, queue_total, copy_mode, copy_range,
    # queue_dropped, user_dropped, id_sequence, 1
    try:
        lines = Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        cols = line.split()
        if len(cols) >= 8 and cols[0].isdigit() and int(cols[0]) == queue_num:
            return {
                "queue_dropped": int(cols[5]),
                "user_dropped": int(cols[6]),
                "queued_now": int(cols[2]),
            }
    return {}

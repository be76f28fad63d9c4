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


# The bit that says "settled: the kernel forwards the rest" (one bit of the packet mark and of the
# connmark; nothing else in the censor namespace marks packets).
OFFLOAD_MARK = 0x20000000


def offload_rule_specs(mark: int, tag: str) -> list[tuple[str, str, list[str]]]:
    """(table, chain, rule), in chain order, of the rules that take settled flows out of the queue
    (docs/policy.md, "Offload"): a packet the censor accepted with ``mark`` set saves it into its
    connection's mark as it leaves, and FORWARD accepts a marked connection's packets before they
    reach the queue rule. New flows and every unmarked one still meet the queue rule, which keeps
    no --queue-bypass (fail closed).

    Conntrack follows TCP and UDP only (the transports offloaded), and not the censor's own
    packets (injected RSTs/ICMP errors, which the engine does not count either): a packet held in
    the queue has an unconfirmed conntrack entry, and a second packet of its flow arriving
    meanwhile gets one of its own that clashes when it leaves; the kernel resolves that clash
    for UDP but drops the packet for ICMP (measured: the 2nd ping of a delayed series lost)."""
    comment = ["-m", "comment", "--comment", f"testbed:{tag}"]
    m = f"{mark:#x}/{mark:#x}"
    return [
        ("raw", "PREROUTING", ["-p", "tcp", *comment, "-j", "ACCEPT"]),
        ("raw", "PREROUTING", ["-p", "udp", *comment, "-j", "ACCEPT"]),
        ("raw", "PREROUTING", [*comment, "-j", "CT", "--notrack"]),
        ("raw", "OUTPUT", [*comment, "-j", "CT", "--notrack"]),
        ("mangle", "POSTROUTING", ["-m", "mark", "--mark", m, *comment, "-j", "CONNMARK", "--save-mark",
                                   "--mask", f"{mark:#x}"]),
        ("filter", "FORWARD", ["-m", "connmark", "--mark", m, *comment, "-j", "ACCEPT"]),
    ]  # fmt: skip


@contextlib.contextmanager
def offload_rules(mark: int, *, tag: str) -> Iterator[None]:
    """Insert the offload rules at the top of their chains, in order (before the queue rule,
    whenever that is added), and remove exactly them afterwards. IPv4 only (iptables): IPv6
    flows are never offloaded (core/offload.py) and ip6tables gets no conntrack rule."""
    added: list[tuple[str, str, list[str]]] = []
    position: dict[tuple[str, str], int] = {}
    try:
        for table, chain, rule in offload_rule_specs(mark, tag):
            n = position[table, chain] = position.get((table, chain), 0) + 1
            try:
                _run([TOOLS[Family.V4], "-w", "5", "-t", table, "-I", chain, str(n), *rule])
            except FirewallError as exc:
                raise FirewallError(
                    f"{exc} (offload needs conntrack and the connmark/CONNMARK/CT extensions: load nf_conntrack, "
                    "xt_connmark and xt_CT, or set `censor: {offload: false}`)"
                ) from exc
            added.append((table, chain, rule))
        yield
    finally:
        for table, chain, rule in reversed(added):
            with contextlib.suppress(FirewallError, subprocess.TimeoutExpired):
                _run([TOOLS[Family.V4], "-w", "5", "-t", table, "-D", chain, *rule])

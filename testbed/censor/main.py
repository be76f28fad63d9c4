"""The censor process: ``python -m testbed.censor.main CONFIG.json``, run inside the censor namespace.

It is started by the runner through ``testbed.net.nsexec`` (so it is already in its namespace and
dies with the runner), and speaks to the runner with one short JSON object per line on stdout,
the records of ``testbed.records.censor_message`` (``control.CensorHandle`` reads them):

    CensorReady     rules installed and queue bound: traffic may start
    CensorStats     every second: packets, bytes, flows, held packets
    CensorFinal     after SIGTERM: the ``censor`` section of the result is in a file

The summary goes through a file (``final_path`` in the config, in the run directory) because it
grows with flows, rules and events, and a pipe read line by line has a line limit; the line only
says where it is.

Anything that goes wrong is written to stderr and the process exits non-zero; since the queue is
bound without bypass, the kernel then drops forwarded traffic (fail closed) and the runner ends
the run with an error that says the censor died.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from testbed.censor import firewall
from testbed.censor.config import CensorConfig, PolicyCompileError, build_policy
from testbed.censor.conntrack import dump_marked, enable_accounting
from testbed.censor.nfqueue import QueueAdapter
from testbed.core.classify import Classifier
from testbed.core.engine import CensorEngine
from testbed.core.offload import OffloadTable
from testbed.core.policy_kinds import Family
from testbed.records import censor_message
from testbed.records.censor_message import CensorFinal, CensorMessage, CensorReady, CensorStats
from testbed.records.json import JsonObject

STATS_INTERVAL_S = 1.0


def emit(message: CensorMessage) -> None:
    sys.stdout.write(censor_message.encode(message))
    sys.stdout.flush()


FORWARDING = {
    Family.V4: Path("/proc/sys/net/ipv4/ip_forward"),
    Family.V6: Path("/proc/sys/net/ipv6/conf/all/forwarding"),
}


@contextlib.contextmanager
def ip_forwarding(families: tuple[Family, ...] = (Family.V4,)) -> Iterator[None]:
    # /proc/sys/net is per network namespace: this writes the censor namespace's own switches.
    try:
        for family in families:
            FORWARDING[family].write_text("1\n")
        yield
    finally:
        for family in families:
            with contextlib.suppress(OSError):
                FORWARDING[family].write_text("0\n")


async def serve(config: CensorConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    fatal: list[BaseException] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        stop.set()

    start = loop.time()
    policy, lists = build_policy(config.policy, seed=config.seed, start=start)
    classifier = Classifier(
        inspect_packets=config.inspect_packets,
        max_flows=config.max_flows,
        reassemble_tls=config.reassemble_tls,
        extra_address_lists=lists,
    )
    engine = CensorEngine(classifier, policy, start=start)
    queue_num = config.queue_num
    kernel: dict[str, int] = {}
    offload = OffloadTable(engine) if config.offload else None
    families = (Family.V4, Family.V6) if config.ipv6 else (Family.V4,)
    with contextlib.ExitStack() as stack:
        stack.enter_context(ip_forwarding(families))
        if offload is not None:
            # Accounting first: it is attached to a conntrack entry when the entry is made, and
            # the offload rules below start conntrack in this namespace (IPv4 only: iptables).
            enable_accounting()
            stack.enter_context(firewall.offload_rules(firewall.OFFLOAD_MARK, tag=config.run_id))
        stack.enter_context(firewall.queue_rules(queue_num, tag=config.run_id, families=families))
        adapter = QueueAdapter(
            engine,
            queue_num=queue_num,
            max_len=config.max_len,
            on_fatal=on_fatal,
            offload=offload,
            offload_mark=firewall.OFFLOAD_MARK,
        )
        adapter.start()
        try:
            emit(CensorReady(queue_num=queue_num, t0=engine.start))
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATS_INTERVAL_S)
                if offload is not None and len(offload):
                    # Every second: an entry lives >= 10 s past its flow's last packet (TCP CLOSE;
                    # UDP 30 s), so the last merge before it goes has its final counts.
                    entries = await asyncio.to_thread(dump_marked, firewall.OFFLOAD_MARK)
                    offload.merge(entries, loop.time())
                st = engine.stats
                emit(
                    CensorStats(
                        t_s=round(loop.time() - engine.start, 3),
                        packets=st.packets,
                        bytes=st.bytes,
                        flows=len(classifier.table),
                        held=adapter.held,
                    )
                )
            kernel = firewall.queue_counters(queue_num)  # while the queue is still bound
        finally:
            end = loop.time()
            adapter.release_due(end)  # what is due leaves; the rest is dropped (close)
            adapter.close()
        if offload is not None and len(offload):
            # The queue is closed: no packet counted by conntrack is still on its way to the engine.
            offload.merge(await asyncio.to_thread(dump_marked, firewall.OFFLOAD_MARK), end)
        summary = engine.summary(now=end)
        summary["kernel"] = kernel
        summary["held_max"] = adapter.held_max
        summary["injected"] = adapter.injected
        summary["inject_errors"] = adapter.inject_errors
        summary["offload"] = {"enabled": offload is not None, **(offload.summary() if offload is not None else {})}
    final_path = Path(config.final_path)
    write_final(final_path, summary)
    if fatal:
        exc = fatal[0]
        print(f"censor engine failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit(CensorFinal(file=str(final_path), error=f"{type(exc).__name__}: {exc}"))
        return 3
    emit(CensorFinal(file=str(final_path)))
    return 0


def write_final(path: Path, summary: JsonObject) -> None:
    # Written whole, then renamed: the runner never reads half a summary.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, separators=(",", ":")))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m testbed.censor.main CONFIG.json", file=sys.stderr)
        return 2
    try:
        config = CensorConfig.from_json(json.loads(Path(argv[0]).read_text()))
    except (OSError, ValueError) as exc:  # CensorConfigError and json's errors are ValueErrors
        print(f"censor: config {argv[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        # select(2) takes microsecond timeouts; asyncio's epoll selector rounds every wait up to
        # a whole millisecond, which made every held packet leave 0.5-1 ms late (measured in
        # benchmarks/fidelity.py). The censor watches a handful of fds, so select's limit is moot.
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
            return runner.run(serve(config))
    except PolicyCompileError as exc:
        print(f"censor: policy: {exc}", file=sys.stderr)
        return 4
    except firewall.FirewallError as exc:
        print(f"censor: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:
        print(f"censor: {exc}", file=sys.stderr)
        return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

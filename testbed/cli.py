"""The ``testbed`` command. Thin: parses arguments and calls into the package.

Exit codes: 0 success / every expectation held, 1 a run or expectation failed, 2 usage, scenario,
capture or privilege errors.  Errors the user can cause are printed as one clear message, never as
a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from testbed import __version__
from testbed.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from testbed.session import SessionState


def _cmd_run(args: argparse.Namespace) -> int:
    from testbed.net.privileges import require_privileges
    from testbed.report.console import ProgressBoard, print_summary
    from testbed.report.html import write_html_report
    from testbed.report.json_report import write_json
    from testbed.report.junit import write_junit
    from testbed.runner import ScenarioResult, precheck, run_scenario
    from testbed.scenario.loader import discover, load_scenario

    # Load and validate everything first: a typo in the tenth file should not cost nine runs.
    loaded = [load_scenario(p) for p in discover(args.paths)]
    for item in loaded:
        precheck(item)
    if args.jobs < 1:
        raise UsageError("-j/--jobs must be at least 1")
    names = [item.scenario.name for item in loaded]
    if len(set(names)) != len(names):
        raise UsageError("two scenario files share a name; names label results and reports, make them unique")
    require_privileges()
    results: list[ScenarioResult | None] = [None] * len(loaded)
    board = ProgressBoard(sys.stderr, prefix_names=args.jobs > 1)
    capture_dir = Path(args.report) / "pcap" if args.report else None

    def quiet(_msg: str) -> None:
        pass

    async def run_one(i: int, gate: asyncio.Semaphore) -> None:
        item = loaded[i]
        async with gate:
            if not args.quiet:
                board.start(item.scenario.name, str(item.path))
            result = await run_scenario(
                item,
                seed=args.seed,
                progress=quiet if args.quiet else board.for_scenario(item.scenario.name),
                capture_dir=capture_dir,
                logs_dir=Path(args.report) / "logs" if args.report else None,
            )
        results[i] = result
        board.print_result(result.to_json(), sys.stdout)

    async def run_all() -> None:
        task = asyncio.current_task()
        assert task is not None
        # SIGTERM gets the same orderly unwinding as Ctrl-C: cancel, and let every context
        # manager undo what it made.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        # Runs are independent (own run id, namespaces, addresses), so they may overlap.
        gate = asyncio.Semaphore(args.jobs)
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(board.tick())
            async with asyncio.TaskGroup() as runs:
                for i in range(len(loaded)):
                    runs.create_task(run_one(i, gate))
            ticker.cancel()

    done: list[ScenarioResult] = []
    try:
        asyncio.run(run_all())
    except asyncio.CancelledError:
        print("testbed: terminated; everything the run created was removed", file=sys.stderr)
        return 143
    finally:
        board.close()
        done = [r for r in results if r is not None]
        dicts = [r.to_json() for r in done]
        if args.json and done:
            write_json(done, Path(args.json))
        if args.junit and done:
            write_junit(dicts, Path(args.junit))
        if args.report and done:
            index = write_html_report(dicts, Path(args.report))
            print(f"report: {index}", file=sys.stderr)
    print_summary([r.to_json() for r in done], sys.stdout)
    return 0 if all(r.passed for r in done) and len(done) == len(loaded) else 1


def _cmd_doctor(args: argparse.Namespace) -> int:
    from testbed.doctor import run_doctor

    return run_doctor(sys.stdout)


def _cmd_clean(args: argparse.Namespace) -> int:
    from testbed.net.clean import clean
    from testbed.net.privileges import require_privileges

    require_privileges("remove network namespaces")
    report = clean()
    for ns in report.removed_netns:
        print(f"removed namespace {ns}")
    for link in report.removed_links:
        print(f"removed link {link}")
    for pid in report.killed_pids:
        print(f"killed process {pid}")
    for d in report.removed_dirs:
        print(f"removed {d}")
    for rid in report.live_runs:
        print(f"left run {rid} alone: its owner process is still running")
    for err in report.errors:
        print(f"error: {err}", file=sys.stderr)
    if report.nothing and not report.errors:
        print("nothing to clean")
    return 1 if report.errors else 0


def _cmd_up(args: argparse.Namespace) -> int:
    from testbed.net.privileges import require_privileges
    from testbed.session import up

    require_privileges()
    state = up(args.scenario, args.json)
    try:
        _print_up(state)
        sys.stdout.flush()
    except BrokenPipeError:
        # `testbed up X | head -1`: the network is up and stays up, which is what the exit
        # status reports; what the reader did not read is in state.json (`exec`, `down`).
        _silence_stdout()
    return 0


def _print_up(state: SessionState) -> None:
    print(f"up: {state.scenario} (run {state.run_id})")
    for name, info in state.nodes.items():
        side = f" ({info.side})" if info.side is not None else ""
        print(f"  {name:<12} {', '.join(info.addresses):<28} netns {info.netns}{side}")
    for svc in state.services:
        extra = f" names {', '.join(svc.names)}, cert {svc.cert}" if svc.kind in ("https", "quic") else ""
        if svc.kind == "http":  # plain HTTP: any Host header, routes as https
            extra = f" url http://{svc.address}:{svc.port}/"
        print(f"  service {svc.kind} on {svc.node} {svc.address}:{svc.port}{extra}")
    for app in state.apps:
        print(f"  app {app.name} on {app.node} (pid {app.pid}), log {app.log}")
    print("run commands with `testbed exec NODE -- CMD...`; stop with `testbed down`")


def _silence_stdout() -> None:
    """The reader of stdout went away: send the rest (and the interpreter's final flush) to
    /dev/null, so nothing more fails on it."""
    streams = [sys.stdout]
    try:
        out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
        if (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino):
            streams.append(sys.stderr)  # `2>&1 | head`: the same pipe, gone as well
    except (OSError, ValueError):
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in streams:
            os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def _cmd_exec(args: argparse.Namespace) -> int:
    from testbed.net.privileges import require_privileges
    from testbed.session import exec_in_node

    require_privileges("enter network namespaces")
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return exec_in_node(args.node, cmd, args.run)


def _cmd_down(args: argparse.Namespace) -> int:
    from testbed.net.privileges import require_privileges
    from testbed.session import down

    require_privileges()
    rid = down(args.run)
    print(f"down: run {rid} removed")
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from testbed.analysis.classify import main as classify_main

    return classify_main(
        args.pcap,
        as_json=args.json,
        as_jsonl=args.jsonl,
        pretty=args.pretty,
        limit=args.limit,
        max_flows=args.max_flows,
        inspect_packets=args.inspect_packets,
        reassemble=not args.no_reassemble,
        out=sys.stdout,
        port_guess=not args.no_port_guess,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"testbed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run scenario files (or every *.yaml in directories)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="scenario file or directory")
    p.add_argument("--json", metavar="FILE", help="write results as JSON to FILE")
    p.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE (one testcase per expectation)")
    p.add_argument(
        "--report", metavar="DIR", help="write an HTML report (plots, censor events, pcap of the censor's links) to DIR"
    )
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="run up to N scenarios at once (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("doctor", help="check that this machine can run scenarios, and how to fix it")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("clean", help="remove namespaces, links and files left by killed runs")
    p.set_defaults(func=_cmd_clean)

    p = sub.add_parser("up", help="build a scenario's network and censor, and keep it up")
    p.add_argument("scenario", help="scenario file")
    p.add_argument("--json", metavar="FILE", help="at `testbed down`, write the censor's counters to FILE")
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("exec", help="run a command inside a node of the network that is up")
    p.add_argument("--run", metavar="RID", help="which session, if several are up")
    p.add_argument("node", help="node name (caller, callee, censor, ...)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command and its arguments")
    p.set_defaults(func=_cmd_exec)

    p = sub.add_parser("down", help="tear down the network that `testbed up` built")
    p.add_argument("--run", metavar="RID", help="which session, if several are up")
    p.set_defaults(func=_cmd_down)

    p = sub.add_parser("classify", help="run the censor's DPI over a pcap/pcapng and list flows")
    p.add_argument("pcap", help="capture file (pcap or pcapng)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    fmt.add_argument(
        "--jsonl", action="store_true", help="print every flow as a line of JSON as it ends, then a summary line"
    )
    p.add_argument("--pretty", action="store_true", help="indent the --json document")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="list at most the N flows with the most bytes (default 1000 in the table, 100000 with --json)",
    )
    p.add_argument(
        "--max-flows",
        type=int,
        default=65536,
        metavar="N",
        help="flow-table size, as the censor's: beyond it the least recently seen flow is evicted (default 65536)",
    )
    p.add_argument(
        "--inspect-packets",
        type=int,
        default=None,
        metavar="N",
        help="stop inspecting a flow after N packets (default: the classifier's default)",
    )
    p.add_argument(
        "--no-reassemble",
        action="store_true",
        help="do not reassemble a TLS ClientHello split over TCP segments (as TSPU's throttler)",
    )
    p.add_argument(
        "--no-port-guess",
        action="store_true",
        help="label protocols from packet contents only, never from a well-known port alone",
    )
    p.set_defaults(func=_cmd_classify)
    return parser


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """A reader of stdout that goes away (``testbed ... | head -1``) is no error of ours and
    never a traceback. If the command had done its work (only printing was left: up, down,
    clean, classify, --help), its own exit status stands; if a write failed while it was
    working (a ``run`` printing each result), the work is cancelled and undone by the ordinary
    unwinding, as after Ctrl-C, and the status is 141 (128 + SIGPIPE), as for a Unix tool that
    SIGPIPE ended."""
    try:
        code = _main(argv)
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except SystemExit:
        # --help and --version print and exit inside argparse: flush before the interpreter
        # does, where a failure would be printed as "Exception ignored".
        _flush_stdout()
        raise
    _flush_stdout()
    return code


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BaseExceptionGroup as group:
        # Concurrent runs report failures as groups; show the errors we raised on purpose plainly.
        if all(isinstance(e, BrokenPipeError) for e in _leaves(group)):
            # The runs were cancelled and cleaned up on the way out.
            raise BrokenPipeError("stdout") from None
        match, rest = group.split(TestbedError)
        if match is None or rest is not None:
            raise
        errors = [e for e in _leaves(match) if isinstance(e, TestbedError)]
        for err in errors:
            print(f"testbed: error: {err}", file=sys.stderr)
        return max(e.exit_code for e in errors)
    except KeyboardInterrupt:
        cleaned = "; everything the run created was removed" if args.command == "run" else ""
        print(f"testbed: interrupted{cleaned}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

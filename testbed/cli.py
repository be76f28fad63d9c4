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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from testbed import __version__
from testbed.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from testbed.session import SessionState


def _cmd_run(args: argparse.Namespace) -> int:
    from testbed.net.privileges import require_privileges
    from testbed.records.json import JsonObject
    from testbed.report.console import ProgressBoard, print_summary
    from testbed.report.html import write_html_report
    from testbed.report.json_report import write_json
    from testbed.report.junit import write_junit
    from testbed.report.shard import Shard, ShardError, read_durations, select_items
    from testbed.runner import ScenarioResult, precheck, run_scenario
    from testbed.scenario.loader import discover, load_scenario

    shard: Shard | None = None
    durations: dict[str, float] = {}
    try:  # before any scenario is read: a bad value costs nothing
        if args.shard is not None:
            shard = Shard.parse(args.shard)
        if args.durations_from is not None:
            if shard is None:
                raise UsageError("--durations-from only balances --shard K/N; add --shard (e.g. --shard 1/2)")
            durations = read_durations(args.durations_from)
    except ShardError as exc:
        raise UsageError(str(exc)) from None
    # Load and validate everything first: a typo in the tenth file should not cost nine runs.
    # With --shard, every file (not only this shard's) is checked, so each job of a matrix
    # fails on the same typo and computes the same partition.
    loaded = [load_scenario(p) for p in discover(args.paths)]
    for item in loaded:
        precheck(item)
    if args.jobs < 1:
        raise UsageError("-j/--jobs must be at least 1")
    names = [item.scenario.name for item in loaded]
    if len(set(names)) != len(names):
        raise UsageError("two scenario files share a name; names label results and reports, make them unique")
    json_extra: JsonObject = {}
    if shard is not None:
        # Split by path as named (every job of a matrix names them alike), weighed by name.
        loaded = select_items(
            loaded, shard, key=lambda it: it.path.as_posix(), name=lambda it: it.scenario.name, durations=durations
        )
        json_extra["shard"] = {
            "index": shard.index,
            "total": shard.total,
            # What this shard was given: `report merge` tells a shard that stopped early from one
            # that finished.
            "scenarios": [item.scenario.name for item in loaded],
        }
        print(f"shard {shard}: {len(loaded)} of {len(names)} scenario(s)", file=sys.stderr)
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
        # A shard given no scenario still writes its (empty) files: `report merge` expects every shard's.
        written = bool(done) or (shard is not None and not loaded)
        if args.json and written:
            write_json(done, Path(args.json), extra=json_extra)
        if args.junit and written:
            write_junit(dicts, Path(args.junit))
        if args.report and written:
            index = write_html_report(dicts, Path(args.report))
            print(f"report: {index}", file=sys.stderr)
    print_summary([r.to_json() for r in done], sys.stdout)
    return 0 if all(r.passed for r in done) and len(done) == len(loaded) else 1


def _cmd_matrix(args: argparse.Namespace) -> int:
    """Every scenario x every censor column (``testbed.matrix``)."""
    from testbed.matrix import build_matrix, expect_aliases, format_table, matrix_json, parse_censors, run_matrix
    from testbed.matrix import write_junit as write_matrix_junit
    from testbed.net.privileges import require_privileges
    from testbed.report.html import _slug, write_html_report
    from testbed.report.json_report import write_document
    from testbed.report.matrix_html import write_matrix_html
    from testbed.runner import ScenarioResult, precheck, run_scenario
    from testbed.scenario.loader import LoadedScenario, discover, load_scenario
    from testbed.scenario.model import Scenario

    if args.jobs < 1:
        raise UsageError("-j/--jobs must be at least 1")
    # Everything is read and checked before the first run: a typo must not cost a matrix.
    columns = parse_censors(args.censors, base_dir=Path.cwd())
    loaded = [load_scenario(p) for p in discover(args.paths)]
    names = [item.scenario.name for item in loaded]
    if len(set(names)) != len(names):
        raise UsageError("two scenario files share a name; names label the matrix's rows, make them unique")
    aliases = expect_aliases(loaded)
    from testbed.matrix import scenario_variant

    for item in loaded:
        for column in columns:
            precheck(scenario_variant(item, column))
    require_privileges()
    report = Path(args.report) if args.report else None

    async def run_one(variant: LoadedScenario, scenario: str, censor: str) -> ScenarioResult:
        where = report / scenario / censor if report is not None else None
        if not args.quiet:
            print(f"matrix: {scenario} under {censor} ...", file=sys.stderr)
        result = await run_scenario(
            variant,
            seed=args.seed,
            capture_dir=where / "pcap" if where is not None else None,
            logs_dir=where / "logs" if where is not None else None,
        )
        if where is not None:
            write_html_report([result.to_json()], where)
        if not args.quiet:
            status = f"error: {result.error}" if result.error else f"done in {result.duration_s:.1f} s"
            print(f"matrix: {scenario} under {censor}: {status}", file=sys.stderr)
        return result

    async def run_all() -> dict[tuple[str, str], dict[str, object]]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_matrix(loaded, columns, jobs=args.jobs, run_one=run_one)

    try:
        results = asyncio.run(run_all())
    except asyncio.CancelledError:
        print("testbed: terminated; everything the run created was removed", file=sys.stderr)
        return 143
    censors = [c.name for c in columns]
    links = (
        {(s, c): f"{s}/{c}/{_slug({'name': s}, {'index'})}.html" for s in names for c in censors}
        if report is not None
        else {}
    )
    per: list[tuple[Scenario, dict[str, dict[str, object]]]] = [
        (item.scenario, {c: results[(item.scenario.name, c)] for c in censors if (item.scenario.name, c) in results})
        for item in loaded
    ]
    matrix = build_matrix(per, censors, links=links, aliases=aliases)
    print(format_table(matrix))
    if args.json:
        write_document(matrix_json(matrix), Path(args.json))
    if args.junit:
        write_matrix_junit(matrix, Path(args.junit))
    if report is not None:
        print(f"report: {write_matrix_html(matrix, report)}", file=sys.stderr)
    return 0 if matrix.passed else 1


def _cmd_report_merge(args: argparse.Namespace) -> int:
    from testbed.report.console import print_summary
    from testbed.report.merge import HTML_DIR, JSON_FILE, JUNIT_FILE, write_merged

    out = Path(args.out_dir)
    merged = write_merged(out, [Path(s) for s in args.shards])
    print_summary(list(merged.scenarios), sys.stdout)
    written = f"{JSON_FILE}, {JUNIT_FILE}, {HTML_DIR}/index.html"
    print(f"merged {len(args.shards)} shard(s) into {out}/: {written}", file=sys.stderr)
    if merged.missing_shards:
        gone = ", ".join(f"{k}/{merged.split_total}" for k in merged.missing_shards)
        print(f"testbed: incomplete: no results from shard {gone}; the merged report is marked failed", file=sys.stderr)
    if merged.missing_scenarios:
        print(
            f"testbed: incomplete: never ran (their shard stopped early): {', '.join(merged.missing_scenarios)}",
            file=sys.stderr,
        )
    return 0 if merged.document["passed"] else 1


def _cmd_doctor(args: argparse.Namespace) -> int:
    from testbed.doctor import run_doctor

    return run_doctor(sys.stdout)


def _cmd_clean(args: argparse.Namespace) -> int:
    from testbed.net.clean import clean
    from testbed.net.privileges import require_privileges

    if os.geteuid() != 0:
        # A rootless run's namespaces, mounts and processes die with it (testbed/net/rootless.py).
        print(
            "nothing to clean for rootless runs: they leave nothing behind (a rootless `up` session ends with "
            "`testbed down`). Runs started as root are cleaned by root: sudo .venv/bin/testbed clean"
        )
        return 0
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
        count_only=args.count,
        pretty=args.pretty,
        limit=args.limit,
        max_flows=args.max_flows,
        inspect_packets=args.inspect_packets,
        reassemble=not args.no_reassemble,
        out=sys.stdout,
        port_guess=not args.no_port_guess,
    )


def _cmd_profiles(args: argparse.Namespace) -> int:
    from testbed.errors import ScenarioError
    from testbed.scenario.profiles import describe_profile, profile_table, resolve_profile

    if args.action is None:
        if args.name is not None:
            raise UsageError(f"unexpected {args.name!r}; use `testbed profiles show NAME`")
        print(profile_table())
        return 0
    if args.name is None:
        raise UsageError("`testbed profiles show` needs a profile name or the path of a profile file")
    try:
        profile = resolve_profile(args.name, base_dir=Path.cwd())
    except ScenarioError as exc:
        if exc.file is not None:
            raise  # an error inside a profile file, at its file:line
        raise UsageError(exc.bare_message + (f"\n  hint: {exc.hint}" if exc.hint else "")) from None
    print(describe_profile(profile))
    return 0


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
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="run only the K-th of N shares of the files (CI matrix jobs; docs/ci.md); the same on every job",
    )
    p.add_argument(
        "--durations-from",
        metavar="JSON",
        help="balance --shard by the scenario durations in JSON (a previous --json result, or a merged one)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "matrix", help="run scenarios once per censor profile (and with none): which censors block which workload"
    )
    p.add_argument("paths", nargs="+", metavar="SCENARIO", help="scenario file or directory")
    p.add_argument(
        "--censors",
        required=True,
        metavar="NAME,NAME|all",
        help="profiles to cross (shipped names or profile files, comma-separated; `all`: every shipped one); "
        "the `none` control column is always run, first",
    )
    p.add_argument("--json", metavar="FILE", help="write the matrix as JSON to FILE")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE (one testcase per cell)")
    p.add_argument(
        "--report", metavar="DIR", help="write the HTML grid to DIR, each run's report in DIR/SCENARIO/CENSOR/"
    )
    p.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    cpus = os.cpu_count() or 1
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=cpus,
        metavar="N",
        help=f"run up to N runs at once (default: the number of CPUs, {cpus} here; each run waits on its network "
        "more than it computes)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    p.set_defaults(func=_cmd_matrix)

    p = sub.add_parser("report", help="work on result files (merge the shards of a CI matrix)")
    report_sub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT_COMMAND")
    p = report_sub.add_parser(
        "merge",
        help="merge shard directories (results.json, junit.xml, html/) into OUT_DIR (docs/ci.md)",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="where results.json, junit.xml and html/ are written")
    p.add_argument("shards", nargs="+", metavar="SHARD", help="a shard's directory (or its results.json)")
    p.set_defaults(func=_cmd_report_merge)

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
    fmt.add_argument(
        "--count", action="store_true", help="print only the counts line (flows, packets): no flow listing"
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

    p = sub.add_parser("profiles", help="list the shipped censor profiles, or show one (`profiles show NAME`)")
    p.add_argument("action", nargs="?", choices=["show"], help="show one profile: metadata, notes and rules")
    p.add_argument("name", nargs="?", help="a shipped profile's name, or the path of a profile file")
    p.set_defaults(func=_cmd_profiles)
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
        _report_held(code)
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


def _report_held(code: int) -> None:
    """A rootless `up`'s worker tells the user's process how it ended (testbed/net/rootless.py)."""
    from testbed.net import rootless

    _flush_stdout()
    rootless.report_held(code)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


# Commands that build namespaces: a normal user runs them rootless (testbed/net/rootless.py).
ROOTLESS_COMMANDS = frozenset({"run", "matrix", "doctor", "up"})
# Commands that join the namespaces a rootless `up` keeps.
JOIN_COMMANDS = frozenset({"exec", "down"})


def _enter_rootless(args: argparse.Namespace) -> None:
    """Not root: re-enter the command in namespaces of our own (this returns in the worker process),
    or say why it cannot run."""
    from testbed.errors import PrivilegeError
    from testbed.net import rootless

    command = args.command
    if not rootless.needs_rootless() or command not in ROOTLESS_COMMANDS | JOIN_COMMANDS:
        return
    if command in JOIN_COMMANDS:
        try:
            rootless.join_held(args.run, forget=command == "down")
        except LookupError as exc:
            raise UsageError(f"{exc} (as a normal user: rootless sessions; root's are seen by root)") from None
        except OSError as exc:
            raise PrivilegeError(f"rootless mode: cannot join the session's namespaces ({exc})") from None
        return
    status = rootless.rootless_status()
    if not status.available:
        if command == "doctor":
            return  # it reports the rootless check (and its fix) itself
        raise PrivilegeError(
            f"testbed needs root or a user namespace to build networks, and {status.detail}. "
            f"Fix: {status.fix} (`testbed doctor` checks everything)"
        )
    try:
        if command == "up":
            rootless.start_held()
        else:
            rootless.enter()
    except OSError as exc:
        if command == "doctor":
            return  # its rootless check tries again and reports the kernel's refusal with a fix
        raise PrivilegeError(
            f"rootless mode: the kernel refused a user namespace ({exc}); run as root "
            "(sudo .venv/bin/testbed ...), or see `testbed doctor`"
        ) from None


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _enter_rootless(args)
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

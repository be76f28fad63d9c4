"""The ``testbed`` command. Thin: parses arguments and calls into the package.

Exit codes: 0 success / every expectation held, 1 a run or expectation failed, 2 usage, scenario,
capture or privilege errors.  Errors the user can cause are printed as one clear message, never as
a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from testbed import __version__
from testbed.errors import TestbedError


def _cmd_classify(args: argparse.Namespace) -> int:
    from testbed.analysis.classify import main as classify_main

    return classify_main(
        args.pcap,
        as_json=args.json,
        inspect_packets=args.inspect_packets,
        reassemble=not args.no_reassemble,
        out=sys.stdout,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"testbed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("classify", help="run the censor's DPI over a pcap/pcapng and list flows")
    p.add_argument("pcap", help="capture file (pcap or pcapng)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
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
    p.set_defaults(func=_cmd_classify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

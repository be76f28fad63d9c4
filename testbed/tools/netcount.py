"""A node's own IPv4 counters over a time window: ``python -m testbed.tools.netcount``.

    netcount [--after S] [--window S]

Waits ``--after`` seconds, reads ``/proc/net/snmp`` and ``/proc/net/netstat`` (both are per
network namespace), waits ``--window`` seconds, reads them again, and prints one JSON object:
the exact monotonic times of both reads and the counters' differences, e.g. ``IpExt.InOctets``
(IP bytes received, headers included: what the censor's token bucket counts) and
``Tcp.InSegs``. Run inside a receiving node it gives the IP-level rate that got through the
censor, independent of any tool's idea of goodput.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FILES = ("/proc/net/snmp", "/proc/net/netstat")


def parse_counters(text: str) -> dict[str, int]:
    """``Prefix: names...`` / ``Prefix: values...`` line pairs -> ``{"Prefix.Name": value}``."""
    out: dict[str, int] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, keys = head.partition(":")
        vprefix, _, values = vals.partition(":")
        if prefix != vprefix:
            continue
        for k, v in zip(keys.split(), values.split(), strict=False):
            try:
                out[f"{prefix}.{k}"] = int(v)
            except ValueError:
                continue
    return out


def read_counters() -> dict[str, int]:
    out: dict[str, int] = {}
    for f in FILES:
        try:
            out.update(parse_counters(Path(f).read_text()))
        except OSError:
            continue
    return out


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if k in before and after[k] != before[k]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.tools.netcount", description=__doc__.split("\n\n")[0])
    ap.add_argument("--after", type=float, default=0.0, help="seconds to wait before the first read")
    ap.add_argument("--window", type=float, default=1.0, help="seconds between the two reads")
    args = ap.parse_args(argv)
    if args.after < 0 or args.window <= 0:
        ap.error("--after must be >= 0 and --window > 0")
    time.sleep(args.after)
    t0 = time.monotonic()
    c0 = read_counters()
    t0 = (t0 + time.monotonic()) / 2
    time.sleep(args.window)
    t1 = time.monotonic()
    c1 = read_counters()
    t1 = (t1 + time.monotonic()) / 2
    print(json.dumps({"t0": t0, "t1": t1, "seconds": t1 - t0, "delta": delta(c0, c1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

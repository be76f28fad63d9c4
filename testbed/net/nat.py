"""Configure a NAT namespace: ``python -m testbed.net.nat TYPE OUTER_IF OUTER_ADDR INNER_HOST``.

Runs inside the NAT's namespace (started through nsexec), turns forwarding on and installs the
iptables rules for the RFC 4787 behaviour asked for, then exits; the rules live and die with the
namespace.

- endpoint-independent: SNAT to the outside address (Linux keeps the source port when it is free,
  so the mapping is endpoint-independent) and DNAT of everything unsolicited to the one inside
  host (endpoint-independent filtering): a "full cone".
- port-restricted: the same SNAT, no DNAT: conntrack only lets in replies from the exact
  address:port the inside host sent to (address-and-port-dependent filtering).
- symmetric: SNAT with ``--random-fully``: every new destination gets a new outside port
  (address-and-port-dependent mapping), so a peer learns a port that is useless to any other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def rules(nat_type: str, outer_if: str, outer_addr: str, inner_host: str) -> list[list[str]]:
    snat = ["-t", "nat", "-A", "POSTROUTING", "-o", outer_if, "-j", "SNAT", "--to-source", outer_addr]
    if nat_type == "symmetric":
        return [[*snat, "--random-fully"]]
    if nat_type == "port-restricted":
        return [snat]
    if nat_type == "endpoint-independent":
        return [
            snat,
            [
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-i",
                outer_if,
                "-d",
                outer_addr,
                "-j",
                "DNAT",
                "--to-destination",
                inner_host,
            ],
        ]
    raise ValueError(f"unknown NAT type {nat_type!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m testbed.net.nat TYPE OUTER_IF OUTER_ADDR INNER_HOST", file=sys.stderr)
        return 2
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    for rule in rules(*argv):
        proc = subprocess.run(["iptables", "-w", "5", *rule], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"iptables {' '.join(rule)}: {proc.stderr.strip()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Write sysctls of the current network namespace: ``python -m testbed.net.sysctl KEY=VALUE...``.

Started inside a run's namespace through ``testbed.net.nsexec`` (``/proc/sys/net`` belongs to the
namespace of whoever opens it, and this process never switches namespaces itself).  Only keys
under ``net.`` are accepted: nothing else in /proc/sys is per namespace, so anything else would
change the host.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROC_SYS = Path("/proc/sys")


def proc_path(key: str) -> Path:
    """``net.ipv6.conf.all.forwarding`` -> ``/proc/sys/net/ipv6/conf/all/forwarding``."""
    parts = key.split(".")
    if parts[0] != "net" or len(parts) < 2 or any(not p or p in (".", "..") or "/" in p for p in parts):
        raise ValueError(f"not a per-namespace sysctl: {key!r} (only net.* keys)")
    return PROC_SYS.joinpath(*parts)


def main(argv: list[str]) -> int:
    for item in argv:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(f"expected KEY=VALUE, got {item!r}")
            proc_path(key).write_text(value + "\n")
        except FileNotFoundError:
            hint = ""
            if key.startswith("net.ipv6.") and not PROC_SYS.joinpath("net", "ipv6").exists():
                hint = ": this kernel has IPv6 disabled (ipv6.disable=1 on its command line); use `ip: v4`"
            print(f"sysctl {item}: no such setting{hint}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"sysctl {item}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

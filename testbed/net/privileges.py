"""What testbed needs from the kernel, checked up front with a message that says how to get it."""

from __future__ import annotations

import os
from pathlib import Path

from testbed.errors import PrivilegeError

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_caps() -> list[str]:
    caps = effective_caps()
    return [
        name
        for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"))
        if not caps >> bit & 1
    ]


def require_privileges(what: str = "build network namespaces") -> None:
    missing = missing_caps()
    if missing:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        raise PrivilegeError(
            f"testbed needs {' and '.join(missing)} to {what}, and this process ({who}) lacks "
            f"{'it' if len(missing) == 1 else 'them'}. Run it as root (e.g. `sudo .venv/bin/testbed ...`), "
            "or in a container/VM where you are root with those capabilities. "
            "`testbed doctor` checks everything else it needs."
        )

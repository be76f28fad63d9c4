"""Adapters to the kernel's networking: namespaces, links, addresses, routes, firewall rules."""

from __future__ import annotations

import os
import signal


def _forget_parent_signal_handling() -> None:
    # pyroute2 forks short-lived helpers to open netlink sockets inside namespaces, and stops them
    # with SIGTERM.  A forked child inherits asyncio's signal wakeup fd, so *its* SIGTERM would be
    # written into the parent's event loop and look like a SIGTERM to the runner (which then
    # cancels the run).  Children of this process start with default signal handling instead.
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread of the child: nothing to undo there
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


os.register_at_fork(after_in_child=_forget_parent_signal_handling)

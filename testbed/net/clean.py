"""``testbed clean``: remove what runs that are gone left behind, and nothing else.

What counts as ours is decided by name only (``testbed.net.names``): namespaces
``tb-<rid>-<node>``, interfaces ``tb<rid>[nc]<i>``, run directories ``/run/testbed/<rid>``.
What counts as abandoned is decided by the owner record: a run whose owner process is gone (or
that has no owner record at all) is abandoned.  Live runs are listed and left alone.

Processes still inside an abandoned namespace (an endpoint, a censor, a relay whose parent died
without its death signal reaching it) are killed first, so that deleting the namespace really
frees it.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass, field

from pyroute2 import IPRoute, netns

from testbed.net import names
from testbed.net.runs import owner_alive
from testbed.net.strays import end_processes_in_netns


@dataclass
class CleanReport:
    removed_netns: list[str] = field(default_factory=list)
    killed_pids: list[int] = field(default_factory=list)
    removed_links: list[str] = field(default_factory=list)
    removed_dirs: list[str] = field(default_factory=list)
    live_runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        return not (self.removed_netns or self.killed_pids or self.removed_links or self.removed_dirs)


def _alive(rid: str) -> bool:
    return owner_alive(names.run_dir(rid))


def clean(*, run_id: str | None = None) -> CleanReport:
    report = CleanReport()
    abandoned: set[str] = set()
    live: set[str] = set()

    def decide(rid: str) -> bool:
        if run_id is not None and rid != run_id:
            return False
        if rid in abandoned:
            return True
        if rid in live:
            return False
        if _alive(rid):
            live.add(rid)
            return False
        abandoned.add(rid)
        return True

    for ns in sorted(netns.listnetns()):
        m = names.NETNS_RE.match(ns)
        if not m or not decide(m["rid"]):
            continue
        # The run's own processes died with their owner (PDEATHSIG); what is left is stray.
        report.killed_pids += end_processes_in_netns(ns, sig=signal.SIGKILL)
        try:
            netns.remove(ns)
            report.removed_netns.append(ns)
        except OSError as exc:
            report.errors.append(f"could not remove namespace {ns}: {exc}")

    # Interfaces are never created in the host namespace, but a kernel or a crash could strand
    # one there; remove only those with our name pattern and an abandoned run id.
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                ifname = link.get("ifname") or ""
                m = names.IFNAME_RE.match(ifname)
                if m and decide(m["rid"]):
                    try:
                        ipr.link("del", index=link["index"])
                        report.removed_links.append(ifname)
                    except OSError as exc:
                        report.errors.append(f"could not remove link {ifname}: {exc}")
    except OSError as exc:
        report.errors.append(f"could not list links: {exc}")

    if names.RUN_ROOT.is_dir():
        for d in sorted(names.RUN_ROOT.iterdir()):
            if d.is_dir() and names.is_run_id(d.name) and decide(d.name):
                shutil.rmtree(d, ignore_errors=True)
                report.removed_dirs.append(str(d))
    report.live_runs = sorted(live)
    return report

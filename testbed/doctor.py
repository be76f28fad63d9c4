"""``testbed doctor``: can this machine run scenarios?  Each check says how to fix itself."""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from testbed.net import names
from testbed.net.privileges import missing_caps
from testbed.net.rootless import RootlessStatus, in_rootless, probe_userns, read_sysctl, rootless_status
from testbed.scenario.app_schema import PACKAGES

SETUP_HINT = "run the README's setup command (scripts/setup.sh)"

# Third-party proxies the scenarios under scenarios/tools/ run as apps: (binary, Debian package).
# scripts/setup.sh installs the same packages (tests/unit/test_doctor_tools.py keeps them in step).
PROXY_BINARIES: tuple[tuple[str, str], ...] = tuple(
    (name, PACKAGES[name]) for name in ("ss-server", "ss-local", "obfs4proxy", "stunnel4", "socat")
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python >= 3.11", ok, platform.python_version(), "install Python 3.11 or newer")


def _linux() -> Check:
    ok = sys.platform == "linux"
    return Check("linux kernel", ok, platform.release(), "testbed needs Linux; on macOS/Windows use the Vagrantfile")


def _privileges() -> Check:
    missing = missing_caps()
    if not missing:
        who = "root of a user namespace (rootless mode)" if in_rootless() else f"uid {os.geteuid()}"
        return Check("privileges (CAP_NET_ADMIN, CAP_SYS_ADMIN)", True, who)
    return Check(
        "privileges (CAP_NET_ADMIN, CAP_SYS_ADMIN)",
        False,
        f"missing {', '.join(missing)}",
        "run as root: sudo .venv/bin/testbed ...",
    )


ROOTLESS_CHECK = "rootless mode (user namespaces)"


def _rootless(
    read: Callable[[str], str | None] = read_sysctl,
    *,
    root: bool | None = None,
    probe: Callable[[], str | None] = probe_userns,
) -> Check:
    """Which mode runs scenarios here: root, rootless (testbed/net/rootless.py), or neither and why.

    ``read`` reads a sysctl, ``root`` says whether we are real root and ``probe`` tries a user
    namespace (tests inject all three). Root does not need rootless mode: for root an unavailable
    one is reported, with its fix, not failed."""
    status = rootless_status(read)
    if status.available and not in_rootless() and (error := probe()) is not None:
        status = RootlessStatus(
            False,
            f"the kernel refuses a user namespace although no known switch forbids it ({error})",
            "in a container, allow unshare(CLONE_NEWUSER) (seccomp/LSM profile), or run testbed as root",
        )
    if in_rootless():
        return Check(ROOTLESS_CHECK, True, "in use: " + status.detail)
    if root if root is not None else os.geteuid() == 0:
        if status.available:
            return Check(ROOTLESS_CHECK, True, "root mode in use; " + status.detail)
        return Check(
            ROOTLESS_CHECK, True, f"root mode in use; not for normal users: {status.detail} (fix: {status.fix})"
        )
    return Check(ROOTLESS_CHECK, status.available, status.detail, status.fix)


def _package(module: str, dist: str) -> Callable[[], Check]:
    def check() -> Check:
        try:
            importlib.import_module(module)
            version = importlib.metadata.version(dist)
        except Exception as exc:
            return Check(f"python package {dist}", False, f"{type(exc).__name__}: {exc}", SETUP_HINT)
        return Check(f"python package {dist}", True, version)

    return check


def _binary(name: str, package: str) -> Callable[[], Check]:
    def check() -> Check:
        path = shutil.which(name)
        if path is None:
            return Check(f"{name} binary", False, "not found", f"apt-get install {package} (or {SETUP_HINT})")
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check(f"{name} binary", False, str(exc), f"reinstall {package}")
        return Check(f"{name} binary", True, out.splitlines()[0] if out else path)

    return check


def _chromium() -> Check:
    """The Chromium binary of `engine: chromium` calls (only those need it)."""
    from testbed.calls.chromium.browser import DEBIAN_PACKAGE, ChromiumMissing, find_chromium

    try:
        path = find_chromium()
    except ChromiumMissing:
        return Check("chromium binary", False, "not found", f"apt-get install {DEBIAN_PACKAGE} (or {SETUP_HINT})")
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
        out = done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("chromium binary", False, str(exc), f"reinstall {DEBIAN_PACKAGE}")
    return Check("chromium binary", True, out.splitlines()[0] if out else path)


def _namespace_checks() -> list[Check]:
    """Create a scratch namespace with a veth pair, install an NFQUEUE rule and bind a queue in it."""
    if missing_caps():
        return [Check("network namespaces, veth, NFQUEUE", False, "skipped: no privileges", "run as root")]
    return asyncio.run(_probe())


async def _probe() -> list[Check]:
    from pyroute2 import AsyncIPRoute, netns

    from testbed.net.process import netns_process
    from testbed.net.runs import registered_run

    checks: list[Check] = []
    rid = names.new_run_id()
    a, b = names.netns_name(rid, "doctora"), names.netns_name(rid, "doctorb")
    with registered_run(rid, purpose="doctor"):
        created: list[str] = []
        try:
            try:
                for ns in (a, b):
                    await asyncio.to_thread(netns.create, ns)
                    created.append(ns)
                checks.append(Check("create network namespaces", True, "ok"))
            except OSError as exc:
                checks.append(Check("create network namespaces", False, str(exc), "needs root and CONFIG_NET_NS"))
                return checks
            try:
                async with AsyncIPRoute(netns=a) as ipr:
                    await ipr.link(
                        "add",
                        ifname=names.node_ifname(rid, 1),
                        kind="veth",
                        peer={"ifname": names.censor_ifname(rid, 1), "net_ns_fd": b},
                    )
                checks.append(Check("veth pairs between namespaces", True, "ok"))
            except OSError as exc:
                checks.append(
                    Check("veth pairs between namespaces", False, str(exc), "load the veth module: modprobe veth")
                )
            probe = (
                "import sys\n"
                "from testbed.censor import firewall\n"
                "from netfilterqueue import NetfilterQueue\n"
                "with firewall.queue_rules(0, tag='doctor'):\n"
                "    q = NetfilterQueue(); q.bind(0, lambda p: p.accept()); q.unbind()\n"
                "print('ok')\n"
            )
            async with netns_process(
                b, [sys.executable, "-c", probe], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            ) as proc:
                out, err = await asyncio.wait_for(proc.communicate(), 30)
            if proc.returncode == 0:
                checks.append(Check("iptables NFQUEUE target + queue binding", True, "ok"))
            else:
                last = (err.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
                checks.append(
                    Check(
                        "iptables NFQUEUE target + queue binding",
                        False,
                        last,
                        "install iptables and libnetfilter-queue (scripts/setup.sh); the kernel needs "
                        "nfnetlink_queue and xt_NFQUEUE (modprobe nfnetlink_queue xt_NFQUEUE)",
                    )
                )
        finally:
            for ns in created:
                netns.remove(ns)
    return checks


# VPNs the scenarios under scenarios/tools/ run as apps: (binary, Debian package). WireGuard runs in
# userspace (wireguard-go on the kernel's TUN), so the kernel module is not needed. scripts/setup.sh
# installs the same packages (tests/unit/test_doctor_vpns.py keeps them in step).
VPN_BINARIES: tuple[tuple[str, str], ...] = (
    ("wireguard-go", "wireguard-go"),
    ("wg", "wireguard-tools"),
    ("openvpn", "openvpn"),
)

TUN_DEVICE = Path("/dev/net/tun")


def _tun(
    device: Path | None = None, *, rootless: bool | None = None, access: Callable[[Path, int], bool] = os.access
) -> Check:
    """wireguard-go and openvpn open the kernel's TUN device; namespaces share the host's /dev.

    Rootless, the device's mode decides (root of a user namespace is nobody to a file of the host's
    root): udev's default is 0666, a /dev made without udev (containers) may have 0600."""
    device = TUN_DEVICE if device is None else device
    name = f"TUN device {device}"
    if not device.is_char_device():
        detail = "not a character device" if device.exists() else "missing"
        return Check(name, False, detail, "modprobe tun (needed by VPN apps: WireGuard, OpenVPN)")
    if rootless if rootless is not None else (in_rootless() or os.geteuid() != 0):
        if not access(device, os.R_OK | os.W_OK):
            return Check(
                name,
                False,
                f"not usable in rootless mode (mode {device.stat().st_mode & 0o777:o}): VPN apps cannot open it",
                f"as root: chmod 0666 {device} (udev's default; only VPN apps need it), or run testbed as root",
            )
    return Check(name, True, "character device")


def run_doctor(out: TextIO) -> int:
    checks: list[Check] = [_linux(), _python(), _privileges(), _rootless()]
    for module, dist in (
        ("aiortc", "aiortc"),
        ("pyroute2", "pyroute2"),
        ("netfilterqueue", "NetfilterQueue"),
        ("dpkt", "dpkt"),
        ("yaml", "PyYAML"),
        ("pydantic", "pydantic"),
        ("cryptography", "cryptography"),
    ):
        checks.append(_package(module, dist)())
    checks.append(_binary("iptables", "iptables")())
    # Needed only by scenarios/tools/ (WireGuard, OpenVPN).
    checks.extend(_binary(name, package)() for name, package in VPN_BINARIES)
    checks.append(_tun())
    # Needed only by scenarios that declare these node services (turn, iperf3).
    checks.append(_binary("turnserver", "coturn")())
    checks.append(_binary("iperf3", "iperf3")())
    checks.append(_chromium())  # needed only by calls with `engine: chromium`
    # Needed only by scenarios/tools/ (Shadowsocks, obfs4, stunnel; socat as their plain end).
    checks.extend(_binary(name, package)() for name, package in PROXY_BINARIES)
    if sys.platform == "linux":
        checks.extend(_namespace_checks())
    width = max(len(c.name) for c in checks)
    for c in checks:
        out.write(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}\n")
        if not c.ok and c.fix:
            out.write(f"      {'':<{width}}  fix: {c.fix}\n")
    failed = [c for c in checks if not c.ok]
    out.write("\nall checks passed\n" if not failed else f"\n{len(failed)} check(s) failed\n")
    return 0 if not failed else 1

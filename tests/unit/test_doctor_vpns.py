"""The VPNs scenarios/tools/ needs: setup.sh installs them and ``testbed doctor`` checks them."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from testbed import doctor

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def _setup_debs() -> set[str]:
    """Every package named on a ``debs=(...)`` or ``debs+=(...)`` line of setup.sh."""
    text = SETUP.read_text()
    return {d for m in re.finditer(r"^debs\+?=\(([^)]*)\)", text, re.M) for d in m.group(1).split()}


def test_setup_installs_every_vpn_package_doctor_checks() -> None:
    packages = {package for _, package in doctor.VPN_BINARIES}
    assert packages == {"wireguard-go", "wireguard-tools", "openvpn"}
    assert packages <= _setup_debs()


def _doctor(monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(doctor, "_namespace_checks", lambda: [])  # no root needed for these checks
    out = io.StringIO()
    return doctor.run_doctor(out), out.getvalue()


def test_doctor_names_the_package_of_a_missing_vpn_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "wg" else real_which(name))
    code, out = _doctor(monkeypatch)
    assert code == 1
    line = next(ln for ln in out.splitlines() if "wg binary" in ln)
    assert line.startswith("FAIL")
    assert "fix: apt-get install wireguard-tools" in out
    for name, _ in doctor.VPN_BINARIES:
        assert f"{name} binary" in out


def test_doctor_fails_without_a_tun_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor, "TUN_DEVICE", tmp_path / "tun")  # absent
    code, out = _doctor(monkeypatch)
    assert code == 1
    line = next(ln for ln in out.splitlines() if "TUN device" in ln)
    assert line.startswith("FAIL") and "missing" in line
    assert "fix: modprobe tun" in out

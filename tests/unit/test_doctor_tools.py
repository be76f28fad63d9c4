"""The proxies scenarios/tools/ needs: setup.sh installs them and ``testbed doctor`` checks them."""

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


def test_setup_installs_every_proxy_package_doctor_checks() -> None:
    packages = {package for _, package in doctor.PROXY_BINARIES}
    assert {"shadowsocks-libev", "obfs4proxy", "stunnel4", "socat"} <= packages
    assert packages <= _setup_debs()


def test_doctor_names_the_package_of_a_missing_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None if name == "obfs4proxy" else real_which(name))
    monkeypatch.setattr(doctor, "_namespace_checks", lambda: [])  # no root needed for this check
    out = io.StringIO()
    assert doctor.run_doctor(out) == 1
    line = next(ln for ln in out.getvalue().splitlines() if "obfs4proxy binary" in ln)
    assert line.startswith("FAIL")
    assert "fix: apt-get install obfs4proxy" in out.getvalue()
    for name, _ in doctor.PROXY_BINARIES:
        assert f"{name} binary" in out.getvalue()

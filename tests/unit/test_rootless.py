"""Rootless mode without a kernel: which mode `doctor` reports, and what the CLI says when it cannot enter."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import cli, doctor
from testbed.net import rootless


def _sysctls(values: dict[str, str]) -> Callable[[str], str | None]:
    """A sysctl reader over a dict: a missing name is a sysctl this kernel does not have."""
    return values.get


@pytest.fixture(autouse=True)
def _not_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rootless.ENV_MARK, raising=False)


def test_available_when_no_switch_forbids_it() -> None:
    # Upstream kernels have neither the Debian nor the AppArmor switch.
    status = rootless.rootless_status(_sysctls({"user/max_user_namespaces": "96364"}))
    assert status.available
    assert status.fix == ""
    assert rootless.rootless_status(_sysctls({"kernel/unprivileged_userns_clone": "1"})).available
    assert rootless.rootless_status(_sysctls({"kernel/apparmor_restrict_unprivileged_userns": "0"})).available


@pytest.mark.parametrize(
    ("sysctl", "value", "named", "fix"),
    [
        ("kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=0", "unprivileged_userns_clone=1"),
        ("user/max_user_namespaces", "0", "user.max_user_namespaces=0", "user.max_user_namespaces=15000"),
        (
            "kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "kernel.apparmor_restrict_unprivileged_userns=1",
            "apparmor_restrict_unprivileged_userns=0",
        ),
    ],
)
def test_each_switch_that_forbids_it_is_named_with_its_fix(sysctl: str, value: str, named: str, fix: str) -> None:
    status = rootless.rootless_status(_sysctls({sysctl: value}))
    assert not status.available
    assert named in status.detail
    assert f"sysctl -w kernel.{fix}" in status.fix or f"sysctl -w {fix}" in status.fix
    assert "root" in status.fix  # the other way out


def test_doctor_rootless_check_both_ways_for_a_normal_user() -> None:
    ok = doctor._rootless(_sysctls({}), root=False, probe=_allowed)
    assert ok.ok and "enabled" in ok.detail
    bad = doctor._rootless(_sysctls({"kernel/unprivileged_userns_clone": "0"}), root=False, probe=_allowed)
    assert not bad.ok
    assert "unprivileged_userns_clone=0" in bad.detail
    assert "sysctl -w kernel.unprivileged_userns_clone=1" in bad.fix


def _allowed() -> str | None:
    return None


def test_doctor_reports_a_refusal_no_sysctl_explains() -> None:
    # A container's seccomp filter: every switch says yes, the kernel says no.
    check = doctor._rootless(_sysctls({}), root=False, probe=lambda: "unshare failed: Operation not permitted")
    assert not check.ok
    assert "Operation not permitted" in check.detail
    assert "seccomp" in check.fix and "root" in check.fix


def test_doctor_rootless_check_does_not_fail_root_but_tells_the_fix() -> None:
    check = doctor._rootless(_sysctls({"user/max_user_namespaces": "0"}), root=True, probe=_allowed)
    assert check.ok
    assert "root mode in use" in check.detail
    assert "sysctl -w user.max_user_namespaces=15000" in check.detail


def test_doctor_output_has_the_rootless_line_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor._rootless
    forbidden = _sysctls({"kernel/apparmor_restrict_unprivileged_userns": "1"})
    monkeypatch.setattr(doctor, "_namespace_checks", lambda: [])
    monkeypatch.setattr(doctor, "_rootless", lambda: real(forbidden, root=False, probe=_allowed))
    out = io.StringIO()
    assert doctor.run_doctor(out) == 1
    lines = out.getvalue().splitlines()
    i = next(i for i, ln in enumerate(lines) if doctor.ROOTLESS_CHECK in ln)
    assert lines[i].startswith("FAIL")
    assert "AppArmor" in lines[i]
    assert "fix:" in lines[i + 1] and "apparmor_restrict_unprivileged_userns=0" in lines[i + 1]


def test_up_as_a_normal_user_starts_a_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(rootless, "rootless_status", lambda: rootless.RootlessStatus(True, "ok"))
    held: list[str] = []
    monkeypatch.setattr(rootless, "start_held", lambda: held.append("up"))
    monkeypatch.setattr(rootless, "enter", lambda: pytest.fail("up must keep its namespaces: start_held"))
    cli._enter_rootless(cli.build_parser().parse_args(["up", "x.yaml"]))
    assert held == ["up"]


@pytest.mark.parametrize("command", [["exec", "caller", "--", "true"], ["down"]])
def test_exec_down_as_a_normal_user_with_nothing_up_say_so(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(rootless, "holders_dir", lambda uid=None: tmp_path / "none")
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("testbed: error: nothing is up")
    assert "rootless sessions" in err


def test_exec_down_join_the_holder_named_by_run_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    joined: list[tuple[str | None, bool]] = []
    monkeypatch.setattr(rootless, "join_held", lambda rid, forget=False: joined.append((rid, forget)) or "abc123")
    cli._enter_rootless(cli.build_parser().parse_args(["exec", "--run", "abc123", "caller", "--", "true"]))
    cli._enter_rootless(cli.build_parser().parse_args(["down", "--run", "abc123"]))
    assert joined == [("abc123", False), ("abc123", True)]  # only `down` forgets the holder


def test_live_holders_keeps_running_ones_and_drops_stale_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rootless, "holders_dir", lambda uid=None: tmp_path)
    me = os.getpid()
    (tmp_path / "aaaaaa").write_text(json.dumps({"pid": me, "start_ticks": rootless._start_ticks(me)}))
    (tmp_path / "bbbbbb").write_text(json.dumps({"pid": me, "start_ticks": 1}))  # a recycled pid
    (tmp_path / "cccccc").write_text("not json")
    assert rootless.live_holders() == {"aaaaaa": me}
    assert not (tmp_path / "bbbbbb").exists()


def test_the_holders_directory_must_be_private(tmp_path: Path) -> None:
    d = tmp_path / "h"
    assert rootless._own_dir(d) == d and d.stat().st_mode & 0o777 == 0o700
    d.chmod(0o777)  # as another user could leave it in /tmp
    with pytest.raises(OSError, match="not a private directory"):
        rootless._own_dir(d)


def test_run_as_a_normal_user_where_user_namespaces_are_off_names_the_sysctl_and_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    off = rootless.rootless_status(_sysctls({"kernel/unprivileged_userns_clone": "0"}))
    monkeypatch.setattr(rootless, "rootless_status", lambda: off)
    monkeypatch.setattr(rootless, "enter", lambda: pytest.fail("must not enter"))
    assert cli.main(["run", "scenarios/baseline.yaml"]) == 2
    err = capsys.readouterr().err
    assert "kernel.unprivileged_userns_clone=0" in err
    assert "sysctl -w kernel.unprivileged_userns_clone=1" in err


def test_run_matrix_doctor_as_a_normal_user_enter_the_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(rootless, "rootless_status", lambda: rootless.RootlessStatus(True, "ok"))
    entered: list[str] = []
    for command in ("run", "matrix", "doctor", "classify", "profiles"):
        monkeypatch.setattr(rootless, "enter", lambda c=command: entered.append(c))
        cli._enter_rootless(argparse.Namespace(command=command))
    assert entered == ["run", "matrix", "doctor"]  # classify and profiles need no privileges


def test_a_kernel_refusal_is_a_privilege_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(rootless, "rootless_status", lambda: rootless.RootlessStatus(True, "ok"))

    def refuse() -> None:
        raise PermissionError(1, "unshare: Operation not permitted")

    monkeypatch.setattr(rootless, "enter", refuse)
    assert cli.main(["matrix", "x.yaml", "--censors", "all"]) == 2
    err = capsys.readouterr().err
    assert "rootless mode: the kernel refused a user namespace" in err and "Traceback" not in err


def test_clean_as_a_normal_user_says_there_is_nothing_to_clean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["clean"]) == 0
    assert "nothing to clean for rootless runs" in capsys.readouterr().out


def test_root_never_enters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not rootless.needs_rootless()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert rootless.needs_rootless()
    monkeypatch.setenv(rootless.ENV_MARK, "1")
    assert not rootless.needs_rootless()  # the worker, inside: never again


def test_exit_codes_pass_through_the_outer_processes() -> None:
    assert rootless._status_code(3 << 8) == 3
    assert rootless._status_code(signal.SIGKILL) == 128 + signal.SIGKILL


def test_doctor_tun_check_rootless_needs_a_device_everyone_may_open() -> None:
    dev = Path("/dev/null")  # a character device, as /dev/net/tun
    refused = doctor._tun(dev, rootless=True, access=lambda _p, _m: False)
    assert not refused.ok
    assert "rootless" in refused.detail and f"chmod 0666 {dev}" in refused.fix
    assert doctor._tun(dev, rootless=True, access=lambda _p, _m: True).ok
    assert doctor._tun(dev, rootless=False, access=lambda _p, _m: False).ok  # root opens it whatever its mode

"""The managed-mode handshake of a pluggable-transport client (pt-spec.txt v1), as obfs4proxy prints it."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.tools.ptclient import ClientMethod, CmethodParser, PtError, main, managed_client_env

# obfs4proxy 0.0.14's stdout in a namespace of this testbed (TOR_PT_CLIENT_TRANSPORTS=obfs4).
OBFS4PROXY = ["VERSION 1\n", "CMETHOD obfs4 socks5 127.0.0.1:42365\n", "CMETHODS DONE\n"]


def test_reads_the_method_obfs4proxy_offers() -> None:
    p = CmethodParser()
    assert [p.feed(line) for line in OBFS4PROXY] == [False, False, True]
    assert p.version == "1"
    assert p.method("obfs4") == ClientMethod("obfs4", "socks5", "127.0.0.1", 42365)


def test_ipv6_address_and_informational_lines() -> None:
    p = CmethodParser()
    assert not p.feed('LOG SEVERITY=notice MESSAGE="hello"')
    assert not p.feed("CMETHOD meek_lite socks5 [::1]:9050")
    assert p.feed("CMETHODS DONE")
    assert p.method("meek_lite") == ClientMethod("meek_lite", "socks5", "::1", 9050)


@pytest.mark.parametrize(
    "line",
    ["ENV-ERROR No TOR_PT_STATE_LOCATION", "VERSION-ERROR no-version", "CMETHOD-ERROR obfs4 bad bridge",
     "CMETHOD obfs4 socks5", "CMETHOD obfs4 socks5 localhost"],
)  # fmt: skip
def test_errors_raise_with_the_pts_own_words(line: str) -> None:
    with pytest.raises(PtError, match=line.split()[0]):
        CmethodParser().feed(line)


def test_a_transport_not_offered_is_named() -> None:
    p = CmethodParser()
    p.feed("CMETHOD obfs3 socks5 127.0.0.1:1")
    with pytest.raises(PtError, match=r"no obfs4 method \(offered: obfs3\)"):
        p.method("obfs4")


def test_environment_is_the_documented_one() -> None:
    env = managed_client_env({"PATH": "/bin"}, "obfs4", "/tmp/state")
    assert env == {
        "PATH": "/bin",
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": "/tmp/state",
        "TOR_PT_CLIENT_TRANSPORTS": "obfs4",
        "TOR_PT_EXIT_ON_STDIN_CLOSE": "1",
    }


def test_a_pt_that_exits_at_once_fails_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--transport", "obfs4", "--state", str(tmp_path), "--", "false"]) == 1
    assert "false exited before CMETHODS DONE (code 1)" in capsys.readouterr().err


def test_a_pt_reporting_an_env_error_fails_with_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = ["sh", "-c", "echo 'VERSION 1'; echo 'ENV-ERROR no TOR_PT_ORPORT'; exec sleep 30"]
    assert main(["--transport", "obfs4", "--state", str(tmp_path), "--", *cmd]) == 1
    assert "ENV-ERROR no TOR_PT_ORPORT" in capsys.readouterr().err


# -- with the real obfs4proxy, on loopback only (no namespace, no root) ----------------------------

needs_obfs4proxy = pytest.mark.skipif(shutil.which("obfs4proxy") is None, reason="obfs4proxy is not installed")


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.tools.ptclient", "--transport", "obfs4", "--state", str(tmp_path / "pt"),
         "--listen", "127.0.0.1:0", "--", "obfs4proxy"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    cmethod = proc.stdout.readline()
    ready = proc.stdout.readline()
    assert cmethod.startswith("CMETHOD obfs4 socks5 127.0.0.1:"), cmethod
    m = re.match(r"ready: 127\.0\.0\.1:(\d+) -> socks5 127\.0\.0\.1:(\d+) \(obfs4\)$", ready.strip())
    assert m is not None and m.group(2) == cmethod.strip().rsplit(":", 1)[1], ready
    return proc, int(m.group(1))


def _obfs4proxy_children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@needs_obfs4proxy
def test_relays_a_socks5_dialogue_to_the_real_obfs4proxy(tmp_path: Path) -> None:
    proc, port = _start(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x05\x01\x02")  # SOCKS5, one method: username/password (pt-spec 3.5)
            assert s.recv(2) == b"\x05\x02"  # obfs4proxy's own answer, through the relay
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0  # SIGTERM: a clean stop


@needs_obfs4proxy
def test_the_pt_dies_with_its_wrapper_even_after_sigkill(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path)
    (pt,) = _obfs4proxy_children(proc.pid)
    # No chance to clean up: the PT must notice by itself (its stdin closes: TOR_PT_EXIT_ON_STDIN_CLOSE;
    # obfs4proxy also watches its parent pid).
    proc.kill()
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 20
    while _alive(pt) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pt), f"obfs4proxy {pt} outlived its wrapper"

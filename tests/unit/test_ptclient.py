"""The managed-mode handshake of a pluggable-transport client (pt-spec.txt v1), as obfs4proxy prints it."""

from __future__ import annotations

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
    assert not p.feed("LOG SEVERITY=notice MESSAGE=\"hello\"")
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

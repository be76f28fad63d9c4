"""testbed.tools.quicget: URL and option handling, exit codes, and one loopback HTTP/3 fetch
against testbed.services.quic (127.0.0.1, no root, no namespaces)."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import pytest

from testbed.services import quic as quic_server
from testbed.services.certs import make_certificate
from testbed.tools import quicget


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://198.18.2.2/", "198.18.2.2", 443, "/"),
        ("https://198.18.2.2", "198.18.2.2", 443, "/"),
        ("https://198.18.2.2:8443/bytes/100?x=1", "198.18.2.2", 8443, "/bytes/100?x=1"),
        ("https://example.com/a", "example.com", 443, "/a"),
        ("https://[2001:db8::1]:4433/", "2001:db8::1", 4433, "/"),
    ],
)
def test_parse_url(url: str, host: str, port: int, path: str) -> None:
    assert quicget.parse_url(url) == quicget.Target(host, port, path)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://198.18.2.2/", "https://"),
        ("198.18.2.2", "https://"),
        ("https:///x", "no host"),
        ("https://198.18.2.2:99999/", "bad URL"),
        ("https://198.18.2.2:port/", "bad URL"),
    ],
)
def test_parse_url_refuses(url: str, problem: str) -> None:
    with pytest.raises(quicget.UsageError, match=problem):
        quicget.parse_url(url)


def test_sni_defaults_to_the_host_name_never_to_an_ip() -> None:
    assert quicget.parse_args(["https://example.com/"]).sni == "example.com"
    assert quicget.parse_args(["https://198.18.2.2/"]).sni is None
    opts = quicget.parse_args(["--sni", "twitter.com", "https://198.18.2.2/"])
    assert opts.sni == "twitter.com" and opts.target.host == "198.18.2.2"
    assert opts.authority == "twitter.com"
    assert quicget.parse_args(["https://198.18.2.2:8443/"]).authority == "198.18.2.2:8443"
    assert quicget.parse_args(["https://[2001:db8::1]/"]).authority == "[2001:db8::1]"


def test_option_defaults_and_aliases() -> None:
    opts = quicget.parse_args(["https://198.18.2.2/"])
    assert (opts.timeout, opts.output, opts.cacert, opts.insecure) == (10.0, "-", None, False)
    opts = quicget.parse_args(["--max-time", "2.5", "-o", "/dev/null", "-k", "https://198.18.2.2/"])
    assert (opts.timeout, opts.output, opts.insecure) == (2.5, "/dev/null", True)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--sni", "198.18.2.2", "https://198.18.2.2/"], "host name"),
        (["--sni", "", "https://198.18.2.2/"], "host name"),
        (["--timeout", "0", "https://198.18.2.2/"], "--timeout"),
        (["--timeout", "-1", "https://198.18.2.2/"], "--timeout"),
        (["--cacert", "x.pem", "-k", "https://198.18.2.2/"], "contradict"),
    ],
)
def test_bad_options(argv: list[str], problem: str) -> None:
    with pytest.raises(quicget.UsageError, match=problem):
        quicget.parse_args(argv)


def test_main_reports_usage_errors_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert quicget.main(["http://198.18.2.2/"]) == quicget.EXIT_USAGE
    assert "quicget: bad URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's own errors (no URL, unknown option)
        quicget.main(["--bogus", "https://198.18.2.2/"])
    assert exc.value.code == 2


def test_summary_line() -> None:
    opts = quicget.parse_args(["--sni", "example.com", "https://198.18.2.2/"])
    line = quicget.summary(opts, quicget.Result(200, 3, 0.0123, 0.004, "h3"), "198.18.2.2")
    assert line == (
        "quicget: HTTP/3 200, 3 bytes in 0.012 s (handshake 0.004 s) from 198.18.2.2:443, sni example.com, alpn h3"
    )
    assert "\n" not in line


def test_server_routes() -> None:
    assert quic_server.respond(b"GET", b"/") == (200, b"ok\n")
    assert quic_server.respond(b"GET", b"/bytes/5?x") == (200, bytes(5))
    assert quic_server.respond(b"GET", b"/bytes/abc")[0] == 404
    assert quic_server.respond(b"GET", f"/bytes/{quic_server.MAX_BYTES + 1}".encode())[0] == 400
    assert quic_server.respond(b"POST", b"/")[0] == 405


# Loopback: the real QUIC stacks, in process (aioquic's warnings would fail the test).


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fetch_from_server(tmp_path: Path, argv: list[str]) -> tuple[int, bytes]:
    cert, key = make_certificate(["example.com"], tmp_path, "srv", ["127.0.0.1"])
    port = _free_udp_port()
    server = await quic_server.start(str(cert), str(key), port, host="127.0.0.1")
    try:
        words = [w.replace("{cert}", str(cert)).replace("{port}", str(port)) for w in argv]
        sink = io.BytesIO()
        code = await quicget._run(quicget.parse_args(words), sink)
    finally:
        server.close()
    return code, sink.getvalue()


def test_loopback_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, body = asyncio.run(
        _fetch_from_server(
            tmp_path, ["--sni", "example.com", "--cacert", "{cert}", "https://127.0.0.1:{port}/bytes/70000"]
        )
    )
    assert code == 0 and body == bytes(70000)
    err = capsys.readouterr().err
    assert "HTTP/3 200, 70000 bytes" in err and "sni example.com, alpn h3" in err


def test_loopback_wrong_name_fails_the_handshake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, body = asyncio.run(
        _fetch_from_server(tmp_path, ["--sni", "other.example", "--cacert", "{cert}", "https://127.0.0.1:{port}/"])
    )
    assert code == quicget.EXIT_HANDSHAKE and body == b""
    err = capsys.readouterr().err
    assert "QUIC handshake with 127.0.0.1" in err and "other.example" in err


def test_loopback_404_is_exit_22(tmp_path: Path) -> None:
    code, body = asyncio.run(_fetch_from_server(tmp_path, ["-k", "https://127.0.0.1:{port}/nowhere"]))
    assert code == quicget.EXIT_HTTP and body == b"not found\n"


def test_silence_times_out_with_exit_28(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        opts = quicget.parse_args(["-k", "--timeout", "0.5", f"https://127.0.0.1:{silent.getsockname()[1]}/"])
        assert asyncio.run(quicget._run(opts, io.BytesIO())) == quicget.EXIT_TIMEOUT
    assert "no QUIC handshake" in capsys.readouterr().err

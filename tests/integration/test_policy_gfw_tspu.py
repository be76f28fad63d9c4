"""The matchers for the GFW and TSPU catalogue entries with real clients through ``testbed up``:
``fully_encrypted`` (I.26: a raw client sending random bytes first, Shadowsocks, curl over HTTPS),
``connections`` (F.16: the 4th curl to one SNI), ``syn_from`` (A.1: a connection started from
outside is never censored), the ``quic`` options (I.27: source port above destination port) and
``conforms`` (H.24: an HTTP request split over two segments passes, junk in two does not).

Checked by exit codes and by the censor's per-rule counters from ``testbed down --json``; no
wall-clock bounds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_policy_conforms import IRAN  # the filter as measured: judged at the 2nd data packet
from test_policy_fet import random_bytes
from test_policy_iran import HTTP_GET

from testbed.tools.updown import Session, python_in_nodes, session

pytestmark = pytest.mark.netns

HTTPS_NODES: dict[str, Any] = {
    "caller": {"side": "inside"},
    "server": {"side": "outside", "services": [{"https": {"names": ["site.example"]}}]},
}
NOOP = [{"name": "noop", "node": "caller", "run": ["true"]}]

# Connect, send the first data, wait for an answer or a close: 0 reached the server, 3 nothing came
# back (dropped), 4 the connection itself failed.
RAW_CLIENT = r"""
import socket, sys
host, port, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
try:
    s = socket.create_connection((host, port), timeout=4)
except OSError:
    sys.exit(4)
s.sendall(data)
try:
    s.recv(1)
except ConnectionResetError:
    pass
except (TimeoutError, socket.timeout):
    sys.exit(3)
sys.exit(0)
"""


def scenario(name: str, rules: list[dict[str, Any]], nodes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "nodes": nodes or HTTPS_NODES, "censor": {"rules": rules}, "probes": NOOP}


def rule(s: Session, name: str) -> dict[str, Any]:
    assert s.censor is not None
    return next(r for r in s.censor["rules"] if r["name"] == name)


def raw(s: Session, first: bytes, port: int = 443) -> int:
    argv = [python_in_nodes(), "-c", RAW_CLIENT, s.address("server"), str(port), first.hex()]
    return s.run("caller", argv, timeout=60, check=False).returncode


def curl(s: Session, url: str = "https://site.example/", *extra: str) -> int:
    argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", "8", "--cacert", s.cert("server"),
            "--resolve", f"site.example:443:{s.address('server')}", *extra, url]  # fmt: skip
    return s.run("caller", argv, timeout=60, check=False).returncode


def fet_rule(probability: float) -> dict[str, Any]:
    return {
        "name": "gfw-fet",
        "match": {"transport": "tcp", "initiator": "inside", "fully_encrypted": {"probability": probability}},
        "action": {"drop": True, "block_after": {"for": "180s", "key": "client-3-tuple", "direction": "to-server"}},
    }


def shadowsocks_fetch(s: Session) -> int:
    """curl through a real Shadowsocks tunnel (ss-local on the caller, ss-server on the server)."""
    common = ["-k", "testbed-pass", "-m", "chacha20-ietf-poly1305"]
    server = s.popen("server", ["ss-server", "-s", "0.0.0.0", "-p", "8388", *common])
    local = s.popen("caller", ["ss-local", "-s", s.address("server"), "-p", "8388", "-b", "127.0.0.1",
                               "-l", "1080", *common])  # fmt: skip
    try:
        s.wait_listening("server", 8388)
        s.wait_listening("caller", 1080)
        return curl(s, "https://site.example/", "--socks5", "127.0.0.1:1080")
    finally:
        for p in (local, server):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_fet_blocks_random_first_data_and_shadowsocks_never_https() -> None:
    with session(scenario("gfw-fet", [fet_rule(1.0)])) as s:
        s.wait_listening("server", 443)
        https_before = curl(s)
        ss = shadowsocks_fetch(s)  # to port 8388: its own 3-tuple
        junk = raw(s, random_bytes(300))  # to 443: blocks (caller, server, 443) for 180 s
        https_after = curl(s)
    assert https_before == 0
    assert ss != 0  # the tunnel's first packet looked fully encrypted
    assert junk == 3  # the handshake passed, the data never got an answer
    assert https_after != 0  # the residual block took the SYN of the next connection to 443
    r = rule(s, "gfw-fet")
    assert r["matched_flows"] == 2  # the Shadowsocks flow and the junk flow; never HTTPS
    assert r["drops"]["drop"] == 2 and r["drops"]["residual"] > 0
    assert s.censor is not None and s.censor["residual"]["triggered"] == 2


def test_fet_with_probability_zero_never_blocks() -> None:
    with session(scenario("gfw-fet-0", [fet_rule(0.0)])) as s:
        s.wait_listening("server", 443)
        junk = raw(s, random_bytes(300))
        ss = shadowsocks_fetch(s)
        https = curl(s)
    assert (junk, ss, https) == (0, 0, 0)
    assert rule(s, "gfw-fet")["matched_flows"] == 0


def test_connections_the_fourth_fetch_of_one_sni_is_frozen() -> None:
    count = {"count": 4, "window": "60s", "same": ["sni", "subnet/24"]}
    rules = [{"name": "tspu-count", "match": {"sni": "site.example", "connections": count},
              "action": {"drop": True, "block_after": {"for": "120s", "key": "pair"}}}]  # fmt: skip
    with session(scenario("tspu-count", rules)) as s:
        s.wait_listening("server", 443)
        got = [curl(s) for _ in range(5)]
    assert got[:3] == [0, 0, 0]
    assert got[3] != 0 and got[4] != 0  # the 4th is caught; the 5th meets the 120 s freeze
    r = rule(s, "tspu-count")
    assert r["matched_flows"] == 1 and r["drops"]["drop"] >= 1 and r["drops"]["residual"] > 0


LISTEN = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    c.sendall(c.recv(100))
    c.close()
"""

CONNECT = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4)
    s.sendall(b"hello")
    sys.exit(0 if s.recv(5) == b"hello" else 3)
except OSError:
    sys.exit(4)
"""


def test_syn_from_inside_never_censors_a_connection_started_outside() -> None:
    rules = [{"name": "inside-only", "match": {"transport": "tcp", "port": 7000, "syn_from": "inside"},
              "action": "drop"}]  # fmt: skip
    nodes: dict[str, Any] = {"caller": {"side": "inside"}, "server": {"side": "outside"}}
    with session(scenario("tspu-a1", rules, nodes)) as s:
        py = python_in_nodes()
        listeners = [s.popen(n, [py, "-c", LISTEN, "7000"]) for n in ("caller", "server")]
        try:
            s.wait_listening("caller", 7000)
            s.wait_listening("server", 7000)
            from_inside = s.run("caller", [py, "-c", CONNECT, s.address("server"), "7000"], timeout=60,
                                check=False).returncode  # fmt: skip
            from_outside = s.run("server", [py, "-c", CONNECT, s.address("caller"), "7000"], timeout=60,
                                 check=False).returncode  # fmt: skip
        finally:
            for p in listeners:
                p.terminate()
                p.wait(timeout=10)
    assert from_inside == 4  # its SYN was dropped
    assert from_outside == 0  # echoed through the censor untouched
    assert rule(s, "inside-only")["matched_flows"] == 1


def test_quic_source_port_above_destination_port() -> None:
    nodes: dict[str, Any] = {
        "caller": {"side": "inside"},
        "server": {"side": "outside", "services": [{"quic": {"names": ["blocked.example"]}},
                                                   {"quic": {"names": ["blocked.example"], "port": 65000}}]},
    }  # fmt: skip
    rules = [{"name": "gfw-quic", "match": {"transport": "udp", "sni": "blocked.example",
                                            "quic": {"src_port_above_dst": True, "first_initial_only": True}},
              "action": {"drop": True, "block_after": {"for": "180s", "key": "client-3-tuple"}}}]  # fmt: skip
    with session(scenario("gfw-quic", rules, nodes)) as s:
        s.wait_listening("server", 443, "udp")
        s.wait_listening("server", 65000, "udp")

        def fetch(port: int) -> int:
            url = f"https://{s.address('server')}:{port}/"
            argv = [python_in_nodes(), "-m", "testbed.tools.quicget", "--timeout", "5", "-k",
                    "--sni", "blocked.example", "-o", "/dev/null", url]  # fmt: skip
            return s.run("caller", argv, timeout=60, check=False).returncode

        # The client's ephemeral port (32768-60999) is above 443 and below 65000.
        low_server = fetch(443)
        high_server = fetch(65000)
    assert low_server != 0
    assert high_server == 0
    assert rule(s, "gfw-quic")["matched_flows"] == 1


# A server that answers "ok" once it has received all N bytes of a connection (5 s at most).
LISTEN_ALL = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
want = int(sys.argv[2])
while True:
    c, _ = srv.accept()
    c.settimeout(5)
    got = b""
    try:
        while len(got) < want:
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
        if len(got) >= want:
            c.sendall(b"ok")
    except OSError:
        pass
    c.close()
"""

# Send two segments (Nagle off, a pause between), then wait for "ok": 0 got it, 3 did not, 4 no connection.
TWO_SEGMENTS = r"""
import socket, sys, time
host, port, a, b = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
try:
    s = socket.create_connection((host, port), timeout=4)
except OSError:
    sys.exit(4)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(a)
time.sleep(0.3)
s.sendall(b)
s.settimeout(8)
try:
    sys.exit(0 if s.recv(2) == b"ok" else 3)
except OSError:
    sys.exit(3)
"""


def test_conforms_judges_the_first_two_data_packets_together() -> None:
    rules = yaml.safe_load(IRAN.join(["[", "]"]))
    rules[0]["match"]["dst_port"] = 8080  # `exec` runs unprivileged: no port 80 for our listener
    nodes: dict[str, Any] = {"caller": {"side": "inside"}, "server": {"side": "outside"}}
    junk = random_bytes(64)
    with session(scenario("iran-conforms", rules, nodes)) as s:
        py = python_in_nodes()
        srv = s.popen("server", [py, "-c", LISTEN_ALL, "8080", str(len(HTTP_GET))])
        try:
            s.wait_listening("server", 8080)

            def send(a: bytes, b: bytes) -> int:
                argv = [py, "-c", TWO_SEGMENTS, s.address("server"), "8080", a.hex(), b.hex()]
                return s.run("caller", argv, timeout=60, check=False).returncode

            split_http = send(HTTP_GET[:2], HTTP_GET[2:])  # "GE" + "T / HTTP/1.1...": conforms joined
            split_junk = send(junk[:2], junk[2 : len(HTTP_GET)])
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    assert split_http == 0
    assert split_junk == 3  # the first segment passed, the second was dropped
    r = rule(s, "iran")
    assert r["matched_flows"] == 1 and r["drops"]["drop"] == 1

"""Real third-party proxies through the censor: Shadowsocks (shadowsocks-libev), obfs4 (obfs4proxy
in managed mode, through testbed.tools.ptclient) and stunnel, each carrying a real curl.

The recipes are the README's "Bring your own tool" path (``testbed up`` + ``exec`` + ``down``);
scenarios/tools/ runs the same tools as scenario apps. Each test checks the client's exit code
and the censor's per-rule counters: the mechanism, not only the outcome. What they reproduce is
in ../shared/reference/censor-behaviors.md: A.2 (an SNI rule sees only a ClientHello's SNI) and
I.26 (the GFW's fully-encrypted-traffic detector).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.tools.updown import Session, session

pytestmark = pytest.mark.netns

SS_PORT, OBFS4_PORT, STUNNEL_PORT, SOCKS_PORT = 8388, 9443, 8443, 1080
SS_KEY = "testbed-ss-secret"  # a test-only key: the network is the run's own namespaces
CIPHER = "chacha20-ietf-poly1305"
SITES = ["site.example", "blocked.example"]
SNI_RULE: dict[str, Any] = {
    "name": "sni-blocked",
    "match": {"sni": {"suffix": ["blocked.example"]}, "initiator": "inside"},
    "action": {"reject": "rewrite"},
}


def fet_rule(probability: float, residual: bool = True) -> dict[str, Any]:
    """I.26: the first client data packet looks fully encrypted -> drop; with ``residual``, the
    GFW's 180 s block of the client's packets to that server address and port."""
    action: dict[str, Any] = {"drop": True}
    if residual:
        action["block_after"] = {"for": "180s", "key": "client-3-tuple", "direction": "to-server"}
    return {"name": "fet", "match": {"fully_encrypted": {"probability": probability}}, "action": action}


@contextlib.contextmanager
def network(name: str, rules: list[dict[str, Any]], services: list[dict[str, Any]] | None = None) -> Iterator[Session]:
    nodes = {
        "caller": {"side": "inside"},
        "server": {"side": "outside", "services": services or [{"https": {"names": SITES}}]},
    }
    scenario = {"name": name, "nodes": nodes, "censor": {"rules": rules},
                "probes": [{"name": "noop", "node": "caller", "run": ["true"]}]}  # fmt: skip
    with session(scenario) as s:
        yield s
    assert s.censor is not None


def rule(s: Session, name: str) -> dict[str, Any]:
    assert s.censor is not None
    return next(r for r in s.censor["rules"] if r["name"] == name)


def flows_to(s: Session, port: int) -> list[dict[str, Any]]:
    assert s.censor is not None
    return [f for f in s.censor["flows"] if f["responder"].endswith(f":{port}")]


def curl(s: Session, url: str, *via: str, max_time: float = 8) -> subprocess.CompletedProcess[str]:
    return s.run("caller", ["curl", "-sS", "--max-time", str(max_time), "--cacert", s.cert("server"), *via, url],
                 timeout=max_time + 20, check=False)  # fmt: skip


def direct(s: Session, name: str) -> list[str]:
    return ["--resolve", f"{name}:443:{s.address('server')}"]


def through_socks(s: Session, name: str, port: int, *, user: str | None = None) -> list[str]:
    """curl hands the proxy the address to connect to (``--connect-to``: the server node has no
    DNS); the TLS inside the tunnel still carries ``name`` as its SNI."""
    via = ["--socks5-hostname", f"127.0.0.1:{SOCKS_PORT}", "--connect-to", f"{name}:443:{s.address('server')}:{port}"]
    return via + (["--proxy-user", user] if user is not None else [])


# -- Shadowsocks ---------------------------------------------------------------------------------


def start_shadowsocks(s: Session) -> None:
    server = s.address("server")
    s.popen("server", ["ss-server", "-s", server, "-p", str(SS_PORT), "-k", SS_KEY, "-m", CIPHER])
    s.wait_listening("server", SS_PORT)
    s.popen("caller", ["ss-local", "-s", server, "-p", str(SS_PORT), "-b", "127.0.0.1", "-l", str(SOCKS_PORT),
                       "-k", SS_KEY, "-m", CIPHER])  # fmt: skip
    s.wait_listening("caller", SOCKS_PORT)


def test_shadowsocks_carries_a_blocked_name_past_an_sni_rule() -> None:
    with network("px-ss-sni", [SNI_RULE]) as s:
        start_shadowsocks(s)
        tunnelled = curl(s, "https://blocked.example/", *through_socks(s, "blocked.example", 443))
        plain = curl(s, "https://blocked.example/", *direct(s, "blocked.example"))
    assert tunnelled.returncode == 0 and tunnelled.stdout.strip() == "ok", tunnelled.stderr
    assert plain.returncode == 35, plain.stderr  # the rule is live: the direct fetch is reset
    # The rule saw exactly the direct flow; the tunnel is one unlabelled flow it never matched.
    assert rule(s, "sni-blocked")["matched_flows"] == 1
    (ss,) = flows_to(s, SS_PORT)
    assert ss["labels"] == [] and ss["sni"] is None and ss["rule"] is None and set(ss["verdicts"]) == {"accept"}


def test_shadowsocks_is_blocked_by_the_fully_encrypted_detector() -> None:
    with network("px-ss-fet", [fet_rule(1.0)]) as s:
        start_shadowsocks(s)
        plain = curl(s, "https://site.example/", *direct(s, "site.example"))
        tunnelled = curl(s, "https://site.example/", *through_socks(s, "site.example", 443), max_time=4)
        again = curl(s, "https://site.example/", *through_socks(s, "site.example", 443), max_time=4)
    assert plain.returncode == 0, plain.stderr  # TLS is exempt (Ex5)
    # The first packet of the tunnel (salt + encrypted header + ClientHello) is dropped, and then
    # every client packet to ss-server's port: curl's TLS handshake times out inside the tunnel.
    assert tunnelled.returncode == 28, tunnelled.stderr
    assert again.returncode == 28, again.stderr
    fet = rule(s, "fet")
    assert fet["matched_flows"] == 1  # the first tunnel connection; the second met the residual block
    assert fet["drops"].get("residual", 0) >= 1
    first, second = sorted(flows_to(s, SS_PORT), key=lambda f: f["first_seen_s"])
    assert first["verdicts"].get("accept", 0) >= 2 and first["rule"] == "fet"  # handshake passed, then the drop
    assert second["verdicts"].get("accept", 0) == 0  # even its SYN met the residual block


def test_shadowsocks_fet_rate_at_the_papers_probability() -> None:
    """The paper's 26.3% per connection (§6.3), without the residual block so that each
    connection is an independent draw; curl's outcome and the rule's counters must agree."""
    n = 40
    with network("px-ss-fet-rate", [fet_rule(0.263, residual=False)]) as s:
        start_shadowsocks(s)
        script = (
            f"seq {n} | xargs -P 8 -I@ sh -c 'curl -s -o /dev/null --max-time 3 --cacert {s.cert('server')} "
            + " ".join(through_socks(s, "site.example", 443))
            + " https://site.example/; echo $?'"
        )
        p = s.run("caller", ["sh", "-c", script], timeout=n * 4 + 30)
    codes = [int(c) for c in p.stdout.split()]
    assert len(codes) == n and set(codes) <= {0, 28}, codes
    blocked = codes.count(28)
    fet = rule(s, "fet")
    assert fet["matched_flows"] == blocked and len(flows_to(s, SS_PORT)) == n
    print(f"FET at p=0.263: {blocked}/{n} Shadowsocks connections blocked ({100 * blocked / n:.0f}%)")
    assert 1 <= blocked <= 25  # Binomial(40, 0.263): mean 10.5, sd 2.8


# -- obfs4 ---------------------------------------------------------------------------------------


def start_obfs4(s: Session, state: Path) -> str:
    """obfs4proxy server (managed, forwarding to the https service) and client (via ptclient on
    127.0.0.1:1080); returns the SOCKS5 username:password carrying the bridge's cert and iat-mode."""
    server = s.address("server")
    (state / "server").mkdir()
    env = ["env", "TOR_PT_MANAGED_TRANSPORT_VER=1", f"TOR_PT_STATE_LOCATION={state / 'server'}",
           "TOR_PT_SERVER_TRANSPORTS=obfs4", f"TOR_PT_SERVER_BINDADDR=obfs4-{server}:{OBFS4_PORT}",
           f"TOR_PT_ORPORT={server}:443"]  # fmt: skip
    srv = s.popen("server", [*env, "obfs4proxy"])
    assert srv.stdout is not None
    lines = [srv.stdout.readline() for _ in range(3)]
    assert lines[1].startswith(f"SMETHOD obfs4 {server}:{OBFS4_PORT} ARGS:cert="), lines
    assert lines[2] == "SMETHODS DONE\n", lines
    bridge = (state / "server" / "obfs4_bridgeline.txt").read_text().splitlines()[-1]
    args = dict(word.split("=", 1) for word in bridge.split() if "=" in word)
    cli = s.popen("caller", [sys.executable, "-m", "testbed.tools.ptclient", "--transport", "obfs4",
                             "--state", str(state / "client"), "--", "obfs4proxy"])  # fmt: skip
    assert cli.stdout is not None
    assert cli.stdout.readline().startswith("CMETHOD obfs4 socks5 127.0.0.1:")
    assert cli.stdout.readline().startswith(f"ready: 127.0.0.1:{SOCKS_PORT} -> socks5 127.0.0.1:")
    # pt-spec 3.5: the arguments "k=v;k=v" split over the SOCKS5 username and password (obfs4proxy
    # refuses an empty password, so the split falls between the two arguments).
    return f"cert={args['cert']};:iat-mode={args['iat-mode']}"


@pytest.fixture
def scratch() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tb-proxies-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_obfs4_carries_a_blocked_name_past_an_sni_rule(scratch: Path) -> None:
    with network("px-obfs4-sni", [SNI_RULE]) as s:
        user = start_obfs4(s, scratch)
        tunnelled = curl(s, "https://blocked.example/", *through_socks(s, "blocked.example", OBFS4_PORT, user=user))
        bad_cert = through_socks(s, "blocked.example", OBFS4_PORT, user="cert=AAAA;:iat-mode=0")
        wrong = curl(s, "https://blocked.example/", *bad_cert)
        plain = curl(s, "https://blocked.example/", *direct(s, "blocked.example"))
    assert tunnelled.returncode == 0 and tunnelled.stdout.strip() == "ok", tunnelled.stderr
    assert wrong.returncode == 97  # the client refuses a bridge line without a valid cert (SOCKS5 auth fails)
    assert plain.returncode == 35, plain.stderr
    assert rule(s, "sni-blocked")["matched_flows"] == 1
    (o4,) = flows_to(s, OBFS4_PORT)
    assert o4["labels"] == [] and o4["sni"] is None and o4["rule"] is None


def test_obfs4_is_blocked_by_the_fully_encrypted_detector(scratch: Path) -> None:
    with network("px-obfs4-fet", [fet_rule(1.0)]) as s:
        user = start_obfs4(s, scratch)
        started = time.monotonic()
        via = through_socks(s, "site.example", OBFS4_PORT, user=user)
        tunnelled = curl(s, "https://site.example/", *via, max_time=4)
        took = time.monotonic() - started
    # obfs4's client handshake (Elligator2 representative, random padding, MAC) is the first packet.
    assert tunnelled.returncode in (28, 97), tunnelled.stderr  # timeout, or the PT gives up on the bridge
    assert took >= 1.0  # not refused at once: silently dropped
    fet = rule(s, "fet")
    assert fet["matched_flows"] == 1 and fet["dropped"] >= 1


# -- stunnel -------------------------------------------------------------------------------------


def stunnel_conf(path: Path, text: str) -> str:
    path.write_text("foreground = yes\npid =\n" + text)
    return str(path)


def start_stunnel(s: Session, d: Path, snis: dict[int, str]) -> None:
    """Server stunnel (TLS on 8443, the https service's cert) -> the node's plain http service;
    one client stunnel per local port, each with its own SNI."""
    server = s.address("server")
    cert = s.cert("server")
    key = str(Path(cert).with_suffix(".key"))
    conf = f"[in]\naccept = {server}:{STUNNEL_PORT}\nconnect = {server}:80\ncert = {cert}\nkey = {key}\n"
    srv = stunnel_conf(d / "server.conf", conf)
    s.popen("server", ["stunnel4", srv])
    s.wait_listening("server", STUNNEL_PORT)
    sections = "".join(
        f"[out{port}]\nclient = yes\naccept = 127.0.0.1:{port}\nconnect = {server}:{STUNNEL_PORT}\nsni = {sni}\n"
        f"verifyChain = yes\nCAfile = {cert}\ncheckHost = {sni}\n"
        for port, sni in snis.items()
    )
    s.popen("caller", ["stunnel4", stunnel_conf(d / "client.conf", sections)])
    for port in snis:
        s.wait_listening("caller", port)


def test_stunnel_sni_rule_applies_like_to_any_tls(scratch: Path) -> None:
    services: list[dict[str, Any]] = [{"https": {"names": SITES}}, {"http": {"port": 80}}]
    with network("px-stunnel-sni", [SNI_RULE], services) as s:
        start_stunnel(s, scratch, {8080: "site.example", 8081: "blocked.example"})
        control = s.run("caller", ["curl", "-sS", "--max-time", "8", "http://127.0.0.1:8080/"], timeout=30, check=False)
        blocked = s.run("caller", ["curl", "-sS", "--max-time", "8", "http://127.0.0.1:8081/"], timeout=30, check=False)
    assert control.returncode == 0 and control.stdout.strip() == "ok", control.stderr
    # stunnel's TLS handshake is reset (the server's reply rewritten into an RST) and stunnel
    # passes the reset on to the plain connection it accepted: curl's "Recv failure" (56).
    assert blocked.returncode == 56, blocked.stderr
    r = rule(s, "sni-blocked")
    assert r["matched_flows"] == 1 and r["rewritten"] >= 1
    by_sni = {f["sni"]: f for f in flows_to(s, STUNNEL_PORT)}
    assert by_sni["site.example"]["labels"] == ["tls"] and by_sni["site.example"]["rule"] is None
    assert by_sni["blocked.example"]["rule"] == "sni-blocked"

"""The Iran protocol filter recipe of docs/policy.md (H.24) with real clients through ``testbed up``.

curl over HTTPS, and raw TCP clients whose first data is an HTTP request or a DNS query, reach
the server's port 443; a client whose first data is none of those is dropped, the server's port
stays blocked, and a new attempt restarts the block. Checked by exit codes and by the censor's
per-rule counters and events (no wall-clock bounds).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_policy_iran import HTTP_GET, JUNK, _dns_tcp_query, doc_recipe

from testbed.core.classify import Classifier
from testbed.core.packet import parse_ip
from testbed.tools.updown import Session, python_in_nodes, session

pytestmark = pytest.mark.netns

NODES: dict[str, Any] = {
    "caller": {"side": "inside"},
    "server": {"side": "outside", "services": [{"https": {"names": ["site.example"]}}]},
}
NOOP = [{"name": "noop", "node": "caller", "run": ["true"]}]

# Connect (the handshake must pass the filter), send the first data, wait for the server to answer
# or close: exit 0 if the data reached it, 3 if nothing came back (dropped), 4 if the connection
# itself failed (a residual block takes the SYN).
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


def raw(s: Session, first: bytes) -> int:
    p = s.run("caller", [python_in_nodes(), "-c", RAW_CLIENT, s.address("server"), "443", first.hex()],
              timeout=60, check=False)  # fmt: skip
    return p.returncode


def curl(s: Session) -> int:
    p = s.run("caller", ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", s.cert("server"),
                         "--resolve", f"site.example:443:{s.address('server')}", "https://site.example/"],
              timeout=60, check=False)  # fmt: skip
    return p.returncode


def test_junk_first_is_what_the_classifier_cannot_name() -> None:
    # The test's premise: the junk is neither TLS, HTTP nor DNS to the censor's classifier.
    from test_policy_support import CALLEE, CALLER, tcp

    c = Classifier(port_guess=False)
    obs = c.observe(parse_ip(tcp(CALLER, 1, CALLEE, 443, payload=JUNK)), 0.0)
    assert not obs.flow.labels


def test_https_http_and_dns_pass_other_first_data_is_blocked_and_the_block_restarts() -> None:
    scenario = {"name": "iran-filter", "nodes": NODES, "censor": doc_recipe(), "probes": NOOP}
    with session(scenario) as s:
        s.wait_listening("server", 443)
        https_exit = curl(s)
        http_first = raw(s, HTTP_GET)  # HTTP on 443: the filter does not pair protocols with ports
        dns_first = raw(s, _dns_tcp_query())
        junk_first = raw(s, JUNK)
        retry = raw(s, HTTP_GET)  # even a conforming client: the server's port is blocked now
    assert https_exit == 0
    assert (http_first, dns_first) == (0, 0)  # reached the server (which answered or closed)
    assert junk_first == 3  # the handshake passed, the data never got an answer
    assert retry == 4  # the residual block dropped its SYN
    assert s.censor is not None
    r = next(r for r in s.censor["rules"] if r["name"] == "iran-protocol-filter")
    assert r["matched_flows"] == 1  # only the junk flow; HTTPS, HTTP and DNS never matched
    assert r["dropped"] > 0 and r["drops"]["drop"] == 1 and r["drops"]["residual"] > 0
    events = [e for e in s.censor["events"] if e["rule"] == "iran-protocol-filter"]
    assert [e["event"] for e in events][:2] == ["match", "block"]
    # The retry's flow restarted the block: it saw the full 60 s ahead of it.
    residual = [e for e in events if e["event"] == "residual"]
    assert residual and residual[-1]["remaining_s"] == pytest.approx(60.0)

"""``censor.reassemble_tls`` with a real TLS client that splits its ClientHello over two TCP
segments (issue 14, item 12; censor-behaviors.md B.9: the split evaded the 2021 throttler).

The client is Python's ``ssl`` driven through memory BIOs, so the test decides where the hello
is cut: the first ``send`` carries its first bytes (before the SNI), the second the rest, with
TCP_NODELAY and a pause between them so they are separate segments on the wire.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from test_policy_actions import HTTPS_NODES, network, rule

from testbed.tools.updown import Session

pytestmark = pytest.mark.netns

CLIENT = r"""
import socket, ssl, sys, time
name, addr, cafile, cut = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=cafile)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname=name)
sock = socket.create_connection((addr, 443), timeout=5)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
hello_sent = False

def flush():
    global hello_sent
    data = out.read()
    if data and not hello_sent:
        hello_sent = True
        assert data[0] == 0x16 and data[5] == 0x01 and len(data) > cut, "not a ClientHello"
        sock.sendall(data[:cut])
        time.sleep(0.3)  # its own segment: NODELAY sent it, the pause keeps the rest apart
        sock.sendall(data[cut:])
    elif data:
        sock.sendall(data)

def pump():
    chunk = sock.recv(65536)
    if not chunk:
        sys.exit("connection closed during the handshake")
    inc.write(chunk)

while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        pump()
flush()
tls.write(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
flush()
while True:
    try:
        line = tls.read(64)
        break
    except ssl.SSLWantReadError:
        pump()
print(line.split(b"\r\n")[0].decode())
"""

SNI_RULE = [{"name": "sni", "match": {"sni": {"suffix": ["site.example"]}}, "action": "drop"}]


def _fetch_split(s: Session, cut: int) -> tuple[int, str]:
    p = s.run("caller", [sys.executable, "-c", CLIENT, "site.example", s.address("server"), s.cert("server", 443), str(cut)],
              timeout=30, check=False)  # fmt: skip
    return p.returncode, p.stdout + p.stderr


# The hello's record header (5 B), handshake header (4 B), version, random, session id and
# cipher suites come first: 40 bytes is well before the server_name extension.
CUT = 40


@pytest.mark.parametrize("reassemble", [True, False])
def test_split_client_hello_and_the_reassembly_switch(reassemble: bool) -> None:
    censor: dict[str, Any] = {} if reassemble else {"reassemble_tls": False}
    with network(f"split-hello-{'on' if reassemble else 'off'}", SNI_RULE, nodes=HTTPS_NODES, **censor) as s:
        code, out = _fetch_split(s, CUT)
    r = rule(s, "sni")
    if reassemble:
        # The SNI is read from the reassembled hello: the flow is dropped from the second segment on.
        assert code != 0, out
        assert r["matched_flows"] == 1 and r["dropped"] >= 1 and r["accepted"] == 0
    else:
        # One segment only, as TSPU's 2021 parser: the split hello goes unseen and the fetch works.
        assert code == 0 and out.startswith("HTTP/1.1 200"), out
        assert r["matched_flows"] == 0 and r["packets"] == 0

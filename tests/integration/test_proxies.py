"""Shadowsocks through the GFW's fully-encrypted-traffic detector at the paper's probability.

scenarios/tools/{shadowsocks,obfs4,stunnel}.yaml check each tool at probability 1.0 (a
deterministic block) and against the TSPU SNI rule. What a scenario cannot express is a rate:
here 40 Shadowsocks connections meet the detector at Wu et al.'s 26.3% (USENIX Security 2023,
§6.3; censor-behaviors.md I.26) without the residual block, so each connection is an
independent draw, and curl's failures must be exactly the rule's matched flows.

It also drives apps through ``testbed up`` + ``exec`` + ``down`` (the README's "Bring your own
tool" path): ``up`` starts ss-server and ss-local, ``exec`` runs curl through them, and after
``down`` none of them is left.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from testbed.tools.updown import session

pytestmark = pytest.mark.netns

N = 40
CIPHER = "chacha20-ietf-poly1305"


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (read from /proc; nothing is signalled)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def test_shadowsocks_fet_rate_at_the_papers_probability() -> None:
    key = f"rate-{uuid.uuid4().hex}"  # also marks this run's ss-server and ss-local in /proc
    scenario: dict[str, Any] = {
        "name": "px-ss-fet-rate",
        "vars": {"ss_key": key},
        "nodes": {
            "caller": {"side": "inside", "apps": [{
                "name": "ss-local", "after": ["ss-server"], "ready": {"tcp": 1080},
                "run": ["ss-local", "-s", "{addr:server}", "-p", "8388", "-b", "127.0.0.1", "-l", "1080",
                        "-k", "{ss_key}", "-m", CIPHER]}]},
            "server": {"side": "outside", "services": [{"https": {"names": ["site.example"]}}], "apps": [{
                "name": "ss-server", "ready": {"tcp": 8388},
                "run": ["ss-server", "-s", "{addr:server}", "-p", "8388", "-k", "{ss_key}", "-m", CIPHER]}]},
        },
        "censor": {"rules": [{"name": "fet", "match": {"fully_encrypted": {"probability": 0.263}}, "action": "drop"}]},
        "probes": [{"name": "noop", "node": "caller", "run": ["true"]}],
    }  # fmt: skip
    with session(scenario) as s:
        assert len(_processes_with(key)) == 2  # `up` started both apps
        curl = (
            f"curl -s -o /dev/null --max-time 6 --cacert {s.cert('server')} --socks5-hostname 127.0.0.1:1080 "
            f"--connect-to site.example:443:{s.address('server')}:443 https://site.example/; echo $?"
        )
        # 8 at a time; 6 s is long enough for an unblocked fetch on a loaded machine, so a timeout
        # means the detector's drop.
        p = s.run("caller", ["sh", "-c", f"seq {N} | xargs -P 8 -I@ sh -c '{curl}'"], timeout=N * 6 + 60)
    assert _processes_with(key) == []  # `down` stopped them
    codes = [int(c) for c in p.stdout.split()]
    # 0: through; 28: the first data packet (and its retransmissions) dropped, the TLS handshake
    # inside the tunnel times out. Nothing else: the detector only ever drops.
    assert len(codes) == N and set(codes) <= {0, 28}, codes
    blocked = codes.count(28)
    assert s.censor is not None
    (fet,) = s.censor["rules"]
    assert fet["matched_flows"] == blocked, (fet, codes)
    assert len([f for f in s.censor["flows"] if f["responder"].endswith(":8388")]) == N
    print(f"FET at p=0.263: {blocked}/{N} Shadowsocks connections blocked ({100 * blocked / N:.0f}%)")
    # Binomial(40, 0.263): mean 10.5, sd 2.8; P(0 blocked) = 0.737^40 ~ 5e-6.
    assert 1 <= blocked <= 25

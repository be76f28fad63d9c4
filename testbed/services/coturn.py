"""coturn as a node service: a generated config, certificate and credentials per run.

Everything coturn writes (log, pid file, its SQLite user db) stays in the run directory; nothing
under /etc or /var/lib is read or written (``-c`` points at our config, ``userdb`` at our db).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from testbed.errors import RunError
from testbed.scenario.model import TurnService
from testbed.services.certs import make_certificate

# coturn prints this once its listeners and relay threads are up.
READY_MARKER = b"Total General servers"


def turn_urls(address: str, spec: TurnService) -> list[str]:
    """ICE server URLs (RFC 7065) for every transport the relay serves."""
    urls = [f"turn:{address}:{spec.port}?transport=udp", f"turn:{address}:{spec.port}?transport=tcp"]
    if spec.tls_port:
        urls.append(f"turns:{address}:{spec.tls_port}?transport=tcp")
    return urls


def coturn_command(spec: TurnService, address: str, workdir: Path, stem: str) -> list[str]:
    binary = shutil.which("turnserver")
    if binary is None:
        raise RunError("the scenario declares a turn service but coturn is not installed: apt-get install coturn")
    d = workdir / stem
    d.mkdir(exist_ok=True)
    lines = [
        f"listening-ip={address}",
        f"relay-ip={address}",
        f"listening-port={spec.port}",
        "fingerprint",
        "lt-cred-mech",
        f"user={spec.username}:{spec.password}",
        f"realm={spec.realm}",
        "no-cli",
        "no-multicast-peers",
        "log-file=stdout",
        "simple-log",
        f"pidfile={d / 'turnserver.pid'}",
        f"userdb={d / 'turndb'}",
        # coturn refuses to relay to special-purpose ranges unless told; the sandbox lives in one.
        "allowed-peer-ip=198.18.0.0-198.19.255.255",
        "no-dtls",
    ]
    if spec.tls_port:
        cert, key = make_certificate([f"turn.{spec.realm}"], d, "turn", [address])
        lines += [f"tls-listening-port={spec.tls_port}", f"cert={cert}", f"pkey={key}", "no-tlsv1", "no-tlsv1_1"]
    else:
        lines.append("no-tls")
    conf = d / "turnserver.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [binary, "-c", str(conf)]

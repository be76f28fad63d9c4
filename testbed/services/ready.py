"""Is a service serving yet? ``python -m testbed.services.ready [--timeout S] CHECK...``, run in its node.

A check is ``KIND:ADDR:PORT`` with KIND one of
  ``tcp``       a TCP connection is accepted (the socket is listening);
  ``stun-udp``  a STUN Binding request over UDP gets a Binding success response (RFC 8489);
  ``stun-tcp``  the same over TCP.
Each check is retried every 100 ms until it passes or ``--timeout`` (default 15 s) runs out.
Exit 0 (and print ``ready``) when all passed; 1 naming the checks that did not.

Why: a log line only says that a service *started* to set up; coturn prints its marker before its
auth thread runs, so a call started on the marker alone could race the relay. A STUN answer
proves the listener is reading and replying. Talking to the node's own address stays inside the
node (the kernel routes it over loopback): the censor never sees these packets.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass

from testbed.core.dissect.stun import StunClass, parse_stun

_RETRY_S = 0.1
_KINDS = ("tcp", "stun-udp", "stun-tcp")
_BINDING_METHOD = 0x001
_BINDING_REQUEST_TYPE = 0x0001
_MAGIC_COOKIE = 0x2112A442


@dataclass(frozen=True, slots=True)
class Check:
    kind: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.address}:{self.port}"


def parse_check(text: str) -> Check:
    kind, _, rest = text.partition(":")
    address, _, port = rest.rpartition(":")
    if kind not in _KINDS or not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad check {text!r}: give KIND:ADDR:PORT with KIND one of {', '.join(_KINDS)}")
    return Check(kind, address, int(port))


def binding_request(transaction_id: bytes) -> bytes:
    """A STUN Binding request with no attributes (RFC 8489 §5, §6)."""
    return _BINDING_REQUEST_TYPE.to_bytes(2, "big") + b"\0\0" + _MAGIC_COOKIE.to_bytes(4, "big") + transaction_id


def is_binding_success(data: bytes, transaction_id: bytes) -> bool:
    """Does ``data`` start with the Binding success response to ``transaction_id``?"""
    msg = parse_stun(data, exact=False)
    return (
        msg is not None
        and msg.cookie
        and msg.stun_class is StunClass.SUCCESS
        and msg.method == _BINDING_METHOD
        and data[8:20] == transaction_id
    )


def _attempt(check: Check, timeout_s: float) -> bool:
    family = socket.AF_INET6 if ":" in check.address else socket.AF_INET
    tid = os.urandom(12)
    try:
        if check.kind == "stun-udp":
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout_s)
                s.sendto(binding_request(tid), (check.address, check.port))
                return is_binding_success(s.recv(2048), tid)
        with socket.create_connection((check.address, check.port), timeout=timeout_s) as s:
            if check.kind == "tcp":
                return True
            s.sendall(binding_request(tid))
            data = b""
            while len(data) < 20 or len(data) < 20 + int.from_bytes(data[2:4], "big"):
                chunk = s.recv(2048)
                if not chunk:
                    return False
                data += chunk
            return is_binding_success(data, tid)
    except OSError:  # refused, timed out, unreachable: not ready yet
        return False


def wait_ready(checks: list[Check], timeout_s: float) -> list[Check]:
    """The checks that did not pass within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pending = list(checks)
    while pending:
        pending = [c for c in pending if not _attempt(c, max(0.2, min(1.0, deadline - time.monotonic())))]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(_RETRY_S)
    return pending


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.services.ready", description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=15.0, metavar="S")
    p.add_argument("checks", nargs="+", metavar="KIND:ADDR:PORT")
    opts = p.parse_args(argv)
    try:
        checks = [parse_check(c) for c in opts.checks]
    except ValueError as exc:
        print(f"ready: {exc}", file=sys.stderr)
        return 2
    if not opts.timeout > 0:
        print("ready: --timeout must be > 0", file=sys.stderr)
        return 2
    failed = wait_ready(checks, opts.timeout)
    if failed:
        print(f"not serving after {opts.timeout:g} s: {', '.join(map(str, failed))}", flush=True)
        return 1
    print("ready", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

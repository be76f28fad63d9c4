"""The floor for any Python NFQUEUE censor: python-netfilterqueue accepting every packet.

    python benchmarks/bare_nfqueue.py QUEUE_NUM

Run by benchmarks/engine.py inside the censor namespace (its queue rule goes in front of the
censor's); binds the same way testbed's censor does (libnetfilterqueue, copy the whole packet,
the censor's queue length) and prints {"packets": N} on SIGTERM. Each packet's payload is read
(``get_payload``), as any censor must.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType
from typing import Any

from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found, unused-ignore]

MAX_LEN = 8192  # the censor's default queue length (scenario model: censor.queue_max_len)


def main() -> int:
    count = 0

    def on_packet(pkt: Any) -> None:
        nonlocal count
        pkt.get_payload()
        count += 1
        pkt.accept()

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    nfq = NetfilterQueue()
    nfq.bind(int(sys.argv[1]), on_packet, max_len=MAX_LEN, sock_len=MAX_LEN * 2048)
    signal.signal(signal.SIGTERM, on_term)
    print(json.dumps({"ready": True}), flush=True)
    try:
        nfq.run()
    except KeyboardInterrupt:
        pass
    finally:
        nfq.unbind()
    print(json.dumps({"packets": count}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

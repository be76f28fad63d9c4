"""The censor engine without the queue: CPU per packet of ``CensorEngine.handle`` on the loads of
benchmarks/engine.py (an elephant UDP flow; a new UDP flow every 4 packets), per policy. No root,
no namespaces: the per-packet and per-flow cost of testbed/core alone, to profile and compare.

    .venv/bin/python benchmarks/engine_sansio.py [--packets N] [--profile POLICY/LOAD]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from engine import ACCEPT_ONLY, CALLS_12, TWENTY_RULES

from testbed.core.classify import Classifier
from testbed.core.craft import udp_datagram
from testbed.core.engine import CensorEngine
from testbed.core.policy import compile_policy
from testbed.scenario.policy_ir import policy_ir
from testbed.scenario.policy_schema import PolicySpec

CALLER = bytes([198, 18, 1, 2])
SERVER = bytes([198, 18, 2, 2])
OTHER = "198.18.2.3"
POLICIES = {"accept-only": ACCEPT_ONLY, "12 rules": CALLS_12, "20 rules": TWENTY_RULES}


def make_engine(rules: list[dict[str, Any]]) -> CensorEngine:
    spec = PolicySpec.model_validate({"lists": {"hosting": ["other"]}, "rules": rules})
    policy = compile_policy(
        policy_ir(spec),
        resolve_node={"other": [OTHER], "caller": ["198.18.1.2"], "server": ["198.18.2.2"]}.__getitem__,
        inside_addresses=["198.18.1.2"],
        seed=1,
        start=0.0,
    )
    return CensorEngine(Classifier(), policy, start=0.0)


def load(kind: str, n: int) -> list[tuple[float, bytes]]:
    payload = b"\x00" * 200
    if kind == "elephant":
        pkt = udp_datagram(CALLER, SERVER, 40000, 5201, payload)
        return [(i * 1e-5, pkt) for i in range(n)]
    return [(i * 1e-5, udp_datagram(CALLER, SERVER, 1024 + (i // 4) % 60000, 9400, payload)) for i in range(n)]


def run(policy: str, kind: str, n: int) -> float:
    """CPU seconds per packet (best of 3)."""
    packets = load(kind, n)
    best = float("inf")
    for _ in range(3):
        e = make_engine(POLICIES[policy])
        handle = e.handle
        t0 = time.process_time()
        for now, data in packets:
            handle(data, now)
        best = min(best, time.process_time() - t0)
    return best / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--profile", metavar="POLICY/LOAD", help="cProfile one case, e.g. '12 rules/churn'")
    args = ap.parse_args()
    if args.profile:
        policy, kind = args.profile.split("/")
        packets = load(kind, args.packets)
        e = make_engine(POLICIES[policy])
        prof = cProfile.Profile()
        prof.enable()
        for now, data in packets:
            e.handle(data, now)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    print("| policy | elephant us/packet | churn us/packet | churn us/flow (4 packets) |")
    print("|---|---|---|---|")
    for policy in POLICIES:
        el = run(policy, "elephant", args.packets) * 1e6
        ch = run(policy, "churn", args.packets) * 1e6
        print(f"| {policy} | {el:.2f} | {ch:.2f} | {ch * 4:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

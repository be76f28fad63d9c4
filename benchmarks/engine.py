"""The censor engine's cost: packets/s through the censor and the latency it adds.

    sudo .venv/bin/python benchmarks/engine.py [--reps N] [--seconds S] [--py-spy PATH] [--json FILE]

Two networks are up at once (``testbed up``), identical but for the censor's policy:

accept-only  one rule, empty match, ``accept`` (flows settle at once: the engine's cheapest path)
20 rules     19 rules that must be evaluated for the flow and do not match (labels, SNI, ALPN,
             ECH, fingerprints, sizes, payload patterns, time windows; plus port/address rules
             the engine filters out per flow) and a 20th that matches, so every packet walks
             the list and no flow ever settles.

Throughput: iperf3 UDP, 64-byte payloads (92-byte IP packets), unpaced (``-b 0``), caller ->
server, alternating between the two networks ``--reps`` times. The censor process is pinned to
CPU 1 and the iperf3 ends to CPU 0 (2-core machine), so the load generator does not steal the
engine's core. The figure is the censor's own count: packets it gave a verdict / time between
the flow's first and last packet (the kernel drops the rest at the queue, fail closed); the
receiver's packets/s (iperf3) is shown beside it. Medians of the repetitions.

Latency: ping RTTs (-i 0.002, 64-byte) through each censor, then with the censor namespace's
NFQUEUE rule taken out of FORWARD (the kernel forwards alone), then put back. Added = with -
without, p50 and p99; an RTT crosses the censor twice.

With ``--py-spy PATH`` (py-spy installed outside the project, e.g. ``pip install --target
/tmp/pyspy py-spy``) the 20-rule censor is profiled during one more run and the hottest
functions are printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Session, load_note, percentile, session

SERVER = "198.18.2.2"
PORT = 5201
NODES: dict[str, Any] = {
    "caller": {"side": "inside"},
    "server": {"side": "outside", "services": [{"iperf3": {"port": PORT}}]},
    "other": {"side": "outside"},
}
NOOP = [{"name": "noop", "node": "caller", "run": ["true"]}]

ACCEPT_ONLY: list[dict[str, Any]] = [{"name": "accept-all", "action": "accept"}]

TWENTY_RULES: list[dict[str, Any]] = [
    {"name": "r01-calls", "match": {"labels": ["whatsapp-call", "telegram-call"]}, "action": "drop"},
    {"name": "r02-vpn", "match": {"labels": ["wireguard", "openvpn"]}, "action": "drop"},
    {"name": "r03-twitter", "match": {"sni": {"suffix": ["twimg.com", "twitter.com"], "substring": ["t.co"]}, "initiator": "inside"},
     "action": {"throttle": {"rate": "130kbit", "burst": "16KB"}, "direction": "both"}},
    {"name": "r04-youtube", "match": {"sni": {"regex": [r"^r[0-9]+---sn-.*\.googlevideo\.com$"]}}, "action": {"loss": "20%", "direction": "both"}},
    {"name": "r05-ech", "match": {"sni": "cloudflare-ech.com", "ech": True}, "action": "drop"},
    {"name": "r06-h3", "match": {"alpn": ["h3"]}, "action": "drop"},
    {"name": "r07-ja3", "match": {"fingerprint": {"ja3": ["e4d448cdfe06dc1243c1eb026c74ac9a"]}}, "action": "drop"},
    {"name": "r08-stun-port", "match": {"transport": "udp", "dst_port": 3478}, "action": "drop"},
    {"name": "r09-tg-ports", "match": {"transport": "udp", "dst_port": ["590-1400"]}, "action": "drop"},
    {"name": "r10-hosting", "match": {"dst": {"list": "hosting"}}, "action": {"cut": {"after_packets": 25}}},
    {"name": "r11-quic-2022", "match": {"transport": "udp", "dst_port": 443, "payload_size": {"min": 1001}}, "action": "drop"},
    {"name": "r12-big-dtls", "match": {"labels": ["dtls"], "size": {"min": 1400}}, "action": "drop"},
    {"name": "r13-wg-bytes", "match": {"transport": "udp", "payload_size": 148, "payload": {"offset": 0, "hex": "01000000"}}, "action": "drop"},
    {"name": "r14-china", "match": {"labels": ["dtls"], "size": {"min": 201}, "time": {"every": "60s", "active": "30s"}}, "action": "drop"},
    {"name": "r15-iran", "match": {"transport": "tcp", "dst_port": [53, 80, 443], "packet_index": {"max": 5}, "not": {"labels": ["tls"]}}, "action": "drop"},
    {"name": "r16-stun-loss", "match": {"labels": ["stun"]}, "action": {"loss": "5%"}},
    {"name": "r17-quic", "match": {"labels": ["quic"]}, "action": "drop"},
    {"name": "r18-allowlist", "match": {"labels": ["tls"], "not": {"sni": {"suffix": ["allowed.example"]}}}, "action": "drop"},
    {"name": "r19-rtp-delay", "match": {"labels": ["rtp"], "size": {"min": 1300}}, "action": {"delay": "30ms"}},
    {"name": "r20-late", "match": {"transport": "udp", "size": {"max": 1500}}, "action": "accept"},
]  # fmt: skip


def scenario(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    # offload off: this measures the engine, which must see every packet (engine_offload.py measures offload)
    censor = {"lists": {"hosting": ["other"]}, "rules": rules, "offload": False}
    return {"name": name, "nodes": NODES, "censor": censor, "probes": NOOP}


def censor_pid(s: Session) -> int:
    for pid in s.pids("censor"):
        try:
            if b"testbed.censor.main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise RuntimeError("no censor process in the censor namespace")


def pin(s: Session) -> None:
    """Censor on CPU 1, the server node's processes (iperf3 server) on CPU 0."""
    if (os.cpu_count() or 1) < 2:
        return
    subprocess.run(["taskset", "-p", "-c", "1", str(censor_pid(s))], capture_output=True, check=False)
    for pid in s.pids("server"):
        subprocess.run(["taskset", "-p", "-c", "0", str(pid)], capture_output=True, check=False)


def flood(s: Session, seconds: float) -> dict[str, Any]:
    cmd = ["iperf3", "-c", SERVER, "-p", str(PORT), "-u", "-b", "0", "-l", "64", "-t", str(seconds), "--json"]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    out = s.run("caller", cmd, timeout=seconds + 30)
    end = json.loads(out.stdout)["end"]["sum"]
    return {
        "sent_pps": end["packets"] / end["seconds"],
        "recv_pps": (end["packets"] - end["lost_packets"]) / end["seconds"],
    }


def engine_pps(censor: dict[str, Any]) -> list[float]:
    """Per UDP flood flow (big enough), packets the censor handled per second, in start order."""
    out = []
    for f in sorted(censor.get("flows", []), key=lambda f: f["first_seen_s"]):
        span = f["last_seen_s"] - f["first_seen_s"]
        if f["transport"] == "udp" and f["packets"] > 1000 and span > 0:
            out.append(f["packets"] / span)
    return out


_RTT = re.compile(r"time=([0-9.]+) ms")


def rtts(s: Session, count: int) -> list[float]:
    out = s.run("caller", ["ping", "-n", "-c", str(count), "-i", "0.002", "-W", "1", SERVER],
                timeout=count * 0.01 + 30, check=False)  # fmt: skip
    return [float(x) for x in _RTT.findall(out.stdout)]


def queue_rule(s: Session) -> tuple[int, list[str]]:
    """(1-based position, spec) of the censor's NFQUEUE rule in the censor namespace's FORWARD."""
    out = s.run("censor", ["iptables", "-w", "5", "-S", "FORWARD"], timeout=30).stdout.splitlines()
    pos = 0
    for line in out:
        if not line.startswith("-A FORWARD"):
            continue
        pos += 1
        if "NFQUEUE" in line and f"testbed:{s.run_id}" in line:
            return pos, line.split()[2:]
    raise RuntimeError("no NFQUEUE rule in the censor's FORWARD chain")


def latency(s: Session, count: int) -> dict[str, float]:
    with_censor = rtts(s, count)
    pos, spec = queue_rule(s)
    s.run("censor", ["iptables", "-w", "5", "-D", "FORWARD", str(pos)], timeout=30)
    try:
        without = rtts(s, count)
    finally:
        s.run("censor", ["iptables", "-w", "5", "-I", "FORWARD", str(pos), *spec], timeout=30)
    assert queue_rule(s)[0] == pos
    return {
        "p50_with": percentile(with_censor, 50), "p99_with": percentile(with_censor, 99),
        "p50_without": percentile(without, 50), "p99_without": percentile(without, 99),
        "replies": min(len(with_censor), len(without)),
    }  # fmt: skip


def profile(s: Session, py_spy: str, seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        return _profile(s, py_spy, seconds, Path(tmp) / "profile.txt")


def _profile(s: Session, py_spy: str, seconds: float, raw: Path) -> list[str]:
    client = s.popen("caller", ["taskset", "-c", "0", "iperf3", "-c", SERVER, "-p", str(PORT), "-u", "-b", "0", "-l", "64",
                                "-t", str(seconds + 2), "--json"])  # fmt: skip
    time.sleep(1.0)  # into the flood's steady state (iperf3 says nothing until the end)
    spy = subprocess.run([py_spy, "record", "-p", str(censor_pid(s)), "-d", str(int(seconds)), "-r", "250", "-f", "raw",
                          "-o", str(raw), "--nonblocking"], capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(Path(py_spy).parent.parent)})  # fmt: skip
    client.communicate(timeout=seconds + 30)
    if not raw.exists():
        return [f"py-spy failed ({spy.returncode}): {spy.stderr.strip()[-300:]}"]
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        frames = [f for f in stack.split(";") if f]
        total += int(n)
        if frames:
            self_c[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    out = [f"py-spy, 20-rule censor under flood: {total} samples"]
    out += ["  self:"] + [f"    {c / total * 100:5.1f}%  {f}" for f, c in self_c.most_common(15)]
    skip = ("asyncio", "runpy", "<module>", "main (testbed/censor/main.py")
    top = [(f, c) for f, c in incl.most_common(60) if not any(k in f for k in skip)][:20]
    out += ["  inclusive:"] + [f"    {c / total * 100:5.1f}%  {f}" for f, c in top]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--pings", type=int, default=1000)
    ap.add_argument("--py-spy", metavar="PATH", help="profile the 20-rule censor with this py-spy binary")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    print(f"engine: {load_note()} at start", flush=True)
    started = time.monotonic()
    sent: dict[str, list[float]] = {"accept-only": [], "20 rules": []}
    recv: dict[str, list[float]] = {"accept-only": [], "20 rules": []}
    lat: dict[str, dict[str, float]] = {}
    prof: list[str] = []
    with session(scenario("engine-accept", ACCEPT_ONLY)) as a, session(scenario("engine-20rules", TWENTY_RULES)) as b:
        pin(a)
        pin(b)
        for _ in range(args.reps):
            for name, s in (("accept-only", a), ("20 rules", b)):
                r = flood(s, args.seconds)
                sent[name].append(r["sent_pps"])
                recv[name].append(r["recv_pps"])
        for name, s in (("accept-only", a), ("20 rules", b)):
            lat[name] = latency(s, args.pings)
        if args.py_spy:
            prof = profile(b, args.py_spy, args.seconds)
        censors = {"accept-only": a.down(), "20 rules": b.down()}
    pps = {name: engine_pps(c)[: args.reps] for name, c in censors.items()}
    med = {name: statistics.median(v) if v else float("nan") for name, v in pps.items()}
    frac = med["20 rules"] / med["accept-only"]
    print(f"engine: {load_note()} at end; {time.monotonic() - started:.0f} s\n")
    print("| policy | censor packets/s (median) | runs | receiver packets/s (median) | offered packets/s |")
    print("|---|---|---|---|---|")
    for name in pps:
        runs = ", ".join(f"{x / 1000:.1f}k" for x in pps[name])
        print(
            f"| {name} | {med[name]:,.0f} | {runs} | {statistics.median(recv[name]):,.0f} | {statistics.median(sent[name]):,.0f} |"
        )
    print(f"\n20 rules / accept-only: {frac * 100:.0f}% (target >= 60%: {'PASS' if frac >= 0.6 else 'MISS'})")
    rows_checked = {n: c.get("rules", []) for n, c in censors.items()}
    late = next((r for r in rows_checked["20 rules"] if r["name"] == "r20-late"), None)
    if late is not None:
        print(f"  r20-late matched {late['packets']:,} packets; settled flows: {censors['20 rules']['settled']}; "
              f"kernel queue drops: accept-only {censors['accept-only']['kernel'].get('queue_dropped')}, "
              f"20 rules {censors['20 rules']['kernel'].get('queue_dropped')}")  # fmt: skip
    print("\n| policy | RTT p50 with censor | without | added p50 | RTT p99 with | without | added p99 |")
    print("|---|---|---|---|---|---|---|")
    for name, d in lat.items():
        print(f"| {name} | {d['p50_with']:.3f} ms | {d['p50_without']:.3f} ms | {d['p50_with'] - d['p50_without']:+.3f} ms | "
              f"{d['p99_with']:.3f} ms | {d['p99_without']:.3f} ms | {d['p99_with'] - d['p99_without']:+.3f} ms |")  # fmt: skip
    print("  (ping -i 0.002, 64-byte; an RTT crosses the censor twice)")
    for line in prof:
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"pps": pps, "median": med, "fraction": frac, "receiver_pps": recv,
                                               "offered_pps": sent, "latency": lat, "profile": prof, "load": load_note()}, indent=2) + "\n")  # fmt: skip
    return 0 if frac >= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())

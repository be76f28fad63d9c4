"""The censor engine's cost: packets/s through the censor and the latency it adds, as ratios
to the bare python-netfilterqueue loop and to the kernel alone, all from one run (issue 12).

    sudo .venv/bin/python benchmarks/engine.py [--reps N] [--seconds S] [--py-spy PATH] [--json FILE]

Three networks are up at once (``testbed up``), identical but for the censor's policy:

accept-only  one rule, empty match, ``accept`` (flows settle at once: the engine's cheapest path)
12 rules     a call-blocking policy (WhatsApp/Telegram call labels, Telegram relay ports, STUN,
             TURN and DTLS signatures, as TSPU's 2025 call blocking and its neighbours): nothing
             in the loads matches, every rule is evaluated for each new flow
20 rules     19 rules that must be evaluated for the flow and do not match (labels, SNI, ALPN,
             ECH, fingerprints, sizes, payload patterns, time windows; plus port/address rules
             the engine filters out per flow) and a 20th that matches, so every packet walks
             the list and no flow ever settles.

Two more rows use the accept-only network with a rule put in front of the censor's in the
censor namespace's FORWARD chain (and taken out again after each measurement):

kernel       ``-j ACCEPT``: the kernel forwards alone, no queue
bare loop    ``-j NFQUEUE --queue-num 4242`` read by benchmarks/bare_nfqueue.py (python-
             netfilterqueue, accept every packet), pinned to the censor's CPU: the floor for any
             Python NFQUEUE censor

Loads, each row alternated ``--reps`` times: ``elephant`` is iperf3 UDP, 200-byte payloads,
unpaced (``-b 0``), one flow; ``churn`` is testbed.tools.churn, a sender that opens a new UDP
flow (a new source port) every 4 packets of 200 bytes, as fast as it can. The figure is the
receiver's packets/s (the kernel drops at a full queue, fail closed, so what the receiver gets is
what the middle box passed); medians of the repetitions. The censor and the bare loop are pinned
to CPU 1, the load's ends to CPU 0 (2-core machine).

Latency: ping RTTs (-i 0.002, 64-byte) through each row; added = p50 (p99) with - the kernel
row's; an RTT crosses the middle box twice, so per crossing is half of it.

With ``--py-spy PATH`` (py-spy installed outside the project, e.g. ``pip install --target
/tmp/pyspy py-spy``) the 12-rule censor is profiled under the churn load and the hottest
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

from _common import Session, load_note, percentile, python_in_nodes, session

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

# A call-blocking policy: TSPU's 2025 WhatsApp/Telegram call blocking (tspu-2025-calls) and the
# neighbouring measures a censor deploying it would carry; none matches the benchmark's loads.
CALLS_12: list[dict[str, Any]] = [
    {"name": "c01-call-apps", "match": {"transport": "udp", "labels": ["whatsapp-call", "telegram-call"]}, "action": "drop"},
    {"name": "c02-tg-relays", "match": {"transport": "udp", "dst_port": ["590-599", 1400], "dst": {"list": "hosting"}}, "action": "drop"},
    {"name": "c03-stun-port", "match": {"transport": "udp", "dst_port": [3478, 19302]}, "action": "drop"},
    {"name": "c04-turn", "match": {"labels": ["turn"]}, "action": "drop"},
    {"name": "c05-stun", "match": {"labels": ["stun"], "packet_index": {"min": 3}}, "action": {"loss": "30%"}},
    {"name": "c06-dtls", "match": {"labels": ["dtls"]}, "action": "drop"},
    {"name": "c07-srtp", "match": {"labels": ["srtp", "rtp"], "size": {"min": 300}}, "action": "drop"},
    {"name": "c08-wa", "match": {"labels": ["whatsapp"], "transport": "udp"}, "action": "drop"},
    {"name": "c09-tg", "match": {"labels": ["telegram"], "transport": "udp"}, "action": "drop"},
    {"name": "c10-wireguard", "match": {"labels": ["wireguard"]}, "action": "drop"},
    {"name": "c11-quic-voip", "match": {"labels": ["quic"], "sni": {"suffix": ["whatsapp.net", "telegram.org"]}}, "action": "drop"},
    {"name": "c12-rtcp", "match": {"labels": ["rtcp"]}, "action": "drop"},
]  # fmt: skip

BARE_QUEUE = 4242
MARK = ["-m", "comment", "--comment", "tb-bench-engine"]
CHURN_PORT = 9400


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
    cmd = ["iperf3", "-c", SERVER, "-p", str(PORT), "-u", "-b", "0", "-l", "200", "-t", str(seconds), "--json"]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    out = s.run("caller", cmd, timeout=seconds + 30)
    end = json.loads(out.stdout)["end"]["sum"]
    return {
        "sent_pps": end["packets"] / end["seconds"],
        "recv_pps": (end["packets"] - end["lost_packets"]) / end["seconds"],
    }


def churn(s: Session, seconds: float) -> dict[str, Any]:
    """The new-flow-every-4-packets load: receiver's and sender's packets/s."""
    recv = s.popen("server", ["taskset", "-c", "0", python_in_nodes(), "-m", "testbed.tools.churn", "recv",
                              str(CHURN_PORT), "--idle", "1.0"])  # fmt: skip
    assert recv.stdout is not None
    recv.stdout.readline()  # {"ready": port}
    out = s.run("caller", ["taskset", "-c", "0", python_in_nodes(), "-m", "testbed.tools.churn", "send", SERVER,
                           str(CHURN_PORT), "--seconds", str(seconds)], timeout=seconds + 30)  # fmt: skip
    sent = json.loads(out.stdout)
    got = json.loads(recv.communicate(timeout=30)[0].strip().splitlines()[-1])
    return {"sent_pps": sent["packets"] / sent["seconds"], "recv_pps": got["pps"], "flows": sent["flows"]}


def front_rule(s: Session, target: list[str], add: bool) -> None:
    """Put (or take out) a rule in front of the censor's NFQUEUE rule in the censor namespace."""
    op = ["-I", "FORWARD", "1"] if add else ["-D", "FORWARD"]
    s.run("censor", ["iptables", "-w", "5", *op, *MARK, *target], timeout=30)


_RTT = re.compile(r"time=([0-9.]+) ms")


def rtts(s: Session, count: int) -> list[float]:
    out = s.run("caller", ["ping", "-n", "-c", str(count), "-i", "0.002", "-W", "1", SERVER],
                timeout=count * 0.01 + 30, check=False)  # fmt: skip
    return [float(x) for x in _RTT.findall(out.stdout)]


def profile(s: Session, py_spy: str, seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        return _profile(s, py_spy, seconds, Path(tmp) / "profile.txt")


def _profile(s: Session, py_spy: str, seconds: float, raw: Path) -> list[str]:
    client = s.popen("caller", ["taskset", "-c", "0", python_in_nodes(), "-m", "testbed.tools.churn", "send", SERVER,
                                str(CHURN_PORT), "--seconds", str(seconds + 2)])  # fmt: skip
    time.sleep(1.0)  # into the load's steady state
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
    out = [f"py-spy, 12-rule censor under the churn load: {total} samples"]
    out += ["  self:"] + [f"    {c / total * 100:5.1f}%  {f}" for f, c in self_c.most_common(15)]
    skip = ("asyncio", "runpy", "<module>", "main (testbed/censor/main.py")
    top = [(f, c) for f, c in incl.most_common(60) if not any(k in f for k in skip)][:20]
    out += ["  inclusive:"] + [f"    {c / total * 100:5.1f}%  {f}" for f, c in top]
    return out


ROWS = ("kernel", "bare loop", "accept-only", "12 rules", "20 rules")
LOADS = ("elephant", "churn")


def measure(row: str, load: str, nets: dict[str, Session], seconds: float) -> dict[str, Any]:
    s = nets["accept-only"] if row in ("kernel", "bare loop") else nets[row]
    target = {"kernel": ["-j", "ACCEPT"], "bare loop": ["-j", "NFQUEUE", "--queue-num", str(BARE_QUEUE)]}.get(row)
    if target:
        front_rule(s, target, True)
    try:
        return flood(s, seconds) if load == "elephant" else churn(s, seconds)
    finally:
        if target:
            front_rule(s, target, False)


def row_latency(row: str, nets: dict[str, Session], count: int) -> list[float]:
    s = nets["accept-only"] if row in ("kernel", "bare loop") else nets[row]
    target = {"kernel": ["-j", "ACCEPT"], "bare loop": ["-j", "NFQUEUE", "--queue-num", str(BARE_QUEUE)]}.get(row)
    if target:
        front_rule(s, target, True)
    try:
        return rtts(s, count)
    finally:
        if target:
            front_rule(s, target, False)


def start_bare_loop(s: Session) -> Any:
    proc = s.popen("censor", ["taskset", "-c", "1", python_in_nodes(), str(Path(__file__).with_name("bare_nfqueue.py")),
                              str(BARE_QUEUE)])  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        raise RuntimeError(f"bare loop did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def stop_bare_loop(s: Session, proc: Any) -> int:
    for pid in s.pids("censor"):
        try:
            if b"bare_nfqueue.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 15)
        except OSError:
            continue
    out, _ = proc.communicate(timeout=30)
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    return int(json.loads(last).get("packets", 0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--pings", type=int, default=1000)
    ap.add_argument("--py-spy", metavar="PATH", help="profile the 12-rule censor with this py-spy binary")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    start_load = load_note()
    print(f"engine: {start_load} at start", flush=True)
    started = time.monotonic()
    recv: dict[str, dict[str, list[float]]] = {r: {ld: [] for ld in LOADS} for r in ROWS}
    sent: dict[str, dict[str, list[float]]] = {r: {ld: [] for ld in LOADS} for r in ROWS}
    lat: dict[str, list[float]] = {}
    prof: list[str] = []
    bare_packets = 0
    with (
        session(scenario("engine-accept", ACCEPT_ONLY)) as a,
        session(scenario("engine-12rules", CALLS_12)) as c,
        session(scenario("engine-20rules", TWENTY_RULES)) as b,
    ):
        nets = {"accept-only": a, "12 rules": c, "20 rules": b}
        for s in nets.values():
            pin(s)
        bare = start_bare_loop(a)
        try:
            for _ in range(args.reps):
                for load in LOADS:
                    for row in ROWS:
                        r = measure(row, load, nets, args.seconds)
                        recv[row][load].append(r["recv_pps"])
                        sent[row][load].append(r["sent_pps"])
                        print(f"  {row:12s} {load:8s} {r['recv_pps']:>10,.0f} pkt/s (sent {r['sent_pps']:,.0f})",
                              flush=True)  # fmt: skip
            for row in ROWS:
                lat[row] = row_latency(row, nets, args.pings)
        finally:
            bare_packets = stop_bare_loop(a, bare)
        if args.py_spy:
            prof = profile(c, args.py_spy, args.seconds)
        censors = {name: s.down() for name, s in nets.items()}
    med = {r: {ld: statistics.median(v) if v else float("nan") for ld, v in d.items()} for r, d in recv.items()}
    end_load = load_note()
    print(f"\nengine: {end_load} at end; {time.monotonic() - started:.0f} s; bare loop saw {bare_packets:,} packets\n")
    print("| in the middle | elephant flow, pkt/s | % of bare loop | new flow every 4 packets, pkt/s | % of bare loop "
          "| added RTT p50 / p99 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    k50, k99 = percentile(lat["kernel"], 50), percentile(lat["kernel"], 99)
    for row in ROWS:
        e, ch = med[row]["elephant"], med[row]["churn"]
        pe = e / med["bare loop"]["elephant"] * 100
        pc = ch / med["bare loop"]["churn"] * 100
        added = (
            "0 (reference)"
            if row == "kernel"
            else (f"{(percentile(lat[row], 50) - k50) * 1000:.0f} / {(percentile(lat[row], 99) - k99) * 1000:.0f} us")
        )
        print(f"| {row} | {e:,.0f} | {pe:.0f}% | {ch:,.0f} | {pc:.0f}% | {added} |")
    offered = ", ".join(f"{r} {statistics.median(sent[r]['churn']):,.0f}" for r in ROWS)
    print(f"  (medians of {args.reps}; churn offered by the sender: {offered} pkt/s)")
    goal_c = med["12 rules"]["churn"] / med["bare loop"]["churn"]
    goal_e = med["12 rules"]["elephant"] / med["bare loop"]["elephant"]
    per_crossing = (percentile(lat["12 rules"], 50) - k50) * 1000 / 2
    print(
        f"\ngoals (12 rules): churn {goal_c * 100:.0f}% of bare (>= 50%: {'met' if goal_c >= 0.5 else 'not met'}); "
        f"elephant {goal_e * 100:.0f}% (>= 70%: {'met' if goal_e >= 0.7 else 'not met'}); "
        f"added p50 per crossing {per_crossing:.0f} us (<= 50 us: {'met' if per_crossing <= 50 else 'not met'})"
    )
    late = next((r for r in censors["20 rules"].get("rules", []) if r["name"] == "r20-late"), None)
    if late is not None:
        print(
            f"  r20-late matched {late['packets']:,} packets; settled flows 12 rules: {censors['12 rules']['settled']}; "
            f"kernel queue drops: " + ", ".join(f"{n} {c['kernel'].get('queue_dropped')}" for n, c in censors.items())
        )
    for line in prof:
        print(line)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "recv_pps": recv,
                    "sent_pps": sent,
                    "median": med,
                    "rtt_ms": lat,
                    "profile": prof,
                    "load": [start_load, end_load],
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

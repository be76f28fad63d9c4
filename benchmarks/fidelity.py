"""Fidelity of the censor's impairments: configured vs achieved, with real tools, through
``testbed up`` / ``testbed exec`` / ``testbed down``.

    sudo .venv/bin/python benchmarks/fidelity.py [--quick] [--json FILE] [--only GROUP...]

Four networks are brought up one after the other (one per group of cases; each case has its
own rule, selected by destination port or packet size, so cases never share a rule's state):

throttle  iperf3 UDP at twice the rate through ``mode: police`` (128 kbit/s, 1, 10 Mbit/s), and
          iperf3 TCP through ``mode: shape`` at the same rates. The token bucket counts IP bytes,
          so the achieved rate is the IP-level rate the receiving node's kernel saw
          (``IpExt.InOctets`` over a window in steady state, after the initial burst:
          ``testbed.tools.netcount``); iperf3's own goodput (payload only) is shown beside it.
delay     ping (per-reply RTTs) through ``delay: 50ms`` and ``50ms +- 20ms normal``, minus the
          RTT of unmatched pings in the same network. The jitter case uses ``reorder: true``:
          without it, a packet is never released before the previous one of its flow, which
          at 200 pings/s reshapes the distribution (documented behaviour, not an error).
loss      ``testbed.tools.udpseq`` (sequence-numbered UDP) through Bernoulli 1 % and 10 % (target:
          the binomial 95 % interval for the number sent) and Gilbert-Elliott p=1 %, r=30 %
          (mean loss run 1/r, loss rate p/(p+r); 95 % intervals from the chain's statistics).
cut       udpseq one way, and an HTTPS fetch (curl) both ways, through ``cut`` by packets and by
          bytes; the packets/bytes that got through are counted by the receiving nodes' kernels
          (``Tcp.InSegs`` / ``IpExt.InOctets`` of both ends for TCP).

Prints a table (case, configured, achieved, error, target, PASS/MISS) and notes. Run as root;
takes about 2-3 minutes (``--quick``: about one and a half).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Session, load_note, mean_std, python_in_nodes, session

SERVER = "198.18.2.2"  # link 2: the second node (server); the topology guarantees the plan
NODES = {"caller": {"side": "inside"}, "server": {"side": "outside"}}
NOOP_PROBE = [{"name": "noop", "node": "caller", "run": ["true"]}]  # `up` runs no probes; the schema wants work


@dataclass
class Row:
    case: str
    configured: str
    achieved: str
    error_pct: float | None
    target: str
    ok: bool
    note: str = ""


def _fmt_rate(bps: float) -> str:
    if bps >= 1e6:
        return f"{bps / 1e6:.3f} Mbit/s"
    return f"{bps / 1e3:.1f} kbit/s"


# -- throttle --------------------------------------------------------------------------------------

RATES = [("128kbit", 128_000.0), ("1Mbit", 1_000_000.0), ("10Mbit", 10_000_000.0)]
TCP_MSS_PAYLOAD = 1448  # MTU 1500 - 20 IP - 32 TCP with timestamps
TCP_IP_PACKET = 1500


def _burst_bytes(rate_bps: float) -> int:
    # A quarter second of rate (at least two full packets): the burst is spent in the first
    # quarter second at twice the rate, well before the measuring window opens.
    return max(3000, int(rate_bps / 8 * 0.25))


def throttle_scenario() -> dict[str, Any]:
    rules = []
    for i, (name, bps) in enumerate(RATES):
        burst = _burst_bytes(bps)
        rules.append({
            "name": f"police-{name}", "match": {"transport": "udp", "dst_port": 5311 + i},
            "action": {"throttle": {"rate": name, "burst": burst, "mode": "police"}},
        })  # fmt: skip
        rules.append({
            "name": f"shape-{name}", "match": {"transport": "tcp", "dst_port": 5321 + i},
            "action": {"throttle": {"rate": name, "burst": burst, "mode": "shape"}},
        })  # fmt: skip
    return {"name": "fidelity-throttle", "nodes": NODES, "censor": {"rules": rules}, "probes": NOOP_PROBE}


def _iperf_case(s: Session, *, port: int, udp: bool, rate_bps: float, quick: bool) -> dict[str, Any]:
    after, window = (1.5, 2.5) if quick else (2.0, 4.0)
    if udp and rate_bps < 500_000:
        after, window = (after + 1.0, window + 2.0)  # few packets/s: a longer window
    duration = math.ceil(after + window + 1.0)
    server = s.popen("server", ["iperf3", "-s", "-1", "-p", str(port), "--json"])
    s.wait_listening("server", port)
    cmd = ["iperf3", "-c", SERVER, "-p", str(port), "-t", str(duration), "--json"]
    if udp:
        payload = 222 if rate_bps < 500_000 else 1000
        cmd += ["-u", "-b", str(int(2 * rate_bps)), "-l", str(payload)]
    client = s.popen("caller", cmd)
    counter = s.run(
        "server", [python_in_nodes(), "-m", "testbed.tools.netcount", "--after", str(after), "--window", str(window)],
        timeout=after + window + 30,
    )  # fmt: skip
    cout, cerr = client.communicate(timeout=duration + 30)
    sout, _ = server.communicate(timeout=30)
    c = json.loads(counter.stdout)
    ip_bps = c["delta"].get("IpExt.InOctets", 0) * 8 / c["seconds"]
    good_bps = json.loads(sout)["end"]["sum_received"]["bits_per_second"]
    return {
        "ip_bps": ip_bps,
        "goodput_bps": good_bps,
        "window_s": c["seconds"],
        "packets": c["delta"].get("Ip.InReceives", 0),
    }


def run_throttle(quick: bool, rows: list[Row], notes: list[str]) -> None:
    with session(throttle_scenario()) as s:
        for mode, udp, base in (("police", True, 5311), ("shape", False, 5321)):
            for i, (name, bps) in enumerate(RATES):
                r = _iperf_case(s, port=base + i, udp=udp, rate_bps=bps, quick=quick)
                err = (r["ip_bps"] - bps) / bps * 100
                tool = "iperf3 UDP 2x rate" if udp else "iperf3 TCP"
                rows.append(Row(
                    f"throttle {mode} {name}", _fmt_rate(bps), _fmt_rate(r["ip_bps"]), err, "+-5%", abs(err) <= 5.0,
                    f"{tool}; IP rate over {r['window_s']:.1f} s at the receiver; goodput (payload) {_fmt_rate(r['goodput_bps'])}",
                ))  # fmt: skip
        censor = s.down()
    _censor_note(censor, notes, "throttle")


# -- delay -----------------------------------------------------------------------------------------

_RTT = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms")


def delay_scenario() -> dict[str, Any]:
    return {
        "name": "fidelity-delay",
        "nodes": NODES,
        "censor": {
            "rules": [
                # ping -s 600: 628-byte requests; -s 1000: 1028 bytes. Smaller pings are not delayed.
                {"name": "delay-fixed", "match": {"transport": "icmp", "size": {"min": 600, "max": 700}},
                 "action": {"delay": "50ms"}},
                {"name": "delay-jitter", "match": {"transport": "icmp", "size": {"min": 1000, "max": 1100}},
                 "action": {"delay": {"time": "50ms", "jitter": "20ms", "distribution": "normal", "reorder": True}}},
            ]
        },
        "probes": NOOP_PROBE,
    }  # fmt: skip


def _ping(s: Session, count: int, interval: float, size: int) -> dict[int, float]:
    """icmp_seq -> RTT (ms) of each reply."""
    out = s.run("caller", ["ping", "-n", "-c", str(count), "-i", str(interval), "-s", str(size), "-W", "2", SERVER],
                timeout=count * interval + 30, check=False)  # fmt: skip
    return {int(m.group(1)): float(m.group(2)) for m in _RTT.finditer(out.stdout)}


def replay_delays(seed: int, index: int, name: str, client: str, server: str, count: int) -> list[float]:
    """The delays (ms) the policy draws for the first ``count`` packets the rule delays in the
    original direction of the ICMP flow client <-> server: the same seeded stream the engine
    uses (docs/policy.md, Determinism), so each reply can be compared with what was asked."""
    import ipaddress

    from testbed.core.policy.jitter import DelaySampler
    from testbed.core.policy.rng import derive_rng, derive_seed
    from testbed.scenario.policy_schema import Distribution

    c = ipaddress.IPv4Address(client).packed
    v = ipaddress.IPv4Address(server).packed
    (a, ap), (b, bp) = sorted([(c, 0), (v, 0)])  # ICMP flows have no ports: the key is the address pair
    rng = derive_rng(derive_seed(seed, "rule", index, name), index, name, 1, a, ap, b, bp, 0)
    sampler = DelaySampler(0.050, 0.020, Distribution.NORMAL)
    return [sampler.sample(rng) * 1e3 for _ in range(count)]


def run_delay(quick: bool, rows: list[Row], notes: list[str]) -> None:
    n_jitter = 1600 if quick else 3000
    with session(delay_scenario()) as s:
        base = _ping(s, 400, 0.005, 56)
        fixed = _ping(s, 300 if quick else 500, 0.01, 600)
        jit = _ping(s, n_jitter, 0.005, 1000)
        censor = s.down()
    b_mean, b_std = mean_std(list(base.values()))
    f_mean, f_std = mean_std(list(fixed.values()))
    j_mean, j_std = mean_std(list(jit.values()))
    d_fixed = f_mean - b_mean
    rows.append(Row("delay 50ms: mean", "50.00 ms", f"{d_fixed:.2f} ms", (d_fixed - 50) / 50 * 100, "+-1 ms",
                    abs(d_fixed - 50) <= 1.0, f"ping -i 0.01, {len(fixed)} replies; base RTT {b_mean:.3f} ms (sd {b_std:.3f}); "
                    f"added RTT sd {math.sqrt(max(0.0, f_std**2 - b_std**2)):.3f} ms"))  # fmt: skip
    d_mean = j_mean - b_mean
    se = 20.0 / math.sqrt(max(1, len(jit)))
    rows.append(Row("delay 50+-20ms normal: mean", "50.00 ms", f"{d_mean:.2f} ms", (d_mean - 50) / 50 * 100, "+-1 ms",
                    abs(d_mean - 50) <= 1.0, f"ping -i 0.005 -s 1000, {len(jit)} replies; sampling s.e. {se:.2f} ms; reorder: true"))  # fmt: skip
    sd = math.sqrt(max(0.0, j_std**2 - b_std**2))
    rows.append(Row("delay 50+-20ms normal: sd", "20.00 ms", f"{sd:.2f} ms", (sd - 20) / 20 * 100, "+-10%",
                    abs(sd - 20) <= 2.0, f"RTT sd {j_std:.2f} ms minus the base RTT's variance; negatives clip at 0 (P=0.6%)"))  # fmt: skip
    # Per packet: each reply against the delay the policy drew for its request.
    draws = replay_delays(0, 1, "delay-jitter", "198.18.1.2", SERVER, n_jitter)
    pairs = [(rtt - b_mean, draws[seq - 1]) for seq, rtt in jit.items() if 1 <= seq <= n_jitter]
    if pairs:
        errs = [m - d for m, d in pairs]
        e_mean, e_std = mean_std(errs)
        dr_mean, dr_std = mean_std([d for _, d in pairs])
        late = sorted(errs)[int(0.99 * (len(errs) - 1))]
        rows.append(Row("delay 50+-20ms: per-packet error", "0.00 ms", f"{e_mean:+.2f} ms", None, "+-1 ms",
                        abs(e_mean) <= 1.0 and e_std < 2.0,
                        f"achieved minus the engine's own draw per packet (replayed seeded stream): sd {e_std:.2f} ms, "
                        f"p99 {late:+.2f} ms; the draws themselves: mean {dr_mean:.2f} ms, sd {dr_std:.2f} ms"))  # fmt: skip
    _censor_note(censor, notes, "delay")


# -- loss ------------------------------------------------------------------------------------------

GE_P, GE_R = 0.01, 0.30


def loss_scenario() -> dict[str, Any]:
    return {
        "name": "fidelity-loss",
        "nodes": NODES,
        "censor": {
            "rules": [
                {"name": "loss-1", "match": {"transport": "udp", "dst_port": 9001}, "action": {"loss": "1%"}},
                {"name": "loss-10", "match": {"transport": "udp", "dst_port": 9002}, "action": {"loss": "10%"}},
                {"name": "loss-ge", "match": {"transport": "udp", "dst_port": 9003},
                 "action": {"loss": {"model": "gilbert-elliott", "p": "1%", "r": "30%"}}},
            ]
        },
        "probes": NOOP_PROBE,
    }  # fmt: skip


def udpseq(s: Session, port: int, *, count: int, rate: float, size: int, idle: float = 1.5) -> dict[str, Any]:
    """Receiver on the server (ready line = bound), sender on the caller; the receiver's report."""
    py = python_in_nodes()
    rx = s.popen("server", [py, "-m", "testbed.tools.udpseq", "recv", str(port), "--count", str(count),
                            "--idle", str(idle), "--timeout", str(count / max(rate, 1) + 30)])  # fmt: skip
    assert rx.stdout is not None
    ready = rx.stdout.readline()
    if not ready.startswith('{"ready"'):
        raise RuntimeError(f"udpseq receiver did not start: {ready!r} {rx.stderr.read() if rx.stderr else ''}")
    s.run("caller", [py, "-m", "testbed.tools.udpseq", "send", SERVER, str(port), "--count", str(count),
                     "--rate", str(rate), "--size", str(size)], timeout=count / max(rate, 1) + 30)  # fmt: skip
    try:
        out, _ = rx.communicate(timeout=idle + 1.0)  # it stops `idle` s after the last datagram
    except subprocess.TimeoutExpired:  # none came at all: ask it to report
        rx.terminate()
        out, _ = rx.communicate(timeout=10)
    return dict(json.loads(out.strip().splitlines()[-1]))


def ge_intervals(p: float, r: float, n: int, runs: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """95 % intervals for the loss rate over ``n`` packets and the mean loss run over ``runs``
    runs, for Gilbert (1-h = 100 %, 1-k = 0): runs are geometric with mean 1/r; the loss
    indicator is a two-state chain with second eigenvalue 1-p-r, which inflates the binomial
    variance by (1+l)/(1-l)."""
    pi = p / (p + r)
    lam = 1 - p - r
    sd_rate = math.sqrt(pi * (1 - pi) / n * (1 + lam) / (1 - lam))
    mean_run = 1 / r
    sd_run = math.sqrt(1 - r) / r / math.sqrt(max(1, runs))
    return (pi - 1.96 * sd_rate, pi + 1.96 * sd_rate), (mean_run - 1.96 * sd_run, mean_run + 1.96 * sd_run)


def run_loss(quick: bool, rows: list[Row], notes: list[str]) -> None:
    n = 10_000 if quick else 20_000
    n_ge = 15_000 if quick else 30_000
    rate = 5000.0
    results = {}
    with session(loss_scenario()) as s:
        for name, port, count in (("1%", 9001, n), ("10%", 9002, n), ("ge", 9003, n_ge)):
            results[name] = udpseq(s, port, count=count, rate=rate, size=64)
        censor = s.down()
    for name, p in (("1%", 0.01), ("10%", 0.10)):
        r = results[name]
        lo, hi = _binomial_acceptance(p, r["expected"])
        got = r["loss_rate"]
        rows.append(Row(f"loss bernoulli {name}", f"{p * 100:.2f}%", f"{got * 100:.3f}%", (got - p) / p * 100,
                        f"[{lo * 100:.2f}, {hi * 100:.2f}]%", lo <= got <= hi,
                        f"udpseq {r['expected']} pkts at {rate:.0f}/s; {r['lost']} lost in {r['loss_runs']} runs"))  # fmt: skip
    g = results["ge"]
    (rlo, rhi), (mlo, mhi) = ge_intervals(GE_P, GE_R, g["expected"], g["loss_runs"])
    pi = GE_P / (GE_P + GE_R)
    rows.append(Row("loss gilbert p=1% r=30%: rate", f"{pi * 100:.2f}%", f"{g['loss_rate'] * 100:.3f}%",
                    (g["loss_rate"] - pi) / pi * 100, f"[{rlo * 100:.2f}, {rhi * 100:.2f}]%", rlo <= g["loss_rate"] <= rhi,
                    f"udpseq {g['expected']} pkts; runs histogram {_short_hist(g['run_lengths'])}"))  # fmt: skip
    rows.append(Row("loss gilbert p=1% r=30%: burst", f"{1 / GE_R:.2f} pkts", f"{g['mean_loss_run']:.2f} pkts",
                    (g["mean_loss_run"] - 1 / GE_R) * GE_R * 100, f"[{mlo:.2f}, {mhi:.2f}]", mlo <= g["mean_loss_run"] <= mhi,
                    f"{g['loss_runs']} loss runs, longest {g['max_loss_run']}"))  # fmt: skip
    _censor_note(censor, notes, "loss", udp_received={k: v["unique"] for k, v in results.items()})


def _binomial_acceptance(p: float, n: int) -> tuple[float, float]:
    """The range of loss fractions a Bernoulli(p) source gives 95 % of the time over n packets."""
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)


def _short_hist(h: dict[str, int]) -> str:
    items = list(h.items())
    head = ", ".join(f"{k}:{v}" for k, v in items[:6])
    return head + (", ..." if len(items) > 6 else "")


# -- cut -------------------------------------------------------------------------------------------


def cut_scenario() -> dict[str, Any]:
    return {
        "name": "fidelity-cut",
        "nodes": {
            "caller": {"side": "inside"},
            "server": {"side": "outside", "services": [{"https": {"names": ["cut.example"], "port": 443}},
                                                       {"https": {"names": ["cut.example"], "port": 8443}}]},
        },
        "censor": {
            "rules": [
                {"name": "cut-udp-packets", "match": {"transport": "udp", "dst_port": 9101}, "action": {"cut": {"after_packets": 25}}},
                {"name": "cut-udp-bytes", "match": {"transport": "udp", "dst_port": 9102}, "action": {"cut": {"after_bytes": "16KB"}}},
                {"name": "cut-tcp-packets", "match": {"transport": "tcp", "dst_port": 443}, "action": {"cut": {"after_packets": 25}}},
                {"name": "cut-tcp-bytes", "match": {"transport": "tcp", "dst_port": 8443}, "action": {"cut": {"after_bytes": "16KB"}}},
            ]
        },
        "probes": NOOP_PROBE,
    }  # fmt: skip


def _tcp_through(s: Session, port: int) -> dict[str, int]:
    before = {n: s.snmp(n) for n in ("caller", "server")}
    s.run("caller", ["curl", "-sS", "-o", "/dev/null", "--max-time", "2", "--cacert", s.cert("server", port), "--resolve",
                     f"cut.example:{port}:{SERVER}", f"https://cut.example:{port}/bytes/200000"], timeout=30, check=False)  # fmt: skip
    after = {n: s.snmp(n) for n in ("caller", "server")}
    out = {}
    for n in ("caller", "server"):
        out[f"{n}_segs"] = after[n]["Tcp.InSegs"] - before[n]["Tcp.InSegs"]
        out[f"{n}_octets"] = after[n]["IpExt.InOctets"] - before[n]["IpExt.InOctets"]
    return out


def run_cut(quick: bool, rows: list[Row], notes: list[str]) -> None:
    with session(cut_scenario()) as s:
        up = udpseq(s, 9101, count=100, rate=1000, size=72, idle=1.0)
        ub = udpseq(s, 9102, count=100, rate=1000, size=972, idle=1.0)  # 1000-byte IP packets
        tp = _tcp_through(s, 443)
        tb = _tcp_through(s, 8443)
        censor = s.down()
    rows.append(Row("cut after_packets 25 (udp, one way)", "25 pkts", f"{up['unique']} pkts", (up["unique"] - 25) / 25 * 100,
                    "exact", up["unique"] == 25 and up["max_seq"] == 24, "udpseq 100 x 100 B sent"))  # fmt: skip
    rows.append(Row("cut after_bytes 16KB (udp, one way)", "16000 B", f"{up_bytes(ub)} B", (up_bytes(ub) - 16000) / 16000 * 100,
                    "exact (16 x 1000 B)", up_bytes(ub) == 16000 and ub["unique"] == 16, "udpseq 100 x 1000 B (IP) sent"))  # fmt: skip
    segs = tp["caller_segs"] + tp["server_segs"]
    rows.append(Row("cut after_packets 25 (tcp, both ways)", "25 pkts", f"{segs} pkts", (segs - 25) / 25 * 100, "exact",
                    segs == 25, f"curl https 200 KB; client got {tp['caller_segs']}, server {tp['server_segs']} segments"))  # fmt: skip
    octets = tb["caller_octets"] + tb["server_octets"]
    cut_ev = [e for e in censor.get("events", []) if e.get("event") == "cut" and e.get("rule") == "cut-tcp-bytes"]
    ev_bytes = cut_ev[0]["bytes"] if cut_ev else None
    ok = octets <= 16000 and octets > 16000 - TCP_IP_PACKET and (ev_bytes is None or ev_bytes == octets)
    rows.append(Row("cut after_bytes 16KB (tcp, both ways)", "16000 B", f"{octets} B", (octets - 16000) / 16000 * 100,
                    "<= 16000, > 14500", ok,
                    f"IP bytes received by both ends; censor's count at the cut: {ev_bytes}"))  # fmt: skip
    _censor_note(censor, notes, "cut")


def up_bytes(r: dict[str, Any]) -> int:
    return int(r["ip_bytes"])


# -- output ----------------------------------------------------------------------------------------


def _censor_note(censor: dict[str, Any], notes: list[str], group: str, **extra: Any) -> None:
    k = censor.get("kernel", {})
    rules = ", ".join(
        f"{r['name']}: {r['accepted']} acc/{r['delayed']} held/{r['dropped']} drop {r['drops'] or ''}".rstrip()
        for r in censor.get("rules", [])
    )
    notes.append(
        f"{group}: censor kernel queue_dropped={k.get('queue_dropped')} user_dropped={k.get('user_dropped')}; "
        f"held peak {censor.get('held', {}).get('peak')}; rules: {rules}" + (f"; {extra}" if extra else "")
    )


def print_table(rows: list[Row]) -> None:
    head = ("case", "configured", "achieved", "error", "target", "result")
    table = [head] + [
        (
            r.case,
            r.configured,
            r.achieved,
            "" if r.error_pct is None else f"{r.error_pct:+.2f}%",
            r.target,
            "PASS" if r.ok else "MISS",
        )
        for r in rows
    ]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in table[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)) + " |")
    print()
    for r in rows:
        if r.note:
            print(f"  {r.case}: {r.note}")


GROUPS: dict[str, Callable[[bool, list[Row], list[str]], None]] = {
    "throttle": run_throttle,
    "delay": run_delay,
    "loss": run_loss,
    "cut": run_cut,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer packets and shorter windows")
    ap.add_argument("--json", metavar="FILE", help="also write the rows and notes as JSON")
    ap.add_argument("--only", nargs="+", choices=sorted(GROUPS), help="run only these groups")
    args = ap.parse_args(argv)
    rows: list[Row] = []
    notes: list[str] = []
    started = time.monotonic()
    print(f"fidelity: {load_note()} at start", flush=True)
    for name, fn in GROUPS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.monotonic()
        fn(args.quick, rows, notes)
        print(f"  {name}: {time.monotonic() - t0:.0f} s", flush=True)
    print(f"fidelity: {load_note()} at end; {time.monotonic() - started:.0f} s in all\n")
    print_table(rows)
    print()
    for n in notes:
        print("  " + n)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": [asdict(r) for r in rows], "notes": notes, "load": load_note()}, indent=2) + "\n"
        )
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

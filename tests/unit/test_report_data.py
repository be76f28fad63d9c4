"""Crafted scenario result dicts for the reporter tests (``ScenarioResult.to_json()`` shape).

Three kinds: ``rich_result`` has every field that is being added (samples, outcome, MOS, policy
rules and events, expected/measured); ``legacy_result`` is exactly the schema-1 example from the
README (none of them); ``error_result`` is a run that broke.  Reporters must handle all three.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

CALLER = "198.18.1.2:40123"
CALLEE = "198.18.2.2:51234"


def _samples(cut_at: float, seconds: int = 10) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in range(seconds):
        cut = t >= cut_at
        for endpoint in ("caller", "callee"):
            for kind, kbps in (("audio", 42.0), ("video", 650.0 + 40 * t)):
                wobble = 1 + 0.06 * math.sin(t + (endpoint == "callee"))
                sent = kbps * wobble
                packets = 50 if kind == "audio" else 80
                out.append(
                    {
                        "t_s": float(t + 1),
                        "endpoint": endpoint,
                        "kind": kind,
                        "direction": "send",
                        "packets": packets,
                        "bytes": int(sent * 125),
                        "bitrate_kbps": round(sent, 1),
                        "lost": None,
                        "loss_pct": None,
                        "jitter_ms": None,
                        "rtt_ms": None if cut else round(18 + 4 * math.sin(t / 2) + (kind == "video") * 2, 1),
                    }
                )
                got = 0 if cut else packets - (t % 3)
                lost = packets - got
                out.append(
                    {
                        "t_s": float(t + 1),
                        "endpoint": endpoint,
                        "kind": kind,
                        "direction": "recv",
                        "packets": got,
                        "bytes": 0 if cut else int(sent * 122),
                        "bitrate_kbps": 0.0 if cut else round(sent * 0.97, 1),
                        "lost": lost,
                        "loss_pct": round(100 * lost / packets, 1),
                        "jitter_ms": None if cut else 2.5,
                        "rtt_ms": None,
                    }
                )
    out.append(
        {
            "t_s": 1.0,
            "endpoint": "caller",
            "kind": "data",
            "direction": "recv",
            "packets": 10,
            "bytes": 1000,
            "bitrate_kbps": 8.0,
            "lost": 0,
            "loss_pct": 0.0,
            "jitter_ms": None,
            "rtt_ms": None,
        }
    )
    return out


def _stream(endpoint: str, kind: str, direction: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "endpoint": endpoint,
        "kind": kind,
        "direction": direction,
        "packets_sent": 251,
        "packets_received": 251,
        "bytes": 40160,
        "packets_lost": 0,
        "jitter_ms": 1.1,
        "round_trip_time_ms": 1.0,
        "ssrc": 1,
        "codec": "audio/opus",
        "frames": 251,
        "messages": None,
        "latency_ms_median": None,
        "latency_ms_max": None,
        "first_received_t_s": None,
        "last_received_t_s": None,
        "max_gap_ms": None,
        "received_per_s": None,
    }
    base.update(kw)
    return base


def legacy_result() -> dict[str, Any]:
    """The README's schema-1 example: no samples, outcome, MOS, rules or events."""
    return {
        "name": "baseline",
        "file": "scenarios/baseline.yaml",
        "run_id": "3fa9c1",
        "seed": 0,
        "passed": True,
        "duration_s": 7.9,
        "error": None,
        "expectations": [{"what": "direct-audio: connected == true", "passed": True, "detail": "connected in 95 ms"}],
        "calls": [
            {
                "name": "direct-audio",
                "connected": True,
                "setup_ms": 95.2,
                "media_s": 5.0,
                "wall_s": 6.1,
                "state_timeline": [
                    [0.0, "caller:connection:new"],
                    [0.09, "caller:connection:connected"],
                    [5.6, "relay:call:ended"],
                ],
                "streams": [
                    _stream("caller", "audio", "send", received_per_s=None),
                    _stream(
                        "callee",
                        "audio",
                        "recv",
                        packets_received=245,
                        packets_lost=6,
                        received_per_s=[20, 50, 50, 50, 50, 25],
                    ),
                    _stream(
                        "callee",
                        "data",
                        "recv",
                        packets_sent=50,
                        packets_received=50,
                        bytes=5000,
                        packets_lost=None,
                        messages=50,
                        received_per_s=[6, 10, 10, 10, 10, 4],
                    ),
                ],
                "transports": [],
                "selected_candidate_pair": {
                    "protocol": "udp",
                    "local_address": "198.18.1.2",
                    "local_port": 40123,
                    "local_type": "host",
                    "remote_address": "198.18.2.2",
                    "remote_port": 51234,
                    "remote_type": "host",
                },
                "error": None,
            }
        ],
        "censor": {
            "packets": 1104,
            "bytes": 218112,
            "malformed": 0,
            "actions": {"accept": 1104},
            "kernel": {"queue_dropped": 0, "user_dropped": 0, "queued_now": 0},
            "held_max": 0,
            "flows": [
                {
                    "transport": "udp",
                    "endpoints": [CALLER, CALLEE],
                    "initiator": CALLER,
                    "packets": 1104,
                    "bytes": 218112,
                    "packets_orig": 552,
                    "packets_reply": 552,
                    "bytes_orig": 109056,
                    "bytes_reply": 109056,
                    "labels": ["dtls", "rtp", "stun"],
                    "sni": None,
                    "first_seen_s": 0.61,
                    "last_seen_s": 6.7,
                    "verdicts": {"accept": 1104},
                }
            ],
        },
    }


def rich_result() -> dict[str, Any]:
    """A call cut by a DTLS rule at 4.2 s, with every new field filled in."""
    r = legacy_result()
    r.update(name="dtls-cut", file="scenarios/dtls-cut.yaml", run_id="a1b2c3", passed=False, duration_s=14.2)
    call = r["calls"][0]
    call.update(
        name="video-call",
        outcome="blocked",
        mos=1.4,
        time_to_failure_s=3.7,
        setup_ms=88.0,
        media_s=10.0,
        wall_s=11.0,
        samples=_samples(cut_at=4),
        error="media stopped at 4.0 s (no packets for 6 s)",
        outcome_reasons=["media stopped at 4.0 s (no packets for 6 s)", "loss 58% > 10%"],
        start_s=0.0,
        state_timeline=[
            [0.0, "caller:connection:new"],
            [0.25, "caller:connection:connected"],
            [0.3, "relay:call:connected"],
            [10.3, "relay:signalling:hangup"],
        ],
    )
    r["expectations"] = [
        {
            "what": "video-call: connected == true",
            "passed": True,
            "detail": "connected in 88 ms",
            "expected": True,
            "measured": True,
        },
        {
            "what": "video-call: loss <= 5%",
            "passed": False,
            "detail": "loss 58.0% > 5%",
            "expected": "<= 5%",
            "measured": 58.0,
        },
    ]
    r["censor"].update(
        actions={"accept": 900, "drop": 204},
        rules=[
            {
                "name": "dtls-cut",
                "action": "cut after 3.5 s",
                "matched_flows": 1,
                "packets": 1104,
                "bytes": 218112,
                "accepted": 900,
                "dropped": 204,
                "delayed": 0,
                "rejected": 0,
                "rewritten": 0,
                "drops": {"cut": 204},
                "max_hold_s": 0.0,
            }
        ],
        events=[
            {"t": 0.7, "event": "match", "rule": "dtls-cut", "flow": f"{CALLER} <-> {CALLEE}"},
            {"t": 0.7, "event": "match", "rule": "dtls-cut", "flow": f"{CALLER} <-> {CALLEE}"},
            {"t": 2.0, "event": "window", "state": "on", "rule": "dtls-cut", "flow": None},
            {"t": 4.2, "event": "cut", "rule": "dtls-cut", "flow": f"{CALLER} <-> {CALLEE}", "after_s": 3.5},
            {"t": 4.25, "event": "residual", "rule": "dtls-cut", "flow": f"{CALLER} <-> {CALLEE}", "for_s": 60},
            {"t": 8.0, "event": "window", "state": "off", "rule": "dtls-cut", "flow": None},
        ],
        events_dropped=0,
    )
    r["censor"]["flows"][0].update(verdicts={"accept": 900, "drop": 204}, rule="dtls-cut")
    r["probes"] = [
        {
            "name": "https-probe",
            "node": "caller",
            "argv": ["curl", "-sS", "https://198.18.2.2/"],
            "exit_code": 28,
            "timed_out": False,
            "started_s": 0.0,
            "duration_s": 5.01,
            "stdout_tail": "",
            "stderr_tail": "timeout <x>",
        },
    ]
    return r


def error_result() -> dict[str, Any]:
    return {
        "name": "censor-dies",
        "file": "scenarios/censor-dies.yaml",
        "run_id": "dead01",
        "seed": 3,
        "passed": False,
        "duration_s": 2.5,
        "error": "the censor engine exited unexpectedly mid-run (exit code 1).\n  censor output:\n    boom \x01",
        "expectations": [],
        "calls": [],
        "censor": {},
    }


def all_results() -> list[dict[str, Any]]:
    return [legacy_result(), rich_result(), error_result()]


def test_crafted_results_are_plain_json() -> None:
    results = all_results()
    assert json.loads(json.dumps(results)) == copy.deepcopy(results)

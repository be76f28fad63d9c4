"""The censor's per-packet pipeline, without I/O: bytes + time in, a ``Verdict`` out.

    parse_ip -> Classifier.observe (flow table, counters, dissectors) -> Policy.decide -> Verdict

The NFQUEUE adapter and the conformance tests' fake packet source both drive this same object;
so does nothing else, and nothing here knows which of them is calling.  Rule: ``now`` is always
passed in (the adapter uses the event loop's monotonic clock), and no exception from inside the
pipeline ever escapes ``handle``: a packet we cannot parse is counted and passed (a real DPI
forwards what it does not understand; policies that want otherwise see ``malformed``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from testbed.core.classify import Classifier, Observation
from testbed.core.flow import Flow
from testbed.core.packet import MalformedPacket, Packet, parse_ip
from testbed.core.verdict import ACCEPT, Action, Verdict
from testbed.records.flow import FlowRecord
from testbed.records.json import JsonObject


class Policy(Protocol):
    def decide(self, packet: Packet, obs: Observation, now: float) -> Verdict: ...


class AcceptAll:
    """The null policy: inspect and count everything, interfere with nothing."""

    def decide(self, packet: Packet, obs: Observation, now: float) -> Verdict:
        return ACCEPT


@dataclass(slots=True)
class EngineStats:
    packets: int = 0
    bytes: int = 0
    malformed: int = 0
    actions: Counter[Action] = field(default_factory=Counter)


# Flows that ended mid-run (idle timeout, eviction) are kept as report records up to this many;
# beyond it they are only counted, so a censor under a flood of flows stays bounded in memory.
MAX_ENDED_RECORDS = 10_000
# Flows listed in the summary (the result's ``censor.flows``): a record is ~0.5 KB of JSON, so this
# keeps a result file, its HTML flows table and the runner's memory small however many flows a
# probe or a scan opened; the rest are counted in ``flows_omitted`` (docs/reports.md).
MAX_SUMMARY_FLOWS = 1_000


class CensorEngine:
    def __init__(
        self,
        classifier: Classifier,
        policy: Policy | None = None,
        *,
        start: float = 0.0,
        max_ended_records: int = MAX_ENDED_RECORDS,
        max_summary_flows: int = MAX_SUMMARY_FLOWS,
    ) -> None:
        self.classifier = classifier
        self.policy: Policy = policy if policy is not None else AcceptAll()
        self.start = start
        self.stats = EngineStats()
        self.max_ended_records = max_ended_records
        self.max_summary_flows = max_summary_flows
        self._ended: list[FlowRecord] = []
        self.ended_omitted = 0
        # The flow of the packet ``handle`` decided last (None: it was malformed), for an adapter
        # that offloads settled flows (core/offload.py) without a second flow lookup.
        self.last_flow: Flow | None = None
        classifier.on_flow_end = self._flow_ended

    def _flow_ended(self, flow: Flow) -> None:
        if len(self._ended) < self.max_ended_records:
            self._ended.append(self.flow_record(flow))
        else:
            self.ended_omitted += 1

    def handle(self, data: bytes, now: float) -> Verdict:
        stats = self.stats
        stats.packets += 1
        stats.bytes += len(data)
        try:
            packet = parse_ip(data)
        except MalformedPacket:
            stats.malformed += 1
            stats.actions[Action.ACCEPT] += 1
            self.last_flow = None
            return ACCEPT
        obs = self.classifier.observe(packet, now)
        self.last_flow = obs.flow
        verdict = self.policy.decide(packet, obs, now)
        # Counted by enum member (a dict key, no attribute lookups on the per-packet path);
        # the names are spelled out only in summary().
        action = verdict.action
        stats.actions[action] += 1
        counts = obs.flow.verdicts
        if counts is None:
            counts = obs.flow.verdicts = Counter()
        counts[action] += 1
        return verdict

    def summary(self, now: float | None = None) -> JsonObject:
        """The ``censor`` section of a scenario result (JSON-ready), bounded whatever the traffic:
        at most ``max_summary_flows`` flow records, the most telling ones (a rule matched them,
        then the most bytes), listed in order of first packet; ``flows_total`` counts every flow
        seen and ``flows_omitted`` those not listed. ``now`` (the end of the run) brings the
        policy's held-packet count up to date."""
        flows = self._ended + [self.flow_record(f) for f in self.classifier.flows()]
        total = len(flows) + self.ended_omitted
        if len(flows) > self.max_summary_flows:
            flows.sort(key=lambda r: (r.rule is None, -r.bytes, r.first_seen_s))
            del flows[self.max_summary_flows :]
        flows.sort(key=lambda r: (r.first_seen_s, r.initiator))
        out: JsonObject = {
            "packets": self.stats.packets,
            "bytes": self.stats.bytes,
            "malformed": self.stats.malformed,
            "actions": {a.value: n for a, n in self.stats.actions.items()},
            "flows": [r.to_json() for r in flows],
            "flows_total": total,
            "flows_omitted": total - len(flows),
        }
        policy_summary = getattr(self.policy, "summary", None)
        if callable(policy_summary):
            out.update(policy_summary() if now is None else policy_summary(now))
        return out

    def flow_record(self, flow: Flow) -> FlowRecord:
        """The flow as the result lists it (the same record ``testbed classify`` writes)."""
        verdicts: Counter[Action] = flow.verdicts or Counter()
        policy_record = getattr(self.policy, "flow_record", None)
        facts: Mapping[str, object] = policy_record(flow) if callable(policy_record) else {}
        rule, rules, settled, held = facts.get("rule"), facts.get("rules"), facts.get("settled"), facts.get("held")
        return flow_record(
            flow,
            origin=self.start,
            verdicts={a.value: n for a, n in verdicts.items()},
            rule=rule if isinstance(rule, str) else None,
            rules=dict(rules) if isinstance(rules, Mapping) else {},
            settled=settled is True,
            held=held if isinstance(held, int) else 0,
        )


def flow_record(
    flow: Flow,
    *,
    origin: float = 0.0,
    verdicts: Mapping[str, int] | None = None,
    rule: str | None = None,
    rules: Mapping[str, int] | None = None,
    settled: bool = False,
    held: int = 0,
) -> FlowRecord:
    """``flow`` as a :class:`FlowRecord`; ``origin`` is what ``first_seen_s`` counts from.  Shared
    by the censor engine and ``testbed classify`` so both write the same JSON object."""
    return FlowRecord(
        transport=flow.transport,
        initiator=flow.initiator,
        responder=flow.responder,
        packets_orig=flow.packets_orig,
        packets_reply=flow.packets_reply,
        bytes_orig=flow.bytes_orig,
        bytes_reply=flow.bytes_reply,
        first_seen=flow.created_at,
        last_seen=flow.last_seen,
        first_seen_s=round(flow.created_at - origin, 6),
        last_seen_s=round(flow.last_seen - origin, 6),
        labels=tuple(sorted(flow.labels)),
        sni=flow.sni,
        alpn=tuple(flow.alpn),
        fingerprints=dict(flow.fingerprints),
        ended=None if flow.ended is None else flow.ended.value,
        verdicts=verdicts or {},
        rule=rule,
        rules=rules or {},
        settled=settled,
        held=held,
    )

"""Which matchers read only facts that stop changing once a flow is no longer inspected.

Labels, SNI, ALPN, ECH, fingerprints and hello groups are learnt while the classifier (and the
policy's own byte inspection) still looks at the flow; afterwards they are frozen. A rule with
such a matcher that is false on a frozen flow can never match that flow again, so the runtime
drops it from the flow's candidates: a settled-looking flow then costs a handful of rules per
packet instead of every rule (benchmarks/engine.py measures the difference).
"""

from __future__ import annotations

from testbed.core.policy.matchers import Matcher, StaticAsDynamic
from testbed.core.policy.matchers.fingerprint import FingerprintMatch, GroupsMatch
from testbed.core.policy.matchers.logic import AllOf, AnyOf, Not
from testbed.core.policy.matchers.names import AlpnMatch, EchMatch, LabelsMatch, SniMatch
from testbed.core.policy.matchers.progress import (
    AgeMatch,
    DataPacketMatch,
    FlowBytesMatch,
    HandshakeMatch,
    PacketIndexMatch,
    PayloadSizeMatch,
    SizeMatch,
    TimeMatch,
)

_FROZEN_FACTS = (LabelsMatch, SniMatch, AlpnMatch, EchMatch, FingerprintMatch, GroupsMatch, StaticAsDynamic)
# Matchers that only read (the flow's facts and counters, the packet, the clock): skipping one
# changes nothing but its answer. GroupsMatch is left out: it learns groups from each packet.
_PURE = (
    LabelsMatch, SniMatch, AlpnMatch, EchMatch, FingerprintMatch, StaticAsDynamic, SizeMatch,
    PayloadSizeMatch, PacketIndexMatch, DataPacketMatch, FlowBytesMatch, AgeMatch, HandshakeMatch, TimeMatch,
)  # fmt: skip


def reads_frozen_facts(m: Matcher) -> bool:
    """True when ``m`` depends only on flow facts that are frozen after inspection (and, for
    wrapped static matchers, on the packet's direction)."""
    if isinstance(m, _FROZEN_FACTS):
        return True
    if isinstance(m, (AllOf, AnyOf)):
        return all(reads_frozen_facts(p) for p in m.parts)
    if isinstance(m, Not):
        return reads_frozen_facts(m.inner)
    return False


def _pure(m: Matcher) -> bool:
    if isinstance(m, _PURE):
        return True
    if isinstance(m, (AllOf, AnyOf)):
        return all(_pure(p) for p in m.parts)
    if isinstance(m, Not):
        return _pure(m.inner)
    return False


def skippable_fact_matchers(dynamic: tuple[Matcher, ...]) -> tuple[Matcher, ...]:
    """The matchers of a rule that read only flow facts (labels, SNI, ALPN, ECH, fingerprints,
    the flow's static facts by direction), if every matcher of the rule is pure; else ().

    While such a matcher is false and the flow's facts have not grown, the rule cannot match
    the flow: the runtime then skips the rule without evaluating it (policy/runtime.py,
    ``FlowState.facts_false``), which is most of a new flow's policy cost while it is inspected."""
    if not dynamic or not all(_pure(m) for m in dynamic):
        return ()
    return tuple(m for m in dynamic if reads_frozen_facts(m))

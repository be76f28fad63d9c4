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

_FROZEN_FACTS = (LabelsMatch, SniMatch, AlpnMatch, EchMatch, FingerprintMatch, GroupsMatch, StaticAsDynamic)


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

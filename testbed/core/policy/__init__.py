"""The censor's policy: ordered rules (match -> actions) carried out per packet, sans-IO.

    compile_policy(ir, resolve_node=..., inside_addresses=..., seed=...) -> RulePolicy
    RulePolicy.decide(packet, obs, now) -> Verdict      (testbed.core.engine.Policy)
    RulePolicy.summary() / flow_record(flow) / is_settled(flow)

Its input is ``testbed.core.policy_ir.PolicyIR`` (the policy as plain data: what
``testbed.scenario`` compiles a scenario into and the censor process receives as JSON).
Layout, one concept per module: ``compile`` (IR -> objects), ``runtime`` (first match wins,
ordering, residual checks), ``rule`` (one rule's actions), ``matchers/`` (endpoints, names,
fingerprint, hello, payload, progress, logic), ``bucket`` (token bucket), ``loss`` (Bernoulli,
Gilbert-Elliott), ``jitter`` (delay distributions), ``window`` (time windows), ``residual``
(block_after), ``counters`` (counters, event log), ``rng`` (seeded generators), ``state``.
The rule language is documented in docs/policy.md.
"""

from __future__ import annotations

from testbed.core.policy.compile import (
    PolicyCompileError,
    compile_policy,
    estimate_max_hold,
)
from testbed.core.policy.runtime import ORDER_EPS, RulePolicy
from testbed.core.policy_ir import PolicyIR, PolicyIRError

__all__ = [
    "ORDER_EPS",
    "PolicyCompileError",
    "PolicyIR",
    "PolicyIRError",
    "RulePolicy",
    "compile_policy",
    "estimate_max_hold",
]

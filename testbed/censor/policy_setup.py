"""From a scenario's ``censor:`` section to the censor's policy config, and on to the running policy.

The runner calls ``policy_config`` (the policy IR and the run's names, sent to the censor process
inside its ``CensorConfig``) and ``build_policy`` once before anything is created, so that an
unknown node, list or unreadable list file is a scenario error and not a censor that dies at
start-up; the censor process calls ``build_policy`` again with its own clock.
"""

from __future__ import annotations

from pathlib import Path

from testbed.censor.config import PolicyCompileError, PolicyConfig, build_policy
from testbed.net.topology import NodePlan, TopologyPlan
from testbed.scenario.common import Side
from testbed.scenario.model import Scenario
from testbed.scenario.policy_ir import policy_ir


def policy_config(scenario: Scenario, plan: TopologyPlan, scenario_dir: Path) -> PolicyConfig:
    return PolicyConfig(
        ir=policy_ir(scenario.censor),
        # A node is all its addresses: a rule naming it matches it over IPv4 and IPv6.
        nodes={n.name: _node_addresses(n, plan) for n in plan.nodes},
        inside=(*plan.addresses(Side.INSIDE), *plan.addresses6(Side.INSIDE)),
        scenario_dir=str(scenario_dir),
    )


def _node_addresses(node: NodePlan, plan: TopologyPlan) -> tuple[str, ...]:
    v4 = (node.public_address,) if plan.ip.has_v4 else ()
    return v4 if node.public_address6 is None else (*v4, node.public_address6)


__all__ = ["PolicyCompileError", "PolicyConfig", "build_policy", "policy_config"]

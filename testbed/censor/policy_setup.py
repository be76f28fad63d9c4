"""From a scenario's ``censor:`` section to the censor's policy config, and on to the running policy.

The runner calls ``policy_config`` (the policy IR and the run's names, sent to the censor process
inside its ``CensorConfig``) and ``build_policy`` once before anything is created, so that an
unknown node, list or unreadable list file is a scenario error and not a censor that dies at
start-up; the censor process calls ``build_policy`` again with its own clock.
"""

from __future__ import annotations

from pathlib import Path

from testbed.censor.config import PolicyCompileError, PolicyConfig, build_policy
from testbed.net.topology import TopologyPlan
from testbed.scenario.common import Side
from testbed.scenario.model import Scenario
from testbed.scenario.policy_ir import policy_ir


def policy_config(scenario: Scenario, plan: TopologyPlan, scenario_dir: Path) -> PolicyConfig:
    return PolicyConfig(
        ir=policy_ir(scenario.censor),
        nodes={n.name: (n.public_address,) for n in plan.nodes},
        inside=tuple(plan.addresses(Side.INSIDE)),
        scenario_dir=str(scenario_dir),
    )


__all__ = ["PolicyCompileError", "PolicyConfig", "build_policy", "policy_config"]

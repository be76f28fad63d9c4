"""From a scenario's ``censor:`` section to the running policy and the classifier's address lists.

The runner calls ``policy_config`` (plain JSON for the censor process) and ``build_policy`` once
before anything is created, so that an unknown node, list or unreadable list file is a scenario
error and not a censor that dies at start-up; the censor process calls ``build_policy`` again with
its own clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.core.labels import AddressList, Label
from testbed.core.policy import PolicyCompileError, RulePolicy, compile_policy
from testbed.net.topology import TopologyPlan
from testbed.scenario.files import MAX_LIST_FILE_BYTES, read_text_file
from testbed.scenario.model import Scenario, Side
from testbed.scenario.policy_schema import PolicySpec


def policy_config(scenario: Scenario, plan: TopologyPlan, scenario_dir: Path) -> dict[str, Any]:
    censor = scenario.censor
    return {
        "spec": censor.model_dump(mode="json", by_alias=True, include={"rules", "lists", "policy"}),
        "nodes": {n.name: [n.public_address] for n in plan.nodes},
        "inside": plan.addresses(Side.INSIDE),
        "scenario_dir": str(scenario_dir),
    }


def build_policy(config: dict[str, Any], *, seed: int, start: float) -> tuple[RulePolicy, dict[str, AddressList]]:
    """Compile the policy; raise PolicyCompileError with a message that names the key."""
    spec = PolicySpec.model_validate(config["spec"])
    nodes: dict[str, list[str]] = config["nodes"]
    base = Path(config["scenario_dir"])

    def resolve_node(name: str) -> list[str]:
        return list(nodes[name])

    def read_file(path: str) -> str:
        p = Path(path)
        return read_text_file(p if p.is_absolute() else base / p, limit=MAX_LIST_FILE_BYTES)

    policy = compile_policy(
        spec,
        resolve_node=resolve_node,
        inside_addresses=config["inside"],
        seed=seed,
        start=start,
        read_file=read_file,
        known_labels={str(label) for label in Label},
    )
    # As in the policy, a scenario list replaces a shipped list of the same name (docs/policy.md).
    return policy, dict(policy.address_lists)


__all__ = ["PolicyCompileError", "build_policy", "policy_config"]

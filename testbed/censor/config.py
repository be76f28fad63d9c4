"""The censor process's configuration: one typed record, written by the runner, read by the censor.

    runner (control.running_censor)  --CensorConfig.to_json-->  RUN_DIR/censor.json
    censor (python -m testbed.censor.main censor.json)  --CensorConfig.from_json-->  serve()

The policy travels as the core's policy IR (``testbed.core.policy_ir``), not as scenario YAML, so
the censor process needs neither pydantic nor the scenario schema; ``build_policy`` compiles it
with the process's own clock, as the runner's pre-check compiled it once before anything was set
up. Both sides run the same testbed, so the JSON carries no version: a mismatch is a bug and
``from_json`` says which key is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from testbed.core.labels import AddressList, Label
from testbed.core.policy import PolicyCompileError, RulePolicy, compile_policy
from testbed.core.policy_ir import PolicyIR, PolicyIRError
from testbed.files import MAX_LIST_FILE_BYTES, read_text_file
from testbed.records.json import JsonObject

__all__ = ["CensorConfig", "CensorConfigError", "PolicyConfig", "PolicyCompileError", "build_policy"]


class CensorConfigError(ValueError):
    """A censor.json that is not a ``CensorConfig``."""


_T = TypeVar("_T")


def _required(data: Mapping[str, object], key: str, where: str) -> object:
    if key not in data:
        raise CensorConfigError(f"{where}: missing key {key!r}")
    return data[key]


def _field(data: Mapping[str, object], key: str, kind: type[_T], where: str) -> _T:
    value = _required(data, key, where)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CensorConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CensorConfigError(f"{where}: expected an array of strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy and the run's names it refers to."""

    ir: PolicyIR
    nodes: dict[str, tuple[str, ...]]  # node name -> its addresses (``resolve_node``)
    inside: tuple[str, ...]  # addresses of the censored side
    scenario_dir: str  # relative list files are read from here

    def to_json(self) -> JsonObject:
        return {
            "ir": self.ir.to_json(),
            "nodes": {name: list(addrs) for name, addrs in self.nodes.items()},
            "inside": list(self.inside),
            "scenario_dir": self.scenario_dir,
        }

    @classmethod
    def from_json(cls, data: object, where: str = "policy") -> PolicyConfig:
        if not isinstance(data, dict):
            raise CensorConfigError(f"{where}: expected an object, got {type(data).__name__}")
        nodes = _field(data, "nodes", dict, where)
        try:
            ir = PolicyIR.from_json(_required(data, "ir", where))
        except PolicyIRError as exc:
            raise CensorConfigError(f"{where}.ir: {exc}") from None
        return cls(
            ir=ir,
            nodes={str(k): _strings(v, f"{where}.nodes.{k}") for k, v in nodes.items()},
            inside=_strings(_required(data, "inside", where), f"{where}.inside"),
            scenario_dir=_field(data, "scenario_dir", str, where),
        )


@dataclass(frozen=True, slots=True)
class CensorConfig:
    policy: PolicyConfig
    run_id: str  # tags the firewall rules, so cleanup finds exactly this run's
    seed: int
    final_path: str  # where the summary is written at exit (testbed.censor.main)
    queue_num: int
    max_len: int  # the kernel queue's length (censor.queue_max_len)
    inspect_packets: int
    max_flows: int
    reassemble_tls: bool
    offload: bool = False  # settled flows leave the queue (core/offload.py)
    ipv6: bool = False
    """The network carries IPv6: forwarding and the queue rule in ip6tables too."""

    def to_json(self) -> JsonObject:
        return {
            "ipv6": self.ipv6,
            "policy": self.policy.to_json(),
            "run_id": self.run_id,
            "seed": self.seed,
            "final_path": self.final_path,
            "queue_num": self.queue_num,
            "max_len": self.max_len,
            "inspect_packets": self.inspect_packets,
            "max_flows": self.max_flows,
            "reassemble_tls": self.reassemble_tls,
            "offload": self.offload,
        }

    @classmethod
    def from_json(cls, data: object) -> CensorConfig:
        where = "censor config"
        if not isinstance(data, dict):
            raise CensorConfigError(f"{where}: expected an object, got {type(data).__name__}")
        return cls(
            policy=PolicyConfig.from_json(_required(data, "policy", where)),
            run_id=_field(data, "run_id", str, where),
            seed=_field(data, "seed", int, where),
            final_path=_field(data, "final_path", str, where),
            queue_num=_field(data, "queue_num", int, where),
            max_len=_field(data, "max_len", int, where),
            inspect_packets=_field(data, "inspect_packets", int, where),
            max_flows=_field(data, "max_flows", int, where),
            reassemble_tls=_field(data, "reassemble_tls", bool, where),
            ipv6=_field(data, "ipv6", bool, where),
            offload=_field(data, "offload", bool, where) if "offload" in data else False,
        )


def build_policy(config: PolicyConfig, *, seed: int, start: float) -> tuple[RulePolicy, dict[str, AddressList]]:
    """Compile the policy; raise PolicyCompileError with a message that names the key."""
    base = Path(config.scenario_dir)

    def resolve_node(name: str) -> list[str]:
        return list(config.nodes[name])

    def read_file(path: str) -> str:
        p = Path(path)
        return read_text_file(p if p.is_absolute() else base / p, limit=MAX_LIST_FILE_BYTES)

    policy = compile_policy(
        config.ir,
        resolve_node=resolve_node,
        inside_addresses=config.inside,
        seed=seed,
        start=start,
        read_file=read_file,
        known_labels={str(label) for label in Label},
    )
    # As in the policy, a scenario list replaces a shipped list of the same name (docs/policy.md).
    return policy, dict(policy.address_lists)

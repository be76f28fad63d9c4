"""Every YAML example in docs/policy.md loads: the reference cannot drift from the schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_policy_support import policy

from testbed.scenario.policy_schema import PolicySpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _snippets(block: str) -> list[tuple[str, dict[str, Any]]]:
    """Whole censor sections, or each top-level `match:`/`action:`/rule snippet on its own."""
    data = yaml.safe_load(block)
    if isinstance(data, dict) and "censor" in data:
        return [("censor", data["censor"])]
    if isinstance(data, dict) and "lists" in data and "match" not in data:
        return [("lists", data)]
    out: list[tuple[str, dict[str, Any]]] = []
    chunk: list[str] = []
    for line in block.splitlines() + [""]:
        if chunk and (not line.startswith((" ", "\t")) or not line):
            out.append(("snippet", yaml.safe_load("\n".join(chunk))))
            chunk = []
        if line.strip():
            chunk.append(line)
    return out


def _as_policy(kind: str, data: Any) -> dict[str, Any]:
    if kind in ("censor", "lists"):
        return {k: v for k, v in data.items() if k in ("rules", "lists", "policy")}
    if isinstance(data, list):  # a rule list item
        return {"rules": data}
    rule: dict[str, Any] = {"name": "doc", "action": "accept"}
    rule.update(data)
    return {"rules": [rule], "lists": {"hosting": ["10.9.0.0/16"], "blocked": ["10.8.0.0/16"]}}


CASES = [(i, kind, data) for i, block in enumerate(BLOCKS) for kind, data in _snippets(block)]


def test_the_doc_has_examples() -> None:
    assert len(CASES) > 40


@pytest.mark.parametrize(("index", "kind", "data"), CASES, ids=[f"block{i}-{k}" for i, k, _ in CASES])
def test_doc_example_validates_and_compiles(index: int, kind: str, data: Any) -> None:
    spec = _as_policy(kind, data)
    PolicySpec.model_validate(spec)
    if kind != "lists" or "file" not in str(spec):
        policy(spec, files={"lists/hosting.txt": "203.0.113.0/24\n", "more.txt": "198.51.100.0/24\n"})

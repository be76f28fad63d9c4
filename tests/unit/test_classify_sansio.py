"""The classification core stays sans-IO: no sockets, os, clocks, subprocesses or global RNG."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "testbed" / "core"
MINE = [CORE / "packet.py", CORE / "flow.py", CORE / "labels.py",
        *sorted((CORE / "classify").glob("*.py")), *sorted((CORE / "dissect").glob("*.py"))]  # fmt: skip
FORBIDDEN = {"asyncio", "socket", "os", "time", "subprocess", "random", "netfilterqueue", "datetime", "threading"}


@pytest.mark.parametrize("path", MINE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for n in names:
            assert n.split(".")[0] not in FORBIDDEN, f"{path.name} imports {n}"

"""How endpoints are started with a zygote (calls/engine.py, calls/forkclient.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from testbed.calls.engine import FORKCLIENT, Engine, endpoint_argv


def test_aiortc_ends_use_the_forkclient_only_with_a_zygote() -> None:
    config = Path("/run/x/call.caller.json")
    assert endpoint_argv(Engine.AIORTC, config) == [
        sys.executable,
        "-m",
        "testbed.calls.endpoint",
        "--config",
        str(config),
    ]
    assert endpoint_argv(Engine.AIORTC, config, zygote=True) == [
        sys.executable, "-S", "-I", str(FORKCLIENT), "--config", str(config),
    ]  # fmt: skip
    assert endpoint_argv(Engine.CHROMIUM, config, zygote=True)[1:3] == ["-m", "testbed.calls.chromium.endpoint"]


def test_forkclient_imports_the_standard_library_only() -> None:
    """It runs as ``python -S -I``: no site-packages, no testbed package on the path."""
    tree = ast.parse(FORKCLIENT.read_text())
    modules = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    modules |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules


def test_forkclient_without_arguments_says_how_to_use_it() -> None:
    out = subprocess.run([sys.executable, "-S", "-I", str(FORKCLIENT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "usage: " in out.stderr and "Traceback" not in out.stderr

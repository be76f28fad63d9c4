"""The endpoint process imports only what a call needs: each endpoint pays its imports in CPU
before its first frame, and a scenario starts two per call (docs/performance.md, "Calls")."""

from __future__ import annotations

import subprocess
import sys

# The orchestrator side (schemas, profiles, the relay) and its libraries: none is used by an endpoint.
NOT_IN_ENDPOINT = (
    "pydantic",
    "yaml",
    "testbed.scenario",
    "testbed.calls.orchestrate",
    "testbed.calls.profiles",
    "testbed.calls.session",
    "testbed.calls.verdict",
)


def test_endpoint_process_does_not_import_the_orchestrator_side() -> None:
    code = f"import sys, testbed.calls.endpoint\nprint(' '.join(m for m in {NOT_IN_ENDPOINT!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == []


def test_package_names_still_import_lazily() -> None:
    import testbed.calls as calls

    assert calls.run_call.__module__ == "testbed.calls.session"
    assert calls.CallOptions.__name__ == "CallOptions"
    assert set(calls.__all__) <= set(dir(calls)) | set(calls._LAZY)

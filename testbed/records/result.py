"""The ``testbed run --json`` result file's version.

``schema_version`` is written at the top of the file and in every scenario of it.  Fields are
only ever added, never renamed or removed, and adding one does not change the version; it is
bumped only by a change an existing reader could misread: a field removed or renamed, or a
field's meaning, unit or type changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SCHEMA_VERSION", "call_addresses"]

SCHEMA_VERSION = 1


def call_addresses(call: Mapping[str, Any]) -> set[str]:
    """A call's transport addresses (``ip:port``) from its selected candidate pairs (the result
    JSON), to tell its flows among the censor's."""
    out: set[str] = set()
    pairs = [call.get("selected_candidate_pair")]
    pairs += [t.get("selected_candidate_pair") for t in call.get("transports") or [] if isinstance(t, Mapping)]
    for p in pairs:
        if isinstance(p, Mapping):
            for side in ("local", "remote"):
                addr, port = p.get(f"{side}_address"), p.get(f"{side}_port")
                if addr is not None and port is not None:
                    out.add(f"{addr}:{port}")
    return out

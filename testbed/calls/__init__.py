"""Synthetic WebRTC calls across the censor, measured and judged.

    run_calls(specs, nodes=..., services=..., workdir=...) -> [CallResult]   every call of a scenario
    run_call(CallOptions, caller_netns=..., callee_netns=..., workdir=...) -> CallResult   one call
    evaluate(expectations, results, thresholds) -> [ExpectationResult]; outcome(result, thresholds)

Modules, one per concept:

* ``options``     -- :class:`CallOptions`, what the endpoints are told about one call
* ``profiles``    -- app profiles (WhatsApp, Telegram, WebRTC) from ``testbed/data/profiles``
* ``orchestrate`` -- :func:`run_calls`: expand counts, resolve relays, apply profiles, run, judge
* ``signalling``  -- messages between endpoints and relay, newline-delimited JSON framing (sans-IO)
* ``conductor``   -- the relay's call logic: dial, duration, hang-up, timeouts (sans-IO)
* ``metrics``     -- endpoint statistics -> stream/transport results (sans-IO)
* ``quality``     -- MOS (E-model), freezes, audio gaps, the per-second timeline (sans-IO)
* ``verdict``     -- outcomes and ``expect:`` checks (sans-IO)
* ``adapt``       -- AIMD on the Opus bitrate from RTCP receiver reports (sans-IO)
* ``result``      -- :class:`CallResult` and its JSON contract (documented there)
* ``session``     -- :func:`run_call`: unix-socket relay + the two endpoint processes
* ``engine``      -- which WebRTC stack runs each end (``engine:``): the endpoint-process contract
* ``endpoint``    -- the aiortc endpoint process (``python -m testbed.calls.endpoint``)
* ``chromium``    -- the headless-Chromium (libwebrtc) endpoint process and its getStats mapping
* ``media``       -- synthetic paced audio/video tracks (endpoint processes only)

Importing this package does not import aiortc: only the endpoint processes do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed.calls.options import CallOptions, IceServer, IceTransportPolicy
    from testbed.calls.orchestrate import NodeInfo, ServiceInfo, plan_calls, run_calls
    from testbed.calls.result import (
        CallResult,
        CandidatePair,
        Direction,
        Kind,
        StreamResult,
        TransportResult,
    )
    from testbed.calls.session import run_call
    from testbed.calls.verdict import ExpectationResult, evaluate, judged, outcome

# Lazy (PEP 562): an endpoint process imports testbed.calls.endpoint, and with it this package;
# importing the orchestrator side here (pydantic schemas, profiles, session) cost it ~0.2 s of CPU
# per process before any media flowed.
_LAZY = {
    "CallOptions": "testbed.calls.options",
    "CallResult": "testbed.calls.result",
    "CandidatePair": "testbed.calls.result",
    "Direction": "testbed.calls.result",
    "ExpectationResult": "testbed.calls.verdict",
    "IceServer": "testbed.calls.options",
    "IceTransportPolicy": "testbed.calls.options",
    "Kind": "testbed.calls.result",
    "NodeInfo": "testbed.calls.orchestrate",
    "ServiceInfo": "testbed.calls.orchestrate",
    "StreamResult": "testbed.calls.result",
    "TransportResult": "testbed.calls.result",
    "evaluate": "testbed.calls.verdict",
    "judged": "testbed.calls.verdict",
    "outcome": "testbed.calls.verdict",
    "plan_calls": "testbed.calls.orchestrate",
    "run_call": "testbed.calls.session",
    "run_calls": "testbed.calls.orchestrate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CallOptions",
    "CallResult",
    "CandidatePair",
    "Direction",
    "ExpectationResult",
    "IceServer",
    "IceTransportPolicy",
    "Kind",
    "NodeInfo",
    "ServiceInfo",
    "StreamResult",
    "TransportResult",
    "evaluate",
    "judged",
    "outcome",
    "plan_calls",
    "run_call",
    "run_calls",
]

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

"""Synthetic WebRTC calls across the censor, measured.

    run_call(CallOptions, caller_netns=..., callee_netns=..., workdir=...) -> CallResult

Modules, one per concept:

* ``options``    -- :class:`CallOptions`, what a scenario says about one call
* ``signalling`` -- messages between endpoints and relay, newline-delimited JSON framing (sans-IO)
* ``conductor``  -- the relay's call logic: dial, duration, hang-up, timeouts (sans-IO)
* ``metrics``    -- endpoint statistics -> stream/transport results (sans-IO)
* ``result``     -- :class:`CallResult` and its JSON contract (documented there)
* ``session``    -- :func:`run_call`: unix-socket relay + the two endpoint processes
* ``endpoint``   -- the aiortc endpoint process (``python -m testbed.calls.endpoint``)
* ``media``      -- synthetic paced audio/video tracks (endpoint processes only)

Importing this package does not import aiortc: only the endpoint processes do.
"""

from testbed.calls.options import CallOptions, IceServer, IceTransportPolicy
from testbed.calls.result import (
    CallResult,
    CandidatePair,
    Direction,
    Kind,
    StreamResult,
    TransportResult,
)
from testbed.calls.session import run_call

__all__ = [
    "CallOptions",
    "CallResult",
    "CandidatePair",
    "Direction",
    "IceServer",
    "IceTransportPolicy",
    "Kind",
    "StreamResult",
    "TransportResult",
    "run_call",
]

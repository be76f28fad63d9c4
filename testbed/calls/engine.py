"""Call engines: which WebRTC stack runs each end of a call.

An engine is an endpoint *process* that keeps one contract (``session.run_call`` starts it with
``--config FILE``): it speaks the relay's signalling (``signalling``: Hello, StateChange,
Offer/Answer/Bye, Stats, Failure, Done) and reports one
:class:`~testbed.calls.endpoint_report.EndpointReport` (cumulative snapshots on the call's
one-second grid, final stats, arrival timing).  Everything after that -- metrics, samples, MOS,
outcomes, expectations, reports -- is engine-blind, and any two engines can call each other
because they meet only in SDP and on the wire.

* ``aiortc``   -- ``testbed.calls.endpoint`` (Python WebRTC; synthetic tone and video)
* ``chromium`` -- ``testbed.calls.chromium.endpoint`` (headless Chromium: libwebrtc with Google
  congestion control, Opus with in-band FEC, VP8 that adapts; fake devices)
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path


class Engine(StrEnum):
    AIORTC = "aiortc"
    CHROMIUM = "chromium"


ENDPOINT_MODULES = {
    Engine.AIORTC: "testbed.calls.endpoint",
    Engine.CHROMIUM: "testbed.calls.chromium.endpoint",
}


FORKCLIENT = Path(__file__).with_name("forkclient.py")


def endpoint_argv(engine: Engine, config: Path, *, zygote: bool = False) -> list[str]:
    """The command that runs one end of a call with ``engine`` (inside the node's namespace).
    ``zygote``: the config names the run's aiortc zygote (``testbed.calls.zygote``), and the
    process is ``forkclient``, which has it fork the endpoint instead of importing aiortc."""
    if zygote and engine is Engine.AIORTC:
        # A script of stdlib imports only, run without site (-S) and isolated (-I): an
        # interpreter start-up is most of what it costs (~30 % less without site).
        return [sys.executable, "-S", "-I", str(FORKCLIENT), "--config", str(config)]
    return [sys.executable, "-m", ENDPOINT_MODULES[engine], "--config", str(config)]

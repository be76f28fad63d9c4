"""The endpoint's offer, in-process: host candidates only, one codec per medium.

Gathering binds UDP sockets on the host's interfaces but sends nothing: with no ICE server named
there is nobody to send to.  (aiortc's default, stun.l.google.com, would show up as a
server-reflexive candidate or a hang, which is exactly what this guards against.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from testbed.calls.endpoint import Endpoint, EndpointConfig
from testbed.calls.options import CallOptions
from testbed.calls.signalling import Layer, Message, Offer, Role, StateChange


class FakeRelayLink:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _offer(options: CallOptions) -> tuple[str, list[Message], list[str]]:
    link = FakeRelayLink()
    endpoint = Endpoint(EndpointConfig(Role.CALLER, Path("/nonexistent"), options), link.send)
    try:
        async with asyncio.timeout(10):
            await endpoint.dial()
        report = await endpoint.report()
    finally:
        await endpoint.close()
    offers = [m for m in link.sent if isinstance(m, Offer)]
    assert len(offers) == 1
    return offers[0].sdp, link.sent, [s["type"] for s in report["stats"]]


def test_offer_has_host_candidates_only_and_one_codec_per_kind() -> None:
    sdp, sent, stat_types = asyncio.run(
        _offer(CallOptions(name="c", duration_s=1.0, audio=True, video=True, data_channel=True))
    )
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates, sdp
    assert all(" typ host" in line for line in candidates), candidates
    rtpmaps = [line.split(" ", 1)[1] for line in sdp.splitlines() if line.startswith("a=rtpmap:")]
    assert sorted(rtpmaps) == ["VP8/90000", "opus/48000/2", "rtx/90000"]
    assert "m=application" in sdp
    labels = [f"{m.layer}:{m.state}" for m in sent if isinstance(m, StateChange)]
    assert "signalling:offer-sent" in labels
    assert f"{Layer.ICE_GATHERING}:complete" in labels
    assert "outbound-rtp" in stat_types


def test_audio_only_offer_has_no_video_or_application() -> None:
    sdp, _, _ = asyncio.run(_offer(CallOptions(name="c", duration_s=1.0, data_channel=False)))
    assert "m=audio" in sdp and "m=video" not in sdp and "m=application" not in sdp

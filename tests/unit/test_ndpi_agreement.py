"""Agreement with nDPI's reference labels on real captures (../shared/pcaps, see its README).

A flow counts when our labels include the mapped nDPI labels (``_dpi_helpers.NDPI_TO_LABEL``).
Targets: >= 95 % of scored flows agree overall, and no flow is given a WhatsApp/Telegram call
label that nDPI did not give it (Zoom, Meet, Signal, Teams... must never become a call app).
The per-capture table lives in docs/classifiers.md (``python tests/unit/_dpi_helpers.py``).
"""

from __future__ import annotations

from functools import cache

import pytest
from _dpi_helpers import SHARED_PCAPS, CaptureScore, score_capture, score_table, shared_captures

pytestmark = pytest.mark.skipif(
    not SHARED_PCAPS.is_dir(),
    reason=f"real captures not found at {SHARED_PCAPS} (the shared folder beside the checkout)",
)


@cache
def scores() -> tuple[CaptureScore, ...]:
    return tuple(score_capture(p) for p in shared_captures())


def test_overall_agreement_at_least_95_percent() -> None:
    s = scores()
    total = sum(x.scored for x in s)
    agreed = sum(x.agreed for x in s)
    assert total >= 50, "too few scored flows: are the .ndpi.out files there?"
    misses = [m for x in s for m in x.misses]
    assert agreed / total >= 0.95, score_table(list(s)) + "\n" + "\n".join(misses)


def test_agreement_without_port_guesses_at_least_95_percent() -> None:
    # nDPI itself guessed a few flows by port; recognition from content alone must carry us.
    s = scores()
    total = sum(x.scored for x in s)
    assert sum(x.agreed - x.by_port for x in s) / total >= 0.95, score_table(list(s))


def test_no_false_call_app_labels() -> None:
    false = [m for x in scores() for m in x.false_calls]
    assert not false, "\n".join(false)


def test_whatsapp_call_flows() -> None:
    from testbed.analysis.classify import run

    flows, _ = run(str(SHARED_PCAPS / "wa_voice.pcap"))
    calls = {f.responder if f.responder.endswith(":3478") else f.initiator: f for f in flows
             if "whatsapp-call" in f.labels}  # fmt: skip
    # the relay STUN flows, and the peer's SRTP flow (same local port as the STUN exchange)
    assert all("stun" in f.labels for k, f in calls.items() if k.endswith(":3478"))
    assert len([k for k in calls if k.endswith(":3478")]) >= 5
    srtp = [f for f in flows if "91.252.56.51:32704" in (f.initiator, f.responder)]
    assert srtp and {"rtp", "whatsapp-call"} <= srtp[0].labels


def test_telegram_call_flows() -> None:
    from testbed.analysis.classify import run

    flows, _ = run(str(SHARED_PCAPS / "telegram_videocall.pcapng"))
    calls = [f for f in flows if "telegram-call" in f.labels]
    assert len(calls) >= 10 and all(f.transport == "udp" for f in calls)

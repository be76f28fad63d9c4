"""App profiles: data files load, their wire messages are what the censor's classifier keys on,
and ``plan_calls`` resolves relays, transports and policies from them (no namespaces)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from _dpi_helpers import udp4

from testbed.calls import plan_calls
from testbed.calls.profiles import ProfileError, load_profile, with_transaction_id
from testbed.core.classify import Classifier
from testbed.core.dissect.stun import WHATSAPP_ATTRS, WHATSAPP_MESSAGE_TYPES, parse_stun
from testbed.core.packet import parse_ip
from testbed.errors import RunError
from testbed.scenario.call_schema import CallSpec


def test_whatsapp_prelude_is_whatsapp_on_the_wire() -> None:
    messages = load_profile("whatsapp").prelude_messages("call#1")
    assert messages
    for raw in messages:
        msg = parse_stun(with_transaction_id(raw, b"\x07" * 12))
        assert msg is not None and msg.msg_type in WHATSAPP_MESSAGE_TYPES
        assert any(t in WHATSAPP_ATTRS for t, _ in msg.attributes)
    classifier = Classifier()
    for raw in messages:
        packet = udp4("198.18.1.2", 40000, "198.18.3.2", 3478, raw)
        classifier.observe(parse_ip(packet), 0.0)
    (flow,) = classifier.flows()
    assert {"whatsapp-call", "whatsapp"} <= flow.labels


def test_prelude_is_deterministic_per_seed() -> None:
    p = load_profile("whatsapp")
    assert p.prelude_messages("a") == p.prelude_messages("a") != p.prelude_messages("b")


def test_unknown_profile() -> None:
    with pytest.raises(ProfileError, match="known: telegram, webrtc, whatsapp"):
        load_profile("skype")


@dataclass(frozen=True)
class FakeNode:
    netns: str
    address: str
    public_address: str


@dataclass(frozen=True)
class FakeService:
    node: str
    kind: str
    names: tuple[str, ...]
    urls: tuple[str, ...]
    username: str | None = "u"
    credential: str | None = "p"


NODES = {
    "caller": FakeNode("ns-caller", "198.19.1.2", "198.18.1.2"),  # behind a NAT
    "callee": FakeNode("ns-callee", "198.18.2.2", "198.18.2.2"),
    "relay": FakeNode("ns-relay", "198.19.3.2", "198.18.3.2"),  # a relay behind a NAT too
    "tg": FakeNode("ns-tg", "198.18.4.2", "198.18.4.2"),
}
SERVICES = [
    FakeService("relay", "turn", ("testbed",), (
        "turn:198.19.3.2:3478?transport=udp", "turn:198.19.3.2:3478?transport=tcp",
        "turns:198.19.3.2:443?transport=tcp",
    )),
    FakeService("tg", "turn", ("telegram.org",), ("turn:198.18.4.2:1400?transport=udp",)),
]  # fmt: skip


def _plan(**entry: object) -> list:  # type: ignore[type-arg]
    return plan_calls([CallSpec.model_validate(entry)], nodes=NODES, services=SERVICES)


def test_relay_urls_use_the_public_address_and_the_transport() -> None:
    (plan,) = _plan(name="c", ice={"stun": "relay", "turn": "relay", "transport": "tls", "policy": "relay"})
    urls = [u for s in plan.options.ice_servers for u in s.urls]
    assert urls == ["stun:198.18.3.2:3478", "turns:198.18.3.2:443?transport=tcp"]
    assert plan.options.turn_transport == "tls"
    assert plan.options.ice_transport_policy.value == "relay"
    assert (plan.caller_netns, plan.callee_netns) == ("ns-caller", "ns-callee")


def test_direct_call_has_no_ice_servers() -> None:
    (plan,) = _plan(name="c")
    assert plan.options.ice_servers == () and plan.options.turn_transport is None


def test_profiles_set_policy_transport_and_prelude() -> None:
    (wa,) = _plan(name="wa", profile="whatsapp", ice={"turn": "relay"})
    assert wa.options.ice_transport_policy.value == "relay" and wa.options.turn_transport == "udp"
    assert wa.options.stun_prelude and wa.options.profile == "whatsapp"
    (tg,) = _plan(name="tg", profile="telegram", ice={"turn": "tg"})
    assert tg.options.stun_prelude == ()
    with pytest.raises(RunError, match="listens on"):
        _plan(name="tg", profile="telegram", ice={"turn": "relay"})


def test_counts_and_stagger() -> None:
    plans = _plan(name="load", count=3, concurrency=2, start="1s", stagger="500ms", audio="pcmu")
    assert [p.options.name for p in plans] == ["load#1", "load#2", "load#3"]
    assert [p.start_s for p in plans] == [1.0, 1.5, 2.0]
    assert {p.concurrency for p in plans} == {2}
    assert plans[0].options.audio_codec == "pcmu"


def test_a_relay_without_tls_is_a_clear_error() -> None:
    with pytest.raises(RunError, match="no tls listener"):
        _plan(name="c", ice={"turn": "tg", "transport": "tls"})


# -- audio: the profile's Opus parameters -------------------------------------------------------


def test_app_profiles_carry_app_like_opus() -> None:
    """WhatsApp and Telegram: 8-32 kbit/s, 40-60 ms frames, in-band FEC, adapting by default (the
    numbers and their sources are in the data files); webrtc is aiortc's own encoder, unchanged."""
    for name in ("whatsapp", "telegram"):
        audio = load_profile(name).audio
        assert 16000 <= audio.bitrate <= 32000 and audio.min_bitrate >= 6000 and audio.max_bitrate <= 32000
        assert audio.frame_ms in (40, 60) and audio.fec and audio.adapt and audio.source
    assert load_profile("whatsapp").audio.frame_ms == 60  # 160 ms per packet in wa_voice.pcap
    webrtc = load_profile("webrtc").audio
    assert (webrtc.bitrate, webrtc.frame_ms, webrtc.fec, webrtc.adapt) == (96000, 20, False, False)


def test_plan_carries_the_profiles_opus_and_the_calls_overrides() -> None:
    (wa,) = _plan(name="w", profile="whatsapp", ice={"turn": "relay"})
    o = wa.options
    assert (o.audio_bitrate_bps, o.audio_frame_ms, o.audio_fec, o.adapt) == (16000, 60, True, True)
    assert o.app_audio
    (off,) = _plan(name="w", profile="whatsapp", ice={"turn": "relay"}, adapt=False, audio={"bitrate": "40kbit"})
    assert off.options.adapt is False and off.options.audio_bitrate_bps == 40000
    assert off.options.audio_max_bitrate_bps == 40000  # the range widens to the asked start
    (plain,) = _plan(name="p")
    assert not plain.options.app_audio and not plain.options.adapt  # aiortc's encoder, unchanged
    (asked,) = _plan(name="p", adapt=True)
    assert asked.options.adapt and asked.options.app_audio and asked.options.audio_bitrate_bps == 96000


def test_bad_profile_audio_is_refused() -> None:
    from pydantic import ValidationError

    from testbed.calls.profiles import AudioParams

    with pytest.raises(ValidationError, match="frame_ms"):
        AudioParams.model_validate({"frame_ms": 30})
    with pytest.raises(ValidationError, match="min_bitrate <= bitrate"):
        AudioParams.model_validate({"bitrate": 8000, "min_bitrate": 16000})

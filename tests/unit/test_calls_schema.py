"""The ``calls:`` schema: defaults, shorthands, errors located at the key, cross-references."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from testbed.calls.profiles import available_profiles
from testbed.scenario.call_schema import (
    PROFILE_NAMES,
    AudioCodec,
    CallSpec,
    IceTransport,
    Media,
    call_reference_problems,
)
from testbed.scenario.common import parse_duration, parse_rate


def _loc(entry: dict[str, Any]) -> tuple[Any, ...]:
    with pytest.raises(ValidationError) as info:
        CallSpec.model_validate(entry)
    return info.value.errors()[0]["loc"]


def test_old_call_entries_still_load() -> None:
    spec = CallSpec.model_validate(
        {"name": "a", "from": "caller", "to": "callee", "duration": "5s", "connect_timeout": 10, "media": ["audio"]}
    )
    assert spec.kinds == (Media.AUDIO,)
    assert spec.instance_names == ("a",)
    assert spec.duration == 5.0


def test_defaults_and_shorthands() -> None:
    spec = CallSpec.model_validate({"name": "v", "audio": "pcmu", "video": "h264", "data": {"rate": "64kbit"}})
    assert spec.kinds == (Media.AUDIO, Media.VIDEO, Media.DATA)
    assert spec.audio is not None and spec.audio.codec is AudioCodec.PCMU
    assert spec.video is not None and (spec.video.width, spec.video.height, spec.video.fps) == (320, 240, 15)
    assert spec.data is not None and spec.data.interval_s == pytest.approx(100 * 8 / 64000)


def test_counted_calls_are_numbered() -> None:
    spec = CallSpec.model_validate({"name": "load", "count": 3, "concurrency": 2, "stagger": "100ms"})
    assert spec.instance_names == ("load#1", "load#2", "load#3")
    assert spec.latest_end() > spec.duration * 2  # two waves


@pytest.mark.parametrize(
    ("entry", "loc"),
    [
        ({"name": "x", "ice": {"transport": "tls"}}, ("ice", "transport")),
        ({"name": "x", "ice": {"policy": "relay"}}, ("ice", "policy")),
        ({"name": "x", "data": {"rate": "10mbit", "message_bytes": 16}}, ("data", "message_bytes")),
        ({"name": "x", "ice": {"turn": "r", "transport": "quic"}}, ("ice", "transport")),
        ({"name": "x", "ice": {"restart": "yes please"}}, ("ice", "restart")),
        ({"name": "x", "video": {"width": 321}}, ("video", "width")),
        ({"name": "x", "profile": "skype"}, ("profile",)),
        ({"name": "x", "count": 2, "concurrency": 3}, ("concurrency",)),
        ({"name": "x", "media": ["audio"], "video": "vp8"}, ("video",)),
        ({"name": "x", "data": {"rate": "fast"}}, ("data", "rate")),
        ({"name": "x", "audio": {"codec": "g729"}}, ("audio", "codec")),
        ({"name": "x", "nmae": "y"}, ("nmae",)),
        ({"name": "x", "audio": {"codec": "pcmu", "bitrate": "32kbit"}}, ("audio", "bitrate")),
        ({"name": "x", "audio": {"bitrate": "2kbit"}}, ("audio", "bitrate")),
        ({"name": "x", "audio": "pcmu", "adapt": True}, ("adapt",)),
        ({"name": "x", "media": ["data"], "adapt": True}, ("adapt",)),
        ({"name": "x", "adapt": "sometimes"}, ("adapt",)),
    ],
)
def test_errors_point_at_the_key(entry: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert _loc(entry)[: len(loc)] == loc


def test_rates_and_durations() -> None:
    assert parse_rate("64kbit") == 64000
    assert parse_rate("1.5Mbit/s") == 1.5e6
    assert parse_rate("8KB/s") == 64000  # bytes per second, as in censor rules
    assert parse_rate(8000) == 8000
    assert parse_duration("250ms") == pytest.approx(0.25)
    # One grammar for every rate in a scenario: kbps/Mbps are refused everywhere (tc reads them
    # as bytes, most people as bits).
    with pytest.raises(ValueError, match="ambiguous"):
        parse_rate("1.5Mbps")
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate("fast")


def test_profile_names_match_the_data_files() -> None:
    assert tuple(available_profiles()) == PROFILE_NAMES


class _Turn:
    def __init__(self, port: int = 3478, tls_port: int | None = 5349, realm: str = "testbed") -> None:
        self.port, self.tls_port, self.realm = port, tls_port, realm


class _Service:
    def __init__(self, turn: _Turn | None) -> None:
        self.turn = turn


class _Node:
    def __init__(self, *services: _Service) -> None:
        self.services = services


NODES = {
    "caller": _Node(),
    "callee": _Node(),
    "relay": _Node(_Service(_Turn())),
    "plain": _Node(_Service(_Turn(tls_port=None))),
    "tg": _Node(_Service(_Turn(port=1400, realm="telegram.org"))),
}


def _problems(*entries: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    specs = [CallSpec.model_validate(e) for e in entries]
    return [(path, msg) for path, msg, _ in call_reference_problems(specs, NODES)]


def test_reference_checks() -> None:
    assert _problems({"name": "ok", "ice": {"turn": "relay", "transport": "tls"}}) == []
    assert _problems({"name": "a", "ice": {"turn": "callee"}})[0][0] == ("calls", 0, "ice", "turn")
    assert _problems({"name": "a", "ice": {"stun": "nowhere"}})[0][0] == ("calls", 0, "ice", "stun")
    ((path, msg),) = _problems({"name": "a", "ice": {"turn": "plain", "transport": "tls"}})
    assert path == ("calls", 0, "ice", "transport") and "tls_port" in msg
    ((path, msg),) = _problems({"name": "a", "count": 2}, {"name": "a"})
    assert "used twice" in msg


def test_profiles_check_their_relay() -> None:
    assert _problems({"name": "tg", "profile": "telegram", "ice": {"turn": "tg"}}) == []
    msgs = [m for _, m in _problems({"name": "tg", "profile": "telegram", "ice": {"turn": "relay"}})]
    assert any("590-1400" in m for m in msgs) and any("REALM" in m for m in msgs)
    ((path, msg),) = _problems({"name": "wa", "profile": "whatsapp"})
    assert path == ("calls", 0, "profile") and "ice.turn" in msg
    assert _problems({"name": "wa", "profile": "whatsapp", "ice": {"turn": "relay"}}) == []


def test_transport_enum_values() -> None:
    assert {t.value for t in IceTransport} == {"udp", "tcp", "tls"}


def test_adapt_and_audio_bitrate_keys() -> None:
    spec = CallSpec.model_validate({"name": "a", "adapt": True, "audio": {"bitrate": "24kbit"}})
    assert spec.adapt is True and spec.audio is not None and spec.audio.bitrate == 24000
    assert CallSpec.model_validate({"name": "a"}).adapt is None  # the profile decides
    with pytest.raises(ValidationError, match="pcmu has one rate"):
        CallSpec.model_validate({"name": "a", "audio": "pcmu", "adapt": True})

"""CallOptions validation and its JSON round trip; the package stays light to import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testbed.calls import CallOptions, IceServer, IceTransportPolicy


def test_defaults_and_round_trip() -> None:
    options = CallOptions(name="baseline-audio", duration_s=5.0)
    assert (options.audio, options.video, options.data_channel) == (True, False, True)
    assert options.connect_timeout_s == 15.0
    assert CallOptions.from_json(options.to_json()) == options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "call name"),
        ({"name": "../escape"}, "call name"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"duration_s": True}, "duration_s"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"data_message_bytes": 8}, "data_message_bytes"),
        ({"video_width": 321}, "even"),
        ({"video_fps": 0}, "video_fps"),
        ({"audio": False, "data_channel": False}, "at least one"),
    ],
)
def test_invalid_options(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "c", "duration_s": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        CallOptions(**fields)  # type: ignore[arg-type]


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown call option.*colour"):
        CallOptions.from_json({"name": "c", "duration_s": 1.0, "colour": "red"})


def test_importing_calls_does_not_import_aiortc() -> None:
    # The orchestrator imports testbed.calls; only endpoint processes may pay for aiortc and av.
    code = "import sys, testbed.calls; print('aiortc' in sys.modules, 'av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


TURN = IceServer(urls=("turn:198.18.0.5:3478?transport=udp",), username="u", credential="p")


def test_ice_servers_round_trip_through_json() -> None:
    options = CallOptions(
        name="c",
        duration_s=1.0,
        ice_servers=(TURN, IceServer(urls=("stun:198.18.0.5",))),
        ice_transport_policy=IceTransportPolicy.RELAY,
    )
    wire = json.loads(json.dumps(options.to_json()))
    assert wire["ice_servers"][0] == {
        "urls": ["turn:198.18.0.5:3478?transport=udp"],
        "username": "u",
        "credential": "p",
    }
    assert wire["ice_transport_policy"] == "relay"
    assert CallOptions.from_json(wire) == options


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        (("stun:stun.l.google.com:19302",), "IP address, not a name"),
        (("turn:turn.example:3478",), "IP address, not a name"),
        (("turn:198.18.0.999",), "not an IP address"),
        (("turn:198.18.0.5:70000",), "port out of range"),
        (("stun:198.18.0.5?transport=udp",), "no transport"),
        (("http://198.18.0.5",), "must look like"),
        ((), "at least one URL"),
    ],
)
def test_bad_ice_server_urls(urls: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IceServer(urls=urls, username="u", credential="p")


def test_ipv6_literal_is_accepted() -> None:
    IceServer(urls=("turn:[2001:db8::1]:3478?transport=tcp",), username="u", credential="p")


def test_turn_needs_credentials() -> None:
    with pytest.raises(ValueError, match="username and a credential"):
        IceServer(urls=("turn:198.18.0.5",))


def test_relay_policy_needs_a_turn_server() -> None:
    with pytest.raises(ValueError, match="needs a TURN server"):
        CallOptions(
            name="c",
            duration_s=1.0,
            ice_servers=(IceServer(urls=("stun:198.18.0.5",)),),
            ice_transport_policy=IceTransportPolicy.RELAY,
        )


@pytest.mark.parametrize(
    "raw",
    [
        {"ice_servers": "turn:198.18.0.5"},
        {"ice_servers": [{"urls": 5}]},
        {"ice_servers": [{"urls": "stun:198.18.0.5", "secret": 1}]},
        {"ice_transport_policy": "carrier-pigeon"},
    ],
)
def test_bad_ice_json(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CallOptions.from_json({"name": "c", "duration_s": 1.0, **raw})


def test_opus_options_round_trip_and_are_checked() -> None:
    o = CallOptions(
        name="a",
        duration_s=1,
        audio_bitrate_bps=16000,
        audio_min_bitrate_bps=8000,
        audio_max_bitrate_bps=32000,
        audio_frame_ms=60,
        audio_fec=True,
        adapt=True,
    )
    assert CallOptions.from_json(o.to_json()) == o and o.app_audio
    assert not CallOptions(name="a", duration_s=1).app_audio  # aiortc's encoder as it ships
    with pytest.raises(ValueError, match="adapt adjusts the Opus bitrate"):
        CallOptions(name="a", duration_s=1, audio_codec="pcmu", adapt=True)
    with pytest.raises(ValueError, match="audio_frame_ms must be 10, 20, 40 or 60"):
        CallOptions(name="a", duration_s=1, audio_frame_ms=30)
    with pytest.raises(ValueError, match="audio_min_bitrate_bps <= audio_bitrate_bps"):
        CallOptions(name="a", duration_s=1, audio_bitrate_bps=4000)

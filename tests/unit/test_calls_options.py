"""CallOptions validation and its JSON round trip; the package stays light to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testbed.calls import CallOptions


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

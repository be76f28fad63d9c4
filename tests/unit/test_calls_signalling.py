"""Signalling messages and their newline-delimited JSON framing (sans-IO)."""

from __future__ import annotations

import json
import random

import pytest

from testbed.calls.signalling import (
    Answer,
    Bye,
    Decoder,
    Dial,
    Done,
    Failure,
    HangUp,
    Hello,
    Layer,
    Message,
    Offer,
    Role,
    SignallingProtocolError,
    StateChange,
    Stats,
    decode_line,
    encode,
)

ALL: list[Message] = [
    Hello(role=Role.CALLER, pid=1234),
    Dial(),
    Offer(sdp="v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"),
    Answer(sdp="v=0\r\n"),
    Bye(reason="hangup"),
    HangUp(reason="duration reached"),
    StateChange(t=12.5, layer=Layer.CONNECTION, state="connected"),
    Stats(t=13.0, report={"stats": [{"type": "transport", "packetsSent": 3}]}),
    Failure(message="boom\nwith a newline"),
    Done(),
]


@pytest.mark.parametrize("message", ALL, ids=lambda m: m.type.value)
def test_round_trip(message: Message) -> None:
    wire = encode(message)
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1  # newlines in strings are escaped
    assert decode_line(wire.rstrip(b"\n")) == message


def test_decoder_reassembles_any_split() -> None:
    stream = b"".join(encode(m) for m in ALL)
    rng = random.Random(7)
    for _ in range(50):
        decoder = Decoder()
        out: list[Message] = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 40)
            out += decoder.feed(stream[pos : pos + step])
            pos += step
        decoder.eof()
        assert out == ALL


def test_blank_lines_are_ignored() -> None:
    assert Decoder().feed(b"\n\r\n" + encode(Dial())) == [Dial()]


def test_unknown_keys_are_ignored() -> None:
    assert decode_line(b'{"type":"bye","reason":"x","future":1}') == Bye(reason="x")


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"\xff\xfe",
        b"[1,2]",
        b'{"type":"teleport"}',
        b'{"type":null}',
        b'{"type":"offer"}',
        b'{"type":"offer","sdp":5}',
        b'{"type":"hello","role":"censor","pid":1}',
        b'{"type":"hello","role":"caller","pid":true}',
        b'{"type":"state","t":"soon","layer":"connection","state":"connected"}',
        b'{"type":"state","t":NaN,"layer":"connection","state":"connected"}',
        b'{"type":"state","t":1,"layer":"kernel","state":"connected"}',
        b'{"type":"stats","t":1,"report":[]}',
        b"[" * 100000,
    ],
)
def test_garbage_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(SignallingProtocolError):
        Decoder().feed(line + b"\n")


def test_fuzz_garbage_never_raises_anything_else() -> None:
    rng = random.Random(1)
    seeds = [encode(m) for m in ALL]
    for _ in range(2000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        decoder = Decoder()
        try:
            decoder.feed(bytes(data))
            decoder.eof()
        except SignallingProtocolError:
            pass


def test_overlong_line_is_rejected_without_waiting_for_newline() -> None:
    decoder = Decoder(max_line_bytes=100)
    with pytest.raises(SignallingProtocolError, match="longer than"):
        decoder.feed(b'{"type":"offer","sdp":"' + b"a" * 200)


def test_overlong_line_with_newline_is_rejected() -> None:
    with pytest.raises(SignallingProtocolError, match="longer than"):
        Decoder(max_line_bytes=100).feed(encode(Offer(sdp="a" * 200)))


def test_truncated_message_at_eof() -> None:
    decoder = Decoder()
    assert decoder.feed(encode(Dial())[:-3]) == []
    with pytest.raises(SignallingProtocolError, match="stream ended"):
        decoder.eof()


def test_wire_format_is_plain_json() -> None:
    obj = json.loads(encode(StateChange(t=1.0, layer=Layer.ICE_GATHERING, state="complete")))
    assert obj == {"type": "state", "t": 1.0, "layer": "ice-gathering", "state": "complete"}


def test_role_peer() -> None:
    assert Role.CALLER.peer is Role.CALLEE and Role.CALLEE.peer is Role.CALLER

"""App profiles: what makes a synthetic call look like a given app on the wire.

A profile is a data file, ``testbed/data/profiles/<name>.yaml`` (add a file to add an app), read
with :func:`load_profile`.  It says

* ``relay``: whether the app always uses its relay, over which transport, on which service ports,
  what the relay's REALM must contain and which address list the relay belongs to;
* ``ice_policy``: the default ``ice.policy`` (``relay`` makes all media cross the relay flow);
* ``stun_prelude``: STUN-framed vendor messages each endpoint sends to its relay from the socket
  of its TURN allocation (so they share the media's 5-tuple), first once the allocation exists,
  then every ``every_s`` seconds;
* ``audio``: the Opus encoder's start bitrate, adaptation range, frame size and in-band FEC, and
  whether the call adapts its bitrate to receiver reports by default (:class:`AudioParams`).

Sans-IO: :meth:`Profile.prelude_messages` builds the bytes from a seeded generator.
"""

from __future__ import annotations

import random
import struct
from functools import cache
from importlib import resources
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from testbed.calls.stun_txid import with_transaction_id

__all__ = [
    "AudioParams",
    "DEFAULT_AUDIO",
    "Profile",
    "ProfileError",
    "available_profiles",
    "load_profile",
    "with_transaction_id",
]

MAGIC_COOKIE = 0x2112A442
_PACKAGE = "testbed.data"
_DIR = "profiles"


class ProfileError(ValueError):
    """A profile that does not exist or does not validate."""


def _int_like(value: Any) -> Any:
    # YAML 1.1 reads 0x0800 as an int already; also accept "0x0800" strings.
    if isinstance(value, str) and value.lower().startswith("0x"):
        return int(value, 16)
    return value


U16 = Annotated[int, BeforeValidator(_int_like), Field(ge=0, le=0xFFFF)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Attribute(_Model):
    type: U16
    hex: str | None = None
    random: int | None = Field(None, ge=0, le=1024)
    """That many bytes from the seeded generator (the attribute is left unpadded on purpose if
    its length is not a multiple of 4, like WhatsApp's 0x4000)."""

    @model_validator(mode="after")
    def _one_value(self) -> Attribute:
        if (self.hex is None) == (self.random is None):
            raise ValueError("an attribute has exactly one of hex, random")
        if self.hex is not None:
            bytes.fromhex(self.hex)
        return self


class Message(_Model):
    type: U16
    cookie: bool = True
    attributes: tuple[Attribute, ...] = ()

    @model_validator(mode="after")
    def _stun_framed(self) -> Message:
        if self.type & 0xC000:
            raise ValueError("a STUN-framed message type has its top two bits zero")
        return self


class Prelude(_Model):
    every_s: float = Field(2.0, gt=0)
    messages: tuple[Message, ...] = Field(min_length=1)


class Relay(_Model):
    required: bool = False
    transport: str | None = Field(None, pattern=r"^(udp|tcp|tls)$")
    ports: tuple[int, int] | None = None
    realm_contains: str | None = None
    address_list: str | None = None


OPUS_FRAME_MS = (10, 20, 40, 60)
"""Frame sizes libopus encodes that RFC 7587 packetises one per RTP packet (2.5 and 5 ms are
not call sizes; 80-120 ms need libopus >= 1.2 and no call app uses them)."""


class AudioParams(_Model):
    """How the app's Opus encoder runs (docs/calls.md, "Adaptive audio").  The defaults are
    aiortc's own encoder: 96 kbit/s, 20 ms, no FEC, no adaptation."""

    bitrate: int = Field(96000, ge=6000, le=510000)
    """Target bit/s at the start (and throughout, without adaptation)."""
    min_bitrate: int = Field(6000, ge=6000, le=510000)
    max_bitrate: int = Field(96000, ge=6000, le=510000)
    frame_ms: int = 20
    fec: bool = False
    """Opus in-band FEC (RFC 6716 2.1.7): each packet carries a low-rate copy of the previous one."""
    adapt: bool = False
    """Adapt the bitrate to RTCP receiver reports unless the call says ``adapt:``."""
    source: str = ""
    """Where the numbers come from (captures, documentation)."""

    @model_validator(mode="after")
    def _consistent(self) -> AudioParams:
        if self.frame_ms not in OPUS_FRAME_MS:
            raise ValueError(f"audio.frame_ms must be one of {OPUS_FRAME_MS}, got {self.frame_ms}")
        if not self.min_bitrate <= self.bitrate <= self.max_bitrate:
            raise ValueError("audio needs min_bitrate <= bitrate <= max_bitrate")
        return self


class Profile(_Model):
    name: str
    description: str = ""
    relay: Relay = Field(default_factory=lambda: Relay.model_validate({}))
    ice_policy: str | None = Field(None, pattern=r"^(all|relay)$")
    stun_prelude: Prelude | None = None
    audio: AudioParams = Field(default_factory=lambda: AudioParams.model_validate({}))

    def relay_port_ok(self, port: int) -> bool:
        return self.relay.ports is None or self.relay.ports[0] <= port <= self.relay.ports[1]

    def realm_ok(self, realm: str | None) -> bool:
        need = self.relay.realm_contains
        return need is None or (realm is not None and need.lower() in realm.lower())

    def prelude_messages(self, seed: int | str) -> tuple[bytes, ...]:
        """The prelude's messages as bytes; the same seed gives the same bytes (transaction ids
        are drawn afresh per send by the endpoint, see :func:`with_transaction_id`)."""
        if self.stun_prelude is None:
            return ()
        rng = random.Random(f"{self.name}:{seed}")
        return tuple(_encode(m, rng) for m in self.stun_prelude.messages)


def _encode(message: Message, rng: random.Random) -> bytes:
    body = b""
    for attr in message.attributes:
        value = bytes.fromhex(attr.hex) if attr.hex is not None else rng.randbytes(attr.random or 0)
        body += struct.pack("!HH", attr.type, len(value)) + value
        if len(value) % 4 and attr is not message.attributes[-1]:
            body += b"\x00" * (4 - len(value) % 4)  # only the last attribute goes unpadded
    head = MAGIC_COOKIE.to_bytes(4, "big") if message.cookie else rng.randbytes(4)
    return struct.pack("!HH", message.type, len(body)) + head + bytes(12) + body


DEFAULT_AUDIO = AudioParams.model_validate({})
"""A call without a profile: aiortc's encoder as it ships."""


def available_profiles() -> tuple[str, ...]:
    root = resources.files(_PACKAGE).joinpath(_DIR)
    return tuple(sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml")))


@cache
def load_profile(name: str) -> Profile:
    if name not in available_profiles():
        raise ProfileError(f"unknown app profile {name!r}; known: {', '.join(available_profiles())}")
    text = resources.files(_PACKAGE).joinpath(_DIR, f"{name}.yaml").read_text(encoding="utf-8")
    try:
        profile = Profile.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise ProfileError(f"profile {name!r} ({_DIR}/{name}.yaml) is invalid: {exc}") from None
    if profile.name != name:
        raise ProfileError(f"profile file {name}.yaml names itself {profile.name!r}")
    return profile

"""STUN transaction ids (RFC 8489 section 5), apart from ``profiles`` so that the endpoint process,
which sends app-profile STUN messages, does not import the profile schema (pydantic, YAML)."""

from __future__ import annotations

__all__ = ["with_transaction_id"]


def with_transaction_id(message: bytes, txid: bytes) -> bytes:
    """``message`` with its 12-byte transaction id replaced (RFC 8489 section 5)."""
    if len(txid) != 12 or len(message) < 20:
        raise ValueError("a transaction id is 12 bytes, a STUN message at least 20")
    return message[:8] + txid + message[20:]

"""Matchers on what the classifier learnt: labels, TLS/QUIC SNI, ALPN, ECH presence.

These are flow facts: once the classifier sets them they hold for every later packet of the
flow (so a rule on SNI blocks the whole flow after the ClientHello, as SNI-IV did, A.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.classify import without_port_guess
from testbed.core.policy.state import Context
from testbed.core.policy_regex import Regex

__all__ = ["AlpnMatch", "EchMatch", "LabelsMatch", "SniMatch"]


@dataclass(frozen=True, slots=True)
class LabelsMatch:
    """Any of ``any_of`` among the flow's labels. A port guess (``by-port`` and the protocol it
    guessed) counts only with ``guesses``: it appears when inspection ends, so a rule that saw it
    would start blocking a flow it had let through (issue 14: OpenVPN on 1194 died mid-flow)."""

    any_of: frozenset[str]
    guesses: bool = False

    def __call__(self, ctx: Context) -> bool:
        labels = ctx.flow.labels
        return not self.any_of.isdisjoint(labels if self.guesses else without_port_guess(labels))


@dataclass(frozen=True, slots=True)
class SniMatch:
    """Case-insensitive; a trailing dot is *not* stripped (TSPU's matcher missed ``twitter.com.``,
    censor-behaviors.md B.9), and ``substring`` reproduces the ``t.co`` bug (B.7)."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]
    substrings: tuple[str, ...]
    regexes: tuple[Regex, ...]  # RE2: linear time in the name, whatever the pattern

    def matches_name(self, sni: str) -> bool:
        name = sni.lower()
        if name in self.exact:
            return True
        for s in self.suffixes:
            if name == s or name.endswith("." + s):
                return True
        for s in self.substrings:
            if s in name:
                return True
        return any(r.search(name) for r in self.regexes)

    def __call__(self, ctx: Context) -> bool:
        sni = ctx.flow.sni
        return sni is not None and self.matches_name(sni)


@dataclass(frozen=True, slots=True)
class AlpnMatch:
    any_of: frozenset[str]

    def __call__(self, ctx: Context) -> bool:
        return any(a in self.any_of for a in ctx.flow.alpn)


@dataclass(frozen=True, slots=True)
class EchMatch:
    """An encrypted_client_hello extension in the ClientHello (real or GREASE: on the wire they
    look alike; the 2024 Cloudflare rule also wanted SNI cloudflare-ech.com, G.18)."""

    present: bool

    def __call__(self, ctx: Context) -> bool:
        flow = ctx.flow
        has = "ech" in flow.labels or flow.fingerprints.get("ech") == "present"
        return has is self.present

"""Fingerprint matchers: JA3/JA4/JA3S (hash or string) and supported_groups order.

JA3/JA4 come from the classifier (``Flow.fingerprints``: ja3, ja3_hash, ja4, ja4_r, ja3s,
ja3s_hash). In 2026 TSPU matched pion's default DTLS 1.2 ClientHello by JA3/JA4 (H.19).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.dissect.tls import is_grease
from testbed.core.policy.matchers.hello import hellos
from testbed.core.policy.state import Context

__all__ = ["FingerprintMatch", "GroupsMatch"]


@dataclass(frozen=True, slots=True)
class FingerprintMatch:
    """Any listed value equal to one of the flow's forms of that fingerprint."""

    ja3: frozenset[str]
    ja4: frozenset[str]
    ja3s: frozenset[str]

    def __call__(self, ctx: Context) -> bool:
        fp = ctx.flow.fingerprints
        if not fp:
            return False
        for values, keys in ((self.ja3, ("ja3", "ja3_hash")), (self.ja4, ("ja4", "ja4_r")),
                             (self.ja3s, ("ja3s", "ja3s_hash"))):  # fmt: skip
            if values:
                for k in keys:
                    v = fp.get(k)
                    if v is not None and v.lower() in values:
                        return True
        return False


@dataclass(frozen=True, slots=True)
class GroupsMatch:
    """The hello's supported_groups equal ``order`` (GREASE removed). Learnt once per flow: from
    the hellos the classifier kept, else from the first hello of each kind seen in a packet within
    the inspection budget, else (ClientHello) from the JA3 string."""

    order: tuple[int, ...]
    kinds: tuple[str, ...]  # ("client",), ("server",) or both

    def __call__(self, ctx: Context) -> bool:
        known = ctx.state.groups
        for kind, kept in (("client", ctx.flow.client_hello), ("server", ctx.flow.server_hello)):
            if kept is not None and kind not in known:
                known[kind] = tuple(g for g in kept.supported_groups if not is_grease(g))
        if ctx.inspecting and ctx.packet.payload:
            for kind, _body, groups in hellos(ctx):
                known.setdefault(kind, groups)
        if "client" not in known:
            ja3 = ctx.flow.fingerprints.get("ja3")
            if ja3 is not None:
                parts = ja3.split(",")
                if len(parts) == 5:
                    known["client"] = tuple(int(g) for g in parts[3].split("-") if g.isdigit())
        return any(known.get(k) == self.order for k in self.kinds)

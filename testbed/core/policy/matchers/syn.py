"""Who sent the SYN: TSPU censors only connections it saw start from inside (A.1).

Xue et al. (IMC 2022, §5): "a sequence that starts with a packet from the remote side never
triggers" and "a remote-sent SYN can un-block"; the TSPU keys its state on who sent the first SYN.
The runtime records, per flow, the side of the first SYN (SYN without ACK) and whether the
outside ever sent one (a simultaneous open, or a server-side evasion that answers the client's
SYN with a SYN). ``syn_from: inside`` holds while the first SYN came from inside and no SYN came
from outside; once one does, a rule with it at the top of its match never acts on that flow
again, sticky or not, and the residual blocks it set let the flow through (``runtime.py``).
Non-TCP flows have no SYN: their initiator's side stands in for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.policy.state import Context

__all__ = ["SynFromMatch"]


@dataclass(frozen=True, slots=True)
class SynFromMatch:
    inside: bool

    def __call__(self, ctx: Context) -> bool:
        st = ctx.state
        if st.facts.proto != 6:
            return st.facts.client_inside is self.inside
        if self.inside:
            return st.first_syn_inside is True and not st.outside_syn
        return st.outside_syn or st.first_syn_inside is False

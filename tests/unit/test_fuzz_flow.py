"""Property tests of the flow table through the classifier: bounded, nothing lost, no clock."""

from __future__ import annotations

from _dpi_helpers import udp4
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.classify import Classifier
from testbed.core.flow import Flow
from testbed.core.packet import parse_ip

HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
packets = st.lists(
    st.tuples(
        st.sampled_from(HOSTS), st.integers(1, 4), st.sampled_from(HOSTS), st.integers(1, 4),
        st.floats(0, 5, allow_nan=False),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(packets, st.integers(1, 5), st.floats(0.5, 20, allow_nan=False))
def test_table_bounded_and_every_packet_counted(pk, max_flows, timeout) -> None:  # type: ignore[no-untyped-def]
    ended: list[Flow] = []
    c = Classifier(max_flows=max_flows, udp_idle_timeout=timeout, on_flow_end=ended.append,
                   retain_ended=True, port_guess=False)  # fmt: skip
    now = 0.0
    for src, sp, dst, dp, dt in pk:
        now += dt
        obs = c.observe(parse_ip(udp4(src, sp, dst, dp, b"x")), now)
        assert len(c.table) <= max_flows
        assert obs.flow.last_seen == now
    flows = list(c.flows())
    assert sum(f.packets for f in flows) == len(pk)
    assert all(f.ended is not None for f in ended) and len(ended) == c.table.evicted + c.table.expired
    keys = [f.key for f in c.table]
    assert len(keys) == len(set(keys))

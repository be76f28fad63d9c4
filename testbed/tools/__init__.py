"""Small traffic tools to run inside nodes (``testbed exec NODE -- python -m testbed.tools.X``).

They measure what the standard tools do not say directly: ``udpseq`` sends sequence-numbered
UDP datagrams at a paced rate and reports, on the receiving side, exactly which ones arrived
(loss patterns, burst lengths, cut thresholds, IP-level rates).
"""

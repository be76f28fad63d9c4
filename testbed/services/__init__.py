"""Services that scenario nodes run: HTTP(S)/HTTP/3 servers with chosen certificate names, iperf3, coturn.

They exist so that SNI, throughput and cut scenarios work without manual steps: the runner (and
``testbed up``) starts each declared service inside its node before any call or command, waits
until it serves (docs/services.md), and stops it with the run.
"""

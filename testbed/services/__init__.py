"""Services that scenario nodes run: an HTTPS server with chosen certificate names, iperf3.

They exist so that SNI, throughput and cut scenarios work without manual steps: the runner (and
``testbed up``) starts each declared service inside its node before any call or command, waits
until it is listening, and stops it with the run.
"""

"""Adapters to the kernel's networking: namespaces, links, addresses, routes, firewall rules."""

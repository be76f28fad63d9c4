"""Turn segmentation/receive offloads off on an interface, via the legacy SIOCETHTOOL ioctls.

The censor must see the packets that are really on the wire.  With TSO/GSO a sender hands the
kernel 64 KB "super-packets" that are cut up only at the last moment, and with GRO a receiver glues
segments back together; either way a DPI in the path would classify, count and police packets that
never existed on a real link (a 16 KB freeze would fire after one "packet").  ``ethtool -K IF tso off
gso off gro off`` does the same through these commands (linux/ethtool.h).

The ioctl acts on the namespace of the socket it is issued on, so callers pass a socket created in
the target namespace (``pyroute2.netns.create_socket``) and the orchestrator never switches
namespaces itself.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
IFNAMSIZ = 16

# (get, set) command pairs from linux/ethtool.h
_OFFLOADS: dict[str, tuple[int, int]] = {
    "tso": (0x0000001E, 0x0000001F),  # ETHTOOL_GTSO / ETHTOOL_STSO
    "gso": (0x00000023, 0x00000024),  # ETHTOOL_GGSO / ETHTOOL_SGSO
    "gro": (0x0000002B, 0x0000002C),  # ETHTOOL_GGRO / ETHTOOL_SGRO
}
OFFLOADS = tuple(_OFFLOADS)


def _ioctl(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = (ctypes.c_uint32 * 2)(cmd, data)  # struct ethtool_value { u32 cmd; u32 data; }
    ifreq = struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), ctypes.addressof(value))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return int(value[1])


def get_offload(sock: socket.socket, ifname: str, name: str) -> bool:
    return bool(_ioctl(sock, ifname, _OFFLOADS[name][0]))


def set_offload(sock: socket.socket, ifname: str, name: str, on: bool) -> None:
    _ioctl(sock, ifname, _OFFLOADS[name][1], 1 if on else 0)


def disable_offloads(sock: socket.socket, ifname: str) -> dict[str, bool]:
    """Turn TSO, GSO and GRO off on ``ifname``; return the resulting state read back."""
    for name in OFFLOADS:
        set_offload(sock, ifname, name, False)
    return {name: get_offload(sock, ifname, name) for name in OFFLOADS}

"""Which addresses a socket bound to ``0.0.0.0`` or ``::`` can actually be reached at.

A node that listens on the unspecified address must publish concrete addresses in its record.
On Linux we read them from the kernel: IPv4 through the ``SIOCGIFADDR`` ioctl for each
interface, IPv6 from ``/proc/net/if_inet6``. Link-local IPv6 addresses are left out (they need a
zone, which records cannot carry), and loopback addresses come last, so a peer on another
machine tries the useful ones first.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

from auralink.wire import Address

__all__ = ["expand_unspecified", "interface_ips"]

_SIOCGIFADDR = 0x8915


def interface_ips(version: int) -> list[str]:
    """The IP addresses of this machine's interfaces for one IP version, loopback last."""
    found: list[str] = []
    if version == 4:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError):
                    packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                    found.append(socket.inet_ntoa(packed[20:24]))
    else:
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/if_inet6").read_text().splitlines():
                raw = line.split()[0]
                ip = ipaddress.IPv6Address(bytes.fromhex(raw))
                if not ip.is_link_local:
                    found.append(str(ip))
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda ip: ipaddress.ip_address(ip).is_loopback)


def expand_unspecified(bound: Address) -> list[Address]:
    """``bound`` itself, or every interface address on its port if it is ``0.0.0.0`` / ``::``."""
    if not ipaddress.ip_address(bound.host).is_unspecified:
        return [bound]
    return [Address(ip, bound.port) for ip in interface_ips(bound.version)]

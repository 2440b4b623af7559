"""Network addresses as they travel in records and frames.

Theory of operation
-------------------
An :class:`Address` is an IP literal and a UDP port. Names are never resolved here: records
carry the addresses a node actually listens on or was observed at, so there is nothing to look
up and nothing a DNS server could spoof.

On the wire an address is ``family u8 (4 or 6) | ip (4 or 16 bytes) | port u16``. The text form
is ``1.2.3.4:5`` or ``[::1]:5``, the same as URLs and ``getaddrinfo`` use. The IP is stored in
its canonical compressed form, so equal addresses compare and hash equal.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from auralink.errors import ConfigError, LocalProtocolError
from auralink.wire.buffer import Buffer, BufferReadError

__all__ = ["Address", "pull_address", "push_address"]


@functools.lru_cache(maxsize=4096)  # asked per relayed packet: parsing the IP costs 2 us
def _ip_version(host: str) -> int:
    return ipaddress.ip_address(host).version


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """An IP address and a UDP port."""

    host: str
    """The IP literal in canonical form (``127.0.0.1``, ``::1``)."""
    port: int
    """The UDP port, 0 to 65535 (0 only in listen configuration: "pick one")."""

    def __post_init__(self) -> None:
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError as exc:
            raise LocalProtocolError(f"{self.host!r} is not an IP address") from exc
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            raise LocalProtocolError(f"{self.host!r}: scoped IPv6 addresses (with %zone) cannot be shared")
        if str(ip) != self.host:
            object.__setattr__(self, "host", str(ip))
        if not isinstance(self.port, int) or not 0 <= self.port <= 0xFFFF:
            raise LocalProtocolError(f"port {self.port!r} is outside 0-65535")

    @property
    def version(self) -> int:
        """4 or 6."""
        return _ip_version(self.host)

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``HOST:PORT`` or ``[HOST]:PORT``; raises :class:`ConfigError` naming the problem."""
        raw = text.strip()
        if raw.startswith("["):
            host, sep, port = raw[1:].partition("]:")
        else:
            host, sep, port = raw.rpartition(":")
            if ":" in host:
                raise ConfigError(f"address {text!r}: write IPv6 addresses as [HOST]:PORT, e.g. [::1]:7700")
        if not sep or not host:
            raise ConfigError(f"address {text!r} is not HOST:PORT (for example 127.0.0.1:7700)")
        if not port.isdigit() or int(port) > 0xFFFF:
            raise ConfigError(f"address {text!r}: port must be a number from 0 to 65535")
        try:
            return cls(host, int(port))
        except LocalProtocolError as exc:
            raise ConfigError(f"address {text!r}: {host!r} is not an IP address (names are not resolved)") from exc

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def as_tuple(self) -> tuple[str, int]:
        """The ``(host, port)`` pair that asyncio and socket calls take."""
        return (self.host, self.port)


def push_address(buf: Buffer, address: Address) -> None:
    """Append ``family | ip | port``."""
    packed = ipaddress.ip_address(address.host).packed
    buf.push_uint8(4 if len(packed) == 4 else 6)
    buf.push_bytes(packed)
    buf.push_uint16(address.port)


def pull_address(buf: Buffer) -> Address:
    """Read ``family | ip | port``; raises :class:`BufferReadError` on an unknown family."""
    family = buf.pull_uint8()
    if family == 4:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(buf.pull_bytes(4))
    elif family == 6:
        ip = ipaddress.IPv6Address(buf.pull_bytes(16))
    else:
        raise BufferReadError(f"unknown address family {family}")
    return Address(str(ip), buf.pull_uint16())

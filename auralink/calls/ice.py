"""ICE configuration that is always explicit: never aiortc's fallback to a public STUN server.

Theory of operation
-------------------
aiortc 1.16 builds each ``RTCIceGatherer`` from ``RTCConfiguration.iceServers``. When that field is
``None`` (its default, and what ``RTCPeerConnection()`` uses), ``RTCIceGatherer.__init__`` calls
``getDefaultIceServers()``, which returns ``stun:stun.l.google.com:19302``: every call would
then send a STUN binding request to Google, which these machines cannot reach and users may not
want. An explicit list, even an empty one, is used as given (``connection_kwargs([])`` is ``{}``,
so aioice gets ``stun_server=None``).

So the SDK never hands aiortc a configuration it did not build: :func:`rtc_configuration` turns
our :class:`IceConfig` into an ``RTCConfiguration`` whose ``iceServers`` is always a list, and
:func:`checked_configuration` refuses any ``RTCConfiguration`` whose ``iceServers`` is ``None``.
The default :class:`IceConfig` has no servers at all: host candidates only, which is what a LAN,
a network namespace lab or a VPN needs. STUN and TURN servers (our relay nodes) are opt-in and
named in config.

aiortc uses only the first STUN and the first TURN server it is given (``connection_kwargs``
skips the rest silently), so :class:`IceConfig` refuses a second one of either kind with
:class:`~auralink.errors.ConfigError` instead of ignoring it.

Loopback: aioice's ``get_host_addresses`` skips ``127.0.0.1`` (and ``::1``), so two peers on a
machine whose only interface is ``lo`` gather no candidates and never connect. We do not patch
aioice. Tests on one machine use the machine's own non-loopback address (packets to a local
address never leave the host: the kernel routes them over ``lo``), or, to prove the path end to
end, two network namespaces joined by a veth pair (``tests/netns.py``).

aiortc is imported lazily, so this module (and the rest of ``auralink.calls``) imports without
the ``calls`` extra; building a configuration without aiortc raises
:class:`~auralink.errors.CallsNotInstalled`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from auralink.errors import CallsNotInstalled, ConfigError

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

__all__ = ["IceConfig", "IceServer", "checked_configuration", "rtc_configuration"]

_URL = re.compile(
    r"^(?P<scheme>stuns?|turns?):(?P<host>\[[0-9a-fA-F:]+\]|[^?:\[\]]+)"
    r"(?::(?P<port>\d{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?$"
)


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server (W3C ``RTCIceServer``)."""

    url: str
    """``stun:HOST[:PORT]``, ``turn:HOST[:PORT][?transport=udp|tcp]`` or ``turns:HOST[:PORT]?transport=tcp``."""
    username: str | None = None
    """TURN user name (for our relays: derived from a token the relay signed for our AuraID)."""
    credential: str | None = None
    """TURN password."""

    def __post_init__(self) -> None:
        match = _URL.match(self.url)
        if match is None:
            raise ConfigError(f"not a STUN or TURN URL: {self.url!r}", "ice.servers")
        if match["port"] is not None and not 0 < int(match["port"]) < 65536:
            raise ConfigError(f"bad port in {self.url!r}", "ice.servers")
        if self.is_turn and (self.username is None or self.credential is None):
            raise ConfigError(f"TURN server {self.url!r} needs a username and a credential", "ice.servers")
        if match["scheme"] == "turns" and match["transport"] != "tcp":
            raise ConfigError(f"aiortc speaks turns: only over TCP: add ?transport=tcp to {self.url!r}", "ice.servers")

    @property
    def is_turn(self) -> bool:
        """True for ``turn:`` and ``turns:`` URLs."""
        return self.url.startswith("turn")


@dataclass(frozen=True, slots=True)
class IceConfig:
    """Which ICE servers a call may use. The default uses none: host candidates only, no traffic to any server."""

    servers: tuple[IceServer, ...] = ()
    """At most one STUN and one TURN server (aiortc would silently ignore any more)."""
    transport_policy: Literal["all", "relay"] = "all"
    """``relay`` restricts ICE to TURN-relayed candidates (needs a TURN server)."""

    def __post_init__(self) -> None:
        turn = [s for s in self.servers if s.is_turn]
        stun = [s for s in self.servers if not s.is_turn]
        if len(turn) > 1 or len(stun) > 1:
            raise ConfigError(
                "aiortc uses only the first STUN and the first TURN server: list at most one of each", "ice.servers"
            )
        if self.transport_policy == "relay" and not turn:
            raise ConfigError("transport_policy 'relay' needs a TURN server", "ice.transport_policy")


def rtc_configuration(config: IceConfig | None = None) -> RTCConfiguration:
    """The aiortc configuration for ``config``, with ``iceServers`` always an explicit list."""
    config = config or IceConfig()
    try:
        from aiortc import RTCConfiguration, RTCIceServer  # noqa: PLC0415
        from aiortc.rtcconfiguration import RTCIceTransportPolicy  # noqa: PLC0415
    except ImportError as exc:
        raise CallsNotInstalled("calls need aiortc: pip install 'auralink[calls]'", "aiortc") from exc
    servers = [RTCIceServer(urls=[s.url], username=s.username, credential=s.credential) for s in config.servers]
    policy = RTCIceTransportPolicy.RELAY if config.transport_policy == "relay" else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def checked_configuration(configuration: RTCConfiguration) -> RTCConfiguration:
    """``configuration`` itself, or ConfigError if it would let aiortc fall back to its default STUN server."""
    if configuration.iceServers is None:
        raise ConfigError(
            "RTCConfiguration.iceServers is None, which makes aiortc contact stun.l.google.com; "
            "pass an explicit list (empty for host candidates only), or build it with rtc_configuration()",
            "ice.servers",
        )
    return configuration

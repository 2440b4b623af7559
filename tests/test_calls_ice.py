"""ICE configuration is always explicit: aiortc never falls back to Google's STUN server; no packet leaves the host."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aiortc")

import ifaddr
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcicetransport import RTCIceGatherer

from auralink.calls.ice import IceConfig, IceServer, checked_configuration, rtc_configuration
from auralink.errors import ConfigError


def local_addresses() -> set[str]:
    found = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            found.add(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return found


def test_the_default_configuration_lists_no_servers_explicitly() -> None:
    configuration = rtc_configuration()
    assert configuration.iceServers == []  # a list, never None
    connection = RTCIceGatherer(iceServers=configuration.iceServers)._connection
    assert connection.stun_server is None and connection.turn_server is None


def test_aiortcs_own_default_would_contact_google_and_is_refused() -> None:
    # The negative control: without our helper aiortc picks stun.l.google.com (never gathered here).
    assert RTCIceGatherer(iceServers=None)._connection.stun_server == ("stun.l.google.com", 19302)
    with pytest.raises(ConfigError) as info:
        checked_configuration(RTCConfiguration())
    assert info.value.field == "ice.servers"
    explicit = RTCConfiguration(iceServers=[])
    assert checked_configuration(explicit) is explicit


def test_configured_stun_and_turn_servers_reach_aioice() -> None:
    config = IceConfig(
        servers=(
            IceServer("stun:10.0.0.1:3478"),
            IceServer("turn:10.0.0.2:3478?transport=udp", username="u", credential="p"),
        ),
        transport_policy="relay",
    )
    configuration = rtc_configuration(config)
    assert [s.urls for s in configuration.iceServers or []] == [
        ["stun:10.0.0.1:3478"],
        ["turn:10.0.0.2:3478?transport=udp"],
    ]
    connection = RTCIceGatherer(iceServers=configuration.iceServers)._connection
    assert connection.stun_server == ("10.0.0.1", 3478)
    assert connection.turn_server == ("10.0.0.2", 3478)
    assert configuration.iceTransportPolicy.value == "relay"


@pytest.mark.parametrize(
    ("servers", "policy"),
    [
        ((IceServer("stun:a"), IceServer("stun:b")), "all"),  # aiortc would silently use only the first
        ((), "relay"),  # relay-only without a TURN server can never connect
    ],
)
def test_configurations_aiortc_would_half_ignore_are_refused(servers: tuple[IceServer, ...], policy: Any) -> None:
    with pytest.raises(ConfigError):
        IceConfig(servers=servers, transport_policy=policy)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("http://stun.example", {}),
        ("turn:relay.example", {}),  # TURN without credentials
        ("turns:relay.example:5349", {"username": "u", "credential": "p"}),  # aiortc: turns only over TCP
        ("stun:host:99999", {}),
    ],
)
def test_bad_server_entries_are_config_errors(url: str, extra: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        IceServer(url, **extra)


@pytest.fixture
def sent_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every UDP destination asyncio's datagram transports send to, and every name looked up."""
    from asyncio import selector_events  # noqa: PLC0415

    destinations: list[Any] = []
    original = selector_events._SelectorDatagramTransport.sendto

    def sendto(self: Any, data: bytes, addr: Any = None) -> None:
        destinations.append(addr if addr is not None else self._address)
        original(self, data, addr)

    monkeypatch.setattr(selector_events._SelectorDatagramTransport, "sendto", sendto)
    yield destinations


async def test_a_local_call_sends_only_to_this_hosts_addresses(sent_to: list[Any]) -> None:
    mine = local_addresses()
    if not any(not ipaddress.ip_address(a.split("%")[0]).is_loopback for a in mine):
        pytest.skip("this host has only loopback addresses; aioice never offers 127.0.0.1 (see tests/netns.py)")
    lookups: list[Any] = []
    loop = asyncio.get_running_loop()
    original_getaddrinfo = loop.getaddrinfo

    async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return await original_getaddrinfo(host, *args, **kwargs)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    a = RTCPeerConnection(rtc_configuration())
    b = RTCPeerConnection(rtc_configuration())
    try:
        channel = a.createDataChannel("probe")
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        async with asyncio.timeout(10):
            await opened.wait()
    finally:
        await a.close()
        await b.close()
        del loop.getaddrinfo
    assert sent_to, "the probe call sent nothing: the hook is not seeing aioice's sockets"
    assert {addr[0].split("%")[0] for addr in sent_to} <= {m.split("%")[0] for m in mine}
    assert all(not isinstance(host, str) or host.split("%")[0] in mine for host in lookups)

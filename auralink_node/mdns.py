"""LAN discovery over mDNS (RFC 6762) and DNS-SD (RFC 6763), with ``zeroconf``.

Theory of operation
-------------------
Every node on a LAN announces one DNS-SD service of type ``_auralink._udp.local.``:

* the instance name is the node's AuraID text (56 characters, within the 63-byte label limit);
* the SRV record carries the node's UDP port, and its A/AAAA records the addresses it listens on;
* the TXT record (RFC 6763 section 6) carries ``id=<AuraID>``, ``v=1`` and, if the node claims a
  handle, ``h=<@name.aura>``.

Each node browses the same type, and every service it sees becomes an :class:`MdnsPeer`.

**What mDNS says is a hint, never a proof.** Anyone on the LAN can announce any AuraID and any
handle. A node dials the addresses and its identify protocol proves the key behind the AuraID; a
handle from TXT must be checked against a signed handle claim before it is shown as the peer's.
The hints are still parsed defensively, in one pure function, :func:`parse_service`: it turns a
service's name, TXT properties, addresses and port into an :class:`MdnsPeer`, or raises
:class:`InvalidAdvertisement` (a :class:`~auralink.errors.RemoteProtocolError`) whose ``reason``
says why. :class:`MdnsDiscovery` ignores such a service and counts it in
:attr:`MdnsDiscovery.rejected`:

==============  ===================================================================================
reason          the service is ignored because
==============  ===================================================================================
``name``        its instance name is not an AuraID under ``_auralink._udp.local.``
``id``          its TXT ``id`` is missing or not an AuraID
``id_mismatch`` its TXT ``id`` names another AuraID than its instance name
``version``     its TXT ``v`` is missing or not ``1``
``handle``      its TXT ``h`` is not a valid handle
``port``        its SRV port is missing or 0
``addresses``   it lists more than :data:`MAX_ADDRESSES` addresses
``address``     one of its addresses is not an IP address
``no_address``  none of its addresses can be dialled (unspecified, multicast, link-local IPv6)
``self``        it is our own service, seen through multicast loopback
``full``        :data:`MAX_PEERS` peers are known already
``busy``        :data:`MAX_RESOLVING` services are being resolved already
``unresolved``  its SRV, TXT and address records did not all arrive within 3 s
==============  ===================================================================================

Lifecycle. The constructor opens nothing. :meth:`MdnsDiscovery.start` opens zeroconf's sockets on
the configured ``interfaces`` only (zeroconf multicasts on every interface otherwise), starts the
browser, and registers our service in a background task. Zeroconf first probes for the name
(RFC 6762 section 8.1; it waits a random 150-250 ms, then sends three probes 500 ms apart where
the RFC says 250 ms), so peers see us about 1.2 s after ``start()``, which itself returns at
once. A node that starts later finds us in 0.2-1.2 s: we answer its query at once, or up to 1 s
later if we multicast the same answer less than 1 s before (RFC 6762 section 6). Resolving a
service that zeroconf's cache cannot complete is another background task. These tasks belong to
an :class:`asyncio.TaskGroup` owned by the object; :meth:`MdnsDiscovery.stop` cancels them, sends
the goodbye packets (RFC 6762 section 10.1; about 250 ms) and closes every socket.

Threads. ``Zeroconf(use_asyncio=True)`` runs on the caller's event loop and starts no thread;
without it, zeroconf starts a thread with a private event loop whenever it is created outside a
running loop.

Callbacks. The browser calls us on the event loop. Nothing raises out of that callback: bad
services are counted, an exception from ``on_peer`` goes to the loop's exception handler (as an
exception from any ``loop.call_soon`` callback would), and one from a :meth:`wait_for` predicate
goes to that caller.

Reach. Linux delivers a multicast datagram to every socket bound to port 5353 that joined the
group on *any* interface (``IP_MULTICAST_ALL`` is on by default), so ``interfaces`` limits where
we send, not everything we hear: a node on ``127.0.0.1`` also sees services announced by other
processes of the same host on other interfaces. mDNS works when the only interface is
``127.0.0.1``: multicast is looped back to the host's own sockets although ``lo`` has no
``MULTICAST`` flag.

```python
async with MdnsDiscovery(
    identity.aura_id, port=7700, addresses=[Address("192.168.1.20", 7700)],
    interfaces=["192.168.1.20"], handle="@alice.aura", on_peer=print,
) as mdns:
    peer = await mdns.wait_for(lambda p: p.aura_id == bob, timeout=3.0)   # None if not seen
    bob_by_handle = mdns.find(handle="@bob.aura")                         # a hint: verify it
```
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from zeroconf import NonUniqueNameException, NotRunningException, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from auralink.errors import ConfigError, IdentityError, LocalProtocolError
from auralink.identity import AuraID, parse_handle
from auralink.wire import Address
from auralink_node.errors import InvalidAdvertisement

__all__ = [
    "MAX_ADDRESSES",
    "MAX_PEERS",
    "MAX_RESOLVING",
    "SERVICE_TYPE",
    "TXT_VERSION",
    "InvalidAdvertisement",
    "MdnsDiscovery",
    "MdnsPeer",
    "instance_aura_id",
    "instance_name",
    "parse_service",
    "service_properties",
]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

SERVICE_TYPE = "_auralink._udp.local."
"""The DNS-SD service type every node registers and browses (RFC 6763 section 7)."""
TXT_VERSION = 1
"""The value of the TXT key ``v``: the layout of this TXT record."""
MAX_ADDRESSES = 16
"""Most addresses a service may list; more, and it is ignored (we advertise at most this many)."""
MAX_PEERS = 1024
"""Most peers remembered at once; a LAN that announces more gets the rest ignored."""
MAX_RESOLVING = 64
"""Most services resolved over the network at once (most are complete in zeroconf's cache)."""
RESOLVE_TIMEOUT_MS = 3000
"""Milliseconds to wait for a service's SRV, TXT and address records before giving up."""

_SUFFIX = "." + SERVICE_TYPE
_CONFIG_FIELD = "mdns_interfaces"


@dataclass(frozen=True, slots=True)
class MdnsPeer:
    """A node that announces itself on the LAN. Unverified: dial it and identify it first."""

    aura_id: AuraID
    """The AuraID the service claims (its instance name and TXT ``id``)."""
    handle: str | None
    """The canonical handle the TXT record claims, if any; a hint until a signed claim confirms it."""
    addresses: tuple[Address, ...]
    """Where to dial it: each advertised IP with the SRV port, in the order zeroconf gave them."""
    seen_at: float
    """When its current advertisement was parsed, on the discovery's clock (monotonic seconds)."""


def instance_name(aura_id: AuraID) -> str:
    """The full DNS-SD service name a node with ``aura_id`` registers."""
    return f"{aura_id}{_SUFFIX}"


def instance_aura_id(name: str) -> AuraID:
    """The AuraID in a full service name ``<AuraID>._auralink._udp.local.``.

    DNS names compare case-insensitively (RFC 6762 section 16), so any letter case is accepted.
    Raises :class:`InvalidAdvertisement` with reason ``name`` otherwise.
    """
    if not name.lower().endswith(_SUFFIX):
        raise InvalidAdvertisement(f"{name!r} is not a service of type {SERVICE_TYPE}", "name")
    label = name[: -len(_SUFFIX)]
    try:
        aura_id = AuraID.parse(label)
    except IdentityError as exc:
        raise InvalidAdvertisement(f"instance name {label!r} is not an AuraID: {exc}", "name") from exc
    if label.lower() != str(aura_id):
        raise InvalidAdvertisement(f"instance name {label!r} is not an AuraID in canonical form", "name")
    return aura_id


def service_properties(aura_id: AuraID, handle: str | None) -> dict[bytes, bytes]:
    """The TXT properties a node announces: ``id``, ``v`` and, with a handle, ``h``."""
    properties = {b"id": str(aura_id).encode("ascii"), b"v": str(TXT_VERSION).encode("ascii")}
    if handle is not None:
        properties[b"h"] = parse_handle(handle).encode("ascii")
    return properties


def _first_occurrences(properties: Mapping[bytes, bytes | None]) -> dict[bytes, bytes | None]:
    """Keys lower-cased (RFC 6763 section 6.4: keys are case-insensitive; the first one counts)."""
    folded: dict[bytes, bytes | None] = {}
    for key, value in properties.items():
        folded.setdefault(key.lower(), value)
    return folded


def _text(value: bytes | None, key: str, reason: str) -> str:
    if value is None:
        raise InvalidAdvertisement(f"TXT key {key!r} is missing or has no value", reason)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidAdvertisement(f"TXT {key!r} is not UTF-8", reason) from exc


def _dialable(host: str) -> Address | None:
    """``host`` as an address to dial, None if it cannot be dialled; raises on a non-IP."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidAdvertisement(f"advertised address {host!r} is not an IP address", "address") from exc
    if ip.is_unspecified or ip.is_multicast or (ip.version == 6 and ip.is_link_local):
        return None  # a link-local IPv6 address needs a zone, which mDNS does not carry
    return Address(str(ip), 0)


def parse_service(
    name: str,
    properties: Mapping[bytes, bytes | None],
    addresses: Sequence[str],
    port: int | None,
    now: float,
) -> MdnsPeer:
    """Parse one resolved DNS-SD service into an :class:`MdnsPeer`; pure, for any input.

    ``name`` is the full service name, ``properties`` the TXT key/value pairs as zeroconf gives
    them (a key without ``=`` has the value None), ``addresses`` the IP literals of its A/AAAA
    records, ``port`` its SRV port. Raises :class:`InvalidAdvertisement` (a
    :class:`~auralink.errors.RemoteProtocolError`) with a ``reason`` on anything else.
    """
    aura_id = instance_aura_id(name)
    txt = _first_occurrences(properties)
    try:
        txt_id = AuraID.parse(_text(txt.get(b"id"), "id", "id"))
    except IdentityError as exc:
        raise InvalidAdvertisement(f"TXT 'id' is not an AuraID: {exc}", "id") from exc
    if txt_id != aura_id:
        raise InvalidAdvertisement(
            f"TXT 'id' {txt_id.short()}... differs from the instance name {aura_id.short()}...", "id_mismatch"
        )
    if txt.get(b"v") != str(TXT_VERSION).encode("ascii"):
        raise InvalidAdvertisement(f"TXT 'v' is {txt.get(b'v')!r}, this build reads version {TXT_VERSION}", "version")
    handle: str | None = None
    if b"h" in txt:
        try:
            handle = parse_handle(_text(txt[b"h"], "h", "handle"))
        except IdentityError as exc:
            raise InvalidAdvertisement(f"TXT 'h' is not a handle: {exc}", "handle") from exc
    if port is None or not 0 < port <= 0xFFFF:
        raise InvalidAdvertisement(f"SRV port {port!r} is not a port from 1 to 65535", "port")
    if len(addresses) > MAX_ADDRESSES:
        raise InvalidAdvertisement(
            f"{len(addresses)} addresses advertised, at most {MAX_ADDRESSES} allowed", "addresses"
        )
    hosts = [address.host for address in map(_dialable, addresses) if address is not None]
    if not hosts:
        raise InvalidAdvertisement(f"none of the advertised addresses {list(addresses)!r} can be dialled", "no_address")
    dialable = tuple(Address(host, port) for host in dict.fromkeys(hosts))
    return MdnsPeer(aura_id=aura_id, handle=handle, addresses=dialable, seen_at=now)


def _interface_ips(interfaces: Sequence[str]) -> list[str]:
    """The interface addresses in canonical form; raises :class:`ConfigError` naming the fix."""
    if not interfaces:
        raise ConfigError(
            "mDNS has no interface to multicast on: set `mdns_interfaces` to the IP addresses of the LAN "
            "interfaces to use, or turn LAN discovery off with `mdns = false`",
            _CONFIG_FIELD,
        )
    ips: list[str] = []
    for text in interfaces:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError as exc:
            raise ConfigError(f"mDNS interface {text!r} is not an IP address", _CONFIG_FIELD) from exc
        if ip.is_unspecified or ip.is_multicast:
            raise ConfigError(
                f"mDNS interface {text!r} is not the address of one interface; name each interface's address",
                _CONFIG_FIELD,
            )
        if ip.version == 6 and ip.is_loopback:
            raise ConfigError(
                "mDNS does not work on the IPv6 loopback ::1 (zeroconf sends nothing there); use 127.0.0.1",
                _CONFIG_FIELD,
            )
        _check_local(ip)
        ips.append(str(ip))
    return list(dict.fromkeys(ips))


def _check_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Raise :class:`ConfigError` unless ``ip`` belongs to this machine (a bind test).

    Checked before zeroconf opens anything: when an interface fails inside ``Zeroconf()``, its
    already open listen socket is left for the garbage collector to close.
    """
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError as exc:
        raise ConfigError(
            f"mDNS interface {ip} is not an address of this machine ({exc.strerror})", _CONFIG_FIELD
        ) from exc


PeerCallback = Callable[[MdnsPeer], None]
Predicate = Callable[[MdnsPeer], bool]


class MdnsDiscovery:
    """Announce this node on the LAN and collect the nodes that announce themselves.

    ``port`` is our UDP port (the SRV record). ``addresses`` are the addresses we listen on, with
    ``0.0.0.0`` and ``::`` already expanded: mDNS carries one port, so those on another port are
    left out, and so are those beyond the first :data:`MAX_ADDRESSES`. ``interfaces`` are the IP
    addresses of the interfaces to multicast on (not ``::1``, where zeroconf sends nothing).
    ``on_peer`` is called with every new peer and every peer whose handle or addresses changed,
    ``on_gone`` with the AuraID of every peer that left (a goodbye packet or an expired record).
    ``clock`` gives ``seen_at`` (monotonic seconds).
    """

    def __init__(
        self,
        aura_id: AuraID,
        *,
        port: int,
        addresses: Sequence[Address],
        interfaces: Sequence[str],
        handle: str | None,
        on_peer: PeerCallback | None = None,
        on_gone: Callable[[AuraID], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(port, int) or not 0 < port <= 0xFFFF:
            raise LocalProtocolError(f"mDNS advertises a port from 1 to 65535, not {port!r}")
        carried = [a.host for a in addresses if a.port == port and _dialable(a.host) is not None]
        hosts = list(dict.fromkeys(carried))[:MAX_ADDRESSES]
        if not hosts:
            raise LocalProtocolError(
                f"none of {', '.join(map(str, addresses)) or 'no addresses'} can be announced on port {port}: "
                "mDNS carries one port, and 0.0.0.0 and :: must be expanded to interface addresses first"
            )
        if len(hosts) < len(addresses):
            log.debug("mDNS announces %s of %s", hosts, [str(a) for a in addresses])
        self.aura_id = aura_id
        """Our AuraID: the instance name we register."""
        self.handle = None if handle is None else parse_handle(handle)
        """The handle we announce in TXT ``h``, canonical."""
        self.rejected: Counter[str] = Counter()
        """Services ignored, by reason (see the module docstring)."""
        self._port = port
        self._hosts = hosts
        self._interfaces = tuple(interfaces)
        self._on_peer = on_peer
        self._on_gone = on_gone
        self._clock = clock
        self._peers: dict[AuraID, MdnsPeer] = {}
        self._waiters: list[tuple[Predicate, asyncio.Future[MdnsPeer | None]]] = []
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._registered = False

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the sockets, browse, and register in the background (announced about 1.2 s later).

        Raises :class:`~auralink.errors.ConfigError` (``field="mdns_interfaces"``) if
        ``interfaces`` is empty or one of them cannot be used.
        """
        if self._zeroconf is not None:
            raise LocalProtocolError("MdnsDiscovery is already started")
        interfaces = _interface_ips(self._interfaces)
        try:
            zeroconf = Zeroconf(interfaces=list(interfaces), use_asyncio=True)
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot open mDNS sockets on {', '.join(interfaces)}: {exc}", _CONFIG_FIELD) from exc
        self._zeroconf = AsyncZeroconf(zc=zeroconf)
        try:
            await zeroconf.async_wait_for_start()
            if not zeroconf.engine.senders:
                raise ConfigError(
                    f"mDNS cannot multicast on {', '.join(interfaces)}: is each one an address of this machine?",
                    _CONFIG_FIELD,
                )
            self._tasks = asyncio.TaskGroup()
            await self._tasks.__aenter__()
            self._browser = AsyncServiceBrowser(zeroconf, [SERVICE_TYPE], handlers=[self._on_state_change])
            self._spawn(self._register(self._zeroconf))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Cancel every task, send goodbyes, close every socket; safe to call twice."""
        zeroconf, self._zeroconf = self._zeroconf, None
        browser, self._browser = self._browser, None
        tasks, self._tasks = self._tasks, None
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        try:
            if browser is not None:
                await browser.async_cancel()
            if tasks is not None:
                for task in list(self._background):
                    task.cancel()
                await tasks.__aexit__(None, None, None)
        finally:
            if zeroconf is not None:
                await zeroconf.async_close()
            self._peers.clear()
            self._resolving.clear()
            self._registered = False

    async def __aenter__(self) -> MdnsDiscovery:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def registered(self) -> bool:
        """True once our service passed probing and is being announced."""
        return self._registered

    # -- queries ------------------------------------------------------------------------------
    def peers(self) -> list[MdnsPeer]:
        """Every peer announced on the LAN now, in the order first seen."""
        return list(self._peers.values())

    def find(self, aura_id: AuraID | None = None, handle: str | None = None) -> MdnsPeer | None:
        """The peer with this AuraID and/or handle, or None; with a handle, the most recently seen.

        A handle seen over mDNS is only a claim: several peers may announce the same one. Raises
        :class:`~auralink.errors.InvalidHandle` for a malformed ``handle``.
        """
        if aura_id is None and handle is None:
            raise LocalProtocolError("find() needs an aura_id, a handle or both")
        wanted = None if handle is None else parse_handle(handle)
        found = [
            peer
            for peer in self._peers.values()
            if (aura_id is None or peer.aura_id == aura_id) and (wanted is None or peer.handle == wanted)
        ]
        return max(found, key=lambda peer: peer.seen_at, default=None)

    async def wait_for(self, predicate: Predicate, timeout: float) -> MdnsPeer | None:
        """The first peer, known now or announced within ``timeout`` seconds, that ``predicate`` accepts.

        Returns None on timeout or when discovery stops. Event-driven: ``predicate`` runs once for
        each known peer, then for each new or changed one; if it raises, so does this call.
        """
        for peer in list(self._peers.values()):
            if predicate(peer):
                return peer
        waiter: asyncio.Future[MdnsPeer | None] = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return None
        finally:
            self._waiters.remove(entry)

    # -- background tasks ---------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tasks is not None, "not started"
        task = self._tasks.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _register(self, zeroconf: AsyncZeroconf) -> None:
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            instance_name(self.aura_id),
            port=self._port,
            properties=service_properties(self.aura_id, self.handle),
            server=f"{self.aura_id}.local.",
            parsed_addresses=self._hosts,
        )
        try:
            announced = await zeroconf.async_register_service(info)
        except NonUniqueNameException:
            log.warning("another mDNS responder announces our AuraID %s; we are not announced", self.aura_id.short())
            return
        except NotRunningException:
            return
        self._registered = True
        log.debug("mDNS: announcing %s on port %d at %s", self.aura_id.short(), self._port, ", ".join(self._hosts))
        await announced

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        try:
            complete = await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS)
        except NotRunningException:
            return
        finally:
            if self._resolving.get(name) is asyncio.current_task():
                del self._resolving[name]
        if complete:
            self._service_resolved(info)
        else:
            self._reject(name, "unresolved", "its SRV, TXT or address records did not arrive")

    # -- the browser's callback (on the event loop; never raises) ---------------------------
    def _on_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        try:
            aura_id = instance_aura_id(name)
        except InvalidAdvertisement as exc:
            if state_change is not ServiceStateChange.Removed:
                self._reject(name, exc.reason, str(exc))
            return
        if state_change is ServiceStateChange.Removed:
            self._forget(name, aura_id)
            return
        if aura_id == self.aura_id:
            self.rejected["self"] += 1
            return
        info = AsyncServiceInfo(service_type, name)
        if info.load_from_cache(zeroconf):
            self._service_resolved(info)
        elif name not in self._resolving and self._tasks is not None:
            if len(self._resolving) >= MAX_RESOLVING:
                self._reject(name, "busy", f"{MAX_RESOLVING} services are being resolved already")
                return
            self._resolving[name] = self._spawn(self._resolve(zeroconf, service_type, name))

    def _service_resolved(self, info: AsyncServiceInfo) -> None:
        """Parse a complete service and remember it (or forget it, if it became invalid)."""
        try:
            peer = parse_service(info.name, info.properties, info.parsed_addresses(), info.port, self._clock())
        except InvalidAdvertisement as exc:
            self._reject(info.name, exc.reason, str(exc))
            self._drop(info.name)
            return
        if peer.aura_id == self.aura_id:
            self.rejected["self"] += 1
            return
        old = self._peers.get(peer.aura_id)
        if old is None and len(self._peers) >= MAX_PEERS:
            self._reject(info.name, "full", f"{MAX_PEERS} peers are known already")
            return
        self._peers[peer.aura_id] = peer
        if old is not None and (old.handle, old.addresses) == (peer.handle, peer.addresses):
            return
        log.debug("mDNS: %s at %s", peer.aura_id.short(), ", ".join(map(str, peer.addresses)))
        self._announce(peer)

    def _announce(self, peer: MdnsPeer) -> None:
        for predicate, waiter in list(self._waiters):
            if waiter.done():
                continue
            try:
                accepted = predicate(peer)
            except Exception as exc:  # the caller's bug: raised by its wait_for, not into zeroconf
                waiter.set_exception(exc)
                continue
            if accepted:
                waiter.set_result(peer)
        if self._on_peer is not None:
            self._call(self._on_peer, peer)

    def _call(self, callback: Callable[[Any], None], argument: object) -> None:
        try:
            callback(argument)
        except Exception as exc:  # reported like an exception in any loop callback, not swallowed
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"exception in mDNS callback {callback!r}", "exception": exc}
            )

    def _drop(self, name: str) -> None:
        try:
            aura_id = instance_aura_id(name)
        except InvalidAdvertisement:
            return
        self._forget(name, aura_id)

    def _forget(self, name: str, aura_id: AuraID) -> None:
        resolving = self._resolving.pop(name, None)
        if resolving is not None:
            resolving.cancel()
        if self._peers.pop(aura_id, None) is not None:
            log.debug("mDNS: %s left", aura_id.short())
            if self._on_gone is not None:
                self._call(self._on_gone, aura_id)

    def _reject(self, name: str, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        log.debug("mDNS: ignoring %r (%s): %s", name, reason, detail)

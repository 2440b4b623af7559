"""The TURN server core (RFC 8656, UDP allocations): allocations, permissions, channels, quotas.

Theory of operation
-------------------
:class:`TurnServer` is a sans-I/O core in the manner of aioquic's ``QuicConnection``. It never
opens a socket or reads a clock: the adapter (:mod:`auralink_node.turn.server`) feeds it

* :meth:`TurnServer.datagram_received` for every datagram a client sends to the TURN port,
* :meth:`TurnServer.peer_datagram_received` for every datagram a peer sends to a relayed port,
* :meth:`TurnServer.handle_timer` when :meth:`TurnServer.get_timer` says an allocation expires,

each with ``now`` (monotonic seconds), and the core answers through the :class:`TurnIO` it was
given: ``send`` from the TURN port, ``relay`` from a relayed port, and ``open_relay`` /
``close_relay`` to bind and release relayed ports (ephemeral ports on the relay's address). Unix
time, which credentials expire in, is ``epoch + now``. STUN messages are parsed and built with
aioice's codec (``aioice.stun``), the one aiortc's TURN client uses.

What a client can do (RFC 8656 section numbers):

* **Allocate** (7): with ``REQUESTED-TRANSPORT`` UDP, after the long-term credential challenge
  (RFC 8489 section 9.2): a request without MESSAGE-INTEGRITY gets 401 with REALM and NONCE;
  the retry is checked against the key derived from its username
  (:mod:`auralink_node.turn.credentials`). A username whose expiry has passed cannot open an
  allocation (401). The allocation is keyed by the client's address (the 5-tuple, since there
  is one server socket), gets a fresh relayed port and lives ``LIFETIME`` seconds (600 by
  default, at most 3600). A retransmitted Allocate gets the same answer; a new one on the same
  address gets 437.
* **Refresh** (8): a new lifetime, or ``LIFETIME 0`` to delete. Requests on an allocation must
  use its username (441). A username that expired *after* the allocation was made keeps
  working for that allocation: the credentials gate admission, and a call outliving them must
  not lose its media. A ban does end it (403 at the next request).
* **CreatePermission** (9) and **ChannelBind** (11, 12): permissions are per peer IP and last
  300 s; channels (0x4000-0x4FFF) bind one peer address for 600 s. A ChannelBind also installs
  the permission for its peer, for the channel's lifetime rather than 300 s: aioice refreshes
  channels only every 500 s and never sends CreatePermission, so a strict server would silently
  drop its media between minutes 5 and 8 and 1/3.
* **Send/Data indications and ChannelData** (11, 12.5): data from the client to a permitted peer
  leaves the relayed port; data from a permitted peer comes back as ChannelData if a channel is
  bound to its address, else as a Data indication. Data from anyone else is dropped.

Peer addresses are refused with 403 when they are unspecified, multicast, broadcast, link-local,
loopback (unless :attr:`TurnConfig.allow_loopback`, for tests on one machine) or in
:attr:`TurnConfig.denied_networks`; addresses in ``forbidden_peers`` (the relay's own TURN and
mesh ports) never receive relayed data. Private and public unicast addresses are allowed, and so
is the relay's own address: two clients behind symmetric NATs reach each other through their
two relayed ports on the relay's one public IP.

Quotas: at most :attr:`TurnConfig.max_allocations` in all (508) and
:attr:`TurnConfig.max_allocations_per_user` per AuraID (486); each allocation has
:attr:`TurnConfig.max_peers` permissions and channels (508), and one token bucket of
:attr:`TurnConfig.bytes_per_second` for its traffic in both directions (over it, packets are
dropped, as a router would). Nonces are stateless: ``hex(expiry) "-" HMAC(secret, expiry,
client address)``, stale (438) after :attr:`TurnConfig.nonce_lifetime` seconds.

Anything a client or peer sends, whatever the bytes, is answered or dropped: no input raises.
Not supported: TCP and TLS allocations, IPv6 relaying from an IPv4 server (and the reverse),
EVEN-PORT and RESERVATION-TOKEN, DONT-FRAGMENT (ignored), and 420 answers to unknown
comprehension-required attributes (aioice's parser drops unknown attributes before we see them).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import itertools
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aioice import stun

from auralink.errors import RemoteProtocolError
from auralink.identity import AuraID
from auralink_node.relay.server import TokenBucket
from auralink_node.turn.credentials import integrity_key, parse_username, password_for

__all__ = ["CHANNEL_MAX", "CHANNEL_MIN", "Addr", "TurnConfig", "TurnIO", "TurnServer"]

Addr = tuple[str, int]
"""A UDP address as asyncio gives it: ``(host, port)``."""

CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x4FFF
"""The channel numbers a client may bind (RFC 8656 section 12)."""
_UDP = 17
"""The protocol number REQUESTED-TRANSPORT carries in its first byte for UDP."""
_COOKIE = struct.pack("!I", stun.COOKIE)
_CHANNEL_HEADER = struct.Struct("!HH")
_CHANNEL_REUSE = 300.0
"""Seconds after a channel expires during which its number and peer stay tied (RFC 8656 section 12)."""
_PARSE_ERRORS = (ValueError, struct.error, IndexError)
"""What aioice's parser raises on bytes that are not a STUN message."""


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """The TURN server's limits and policy."""

    realm: str = "auralink"
    """The long-term credential realm (RFC 8489 section 9.2)."""
    default_lifetime: int = 600
    """Seconds an allocation lives when the client asks for less or nothing (RFC 8656: 10 minutes)."""
    max_lifetime: int = 3600
    """Most seconds one Allocate or Refresh grants (RFC 8656: 1 hour)."""
    permission_lifetime: int = 300
    """Seconds a CreatePermission lasts (RFC 8656: 5 minutes)."""
    channel_lifetime: int = 600
    """Seconds a ChannelBind lasts (RFC 8656: 10 minutes)."""
    nonce_lifetime: int = 600
    """Seconds before a nonce is stale (438) and the client must take a new one."""
    max_allocations: int = 1000
    """Allocations this server holds at once (508 beyond)."""
    max_allocations_per_user: int = 8
    """Allocations one AuraID may hold at once (486 beyond)."""
    max_peers: int = 64
    """Permissions, and channels, one allocation may hold at once (508 beyond)."""
    bytes_per_second: int = 2_500_000
    """Each allocation's traffic, both directions together (token bucket refill): 20 Mbit/s."""
    burst_bytes: int | None = None
    """Each allocation's bucket size; by default one second of :attr:`bytes_per_second` (at least 64 kB)."""
    allow_loopback: bool = False
    """Allow loopback peers (tests on one machine only: it would open the relay's own services)."""
    denied_networks: tuple[str, ...] = ("0.0.0.0/8", "169.254.0.0/16", "240.0.0.0/4", "fe80::/10")
    """Peer networks refused with 403, besides unspecified, loopback and multicast addresses."""


class TurnIO(Protocol):
    """What the core asks of its adapter."""

    def send(self, data: bytes, addr: Addr) -> None:
        """Send ``data`` to ``addr`` from the TURN port."""

    def relay(self, relayed: Addr, data: bytes, peer: Addr) -> None:
        """Send ``data`` to ``peer`` from the relayed port ``relayed``."""

    def open_relay(self) -> Addr | None:
        """Bind a new relayed port and return its address, or None if none can be had."""

    def close_relay(self, relayed: Addr) -> None:
        """Release the relayed port ``relayed``."""


@dataclass(slots=True)
class _Channel:
    peer: Addr
    expires: float


@dataclass(eq=False, slots=True)
class _Allocation:
    client: Addr
    relayed: Addr
    username: str
    user: AuraID
    key: bytes
    transaction_id: bytes
    expires: float
    bucket: TokenBucket
    permissions: dict[str, float] = field(default_factory=dict)
    channels: dict[int, _Channel] = field(default_factory=dict)
    by_peer: dict[Addr, int] = field(default_factory=dict)
    bytes_to_peers: int = 0
    bytes_to_client: int = 0


@dataclass(frozen=True, slots=True)
class _Auth:
    username: str
    user: AuraID
    expires_at: int
    key: bytes


class TurnServer:
    """The allocations of one TURN server, and the relaying between clients and peers."""

    def __init__(
        self,
        config: TurnConfig,
        secret: bytes,
        io: TurnIO,
        *,
        epoch: float,
        banned: Callable[[AuraID], bool] | None = None,
        forbidden_peers: frozenset[Addr] = frozenset(),
    ) -> None:
        """``secret`` signs nonces and passwords; Unix time is ``epoch + now``; ``banned`` users get 403."""
        self.config = config
        self._secret = secret
        self._io = io
        self._epoch = epoch
        self._banned = banned
        self._forbidden = forbidden_peers
        self._denied = tuple(ipaddress.ip_network(n) for n in config.denied_networks)
        self._allocations: dict[Addr, _Allocation] = {}
        self._by_relayed: dict[Addr, _Allocation] = {}
        self._per_user: Counter[AuraID] = Counter()
        self._timers: list[tuple[float, int, Addr]] = []
        self._order = itertools.count()
        self._indications = itertools.count()
        self.stats: Counter[str] = Counter()
        """Events by kind: ``allocations_created``, ``bytes_to_peers``, ``dropped_quota``... (see the docs)."""

    # -- inspection ------------------------------------------------------------------------
    @property
    def allocation_count(self) -> int:
        """Allocations held now."""
        return len(self._allocations)

    def allocation(self, client: Addr) -> dict[str, Any] | None:
        """What the server holds for ``client``: relayed address, user, expiry, peers (for tests and status)."""
        alloc = self._allocations.get(client)
        if alloc is None:
            return None
        return {
            "relayed": alloc.relayed,
            "user": alloc.user,
            "expires": alloc.expires,
            "permissions": dict(alloc.permissions),
            "channels": {number: (c.peer, c.expires) for number, c in alloc.channels.items()},
            "bytes_to_peers": alloc.bytes_to_peers,
            "bytes_to_client": alloc.bytes_to_client,
        }

    # -- input -----------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Addr, now: float) -> None:
        """A datagram from ``addr`` on the TURN port: a STUN message or ChannelData."""
        if len(data) < 4:
            self.stats["dropped_malformed"] += 1
            return
        first = data[0]
        if 0x40 <= first <= 0x4F:
            self._client_channel_data(data, addr, now)
        elif first < 0x40 and len(data) >= stun.HEADER_LENGTH and data[4:8] == _COOKIE:
            self._stun(data, addr, now)
        else:
            self.stats["dropped_malformed"] += 1

    def peer_datagram_received(self, relayed: Addr, data: bytes, peer: Addr, now: float) -> None:
        """A datagram from ``peer`` on the relayed port ``relayed``: pass it to the client if permitted."""
        alloc = self._by_relayed.get(relayed)
        if alloc is None or alloc.expires <= now:
            self.stats["dropped_unknown"] += 1
            return
        if alloc.permissions.get(peer[0], -1.0) <= now:
            self.stats["dropped_no_permission"] += 1
            return
        if len(data) > 0xFFFF or not alloc.bucket.take(len(data), now):
            self.stats["dropped_quota"] += 1
            return
        number = alloc.by_peer.get(peer)
        channel = alloc.channels.get(number) if number is not None else None
        if number is not None and channel is not None and channel.expires > now:
            out = _CHANNEL_HEADER.pack(number, len(data)) + data
        else:
            indication = stun.Message(
                stun.Method.DATA,
                stun.Class.INDICATION,
                transaction_id=self._transaction_id(),
                attributes={"XOR-PEER-ADDRESS": peer, "DATA": data},
            )
            out = bytes(indication)
        alloc.bytes_to_client += len(data)
        self.stats["bytes_to_clients"] += len(data)
        self.stats["packets_to_clients"] += 1
        self._io.send(out, alloc.client)

    def get_timer(self) -> float | None:
        """When the next allocation expires (monotonic seconds), or None if there are none."""
        timers = self._timers
        while timers:
            expires, _, client = timers[0]
            alloc = self._allocations.get(client)
            if alloc is not None and alloc.expires == expires:
                return expires
            heapq.heappop(timers)  # refreshed or deleted since: a stale entry
        return None

    def handle_timer(self, now: float) -> None:
        """Delete the allocations that have expired by ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            expires, _, client = heapq.heappop(timers)
            alloc = self._allocations.get(client)
            if alloc is not None and alloc.expires == expires:
                self._delete(alloc, "expired")

    def close(self) -> None:
        """Delete every allocation (the server is stopping)."""
        for alloc in list(self._allocations.values()):
            self._delete(alloc, "deleted")

    # -- STUN ------------------------------------------------------------------------------
    def _stun(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            message = stun.parse_message(data)
        except _PARSE_ERRORS:
            self.stats["dropped_malformed"] += 1
            return
        method, kind = message.message_method, message.message_class
        if kind == stun.Class.INDICATION:
            if method == stun.Method.SEND:
                self._send_indication(message, addr, now)
            else:
                self.stats["dropped_unknown"] += 1
            return
        if kind != stun.Class.REQUEST:
            self.stats["dropped_unknown"] += 1
            return
        if method == stun.Method.BINDING:  # plain STUN (RFC 8489): tell the client its address
            self._answer(message, addr, {"XOR-MAPPED-ADDRESS": addr})
            return
        handlers = {
            stun.Method.ALLOCATE: self._allocate,
            stun.Method.REFRESH: self._refresh,
            stun.Method.CREATE_PERMISSION: self._create_permission,
            stun.Method.CHANNEL_BIND: self._channel_bind,
        }
        handler = handlers.get(method)
        if handler is None:
            self._error(message, addr, 400, "Bad Request: method not supported")
            return
        auth = self._authenticate(message, addr, now)
        if auth is not None:
            handler(message, data, addr, auth, now)

    def _authenticate(self, message: stun.Message, addr: Addr, now: float) -> _Auth | None:
        """The request's credentials if they check out (RFC 8489 section 9.2.4), else answer and None."""
        attrs = message.attributes
        if "MESSAGE-INTEGRITY" not in attrs:
            self.stats["challenges"] += 1
            self._challenge(message, addr, now, 401, "Unauthenticated")
            return None
        username, realm, nonce = attrs.get("USERNAME"), attrs.get("REALM"), attrs.get("NONCE")
        if not isinstance(username, str) or not isinstance(realm, str) or not isinstance(nonce, bytes):
            self._error(message, addr, 400, "Bad Request: USERNAME, REALM and NONCE are needed")
            return None
        if not self._nonce_valid(nonce, addr, now):
            self.stats["stale_nonces"] += 1
            self._challenge(message, addr, now, 438, "Stale Nonce")
            return None
        key = integrity_key(username, self.config.realm, password_for(self._secret, username))
        if realm != self.config.realm or not message.check_message_integrity(key):
            self.stats["auth_failures"] += 1
            self._challenge(message, addr, now, 401, "Unauthenticated: wrong credentials")
            return None
        try:
            expires_at, user = parse_username(username)
        except RemoteProtocolError:  # only with our own secret: never issued, but never trusted
            self.stats["auth_failures"] += 1
            self._challenge(message, addr, now, 401, "Unauthenticated: not one of our usernames")
            return None
        if self._banned is not None and self._banned(user):
            self.stats["banned"] += 1
            alloc = self._allocations.get(addr)
            if alloc is not None and alloc.user == user:
                self._delete(alloc, "deleted")
            self._error(message, addr, 403, "Forbidden: banned by this relay", key)
            return None
        return _Auth(username, user, expires_at, key)

    def _live(self, addr: Addr, now: float) -> _Allocation | None:
        alloc = self._allocations.get(addr)
        if alloc is not None and alloc.expires <= now:
            self._delete(alloc, "expired")
            return None
        return alloc

    def _owned(self, message: stun.Message, addr: Addr, auth: _Auth, now: float) -> _Allocation | None:
        """The allocation of ``addr`` if ``auth`` may use it; else answer 437 or 441 and None."""
        alloc = self._live(addr, now)
        if alloc is None:
            self._error(message, addr, 437, "Allocation Mismatch: no allocation", auth.key)
            return None
        if alloc.username != auth.username:
            self._error(message, addr, 441, "Wrong Credentials: not this allocation's username", auth.key)
            return None
        return alloc

    def _allocate(self, message: stun.Message, data: bytes, addr: Addr, auth: _Auth, now: float) -> None:
        existing = self._live(addr, now)
        if existing is not None:
            if existing.transaction_id == message.transaction_id and existing.username == auth.username:
                self._allocated(message, existing, now)  # a retransmission: the same answer
            else:
                self._error(message, addr, 437, "Allocation Mismatch: this address has an allocation", auth.key)
            return
        if self._epoch + now > auth.expires_at:
            self.stats["expired_usernames"] += 1
            self._challenge(message, addr, now, 401, "Unauthenticated: these credentials expired; get new ones")
            return
        transport = message.attributes.get("REQUESTED-TRANSPORT")
        if not isinstance(transport, int):
            self._error(message, addr, 400, "Bad Request: REQUESTED-TRANSPORT is needed", auth.key)
            return
        if transport >> 24 != _UDP:
            self._error(message, addr, 442, "Unsupported Transport Protocol: UDP only", auth.key)
            return
        if len(self._allocations) >= self.config.max_allocations:
            self.stats["allocations_refused"] += 1
            self._error(message, addr, 508, "Insufficient Capacity", auth.key)
            return
        if self._per_user[auth.user] >= self.config.max_allocations_per_user:
            self.stats["allocations_refused"] += 1
            self._error(message, addr, 486, "Allocation Quota Reached", auth.key)
            return
        relayed = self._io.open_relay()
        if relayed is None:
            self.stats["allocations_refused"] += 1
            self._error(message, addr, 508, "Insufficient Capacity: no relay port", auth.key)
            return
        burst = self.config.burst_bytes or max(self.config.bytes_per_second, 65_536)
        alloc = _Allocation(
            client=addr,
            relayed=relayed,
            username=auth.username,
            user=auth.user,
            key=auth.key,
            transaction_id=message.transaction_id,
            expires=now + self._lifetime(message.attributes.get("LIFETIME")),
            bucket=TokenBucket(self.config.bytes_per_second, burst, now),
        )
        self._allocations[addr] = alloc
        self._by_relayed[relayed] = alloc
        self._per_user[auth.user] += 1
        self._schedule(alloc)
        self.stats["allocations_created"] += 1
        self._allocated(message, alloc, now)

    def _allocated(self, message: stun.Message, alloc: _Allocation, now: float) -> None:
        attributes = {
            "XOR-RELAYED-ADDRESS": alloc.relayed,
            "XOR-MAPPED-ADDRESS": alloc.client,
            "LIFETIME": max(0, int(alloc.expires - now)),
        }
        self._answer(message, alloc.client, attributes, alloc.key)

    def _refresh(self, message: stun.Message, data: bytes, addr: Addr, auth: _Auth, now: float) -> None:
        alloc = self._owned(message, addr, auth, now)
        if alloc is None:
            return
        requested = message.attributes.get("LIFETIME")
        if requested == 0:
            self._delete(alloc, "deleted")
            self._answer(message, addr, {"LIFETIME": 0}, auth.key)
            return
        alloc.expires = now + self._lifetime(requested)
        self._schedule(alloc)
        self._prune(alloc, now)
        self._answer(message, addr, {"LIFETIME": int(alloc.expires - now)}, auth.key)

    def _create_permission(self, message: stun.Message, data: bytes, addr: Addr, auth: _Auth, now: float) -> None:
        alloc = self._owned(message, addr, auth, now)
        if alloc is None:
            return
        try:
            peers = _peer_addresses(data, message.transaction_id)
        except _PARSE_ERRORS:
            peers = []
        if not peers:
            self._error(message, addr, 400, "Bad Request: XOR-PEER-ADDRESS is needed", auth.key)
            return
        if not all(self._peer_allowed(peer[0], alloc) for peer in peers):
            self.stats["forbidden_peers"] += 1
            self._error(message, addr, 403, "Forbidden: peer address not allowed", auth.key)
            return
        self._prune(alloc, now)
        new = {peer[0] for peer in peers} - alloc.permissions.keys()
        if len(alloc.permissions) + len(new) > self.config.max_peers:
            self._error(message, addr, 508, "Insufficient Capacity: too many permissions", auth.key)
            return
        for peer in peers:
            alloc.permissions[peer[0]] = max(alloc.permissions.get(peer[0], 0.0), now + self.config.permission_lifetime)
        self._answer(message, addr, {}, auth.key)

    def _channel_bind(self, message: stun.Message, data: bytes, addr: Addr, auth: _Auth, now: float) -> None:
        alloc = self._owned(message, addr, auth, now)
        if alloc is None:
            return
        number, peer = message.attributes.get("CHANNEL-NUMBER"), message.attributes.get("XOR-PEER-ADDRESS")
        if not isinstance(number, int) or not isinstance(peer, tuple):
            self._error(message, addr, 400, "Bad Request: CHANNEL-NUMBER and XOR-PEER-ADDRESS are needed", auth.key)
            return
        if not CHANNEL_MIN <= number <= CHANNEL_MAX:
            self._error(message, addr, 400, "Bad Request: channel number out of range", auth.key)
            return
        if not self._peer_allowed(peer[0], alloc):
            self.stats["forbidden_peers"] += 1
            self._error(message, addr, 403, "Forbidden: peer address not allowed", auth.key)
            return
        self._prune(alloc, now)
        bound = alloc.channels.get(number)
        if (bound is not None and bound.peer != peer) or alloc.by_peer.get(peer, number) != number:
            self._error(message, addr, 400, "Bad Request: channel or peer bound otherwise", auth.key)
            return
        if bound is None and (
            len(alloc.channels) >= self.config.max_peers
            or (peer[0] not in alloc.permissions and len(alloc.permissions) >= self.config.max_peers)
        ):
            self._error(message, addr, 508, "Insufficient Capacity: too many channels", auth.key)
            return
        expires = now + self.config.channel_lifetime
        alloc.channels[number] = _Channel(peer, expires)
        alloc.by_peer[peer] = number
        alloc.permissions[peer[0]] = max(alloc.permissions.get(peer[0], 0.0), expires)
        self._answer(message, addr, {}, auth.key)

    # -- data ------------------------------------------------------------------------------
    def _send_indication(self, message: stun.Message, addr: Addr, now: float) -> None:
        alloc = self._allocations.get(addr)
        peer, data = message.attributes.get("XOR-PEER-ADDRESS"), message.attributes.get("DATA")
        if alloc is None or alloc.expires <= now or not isinstance(peer, tuple) or not isinstance(data, bytes):
            self.stats["dropped_unknown"] += 1
            return
        if alloc.permissions.get(peer[0], -1.0) <= now:
            self.stats["dropped_no_permission"] += 1
            return
        self._to_peer(alloc, peer, data, now)

    def _client_channel_data(self, data: bytes, addr: Addr, now: float) -> None:
        number, length = _CHANNEL_HEADER.unpack_from(data)
        alloc = self._allocations.get(addr)
        channel = alloc.channels.get(number) if alloc is not None else None
        if alloc is None or channel is None or channel.expires <= now or alloc.expires <= now:
            self.stats["dropped_unknown"] += 1
            return
        if len(data) < 4 + length:  # RFC 8656 section 12.5: too short for its length
            self.stats["dropped_malformed"] += 1
            return
        self._to_peer(alloc, channel.peer, data[4 : 4 + length], now)

    def _to_peer(self, alloc: _Allocation, peer: Addr, data: bytes, now: float) -> None:
        if peer in self._forbidden:
            self.stats["dropped_forbidden"] += 1
            return
        if not alloc.bucket.take(len(data), now):
            self.stats["dropped_quota"] += 1
            return
        alloc.bytes_to_peers += len(data)
        self.stats["bytes_to_peers"] += len(data)
        self.stats["packets_to_peers"] += 1
        self._io.relay(alloc.relayed, data, peer)

    # -- helpers ---------------------------------------------------------------------------
    def _peer_allowed(self, host: str, alloc: _Allocation) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return False  # an IPv4 peer in disguise: ask for it as IPv4
        if ip.version != ipaddress.ip_address(alloc.relayed[0]).version:
            return False
        if ip.is_unspecified or ip.is_multicast:
            return False
        if ip.is_loopback:
            return self.config.allow_loopback
        return not any(ip in network for network in self._denied)

    def _lifetime(self, requested: object) -> int:
        """RFC 8656 section 7.2: the default if asked for less, the maximum if asked for more."""
        if not isinstance(requested, int):
            return self.config.default_lifetime
        return max(self.config.default_lifetime, min(requested, self.config.max_lifetime))

    def _schedule(self, alloc: _Allocation) -> None:
        heapq.heappush(self._timers, (alloc.expires, next(self._order), alloc.client))

    def _prune(self, alloc: _Allocation, now: float) -> None:
        """Forget expired permissions, and channels past their reuse delay."""
        for ip in [ip for ip, expires in alloc.permissions.items() if expires <= now]:
            del alloc.permissions[ip]
        for number in [n for n, c in alloc.channels.items() if c.expires + _CHANNEL_REUSE <= now]:
            del alloc.by_peer[alloc.channels.pop(number).peer]

    def _delete(self, alloc: _Allocation, why: str) -> None:
        if self._allocations.get(alloc.client) is not alloc:
            return
        del self._allocations[alloc.client]
        del self._by_relayed[alloc.relayed]
        self._per_user[alloc.user] -= 1
        if self._per_user[alloc.user] <= 0:
            del self._per_user[alloc.user]
        self.stats[f"allocations_{why}"] += 1
        self._io.close_relay(alloc.relayed)

    def _nonce(self, addr: Addr, now: float) -> bytes:
        expiry = f"{int(now) + self.config.nonce_lifetime:x}"
        return f"{expiry}-{self._nonce_mac(expiry, addr)}".encode()

    def _nonce_mac(self, expiry: str, addr: Addr) -> str:
        text = f"nonce|{expiry}|{addr[0]}|{addr[1]}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:24]

    def _nonce_valid(self, nonce: bytes, addr: Addr, now: float) -> bool:
        expiry, sep, mac = nonce.partition(b"-")
        if not sep or not 0 < len(expiry) <= 12 or not expiry.isalnum() or not expiry.isascii():
            return False
        text = expiry.decode()
        try:
            expires = int(text, 16)
        except ValueError:
            return False
        return hmac.compare_digest(mac, self._nonce_mac(text, addr).encode()) and expires > now

    def _transaction_id(self) -> bytes:
        counter = next(self._indications).to_bytes(8, "big")
        return hashlib.blake2b(counter, key=self._secret[:64], digest_size=12).digest()

    def _challenge(self, message: stun.Message, addr: Addr, now: float, code: int, reason: str) -> None:
        attributes = {"REALM": self.config.realm, "NONCE": self._nonce(addr, now)}
        self._error(message, addr, code, reason, extra=attributes)

    def _error(
        self,
        message: stun.Message,
        addr: Addr,
        code: int,
        reason: str,
        key: bytes | None = None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.stats[f"errors_{code}"] += 1
        attributes: dict[str, Any] = {"ERROR-CODE": (code, reason), **(extra or {})}
        self._send_message(message, stun.Class.ERROR, addr, attributes, key)

    def _answer(self, message: stun.Message, addr: Addr, attributes: dict[str, Any], key: bytes | None = None) -> None:
        self._send_message(message, stun.Class.RESPONSE, addr, attributes, key)

    def _send_message(
        self, message: stun.Message, kind: stun.Class, addr: Addr, attributes: dict[str, Any], key: bytes | None
    ) -> None:
        response = stun.Message(message.message_method, kind, message.transaction_id, attributes)
        if key is not None:
            response.add_message_integrity(key)  # and FINGERPRINT
        else:
            response.add_fingerprint()
        self._io.send(bytes(response), addr)


def _peer_addresses(data: bytes, transaction_id: bytes) -> list[Addr]:
    """Every XOR-PEER-ADDRESS before MESSAGE-INTEGRITY (aioice's parser keeps only the last one)."""
    peers: list[Addr] = []
    position = stun.HEADER_LENGTH
    while position + 4 <= len(data):
        kind, length = _CHANNEL_HEADER.unpack_from(data, position)
        if kind == 0x0008:  # MESSAGE-INTEGRITY: what follows is not authenticated
            break
        if kind == 0x0012:
            peers.append(stun.unpack_xor_address(data[position + 4 : position + 4 + length], transaction_id))
        position += 4 + length + stun.padding_length(length)
    return peers

"""A seeded, in-memory datagram network for multi-node tests, driven by explicit time.

Theory of operation
===================

Sans-I/O cores exchange datagrams as ``(data, addr)`` pairs and take ``now`` as an argument.
:class:`MemoryNetwork` is the wire between them in tests: nodes :meth:`~MemoryNetwork.attach` an
address (``(host, port)``, like a bound UDP socket), :meth:`~MemoryNetwork.send` datagrams at a
given ``now``, and collect the ones that have arrived by a later ``now``. Nothing happens between
calls: the network has no clock and no event loop of its own, so a test steps time by hand
(``now += TICK``, or jumps to :meth:`~MemoryNetwork.next_delivery_time`) exactly as aioquic's tests
step two connections.

Each datagram's fate is decided when it is sent, from the :class:`LinkConditions` of its directed
link (``set_link`` overrides, else the network-wide defaults given to the constructor):

1. A link that is ``down`` drops it (``stats.dropped_down``).
2. With probability ``loss`` it is dropped (``stats.dropped_loss``).
3. Otherwise it arrives at ``now + latency + U(0, jitter)``. Datagrams on one link keep their
   order: an arrival time is never earlier than that of the previous in-order datagram on the
   same link (jitter models queueing, not reordering).
4. With probability ``reorder`` it is instead held back by an extra ``U(0, 2 * latency + 1 ms)``
   and does not take part in the ordering of step 3, so later datagrams can overtake it. With
   ``reorder=0`` every link is strictly first-in, first-out.

Every :meth:`~MemoryNetwork.send` draws exactly four numbers from the network's own
``random.Random(seed)``, whatever the conditions, so a run is a pure function of the seed and the
sequence of calls, and changing one link's loss does not reshuffle the fate of every other
datagram. The module-level ``random`` functions are never used.

Two ways to take datagrams out; use one per test:

* :meth:`~MemoryNetwork.deliver` returns every datagram due at or before ``now`` as
  :class:`Delivery` records, in arrival order (ties broken by send order). The caller routes them
  (``nodes[d.dst].receive_datagram(d.data, d.src, now)``). Nothing is kept.
* :meth:`~MemoryNetwork.receive` does the same and files each delivery into the inbox of its
  destination address, then pops and returns the inbox of the address asked for as
  ``(data, src)`` pairs, like ``recvfrom``. Datagrams for other addresses wait in their inboxes
  for their own ``receive`` call. :meth:`~MemoryNetwork.detach` empties an address's inbox.

A datagram whose destination is not attached when it is delivered is dropped
(``stats.dropped_unreachable``), as UDP would. The network keeps no notion of "current time":
each call judges only by its own ``now``, so a test may send a burst and then walk through the
arrivals with ``deliver(network.next_delivery_time())``. Misuse raises
:class:`~auralink.errors.LocalProtocolError`: bad parameters (NaN or infinite times, negative
latency, loss outside ``[0, 1]``), sending from an address that is not attached, and attaching
an address twice.

Extension point: NAT kinds
--------------------------
NAT is not modelled yet. A later change adds it without changing how tests drive the network:
every datagram already passes through two seams, :meth:`MemoryNetwork._translate_outbound` (at
send time: the source address the rest of the network sees, or ``None`` to drop) and
:meth:`MemoryNetwork._translate_inbound` (at delivery: the attached address that receives it, or
``None`` when a NAT's filter drops it). Both are the identity today. NAT kinds (full cone,
address- and port-restricted, symmetric) become objects placed in front of private addresses,
for example ``attach(addr, behind=nat)``, that keep their mapping and filtering tables with
``now``-based expiry and are consulted from those two seams, with their own drop counter in
:class:`NetworkStats`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

from auralink.errors import LocalProtocolError

__all__ = ["HostPort", "Delivery", "LinkConditions", "MemoryNetwork", "NetworkStats"]

HostPort = tuple[str, int]
"""A ``(host, port)`` pair, as for a UDP socket."""

_REORDER_FLOOR = 0.001
"""Extra hold-back of a reordered datagram is ``U(0, 2 * latency + _REORDER_FLOOR)`` seconds."""


def _check_address(addr: HostPort, what: str = "address") -> HostPort:
    if (
        not isinstance(addr, tuple)
        or len(addr) != 2
        or not isinstance(addr[0], str)
        or not isinstance(addr[1], int)
        or isinstance(addr[1], bool)
        or not 0 <= addr[1] <= 0xFFFF
    ):
        raise LocalProtocolError(f"{what} must be a (host: str, port: 0..65535) tuple, not {addr!r}")
    return addr


def _check_time(now: float) -> float:
    if not isinstance(now, int | float) or not math.isfinite(now):
        raise LocalProtocolError(f"now must be a finite number of seconds, not {now!r}")
    return float(now)


@dataclass(frozen=True, slots=True)
class LinkConditions:
    """How one direction of a link treats datagrams."""

    latency: float = 0.0
    """Base one-way delay in seconds."""
    jitter: float = 0.0
    """Extra delay drawn uniformly from ``[0, jitter]`` seconds, without reordering."""
    loss: float = 0.0
    """Probability that a datagram is dropped."""
    reorder: float = 0.0
    """Probability that a datagram is held back so that later ones can overtake it."""
    down: bool = False
    """True drops every datagram, as an unplugged cable or a firewall would."""

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise LocalProtocolError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        for name in ("loss", "reorder"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise LocalProtocolError(f"{name} must be a probability in [0, 1], not {value!r}")
        if not isinstance(self.down, bool):
            raise LocalProtocolError(f"down must be a bool, not {self.down!r}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A datagram that reached its destination."""

    src: HostPort
    """The address the datagram came from, as the receiver sees it."""
    dst: HostPort
    """The attached address that received it."""
    data: bytes
    """The datagram's bytes, unchanged."""
    at: float
    """The time it arrived (never later than the ``now`` of the call that returned it)."""


@dataclass(frozen=True, slots=True)
class NetworkStats:
    """Counters since the network was created; ``sent`` equals the sum of the rest plus what is in flight."""

    sent: int = 0
    """Datagrams handed to :meth:`MemoryNetwork.send`."""
    delivered: int = 0
    """Datagrams that reached an attached address."""
    dropped_loss: int = 0
    """Datagrams dropped by random loss."""
    dropped_down: int = 0
    """Datagrams dropped because their link was down."""
    dropped_unreachable: int = 0
    """Datagrams whose destination was not attached when they arrived."""


class MemoryNetwork:
    """A deterministic in-memory datagram network with per-link latency, jitter, loss and reordering."""

    __slots__ = (
        "_attached",
        "_default",
        "_delivered",
        "_dropped_down",
        "_dropped_loss",
        "_dropped_unreachable",
        "_in_flight",
        "_inboxes",
        "_last_in_order",
        "_links",
        "_random",
        "_sent",
    )

    def __init__(
        self,
        seed: int,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        reorder: float = 0.0,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise LocalProtocolError(f"seed must be an int, not {seed!r}")
        self._default = LinkConditions(latency=latency, jitter=jitter, loss=loss, reorder=reorder)
        self._random = random.Random(seed)
        self._links: dict[tuple[HostPort, HostPort], LinkConditions] = {}
        self._attached: set[HostPort] = set()
        self._inboxes: dict[HostPort, deque[tuple[bytes, HostPort]]] = {}
        # Heap of (arrival time, send sequence number, src, dst, data); the sequence number is
        # unique, so ties in time resolve in send order and the tuples never compare further.
        self._in_flight: list[tuple[float, int, HostPort, HostPort, bytes]] = []
        self._last_in_order: dict[tuple[HostPort, HostPort], float] = {}
        self._sent = 0
        self._delivered = 0
        self._dropped_loss = 0
        self._dropped_down = 0
        self._dropped_unreachable = 0

    # -- topology ---------------------------------------------------------------------
    def attach(self, addr: HostPort) -> None:
        """Bind ``addr`` so that it can send and receive; an address can be attached once."""
        _check_address(addr)
        if addr in self._attached:
            raise LocalProtocolError(f"address {addr!r} is already attached")
        self._attached.add(addr)
        self._inboxes[addr] = deque()

    def detach(self, addr: HostPort) -> None:
        """Unbind ``addr``; its inbox is emptied and datagrams still in flight to it will be dropped."""
        _check_address(addr)
        if addr not in self._attached:
            raise LocalProtocolError(f"address {addr!r} is not attached")
        self._attached.remove(addr)
        del self._inboxes[addr]

    def is_attached(self, addr: HostPort) -> bool:
        """True while ``addr`` is attached."""
        return addr in self._attached

    def set_link(
        self,
        a: HostPort,
        b: HostPort,
        conditions: LinkConditions | None,
        *,
        symmetric: bool = True,
    ) -> None:
        """Override the conditions from ``a`` to ``b`` (and back, if ``symmetric``); ``None`` restores the defaults."""
        _check_address(a, "a")
        _check_address(b, "b")
        if conditions is not None and not isinstance(conditions, LinkConditions):
            raise LocalProtocolError(f"conditions must be LinkConditions or None, not {conditions!r}")
        pairs = [(a, b), (b, a)] if symmetric else [(a, b)]
        for pair in pairs:
            if conditions is None:
                self._links.pop(pair, None)
            else:
                self._links[pair] = conditions

    def link_conditions(self, src: HostPort, dst: HostPort) -> LinkConditions:
        """The conditions that apply to datagrams from ``src`` to ``dst``."""
        return self._links.get((src, dst), self._default)

    # -- datagrams --------------------------------------------------------------------
    def send(self, src: HostPort, dst: HostPort, data: bytes, now: float) -> None:
        """Hand a datagram to the network at time ``now``; its fate is decided here, from the seeded RNG."""
        now = _check_time(now)
        _check_address(src, "src")
        _check_address(dst, "dst")
        if src not in self._attached:
            raise LocalProtocolError(f"cannot send from {src!r}: attach() it first")
        payload = bytes(data)
        conditions = self.link_conditions(src, dst)
        # Always four draws per datagram, so that one link's conditions do not shift the others.
        rng = self._random
        loss_draw, jitter_draw, reorder_draw, holdback_draw = rng.random(), rng.random(), rng.random(), rng.random()
        self._sent += 1
        if conditions.down:
            self._dropped_down += 1
            return
        if loss_draw < conditions.loss:
            self._dropped_loss += 1
            return
        seen_src = self._translate_outbound(src, dst, now)
        if seen_src is None:  # pragma: no cover - no NAT kinds yet
            return
        at = now + conditions.latency + conditions.jitter * jitter_draw
        link = (src, dst)
        if reorder_draw < conditions.reorder:
            at += holdback_draw * (2 * conditions.latency + _REORDER_FLOOR)
        else:
            at = max(at, self._last_in_order.get(link, at))
            self._last_in_order[link] = at
        heapq.heappush(self._in_flight, (at, self._sent, seen_src, dst, payload))

    def next_delivery_time(self) -> float | None:
        """The arrival time of the earliest datagram in flight, or ``None`` when nothing is in flight."""
        return self._in_flight[0][0] if self._in_flight else None

    def deliver(self, now: float) -> list[Delivery]:
        """Return every datagram due at or before ``now``, in arrival order, and forget them."""
        now = _check_time(now)
        out: list[Delivery] = []
        while self._in_flight and self._in_flight[0][0] <= now:
            at, _, src, dst, data = heapq.heappop(self._in_flight)
            receiver = self._translate_inbound(src, dst, at)
            if receiver is None or receiver not in self._attached:
                self._dropped_unreachable += 1
                continue
            self._delivered += 1
            out.append(Delivery(src=src, dst=receiver, data=data, at=at))
        return out

    def receive(self, addr: HostPort, now: float) -> list[tuple[bytes, HostPort]]:
        """Deliver what is due into the inboxes, then pop and return ``addr``'s inbox as ``(data, src)`` pairs."""
        _check_address(addr)
        if addr not in self._attached:
            raise LocalProtocolError(f"cannot receive on {addr!r}: attach() it first")
        for delivery in self.deliver(now):
            self._inboxes[delivery.dst].append((delivery.data, delivery.src))
        inbox = self._inboxes[addr]
        out = list(inbox)
        inbox.clear()
        return out

    @property
    def stats(self) -> NetworkStats:
        """A snapshot of the counters."""
        return NetworkStats(
            sent=self._sent,
            delivered=self._delivered,
            dropped_loss=self._dropped_loss,
            dropped_down=self._dropped_down,
            dropped_unreachable=self._dropped_unreachable,
        )

    # -- internals --------------------------------------------------------------------
    def _translate_outbound(self, src: HostPort, dst: HostPort, now: float) -> HostPort | None:
        """NAT seam: the source address that ``dst`` will see, or ``None`` to drop (identity today)."""
        return src

    def _translate_inbound(self, src: HostPort, dst: HostPort, at: float) -> HostPort | None:
        """NAT seam: the attached address that receives a datagram for ``dst``, or ``None`` (identity today)."""
        return dst

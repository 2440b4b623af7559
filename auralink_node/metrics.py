"""The node's Prometheus metrics, in a registry of its own.

Theory of operation
-------------------
:class:`NodeMetrics` owns one :class:`prometheus_client.CollectorRegistry` and the metrics in it.
It never touches the library's global ``REGISTRY``, so two nodes in one process (tests, an app
with an embedded node) count separately and never clash over names. Services call the methods,
which are named after what happened (``connection_opened``, ``handshake_failed``...), and the
HTTP adapter that serves ``--metrics 127.0.0.1:PORT`` and ``/health`` calls :meth:`render` for
the response body and content type. Nothing here opens a socket.

Every label takes values from a closed set declared below (or, for ALPN protocol names, a
checked shape): a label fed from the network would let a peer create unbounded time series.
A value outside the set is a bug in the caller and raises
:class:`~auralink.errors.LocalProtocolError`. Label values of the closed sets are created up
front, so a scrape shows zeros instead of missing series.

Exported metrics (all prefixed ``auralink_``):

=========================================  =========  ===============================================
``connections_total{direction,result}``    counter    connection attempts by outcome
``connections_open``                       gauge      connections established and not yet closed
``handshake_failures_total{reason}``       counter    QUIC/TLS handshakes that failed, by reason
``bytes_total{direction}``                 counter    UDP payload bytes sent and received
``streams_opened_total{protocol}``         counter    streams opened, by ALPN protocol
``rtt_seconds``                            histogram  round-trip times, 0.1 ms to 2 s
``datagrams_dropped_total{reason}``        counter    datagrams dropped, by reason
``relay_packets_total{result}``            counter    packets our relay handled, by outcome
``relay_bytes_total``                      counter    bytes our relay forwarded
``info{aura_id,version}``                  info       this node's identity and software version
=========================================  =========  ===============================================
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Literal, get_args

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from auralink import __version__
from auralink.errors import LocalProtocolError
from auralink.identity.keys import AuraID

__all__ = [
    "CONNECTION_RESULTS",
    "DIRECTIONS",
    "DROP_REASONS",
    "HANDSHAKE_FAILURE_REASONS",
    "RTT_BUCKETS",
    "ConnectionResult",
    "Direction",
    "DropReason",
    "HandshakeFailureReason",
    "NodeMetrics",
    "RELAY_RESULTS",
    "RelayResult",
]

Direction = Literal["inbound", "outbound"]
"""Who opened a connection: the peer (inbound) or this node (outbound)."""

ConnectionResult = Literal["ok", "refused", "failed"]
"""How a connection attempt ended: established, refused by policy (ban, quota), or failed."""

HandshakeFailureReason = Literal["timeout", "tls", "identity_mismatch", "alpn", "version", "other"]
"""Why a handshake failed: no answer in time, a TLS error or alert, a certificate key that is not the
AuraID dialled or claimed, no application protocol in common, an unsupported wire version, or else."""

DropReason = Literal[
    "malformed",
    "too_large",
    "unknown_peer",
    "unknown_connection",
    "connection_limit",
    "retry_sent",
    "bad_retry_token",
    "undecryptable_initial",
    "rate_limited",
    "quota",
    "queue_full",
    "no_socket",
    "error",
    "other",
]
"""Why a datagram was dropped."""

RelayResult = Literal["forwarded", "quota", "peer_limit", "no_session"]
"""What our relay did with a packet: forwarded it, or dropped it over the sender's byte quota or
peer limit, or for want of a destination session."""

RELAY_RESULTS: tuple[str, ...] = get_args(RelayResult)
"""Every :data:`RelayResult`."""

DIRECTIONS: tuple[str, ...] = get_args(Direction)
"""Every :data:`Direction`."""
CONNECTION_RESULTS: tuple[str, ...] = get_args(ConnectionResult)
"""Every :data:`ConnectionResult`."""
HANDSHAKE_FAILURE_REASONS: tuple[str, ...] = get_args(HandshakeFailureReason)
"""Every :data:`HandshakeFailureReason`."""
DROP_REASONS: tuple[str, ...] = get_args(DropReason)
"""Every :data:`DropReason`."""

RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Histogram bucket bounds in seconds: loopback (0.1 ms) to a bad intercontinental relay path (2 s)."""

_PROTOCOL = re.compile(r"[a-z0-9][a-z0-9._/-]{0,63}")


def _member(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise LocalProtocolError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


class NodeMetrics:
    """The metrics of one node, in their own registry."""

    def __init__(self, aura_id: AuraID | str, version: str = __version__) -> None:
        """Create the metrics of the node ``aura_id`` running AuraLink ``version``."""
        node = str(aura_id) if isinstance(aura_id, AuraID) else str(AuraID.parse(aura_id))
        registry = CollectorRegistry(auto_describe=True)
        self._registry = registry
        self._lock = threading.Lock()
        self._open = 0
        self._connections = Counter(
            "auralink_connections",
            "Connection attempts, by who opened them and how they ended.",
            ("direction", "result"),
            registry=registry,
        )
        self._connections_open = Gauge(
            "auralink_connections_open", "Connections established and not yet closed.", registry=registry
        )
        self._handshake_failures = Counter(
            "auralink_handshake_failures", "Handshakes that failed, by reason.", ("reason",), registry=registry
        )
        self._bytes = Counter(
            "auralink_bytes", "UDP payload bytes, sent and received.", ("direction",), registry=registry
        )
        self._streams = Counter(
            "auralink_streams_opened", "Streams opened, by stream protocol.", ("protocol",), registry=registry
        )
        self._streams_refused = Counter(
            "auralink_streams_refused", "Incoming streams for protocols this node does not serve.", registry=registry
        )
        self._violations = Counter(
            "auralink_protocol_violations", "Connections closed because the peer broke a protocol.", registry=registry
        )
        self._rtt = Histogram(
            "auralink_rtt_seconds",
            "Round-trip times measured on paths to peers.",
            buckets=RTT_BUCKETS,
            registry=registry,
        )
        self._dropped = Counter(
            "auralink_datagrams_dropped", "Datagrams dropped, by reason.", ("reason",), registry=registry
        )
        Info("auralink", "This node's identity and software version.", registry=registry).info(
            {"aura_id": node, "version": version}
        )
        for direction in DIRECTIONS:
            for result in CONNECTION_RESULTS:
                self._connections.labels(direction=direction, result=result)
        for reason in HANDSHAKE_FAILURE_REASONS:
            self._handshake_failures.labels(reason=reason)
        for side in ("sent", "received"):
            self._bytes.labels(direction=side)
        for reason in DROP_REASONS:
            self._dropped.labels(reason=reason)
        # Label lookups cost microseconds: the per-packet counters keep their children.
        self._bytes_sent = self._bytes.labels(direction="sent")
        self._bytes_received = self._bytes.labels(direction="received")

    @property
    def registry(self) -> CollectorRegistry:
        """This node's registry (for an exporter that wants the collector rather than :meth:`render`)."""
        return self._registry

    # -- connections ---------------------------------------------------------------------------

    def connection_opened(self, direction: Direction) -> None:
        """A connection was established: count it as ``ok`` and add it to the open connections."""
        self._connections.labels(direction=_member(direction, DIRECTIONS, "direction"), result="ok").inc()
        with self._lock:
            self._open += 1
            self._connections_open.set(self._open)

    def connection_closed(self) -> None:
        """An established connection ended (closed or broken)."""
        with self._lock:
            if self._open == 0:
                raise LocalProtocolError("connection_closed() without a matching connection_opened()")
            self._open -= 1
            self._connections_open.set(self._open)

    def connection_refused(self, direction: Direction) -> None:
        """A connection attempt was refused by policy (a ban, a quota, a full table)."""
        self._connections.labels(direction=_member(direction, DIRECTIONS, "direction"), result="refused").inc()

    def connection_failed(self, direction: Direction) -> None:
        """A connection attempt failed (timeout, handshake failure, unreachable)."""
        self._connections.labels(direction=_member(direction, DIRECTIONS, "direction"), result="failed").inc()

    def handshake_failed(self, reason: HandshakeFailureReason) -> None:
        """A handshake failed for ``reason`` (count the attempt with :meth:`connection_failed` too)."""
        self._handshake_failures.labels(reason=_member(reason, HANDSHAKE_FAILURE_REASONS, "reason")).inc()

    # -- traffic -------------------------------------------------------------------------------

    def bytes_sent(self, count: int) -> None:
        """``count`` UDP payload bytes were sent."""
        self._bytes_sent.inc(_byte_count(count))

    def bytes_received(self, count: int) -> None:
        """``count`` UDP payload bytes were received."""
        self._bytes_received.inc(_byte_count(count))

    def stream_refused(self) -> None:
        """A peer asked for a stream protocol nobody serves here (not labelled: peers choose the name)."""
        self._streams_refused.inc()

    def protocol_violation(self) -> None:
        """A peer broke a protocol and its connection was closed."""
        self._violations.inc()

    def stream_opened(self, protocol: str) -> None:
        """A stream was opened for ``protocol`` (a stream protocol this node serves or asked for)."""
        if not isinstance(protocol, str) or not _PROTOCOL.fullmatch(protocol):
            raise LocalProtocolError(f"protocol {protocol!r} is not a protocol name like 'auralink/relay/1'")
        self._streams.labels(protocol=protocol).inc()

    def rtt_measured(self, seconds: float) -> None:
        """A round trip to a peer took ``seconds``."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise LocalProtocolError(f"an RTT is finite, non-negative seconds, not {seconds!r}")
        self._rtt.observe(seconds)

    def datagram_dropped(self, reason: DropReason) -> None:
        """A datagram was dropped for ``reason``."""
        self._dropped.labels(reason=_member(reason, DROP_REASONS, "reason")).inc()

    def watch_relay(self, stats: Mapping[str, int]) -> None:
        """Export our relay's counters (``stats``: packets by :data:`RelayResult`, and ``bytes``), read at scrape time.

        The relay counts into a plain mapping on its per-packet path; Prometheus reads it only
        when scraped, so forwarding a packet costs no metrics call.
        """
        self._registry.register(_RelayCollector(stats))

    # -- exposition ----------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its ``Content-Type``."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST


def _byte_count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise LocalProtocolError(f"a byte count is a non-negative integer, not {count!r}")
    return count


class _RelayCollector(Collector):
    """Our relay's packet and byte counters, read from its stats mapping when scraped."""

    def __init__(self, stats: Mapping[str, int]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "auralink_relay_packets", "Packets our relay handled, by outcome.", labels=["result"]
        )
        for result in RELAY_RESULTS:
            packets.add_metric([result], self._stats.get(result, 0))
        yield packets
        relayed = CounterMetricFamily("auralink_relay_bytes", "Bytes our relay forwarded.")
        relayed.add_metric([], self._stats.get("bytes", 0))
        yield relayed

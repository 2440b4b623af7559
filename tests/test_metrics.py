"""Node metrics: counters move, the exposition names them, and every node has its own registry."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from auralink import __version__
from auralink.errors import InvalidAuraID, LocalProtocolError
from auralink.identity import AuraID
from auralink_node.metrics import DROP_REASONS, HANDSHAKE_FAILURE_REASONS, NodeMetrics

ALICE, BOB = str(AuraID(bytes([1]) * 32)), str(AuraID(bytes([2]) * 32))


def samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels): what a scraper would see."""
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_connection_counters_and_open_gauge_move() -> None:
    metrics = NodeMetrics(ALICE)
    metrics.connection_opened("inbound")
    metrics.connection_opened("outbound")
    metrics.connection_refused("inbound")
    metrics.connection_failed("outbound")
    metrics.connection_failed("outbound")
    metrics.connection_closed()
    assert value(metrics, "auralink_connections_total", direction="inbound", result="ok") == 1
    assert value(metrics, "auralink_connections_total", direction="outbound", result="ok") == 1
    assert value(metrics, "auralink_connections_total", direction="inbound", result="refused") == 1
    assert value(metrics, "auralink_connections_total", direction="outbound", result="failed") == 2
    assert value(metrics, "auralink_connections_open") == 1


def test_traffic_handshakes_streams_and_drops_are_counted() -> None:
    metrics = NodeMetrics(ALICE)
    metrics.bytes_sent(1200)
    metrics.bytes_sent(300)
    metrics.bytes_received(42)
    metrics.handshake_failed("identity_mismatch")
    metrics.stream_opened("auralink/relay/1")
    metrics.datagram_dropped("rate_limited")
    assert value(metrics, "auralink_bytes_total", direction="sent") == 1500
    assert value(metrics, "auralink_bytes_total", direction="received") == 42
    assert value(metrics, "auralink_handshake_failures_total", reason="identity_mismatch") == 1
    assert value(metrics, "auralink_streams_opened_total", protocol="auralink/relay/1") == 1
    assert value(metrics, "auralink_datagrams_dropped_total", reason="rate_limited") == 1


def test_rtt_histogram_spans_a_tenth_of_a_millisecond_to_two_seconds() -> None:
    metrics = NodeMetrics(ALICE)
    for seconds in (0.00005, 0.02, 1.5, 3.0):
        metrics.rtt_measured(seconds)
    assert value(metrics, "auralink_rtt_seconds_bucket", le="0.0001") == 1
    assert value(metrics, "auralink_rtt_seconds_bucket", le="0.025") == 2
    assert value(metrics, "auralink_rtt_seconds_bucket", le="2.0") == 3
    assert value(metrics, "auralink_rtt_seconds_bucket", le="+Inf") == 4
    assert value(metrics, "auralink_rtt_seconds_count") == 4
    assert math.isclose(value(metrics, "auralink_rtt_seconds_sum"), 4.52005)


def test_render_names_every_metric_with_its_content_type() -> None:
    body, content_type = NodeMetrics(ALICE, version="9.9.9").render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in (
        "auralink_connections_total",
        "auralink_connections_open",
        "auralink_handshake_failures_total",
        "auralink_bytes_total",
        "auralink_streams_opened_total",
        "auralink_rtt_seconds",
        "auralink_datagrams_dropped_total",
    ):
        assert f"# TYPE {name} " in text, name
    assert f'auralink_info{{aura_id="{ALICE}",version="9.9.9"}} 1.0' in text


def test_closed_label_sets_are_present_at_zero_before_anything_happens() -> None:
    metrics = NodeMetrics(ALICE)
    for reason in HANDSHAKE_FAILURE_REASONS:
        assert value(metrics, "auralink_handshake_failures_total", reason=reason) == 0
    for reason in DROP_REASONS:
        assert value(metrics, "auralink_datagrams_dropped_total", reason=reason) == 0
    assert value(metrics, "auralink_connections_total", direction="inbound", result="refused") == 0


def test_two_nodes_count_separately_and_leave_the_global_registry_alone() -> None:
    alice, bob = NodeMetrics(ALICE), NodeMetrics(BOB)  # a shared registry would reject the duplicate names
    alice.bytes_sent(10)
    assert value(alice, "auralink_bytes_total", direction="sent") == 10
    assert value(bob, "auralink_bytes_total", direction="sent") == 0
    assert alice.registry is not bob.registry
    assert not [family.name for family in REGISTRY.collect() if family.name.startswith("auralink")]
    assert value(alice, "auralink_info", aura_id=ALICE, version=__version__) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.connection_opened("sideways"),
        lambda m: m.connection_refused("Inbound"),
        lambda m: m.handshake_failed("peer said so"),
        lambda m: m.datagram_dropped("because"),
        lambda m: m.stream_opened("Auralink/Relay/1"),
        lambda m: m.stream_opened(""),
        lambda m: m.stream_opened("x" * 65),
        lambda m: m.bytes_sent(-1),
        lambda m: m.bytes_received(1.5),
        lambda m: m.bytes_received(True),
        lambda m: m.rtt_measured(math.nan),
        lambda m: m.rtt_measured(-0.001),
        lambda m: m.connection_closed(),
    ],
    ids=[
        "direction",
        "direction-case",
        "handshake-reason",
        "drop-reason",
        "protocol-case",
        "protocol-empty",
        "protocol-long",
        "negative-bytes",
        "fractional-bytes",
        "bool-bytes",
        "nan-rtt",
        "negative-rtt",
        "close-without-open",
    ],
)
def test_invalid_labels_and_values_are_refused_without_counting(call: object) -> None:
    metrics = NodeMetrics(ALICE)
    before = samples(metrics)
    with pytest.raises(LocalProtocolError):
        call(metrics)  # type: ignore[operator]
    assert samples(metrics) == before


def test_the_node_identity_must_be_an_aura_id() -> None:
    with pytest.raises(InvalidAuraID):
        NodeMetrics("alice")

"""The testing kit: FakeClock and the seeded MemoryNetwork."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from auralink.errors import LocalProtocolError
from auralink.testing import Delivery, FakeClock, HostPort, LinkConditions, MemoryNetwork, NetworkStats

A: HostPort = ("10.0.0.1", 4000)
B: HostPort = ("10.0.0.2", 4000)
C: HostPort = ("10.0.0.3", 4000)


def make_network(seed: int = 1, **conditions: float) -> MemoryNetwork:
    network = MemoryNetwork(seed, **conditions)
    for addr in (A, B, C):
        network.attach(addr)
    return network


def send_numbered(network: MemoryNetwork, count: int, *, start: float = 0.0, step: float = 0.0001) -> None:
    """Send ``count`` datagrams from A to B whose bytes are their sequence numbers."""
    for i in range(count):
        network.send(A, B, i.to_bytes(4, "big"), now=start + i * step)


def drain(network: MemoryNetwork) -> list[Delivery]:
    """Deliver everything in flight by jumping from one arrival time to the next."""
    out: list[Delivery] = []
    while (at := network.next_delivery_time()) is not None:
        out.extend(network.deliver(at))
    return out


def sequence_numbers(deliveries: list[Delivery]) -> list[int]:
    return [int.from_bytes(d.data, "big") for d in deliveries]


# -- FakeClock ---------------------------------------------------------------------------------
def test_fake_clock_starts_at_zero_and_is_callable() -> None:
    clock = FakeClock()
    assert clock.now == 0.0
    assert clock() == 0.0


def test_fake_clock_advance_and_set() -> None:
    clock = FakeClock(start=10.0)
    assert clock.advance(0.5) == 10.5
    assert clock() == 10.5
    assert clock.advance(0) == 10.5
    assert clock.set(12.0) == 12.0
    assert clock.set(12.0) == 12.0
    assert clock.now == 12.0


@pytest.mark.parametrize("dt", [-0.001, math.nan, math.inf])
def test_fake_clock_rejects_bad_advance(dt: float) -> None:
    clock = FakeClock(5.0)
    with pytest.raises(LocalProtocolError):
        clock.advance(dt)
    assert clock.now == 5.0


@pytest.mark.parametrize("t", [4.999, math.nan, -math.inf])
def test_fake_clock_never_goes_back(t: float) -> None:
    clock = FakeClock(5.0)
    with pytest.raises(LocalProtocolError):
        clock.set(t)
    assert clock.now == 5.0


def test_fake_clock_rejects_non_finite_start() -> None:
    with pytest.raises(LocalProtocolError):
        FakeClock(math.nan)


# -- MemoryNetwork: basics ---------------------------------------------------------------------
def test_datagram_is_delivered_after_latency() -> None:
    network = make_network(latency=0.05)
    network.send(A, B, b"hello", now=1.0)
    assert network.next_delivery_time() == pytest.approx(1.05)
    assert network.deliver(1.0499) == []
    [delivery] = network.deliver(1.05)
    assert (delivery.src, delivery.dst, delivery.data) == (A, B, b"hello")
    assert delivery.at == pytest.approx(1.05)
    assert network.next_delivery_time() is None
    assert network.stats == NetworkStats(sent=1, delivered=1)


def test_latency_and_jitter_bound_the_arrival_time() -> None:
    network = make_network(seed=3, latency=0.02, jitter=0.01)
    sent_at = {}
    for i in range(500):
        now = i * 0.001
        network.send(A, B, i.to_bytes(4, "big"), now=now)
        sent_at[i] = now
        for delivery in network.deliver(now):
            assert delivery.at >= sent_at[int.from_bytes(delivery.data, "big")] + 0.02
    for delivery in drain(network):
        assert delivery.at >= sent_at[int.from_bytes(delivery.data, "big")] + 0.02
    assert network.stats.delivered == 500


def test_nothing_is_delivered_before_send_time_plus_latency() -> None:
    network = make_network(seed=9, latency=0.1, jitter=0.05, reorder=0.3)
    send_numbered(network, 200, step=0.002)
    now = 0.4
    delivered = []
    while network.next_delivery_time() is not None:
        for delivery in network.deliver(now):
            assert now >= delivery.at >= int.from_bytes(delivery.data, "big") * 0.002 + 0.1
            delivered.append(delivery)
        now += 0.01
    assert len(delivered) == 200


def test_same_seed_gives_same_deliveries() -> None:
    def run(seed: int) -> list[Delivery]:
        network = make_network(seed=seed, latency=0.03, jitter=0.02, loss=0.2, reorder=0.2)
        for i in range(300):
            network.send(A if i % 2 else C, B, i.to_bytes(2, "big"), now=i * 0.001)
        return drain(network)

    first = run(seed=42)
    assert first == run(seed=42)
    assert first != run(seed=43)


def test_loss_rate_is_about_right() -> None:
    network = make_network(seed=2024, latency=0.01, loss=0.1)
    send_numbered(network, 2000)
    delivered = drain(network)
    stats = network.stats
    assert stats.sent == 2000
    assert 150 <= stats.dropped_loss <= 250  # 200 expected; the band is about 3.5 standard deviations
    assert stats.delivered == len(delivered) == 2000 - stats.dropped_loss


@pytest.mark.parametrize(("loss", "delivered"), [(0.0, 100), (1.0, 0)])
def test_loss_extremes(loss: float, delivered: int) -> None:
    network = make_network(loss=loss)
    send_numbered(network, 100)
    assert len(drain(network)) == delivered


def test_no_reordering_without_reorder_even_with_jitter() -> None:
    network = make_network(seed=5, latency=0.02, jitter=0.05, reorder=0.0)
    send_numbered(network, 1000)
    deliveries = drain(network)
    assert sequence_numbers(deliveries) == list(range(1000))
    assert [d.at for d in deliveries] == sorted(d.at for d in deliveries)


def test_reordering_happens_with_reorder() -> None:
    network = make_network(seed=5, latency=0.02, reorder=0.1)
    send_numbered(network, 1000)
    numbers = sequence_numbers(drain(network))
    assert sorted(numbers) == list(range(1000))
    overtaken = sum(1 for earlier, later in itertools.pairwise(numbers) if later < earlier)
    assert overtaken > 10


def test_deliveries_come_in_arrival_order() -> None:
    network = make_network(seed=8, latency=0.02, jitter=0.02, reorder=0.5)
    send_numbered(network, 300)
    deliveries = network.deliver(10.0)
    assert len(deliveries) == 300
    assert [d.at for d in deliveries] == sorted(d.at for d in deliveries)
    assert all(d.at <= 10.0 for d in deliveries)


def test_link_down_drops_everything() -> None:
    network = make_network(latency=0.01)
    network.set_link(A, B, LinkConditions(down=True))
    send_numbered(network, 50)
    network.send(B, A, b"back", now=1.0)
    network.send(A, C, b"other link", now=1.0)
    assert [d.data for d in drain(network)] == [b"other link"]
    assert network.stats == NetworkStats(sent=52, delivered=1, dropped_down=51)


def test_one_way_link_override_and_reset() -> None:
    network = make_network(latency=0.01)
    network.set_link(A, B, LinkConditions(latency=0.5), symmetric=False)
    assert network.link_conditions(A, B).latency == 0.5
    assert network.link_conditions(B, A).latency == 0.01
    network.set_link(A, B, None)
    assert network.link_conditions(A, B) == network.link_conditions(B, A) == LinkConditions(latency=0.01)


def test_datagram_to_unattached_address_is_dropped() -> None:
    network = make_network(latency=0.01)
    network.send(A, ("10.9.9.9", 1), b"nobody", now=0.0)
    network.send(A, C, b"gone by then", now=0.0)
    network.detach(C)
    assert drain(network) == []
    assert network.stats == NetworkStats(sent=2, dropped_unreachable=2)


def test_receive_files_datagrams_into_inboxes() -> None:
    network = make_network(latency=0.01)
    network.send(A, B, b"for b", now=0.0)
    network.send(A, C, b"for c", now=0.0)
    network.send(C, B, b"for b too", now=0.001)
    assert network.receive(B, now=0.005) == []
    assert network.receive(B, now=0.02) == [(b"for b", A), (b"for b too", C)]
    assert network.receive(B, now=0.02) == []
    assert network.receive(C, now=0.02) == [(b"for c", A)]
    assert network.stats.delivered == 3


def test_stats_account_for_every_datagram() -> None:
    network = make_network(seed=11, latency=0.01, jitter=0.01, loss=0.3, reorder=0.1)
    network.set_link(A, C, LinkConditions(down=True))
    for i in range(600):
        network.send(A, [B, C, ("10.9.9.9", 9)][i % 3], b"x", now=i * 0.001)
    drain(network)
    stats = network.stats
    assert stats.sent == 600
    assert stats.sent == stats.delivered + stats.dropped_loss + stats.dropped_down + stats.dropped_unreachable
    assert stats.dropped_down == 200


# -- MemoryNetwork: misuse ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "conditions",
    [
        {"latency": -0.001},
        {"latency": math.nan},
        {"latency": math.inf},
        {"jitter": -1.0},
        {"loss": -0.1},
        {"loss": 1.1},
        {"loss": math.nan},
        {"reorder": 2.0},
        {"reorder": math.nan},
    ],
)
def test_bad_parameters_are_rejected(conditions: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        MemoryNetwork(0, **conditions)
    with pytest.raises(LocalProtocolError):
        LinkConditions(**conditions)


def test_attach_twice_is_rejected() -> None:
    network = make_network()
    with pytest.raises(LocalProtocolError):
        network.attach(A)
    network.detach(A)
    network.attach(A)
    assert network.is_attached(A)


@pytest.mark.parametrize("addr", [("host",), ("host", -1), ("host", 65536), (1, 2), ["host", 1], ("host", True)])
def test_bad_address_is_rejected(addr: HostPort) -> None:
    with pytest.raises(LocalProtocolError):
        MemoryNetwork(0).attach(addr)


def test_misuse_is_rejected() -> None:
    network = make_network()
    with pytest.raises(LocalProtocolError):
        network.send(("10.9.9.9", 1), A, b"not attached", now=0.0)
    with pytest.raises(LocalProtocolError):
        network.detach(("10.9.9.9", 1))
    with pytest.raises(LocalProtocolError):
        network.receive(("10.9.9.9", 1), now=0.0)
    with pytest.raises(LocalProtocolError):
        network.send(A, B, b"x", now=math.nan)
    with pytest.raises(LocalProtocolError):
        MemoryNetwork(seed=1.5)  # type: ignore[arg-type]


def test_runs_with_a_fake_clock() -> None:
    clock = FakeClock()
    network = make_network(seed=7, latency=0.025)
    network.send(A, B, b"ping", now=clock())
    clock.advance(0.02)
    assert network.receive(B, now=clock()) == []
    deadline = network.next_delivery_time()
    assert deadline is not None
    clock.set(deadline)
    assert network.receive(B, now=clock()) == [(b"ping", A)]


# -- public API --------------------------------------------------------------------------------

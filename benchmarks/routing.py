"""Route selection in a seeded, trace-driven simulation: the learned selector, the iroh-like baseline, an oracle.

Prints one JSON object on stdout and nothing else. Everything is seeded: the same command prints
the same numbers on any machine (only ``elapsed_s`` varies).

The world
=========
Peer B can be reached over 12 candidate paths (the paths of the route selector,
``auralink_node.routing``): its home Wi-Fi address over IPv4 (through a NAT) and over IPv6, its
LTE interface, and 9 relays. B reaches the relays over its Wi-Fi, so everything but the LTE path
shares the fate of B's access link. Every parameter below is drawn per seed from the ranges given,
from ``random.Random`` seeded with the seed; none was chosen to favour one selector.

* **Base RTTs.** Wi-Fi direct 25-60 ms; IPv6 0.9-1.15x the IPv4 one (another route); LTE 50-90 ms;
  relays 0.8-3.5x the direct RTT (A to relay to B; a well-placed relay beats the direct route
  now and then, as detour-routing studies find).
* **Noise.** Each RTT sample is the path's RTT plus exponential queueing noise whose standard
  deviation is the path's jitter: 4-10% of the RTT on Wi-Fi, 15-30% on LTE, 3-8% through relays;
  plus a slow AR(1) wander of a few percent.
* **Loss.** Base loss 0.1-0.5% (Wi-Fi, relays), 0.5-2% (LTE).
* **Diurnal drift.** The simulation starts at a random time of day; each path's RTT carries a
  queueing term of 5-25% of its base that follows the daily load curve (peak in the evening).
* **Regime shifts.** Route changes: on each path, about one per 45 minutes, the RTT's scale is
  redrawn (log-normal, sigma 0.2).
* **Outages.** Wi-Fi blips (about one per 20 min, median 3 s) take every path but LTE down. NAT
  rebinding (about one per 40 min) kills the IPv4 direct path until it is punched again (20-90 s).
  IPv6 firewall or route flaps (about one per hour, 5-30 s). LTE coverage dips (about one per
  15 min, median 5 s). Relay restarts (each relay about one per 1-6 h, 10-60 s).
* **Bad periods.** Wi-Fi interference (about one per 30 min, 1-5 min): +3-15% loss and double
  jitter on every Wi-Fi path. LTE bufferbloat (about one per 20 min, 0.5-3 min): +100-300 ms.
* **A relay that degrades.** One of the three fastest relays, from a random time in the first half
  of the run, ramps over 10 minutes to 2-3x its RTT and +3-10% loss, stays there 15-40 minutes,
  and recovers over 5 minutes.
* **Reputation.** Each relay's reputation, as given to the learned selector, is a noisy reading of
  its restart rate (standard deviation 0.1); it knows nothing of the coming degradation.

What the selectors see
======================
Traffic flows at 50 packets per second on the chosen path: every 0.1 s tick gives one RTT sample
and the count of acknowledged and lost packets, if the path is up, and nothing if it is down.
Other paths are seen only through the probes each selector asks for; a probe is answered after one
RTT sample, unless the path is down or the probe is lost. Each selector calls ``select`` only when
its own ``Decision.next_timer`` is due, as an adapter would.

* ``learned``: :class:`~auralink_node.routing.LearnedSelector` with its defaults (probe budget 720
  per hour) and the relays' reputations.
* ``biased_rtt``: :class:`~auralink_node.routing.BiasedRttSelector` with its defaults, iroh's
  constants (trust 6.5 s, upgrade pings every 60 s).
* ``biased_rtt_fast``: the same baseline with a 1.5 s trust, the learned selector's silence
  ceiling: it shows how much of the difference is only the failover timer.
* ``oracle``: knows the true state and picks the path with the lowest effective latency every tick.

Metrics
=======
The *effective latency* of a path is the time to get a packet acknowledged, retransmissions
included: ``rtt + loss / (1 - loss) * (rtt + 4 * jitter)``. A tick's *regret* is the effective
latency of the chosen path minus the oracle's, on ticks where both are up; ``rtt_regret`` is the
same on RTT alone. *Outage seconds* are ticks on a down path while another path was up (ticks with
every path down are counted apart, as unavoidable). *Switches per hour* count changes of path.
*Failovers* are the stretches spent on a down path while another was up; their lengths are
reported, and how many ended within 2 s. The first 30 s (all paths unknown) are not scored.

Usage::

    python benchmarks/routing.py              # 16 seeds x 2 h of simulated time (about 2 minutes)
    python benchmarks/routing.py --quick      # 2 seeds x 30 min, a smoke run
    python benchmarks/routing.py --seeds 11 12 --hours 4
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any

from auralink.identity import AuraID
from auralink_node.routing import (
    BiasedRttConfig,
    BiasedRttSelector,
    LearnedSelector,
    PathContext,
    PathSelector,
)

TICK = 0.1
"""Simulation step, seconds."""
PACKETS_PER_TICK = 5
"""Traffic on the chosen path: 50 packets per second."""
WARMUP = 30.0
"""Seconds not scored at the start (every path is unknown)."""
FAILOVER_GOAL = 2.0
"""The product goal: traffic leaves a silent path within this many seconds."""
DAY = 86_400.0
MINUTE = 60.0
HOUR = 3600.0
RELAYS = 9


# ---------------------------------------------------------------------------------------------
# Traces


@dataclass
class PathTrace:
    """The true state of one path over the run."""

    name: str
    label: str
    access: str
    rtt: list[float] = field(default_factory=list)
    """Mean RTT per second."""
    jitter: list[float] = field(default_factory=list)
    """Standard deviation of the RTT samples, per second."""
    loss: list[float] = field(default_factory=list)
    """Loss rate per second."""
    outages: list[tuple[float, float]] = field(default_factory=list)
    """Down intervals [start, end), sorted and merged."""
    reputation: float | None = None
    """What the reputation book says (relays only)."""
    _starts: list[float] = field(default_factory=list)

    def finish(self) -> None:
        merged: list[tuple[float, float]] = []
        for start, end in sorted(self.outages):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self.outages = merged
        self._starts = [start for start, _ in merged]

    def up(self, t: float) -> bool:
        i = bisect.bisect_right(self._starts, t) - 1
        return i < 0 or t >= self.outages[i][1]

    def effective(self, second: int) -> float:
        rtt, loss = self.rtt[second], min(self.loss[second], 0.95)
        return rtt + loss / (1.0 - loss) * (rtt + 4.0 * self.jitter[second])


def _poisson(rng: Random, rate: float, horizon: float) -> list[float]:
    times, t = [], rng.expovariate(rate)
    while t < horizon:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def _lognormal(rng: Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _aura_id(seed: int, i: int) -> str:
    return str(AuraID(hashlib.sha256(b"routing-bench-relay-%d-%d" % (seed, i)).digest()))


class _TraceBuilder:
    """Draws one seed's world, one phenomenon per method, always in the same order."""

    def __init__(self, seed: int, horizon: float) -> None:
        self.rng = rng = Random(f"trace-{seed}")
        self.horizon = horizon
        self.seconds = int(horizon) + 2
        direct = rng.uniform(0.025, 0.060)
        # (name, label, access, base RTT, jitter fraction, base loss)
        self.spec: list[tuple[str, str, str, float, float, float]] = [
            ("direct:203.0.113.7:7700", "wifi-v4", "wifi", direct, rng.uniform(0.04, 0.10), rng.uniform(0.001, 0.005)),
            (
                "direct:[2001:db8:7::7]:7700",
                "wifi-v6",
                "wifi",
                direct * rng.uniform(0.9, 1.15),
                rng.uniform(0.04, 0.10),
                rng.uniform(0.001, 0.005),
            ),
            (
                "direct:198.51.100.44:7700",
                "lte",
                "lte",
                rng.uniform(0.050, 0.090),
                rng.uniform(0.15, 0.30),
                rng.uniform(0.005, 0.02),
            ),
        ]
        for i in range(RELAYS):
            base = direct * rng.uniform(0.8, 3.5)
            jitter, loss = rng.uniform(0.03, 0.08), rng.uniform(0.001, 0.005)
            self.spec.append((f"relay:{_aura_id(seed, i)}", f"relay-{i}", "wifi", base, jitter, loss))
        self.traces = [PathTrace(name, label, access) for name, label, access, *_ in self.spec]
        self.start_of_day = rng.uniform(0.0, DAY)
        self.events: dict[str, int] = {}
        n = len(self.traces)
        self.factor = [[1.0] * self.seconds for _ in range(n)]
        """Multiplicative RTT factor per path per second."""
        self.extra_rtt = [[0.0] * self.seconds for _ in range(n)]
        self.extra_loss = [[0.0] * self.seconds for _ in range(n)]
        self.jitter_factor = [[1.0] * self.seconds for _ in range(n)]
        self.wifi = [i for i, trace in enumerate(self.traces) if trace.access == "wifi"]
        self.lte = next(i for i, trace in enumerate(self.traces) if trace.label == "lte")
        self.relays = sorted(range(3, n), key=lambda i: self.spec[i][3])
        self.victim = self.relays[0]
        self.begin = 0.0

    def count(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    def window(self, start: float, length: float) -> range:
        return range(max(0, int(start)), min(self.seconds, int(start + length) + 1))

    def route_changes(self) -> None:
        """Regime shifts: about one per 45 minutes per path, the RTT's scale is redrawn."""
        for i in range(len(self.traces)):
            scale, last = 1.0, 0
            changes = _poisson(self.rng, 1 / (45 * MINUTE), self.horizon)
            for t in [*changes, float(self.seconds)]:
                for s in range(last, min(self.seconds, int(t))):
                    self.factor[i][s] *= scale
                scale, last = math.exp(self.rng.gauss(0.0, 0.2)), int(t)
            self.events["route_change"] = self.events.get("route_change", 0) + len(changes)

    def bad_periods(self) -> None:
        """Wi-Fi interference (loss and jitter on every Wi-Fi path) and LTE bufferbloat."""
        rng = self.rng
        for t in _poisson(rng, 1 / (30 * MINUTE), self.horizon):
            length, loss = rng.uniform(60.0, 300.0), rng.uniform(0.03, 0.15)
            for i in self.wifi:
                for s in self.window(t, length):
                    self.extra_loss[i][s] += loss
                    self.jitter_factor[i][s] *= 2.0
            self.count("wifi_interference")
        for t in _poisson(rng, 1 / (20 * MINUTE), self.horizon):
            length, bloat = rng.uniform(30.0, 180.0), rng.uniform(0.100, 0.300)
            for s in self.window(t, length):
                self.extra_rtt[self.lte][s] += bloat
            self.count("lte_bufferbloat")

    def degrading_relay(self) -> None:
        """One of the three fastest relays ramps up, stays bad for a while, and recovers."""
        rng = self.rng
        self.victim = victim = rng.choice(self.relays[:3])
        self.begin = begin = rng.uniform(0.0, 0.5) * self.horizon
        ramp, hold, recover = 10 * MINUTE, rng.uniform(15, 40) * MINUTE, 5 * MINUTE
        worst_rtt, worst_loss = rng.uniform(2.0, 3.0), rng.uniform(0.03, 0.10)
        for s in range(int(begin), min(self.seconds, int(begin + ramp + hold + recover) + 1)):
            if s < begin:
                continue
            if s < begin + ramp:
                level = (s - begin) / ramp
            elif s < begin + ramp + hold:
                level = 1.0
            else:
                level = max(0.0, 1.0 - (s - begin - ramp - hold) / recover)
            self.factor[victim][s] *= 1.0 + (worst_rtt - 1.0) * level
            self.extra_loss[victim][s] += worst_loss * level

    def outages(self) -> None:
        """Wi-Fi blips, NAT rebinding, IPv6 flaps, LTE dips, relay restarts; and the relays' reputations."""
        rng, traces, horizon = self.rng, self.traces, self.horizon
        for t in _poisson(rng, 1 / (20 * MINUTE), horizon):  # Wi-Fi blips: everything but LTE
            length = min(_lognormal(rng, 3.0, 0.8), 60.0)
            for i in self.wifi:
                traces[i].outages.append((t, t + length))
            self.count("wifi_blip")
        for t in _poisson(rng, 1 / (40 * MINUTE), horizon):  # NAT rebinding: the IPv4 direct path
            traces[0].outages.append((t, t + rng.uniform(20.0, 90.0)))
            self.count("nat_rebinding")
        for t in _poisson(rng, 1 / HOUR, horizon):  # IPv6 firewall or route flap
            traces[1].outages.append((t, t + rng.uniform(5.0, 30.0)))
            self.count("ipv6_flap")
        for t in _poisson(rng, 1 / (15 * MINUTE), horizon):  # LTE coverage dips
            traces[self.lte].outages.append((t, t + min(_lognormal(rng, 5.0, 0.8), 120.0)))
            self.count("lte_dip")
        for i in self.relays:  # relay restarts, each relay at its own rate; reputation reads the rate
            rate = 1.0 / (HOUR * math.exp(rng.uniform(0.0, math.log(6.0))))
            for t in _poisson(rng, rate, horizon):
                traces[i].outages.append((t, t + rng.uniform(10.0, 60.0)))
                self.count("relay_restart")
            reliability = math.log(rate * HOUR) / math.log(1 / 6.0)  # 0 at one restart an hour, 1 at one in 6 h
            traces[i].reputation = min(1.0, max(0.0, 0.3 + 0.6 * reliability + rng.gauss(0.0, 0.1)))

    def series(self) -> None:
        """Per-second RTT, jitter and loss: base x regime x diurnal load x slow wander, plus the bad periods."""
        rng = self.rng
        for i, (trace, (_, _, _, base, jitter, loss)) in enumerate(zip(self.traces, self.spec, strict=True)):
            amplitude, phase = rng.uniform(0.05, 0.25), rng.uniform(-0.5, 0.5)
            wander = 0.0
            for s in range(self.seconds):
                hour_of_day = ((self.start_of_day + s) % DAY) / HOUR
                load = 0.5 + 0.5 * math.cos(2 * math.pi * (hour_of_day - 20.0 - phase) / 24.0)  # peak ~20:00
                wander = 0.98 * wander + rng.gauss(0.0, 0.004)
                rtt = base * self.factor[i][s] * (1.0 + amplitude * load + wander) + self.extra_rtt[i][s]
                trace.rtt.append(max(rtt, 0.002))
                trace.jitter.append(rtt * jitter * self.jitter_factor[i][s])
                trace.loss.append(min(loss + self.extra_loss[i][s], 0.5))
            trace.finish()

    def summary(self) -> dict[str, Any]:
        traces = self.traces
        return {
            "events": dict(sorted(self.events.items())),
            "degrading_relay": traces[self.victim].label,
            "degradation_starts_s": round(self.begin, 1),
            "base_rtt_ms": {t.label: round(s[3] * 1000, 1) for t, s in zip(traces, self.spec, strict=True)},
            "relay_reputation": {t.label: round(t.reputation, 2) for t in traces if t.reputation is not None},
        }


def make_traces(seed: int, horizon: float) -> tuple[list[PathTrace], dict[str, Any]]:
    """The 12 paths of one seed, and a summary of the events drawn."""
    builder = _TraceBuilder(seed, horizon)
    builder.route_changes()
    builder.bad_periods()
    builder.degrading_relay()
    builder.outages()
    builder.series()
    return builder.traces, builder.summary()


# ---------------------------------------------------------------------------------------------
# Simulation


@dataclass
class Truth:
    """Per-tick ground truth shared by every selector of one seed."""

    ticks: int
    up: list[list[bool]]
    """up[path][tick]."""
    effective: list[list[float]]
    """Effective latency per path per second."""
    oracle: list[int | None]
    """The oracle's path index per tick (None when every path is down)."""


def ground_truth(traces: list[PathTrace], horizon: float) -> Truth:
    ticks = round(horizon / TICK)
    up = [[trace.up(k * TICK) for k in range(ticks)] for trace in traces]
    effective = [[trace.effective(s) for s in range(len(trace.rtt))] for trace in traces]
    oracle: list[int | None] = []
    for k in range(ticks):
        s = int(k * TICK)
        best, best_value = None, math.inf
        for i in range(len(traces)):
            if up[i][k] and effective[i][s] < best_value:
                best, best_value = i, effective[i][s]
        oracle.append(best)
    return Truth(ticks, up, effective, oracle)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _score_run(
    traces: list[PathTrace], truth: Truth, chosen: list[int | None], *, switches: int, probes: int, horizon: float
) -> dict[str, Any]:
    regrets, rtt_regrets, latencies = [], [], []
    outage_ticks = unavoidable_ticks = 0
    failovers: list[float] = []
    stuck_since: float | None = None
    first = int(WARMUP / TICK)
    for k in range(first, truth.ticks):
        s, path, best = int(k * TICK), chosen[k], truth.oracle[k]
        if best is None:
            unavoidable_ticks += 1
            continue
        if path is not None and truth.up[path][k]:
            regrets.append(truth.effective[path][s] - truth.effective[best][s])
            rtt_regrets.append(traces[path].rtt[s] - traces[best].rtt[s])
            latencies.append(truth.effective[path][s])
            if stuck_since is not None:
                failovers.append(k * TICK - stuck_since)
                stuck_since = None
        else:
            outage_ticks += 1
            if stuck_since is None:
                stuck_since = k * TICK
    scored_hours = (horizon - WARMUP) / HOUR
    return {
        "mean_regret_ms": round(statistics.fmean(regrets) * 1000, 3) if regrets else 0.0,
        "p95_regret_ms": round(_percentile(regrets, 0.95) * 1000, 3),
        "p99_regret_ms": round(_percentile(regrets, 0.99) * 1000, 3),
        "mean_rtt_regret_ms": round(statistics.fmean(rtt_regrets) * 1000, 3) if rtt_regrets else 0.0,
        "p95_rtt_regret_ms": round(_percentile(rtt_regrets, 0.95) * 1000, 3),
        "mean_latency_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else 0.0,
        "outage_s": round(outage_ticks * TICK, 1),
        "unavoidable_outage_s": round(unavoidable_ticks * TICK, 1),
        "switches_per_hour": round(switches / scored_hours, 2),
        "probes_per_hour": round(probes / scored_hours, 1),
        "failovers": len(failovers),
        "failover_p50_s": round(_percentile(failovers, 0.5), 2),
        "failover_max_s": round(max(failovers, default=0.0), 2),
        "failovers_within_2s": round(sum(f <= FAILOVER_GOAL + 1e-9 for f in failovers) / len(failovers), 3)
        if failovers
        else 1.0,
    }


def simulate(
    traces: list[PathTrace],
    truth: Truth,
    selector: PathSelector,
    *,
    seed: int,
    use_reputation: bool,
    horizon: float,
) -> dict[str, Any]:
    """Run one selector over the traces; return its metrics."""
    rng = Random(f"observations-{seed}")  # the same stream for every selector
    ctx = PathContext()
    index = {}
    for i, trace in enumerate(traces):
        name = ctx.add_path(trace.name, 0.0, reputation=trace.reputation if use_reputation else None)
        index[name] = i
    replies: list[tuple[float, int, str, float]] = []  # (time, sequence, path, rtt)
    sequence = 0
    timer = 0.0
    switches = 0
    reasons: dict[str, int] = {}
    chosen: list[int | None] = []
    for k in range(truth.ticks):
        now = k * TICK
        s = int(now)
        while replies and replies[0][0] <= now:
            at, _, path, rtt = heapq.heappop(replies)
            ctx.observe(path, at, rtt=rtt)
        current = ctx.current
        if current is not None:
            i = index[current]
            ctx.sent(current, now)
            if truth.up[i][k]:
                loss, rtt, jitter = traces[i].loss[s], traces[i].rtt[s], traces[i].jitter[s]
                lost = sum(rng.random() < loss for _ in range(PACKETS_PER_TICK))
                if lost < PACKETS_PER_TICK:
                    sample = max(0.3 * rtt, rtt + jitter * (rng.expovariate(1.0) - 1.0))
                    ctx.observe_packets(current, now, acked=PACKETS_PER_TICK - lost - 1, lost=lost)
                    ctx.observe(current, now, rtt=sample)
                else:
                    ctx.observe_packets(current, now, lost=lost)
            else:
                ctx.observe_packets(current, now, lost=PACKETS_PER_TICK)
        if now >= timer:
            decision = selector.select(ctx, now)
            timer = decision.next_timer
            if decision.switched and decision.previous is not None and now >= WARMUP:
                switches += 1
                reasons[decision.reason.value] = reasons.get(decision.reason.value, 0) + 1
            for path in decision.probes:
                i = index[path]
                if truth.up[i][k] and rng.random() >= traces[i].loss[s]:
                    rtt, jitter = traces[i].rtt[s], traces[i].jitter[s]
                    sample = max(0.3 * rtt, rtt + jitter * (rng.expovariate(1.0) - 1.0))
                    sequence += 1
                    heapq.heappush(replies, (now + sample, sequence, path, sample))
        chosen.append(None if ctx.current is None else index[ctx.current])
    probes = getattr(selector, "probes_requested", 0)
    metrics = _score_run(traces, truth, chosen, switches=switches, probes=probes, horizon=horizon)
    metrics["switches_by_reason"] = dict(sorted(reasons.items()))
    return metrics


def oracle_metrics(traces: list[PathTrace], truth: Truth, horizon: float) -> dict[str, Any]:
    switches = sum(
        1
        for k in range(int(WARMUP / TICK) + 1, truth.ticks)
        if truth.oracle[k] is not None and truth.oracle[k - 1] is not None and truth.oracle[k] != truth.oracle[k - 1]
    )
    return _score_run(traces, truth, truth.oracle, switches=switches, probes=0, horizon=horizon)


def _learned(seed: int) -> PathSelector:
    return LearnedSelector(Random(f"selector-{seed}"))


def _biased(seed: int) -> PathSelector:
    return BiasedRttSelector()


def _biased_fast(seed: int) -> PathSelector:
    return BiasedRttSelector(BiasedRttConfig(trust_duration=1.5))


SELECTORS: dict[str, tuple[Callable[[int], PathSelector], bool]] = {
    "learned": (_learned, True),
    "biased_rtt": (_biased, False),
    "biased_rtt_fast": (_biased_fast, False),
}
"""Name -> (selector for a seed, whether it gets the relays' reputations)."""


def run_seed(seed: int, horizon: float) -> dict[str, Any]:
    traces, summary = make_traces(seed, horizon)
    truth = ground_truth(traces, horizon)
    results = {
        name: simulate(traces, truth, factory(seed), seed=seed, use_reputation=reputation, horizon=horizon)
        for name, (factory, reputation) in SELECTORS.items()
    }
    results["oracle"] = oracle_metrics(traces, truth, horizon)
    return {"seed": seed, "trace": summary, "selectors": results}


SUMMARY_KEYS = (
    "mean_regret_ms",
    "p95_regret_ms",
    "p99_regret_ms",
    "mean_rtt_regret_ms",
    "p95_rtt_regret_ms",
    "outage_s",
    "switches_per_hour",
    "probes_per_hour",
    "failover_p50_s",
    "failover_max_s",
    "failovers_within_2s",
)


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(per_seed[0]["selectors"])
    summary: dict[str, Any] = {}
    for name in names:
        rows = [run["selectors"][name] for run in per_seed]
        summary[name] = {key: round(statistics.fmean(row[key] for row in rows), 3) for key in SUMMARY_KEYS}
        summary[name]["failover_max_s"] = max(row["failover_max_s"] for row in rows)
    learned, baseline = summary["learned"], summary["biased_rtt"]
    wins = {
        "p95_regret": sum(
            r["selectors"]["learned"]["p95_regret_ms"] < r["selectors"]["biased_rtt"]["p95_regret_ms"] for r in per_seed
        ),
        "outage_s": sum(
            r["selectors"]["learned"]["outage_s"] < r["selectors"]["biased_rtt"]["outage_s"] for r in per_seed
        ),
        "switches_per_hour_not_more": sum(
            r["selectors"]["learned"]["switches_per_hour"] <= r["selectors"]["biased_rtt"]["switches_per_hour"]
            for r in per_seed
        ),
    }
    acceptance = {
        "p95_regret_better": learned["p95_regret_ms"] < baseline["p95_regret_ms"],
        "outage_better": learned["outage_s"] < baseline["outage_s"],
        "not_more_switches": learned["switches_per_hour"] <= baseline["switches_per_hour"],
        "seeds": len(per_seed),
        "seeds_won": wins,
    }
    return {"mean_over_seeds": summary, "acceptance": acceptance}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 seeds x 30 minutes, a smoke run")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds to run (default 1..16)")
    parser.add_argument("--hours", type=float, help="simulated hours per seed (default 2)")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([1, 2] if args.quick else list(range(1, 17)))
    hours = args.hours or (0.5 if args.quick else 2.0)
    horizon = hours * HOUR
    started = time.perf_counter()
    per_seed = [run_seed(seed, horizon) for seed in seeds]
    report = {
        "benchmark": "routing",
        "mode": "quick" if args.quick else "full",
        "python": platform.python_version(),
        "seeds": seeds,
        "hours_per_seed": hours,
        "tick_s": TICK,
        "paths": 3 + RELAYS,
        "packets_per_s": round(PACKETS_PER_TICK / TICK),
        "warmup_s": WARMUP,
        "summary": summarise(per_seed),
        "per_seed": per_seed,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

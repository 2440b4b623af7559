"""What a relay costs: added round-trip time and relayed throughput against direct, in one run.

Prints one JSON object on stdout and nothing else (progress goes to stderr). Three processes on
loopback, each an embedded ``auralink_node.Node`` on its own event loop (see
``benchmarks/relay_stack/``):

* **R**, the relay (``config.relay``; its per-session quota raised to ``--relay-rate``, by
  default the highest the config allows, so that the relay's speed is measured, not its policy);
* **B**, the server: a home-relay session on R, serving ping, a checksumming sink and a path
  query;
* **A**, the client: a home-relay session on R; it measures, then exits.

A dials B either directly (B's address, no relay) or relayed (no address, one path through R),
on a fresh connection each time. Every node stops serving ``auralink/paths/1``, so no path
manager ever moves a connection: a relayed connection stays relayed at both ends (A checks both
ends' view of the path after every block; R's forwarding counters are in the report).

Measured, in the same run, alternating the order of the two modes from round to round:

1. **Added latency.** ``rounds`` x ``pings`` pings of ``auralink/ping/1`` (32-byte payload,
   one at a time) per mode. ``added_ms`` is the relayed percentile minus the direct one, for p50
   and p99 (a difference of percentiles, not a percentile of differences: the pings are not
   paired). Goal: at most 0.3 ms added at p50.
2. **Throughput ratio.** ``uploads`` uploads of ``bytes`` per mode to a sink that answers the
   byte count and SHA-256 (checked). The ratio is the median relayed MB/s over the median
   direct MB/s. Goal: at least 0.7.

The machine has 2 cores and the three processes share them: while relaying, A, R and B all
run Python QUIC code at once, while a direct transfer keeps only two busy.
``throughput_mb_s.cpu_median`` gives, per mode and per process (median over the uploads), the
cores used (``cores``) and the CPU milliseconds per MB (``cpu_ms_per_mb``: the figure to compare
between runs: other load moves it far less than the wall-clock figures, though smaller batches on a
busy machine still raise it), and ``background_cpu_cores`` the other load on the machine.

Usage::

    python benchmarks/relay.py                  # 5 rounds x 400 pings, 3 x 50 MB per mode
    python benchmarks/relay.py --quick          # 2 x 100 pings, 1 x 5 MB: a smoke run
    python benchmarks/relay.py --relay-rate 12500000   # the relay's default per-session quota
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from auralink.identity import Identity

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Children run from here so ``python -m benchmarks.relay_stack.node`` resolves."""

NODE_MODULE = "benchmarks.relay_stack.node"
"""The module every role runs."""

MAX_RELAY_RATE = 10**10
"""The highest ``relay_rate`` the node config accepts (bytes/s): no quota in practice."""

ADDED_P50_GOAL_MS = 0.3
"""Goal: the relay adds at most this much RTT at p50."""

THROUGHPUT_GOAL_RATIO = 0.7
"""Goal: relayed throughput at least this fraction of direct."""

STARTUP_TIMEOUT_S = 30.0
"""Longest wait for a node's ready line."""

STOP_TIMEOUT_S = 10.0
"""Longest wait after each stop step (stdin closed, SIGTERM) before the next one."""

BACKGROUND_WARNING_CORES = 0.2
"""Average CPU use by other processes above which the report carries a warning."""

MB = 1_000_000
"""Throughput unit: MB/s means 10**6 bytes per second."""


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work the client does."""

    rounds: int
    """RTT rounds; each has one direct and one relayed block on fresh connections."""
    pings: int
    """Measured pings per block (after 20 thrown away)."""
    nbytes: int
    """Bytes per upload."""
    uploads: int
    """Uploads per mode."""

    def client_timeout_s(self) -> float:
        """A generous bound on the client's whole run (pings at 20 ms, uploads at 0.5 MB/s)."""
        pings = 2 * self.rounds * (self.pings + 40) * 0.02
        uploads = 2 * self.uploads * (35.0 + self.nbytes / (0.5 * MB))
        return 60.0 + pings + uploads


FULL = Sizes(rounds=5, pings=400, nbytes=50 * MB, uploads=3)
QUICK = Sizes(rounds=2, pings=100, nbytes=5 * MB, uploads=1)


class NodeFailed(Exception):
    """A node process did not do its part."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


# -- statistics ---------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of sorted samples (NumPy's default, as in benchmarks/transport.py)."""
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/n of raw samples (milliseconds, 3 decimals)."""
    ordered = sorted(samples)
    return {
        "p50": round(percentile(ordered, 0.50), 3),
        "p90": round(percentile(ordered, 0.90), 3),
        "p99": round(percentile(ordered, 0.99), 3),
        "mean": round(statistics.fmean(ordered), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


# -- /proc readings -----------------------------------------------------------------------------


def system_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (``/proc/stat``, first line)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "system": f"{platform.system()} {platform.release()}",
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
    }


# -- processes ----------------------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    """The harness's environment with the repository root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(path: Path, limit: int = 2000) -> str:
    """The end of a log file."""
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-limit:]
    return ""


class NodeProcess:
    """A long-running role (relay or server): started, read line by line, stopped (all bounded)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", NODE_MODULE, *args],
                cwd=REPO_ROOT,
                env=child_environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self._buffer = b""
        self.ready: dict[str, Any] = {}
        """The ready line: ``aura_id``, ``address``, ``pid``."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line on the child's stdout, or None at end of file; raises on timeout."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise NodeFailed(f"no line from {self.log.stem} within {timeout:.0f} s", tail(self.log))
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            event: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NodeFailed(f"{self.log.stem} printed {line[:200]!r}: {exc}", tail(self.log)) from exc
        return event

    def wait_ready(self) -> dict[str, Any]:
        """The ready line."""
        event = self.next_event(STARTUP_TIMEOUT_S)
        if event is None or event.get("event") != "ready":
            status = self.process.wait(STOP_TIMEOUT_S) if event is None else "running"
            raise NodeFailed(f"{self.log.stem} did not get ready (exit status {status}): {event}", tail(self.log))
        self.ready = event
        return event

    def stop(self) -> dict[str, Any] | None:
        """Close stdin and take the ``stopped`` line; then SIGTERM, then SIGKILL if it lingers."""
        stopped = None
        if self.process.poll() is None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            with contextlib.suppress(NodeFailed):
                stopped = self.next_event(STOP_TIMEOUT_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return stopped


@contextlib.contextmanager
def running(args: list[str], log: Path, stopped: dict[str, Any], role: str) -> Iterator[NodeProcess]:
    """A ready long-running role; stopped on exit whatever happens, its last line kept in ``stopped``."""
    node = NodeProcess(args, log)
    try:
        node.wait_ready()
        yield node
    finally:
        stopped[role] = node.stop()


def run_client(args: list[str], timeout: float, log: Path) -> dict[str, Any]:
    """Run the client to completion (bounded) and take its report line."""
    with log.open("wb") as stderr:
        try:
            completed = subprocess.run(
                [sys.executable, "-m", NODE_MODULE, *args],
                cwd=REPO_ROOT,
                env=child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the client
            raise NodeFailed(f"client did not finish within {timeout:.0f} s", tail(log)) from exc
    if completed.returncode != 0:
        raise NodeFailed(f"client exited with status {completed.returncode}", tail(log))
    for line in completed.stdout.splitlines():
        event: dict[str, Any] = json.loads(line)
        if event.get("event") == "report":
            return event
    raise NodeFailed("client printed no report", tail(log))


# -- the run ------------------------------------------------------------------------------------


def measure(sizes: Sizes, seed: int, relay_rate: int, workdir: Path) -> dict[str, Any]:
    """Start R and B, run A, stop them; the raw reports of all three and the machine's other load."""
    rng = random.Random(seed)
    seeds = {role: rng.randbytes(32) for role in ("relay", "server", "client")}
    client_id = Identity.from_seed(seeds["client"]).aura_id

    def role_args(role: str) -> list[str]:
        return [role, "--home", str(workdir / role), "--seed-hex", seeds[role].hex()]

    stopped: dict[str, Any] = {}
    started, busy = time.monotonic(), system_busy_seconds()
    relay_args = [*role_args("relay"), "--relay-rate", str(relay_rate)]
    with running(relay_args, workdir / "relay.log", stopped, "relay") as relay:
        relay_address = f"{relay.ready['aura_id']}@{relay.ready['address']}"
        server_args = [*role_args("server"), "--relay", relay_address, "--client", str(client_id)]
        with running(server_args, workdir / "server.log", stopped, "server") as server:
            client_args = [
                *role_args("client"),
                "--relay",
                relay_address,
                "--server",
                f"{server.ready['aura_id']}@{server.ready['address']}",
                "--pids",
                f"{relay.pid},{server.pid}",
                "--rounds",
                str(sizes.rounds),
                "--pings",
                str(sizes.pings),
                "--bytes",
                str(sizes.nbytes),
                "--uploads",
                str(sizes.uploads),
                "--seed",
                str(seed),
            ]
            report = run_client(client_args, sizes.client_timeout_s(), workdir / "client.log")
    wall = time.monotonic() - started
    ours = report["cpu_s"] + sum(stopped[role]["cpu_s"] for role in ("relay", "server") if stopped.get(role))
    background = max(0.0, system_busy_seconds() - busy - ours) / wall
    return {"client": report, "stopped": stopped, "wall_s": round(wall, 1), "background": round(background, 2)}


def analyse(raw: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, from the raw reports."""
    client = raw["client"]
    direct, relayed = summarize(client["rtt_ms"]["direct"]), summarize(client["rtt_ms"]["relayed"])
    blocks: dict[int, dict[str, float]] = {}
    for block in client["rtt_blocks"]:
        blocks.setdefault(block["round"], {})[block["mode"]] = block["p50_ms"]
    per_round = [round(b["relayed"] - b["direct"], 3) for _, b in sorted(blocks.items())]
    added_p50 = round(relayed["p50"] - direct["p50"], 3)
    added = {"p50": added_p50, "p99": round(relayed["p99"] - direct["p99"], 3), "p50_per_round": per_round}
    uploads = client["uploads"]
    rates = {mode: [u["mb_s"] for u in uploads if u["mode"] == mode and "mb_s" in u] for mode in ("direct", "relayed")}
    medians = {mode: round(statistics.median(r), 2) if r else None for mode, r in rates.items()}
    ratio = (
        round(medians["relayed"] / medians["direct"], 3)
        if medians["relayed"] is not None and medians["direct"]
        else None
    )
    cpu: dict[str, dict[str, dict[str, float]]] = {}
    for mode in ("direct", "relayed"):
        runs = [u for u in uploads if u["mode"] == mode and "cpu_s" in u]
        if not runs:
            continue
        cores = {role: statistics.median(u["cpu_s"][role] / u["seconds"] for u in runs) for role in runs[0]["cpu_s"]}
        per_mb = {role: statistics.median(u["cpu_s"][role] / (u["bytes"] / MB) for u in runs) for role in cores}
        cpu[mode] = {
            "cores": {role: round(value, 2) for role, value in cores.items()}
            | {"total": round(sum(cores.values()), 2)},
            "cpu_ms_per_mb": {role: round(1e3 * value, 1) for role, value in per_mb.items()}
            | {"total": round(1e3 * sum(per_mb.values()), 1)},
        }
    return {
        "rtt_ms": {"direct": direct, "relayed": relayed, "added": added},
        "throughput_mb_s": {
            "direct": medians["direct"],
            "relayed": medians["relayed"],
            "ratio": ratio,
            "runs": uploads,
            "cpu_median": cpu,
        },
        "goals": {
            "added_p50_ms": {
                "goal": f"<= {ADDED_P50_GOAL_MS}",
                "value": added_p50,
                "met": added_p50 <= ADDED_P50_GOAL_MS,
            },
            "throughput_ratio": {
                "goal": f">= {THROUGHPUT_GOAL_RATIO}",
                "value": ratio,
                "met": None if ratio is None else ratio >= THROUGHPUT_GOAL_RATIO,
            },
        },
    }


def parse_args(argv: list[str]) -> tuple[Sizes, int, int]:
    """Work sizes, seed and the relay's per-session rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for smoke runs")
    parser.add_argument("--rounds", type=int, help="RTT rounds (one direct and one relayed block each)")
    parser.add_argument("--pings", type=int, help="measured pings per block")
    parser.add_argument("--bytes", type=int, help="bytes per upload")
    parser.add_argument("--uploads", type=int, help="uploads per mode")
    parser.add_argument("--seed", type=int, default=1, help="seeds the node identities and the payload")
    parser.add_argument(
        "--relay-rate",
        type=int,
        default=MAX_RELAY_RATE,
        help=f"the relay's per-session quota in bytes/s (default {MAX_RELAY_RATE}: none in practice)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides = {"rounds": args.rounds, "pings": args.pings, "nbytes": args.bytes, "uploads": args.uploads}
    sizes = Sizes(**{**asdict(sizes), **{key: value for key, value in overrides.items() if value is not None}})
    if min(sizes.rounds, sizes.pings, sizes.nbytes, sizes.uploads) < 1:
        parser.error("counts and bytes must be positive")
    return sizes, args.seed, args.relay_rate


def raise_system_exit(signum: int, _frame: Any) -> None:
    """Turn SIGTERM into SystemExit so that every ``finally`` stops its children."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the JSON report."""
    sizes, seed, relay_rate = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, raise_system_exit)
    result: dict[str, Any] = {
        "benchmark": "relay",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": machine_info(),
        "network": "loopback (127.0.0.1) only; mDNS off, no bootstrap nodes",
        "processes": "3 (relay R, server B, client A), each an embedded auralink_node.Node on its own event loop",
        "path_forcing": "every node unserves auralink/paths/1 (no offers, probes or path selection); "
        "relayed = Endpoint.connect(B, [], [A's RelayLink.path_to(B)]), direct = Endpoint.connect(B, [B's address]); "
        "both ends' PeerConnection.path checked after every block",
        "sizes": asdict(sizes),
        "seed": seed,
        "relay_rate_bytes_per_s": relay_rate,
    }
    print("relay benchmark: starting relay, server and client ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as workdir:
        try:
            raw = measure(sizes, seed, relay_rate, Path(workdir))
        except NodeFailed as exc:
            result["failed"] = {"reason": exc.reason, "log_tail": exc.log_tail}
            print(json.dumps(result, indent=2))
            raise SystemExit(1) from exc
    result.update(analyse(raw))
    for role in ("relay", "server"):
        counters = raw["stopped"].get(role) or {}
        result[f"{role}_counters"] = {key: value for key, value in counters.items() if key not in ("event", "role")}
    result["client_relay_link"] = raw["client"]["client_link"]
    result["wall_s"] = raw["wall_s"]
    result["background_cpu_cores"] = raw["background"]
    result["machine"]["loadavg_at_end"] = [round(value, 2) for value in os.getloadavg()]
    notes = [
        "2 cores shared by 3 processes: a relayed transfer keeps A, R and B busy at once, a direct one only A and B",
        "added_ms p50/p99 are differences of percentiles of unpaired samples",
    ]
    if raw["background"] > BACKGROUND_WARNING_CORES:
        notes.append(
            f"other processes used {raw['background']} cores on average during the run; the numbers are pessimistic"
        )
    result["notes"] = notes
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

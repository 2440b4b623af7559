"""Hint latency: in-process and over the mesh (two embedded nodes on loopback).

Usage::

    nice -n 10 python -m benchmarks.aic.hint_latency [--count 3000]

Prints JSON and writes ``benchmarks/results/aic-hint-latency-<date>.json``. Targets (issue 6):
p99 <= 2 ms in-process and <= 20 ms over the mesh.

* **in-process, hint**: :meth:`HintEngine.hint` with the packaged trained model, on frame
  statistics that vary per call (a seeded walk of SI and TI), so hysteresis does not short-cut it.
* **in-process, cycle**: what the controller does per frame before the encoder: P.910 features
  of a 640x480 luma plane (:class:`FeatureExtractor`) and then a hint.
* **mesh**: :class:`RemoteHintClient` on one embedded node asks :class:`HintService` on another,
  over QUIC on 127.0.0.1; the time is from the request to the answer, one at a time, after 50
  warm-up requests. Both nodes share this process and its event loop, as a worst case for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import auralink
from auralink.aic import FeatureExtractor, FrameStats, HintEngine, Mode, NetworkStats
from auralink.aic.remote import AIC_PROTOCOL, HintService, RemoteHintClient

ROOT = Path(__file__).resolve().parents[2]
NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.004, bandwidth_bps=2_000_000)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max, in milliseconds."""
    values = np.array(samples) * 1000.0
    return {
        "count": len(samples),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


def frame_walk(count: int, seed: int = 6) -> list[FrameStats]:
    """Seeded frame statistics of a 640x480, 30 fps source."""
    rng = np.random.default_rng(seed)
    si = np.clip(40 + np.cumsum(rng.normal(0, 2, count)), 5, 150)
    ti = np.clip(8 + np.cumsum(rng.normal(0, 1, count)), 0, 60)
    return [
        FrameStats(640, 480, 30.0, float(s), float(t), scene_change=bool(rng.random() < 0.01))
        for s, t in zip(si, ti, strict=True)
    ]


def in_process(count: int) -> dict[str, Any]:
    engine = HintEngine(Mode.ADAPTIVE)
    stats = frame_walk(count)
    hint_times = []
    for frame in stats:
        started = time.perf_counter()
        engine.hint(frame, NETWORK, started)
        hint_times.append(time.perf_counter() - started)
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (480 + 64, 640 + 64), dtype=np.uint8)
    extractor = FeatureExtractor()
    cycle_times = []
    for index in range(min(count, 1000)):
        shift = index % 32
        luma = np.ascontiguousarray(base[shift : shift + 480, shift : shift + 640])
        started = time.perf_counter()
        engine.hint(extractor.push(luma, 30.0), NETWORK, started)
        cycle_times.append(time.perf_counter() - started)
    return {"hint": percentiles(hint_times), "features_640x480_and_hint": percentiles(cycle_times)}


async def over_mesh(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aic-latency-") as folder:
        homes = [Path(folder) / "weak", Path(folder) / "strong"]
        for home in homes:
            subprocess.run(["auralink-node", "--home", str(home), "init"], check=True, capture_output=True)
        async with (
            auralink.connect(homes[0], backend="embedded", listen=["127.0.0.1:0"]) as weak,
            auralink.connect(homes[1], backend="embedded", listen=["127.0.0.1:0"]) as strong,
        ):
            await strong.serve(AIC_PROTOCOL, HintService(lambda: HintEngine(Mode.ADAPTIVE)))
            await weak.dial(strong.identity.aura_id, [str((await strong.status())["listen"][0])])
            stats = frame_walk(count + 50, seed=8)
            local = HintEngine(Mode.ADAPTIVE)
            times = []
            async with await RemoteHintClient.open(weak, strong.identity.aura_id, local, deadline=1.0) as client:
                for index, frame in enumerate(stats):
                    started = time.perf_counter()
                    await client.hint(frame, NETWORK)
                    if index >= 50:
                        times.append(time.perf_counter() - started)
            return percentiles(times) | {"remote_hints": client.remote_hints, "fallbacks": client.fallbacks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as load:
        load_before = load.read().split()[0]
    report = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "load_average_1min_before": float(load_before),
        "in_process": in_process(args.count),
        "mesh_loopback": asyncio.run(over_mesh(args.count)),
        "targets": {"in_process_p99_ms": 2.0, "mesh_p99_ms": 20.0},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"aic-hint-latency-{report['date']}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

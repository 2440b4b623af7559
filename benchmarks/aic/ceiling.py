"""How much can any static VP8 setting here save against a default call? The tuned encoder at libvpx's slowest speeds.

Usage::

    nice -n 10 python -m benchmarks.aic.ceiling --clip megamind     # after benchmarks.aic.evaluate

Codes one evaluation clip with the tuned static encoder (:func:`benchmarks.aic.evaluate.run`'s
``static-effort`` configuration: AIC's per-encoder options at a given ``cpu-used``; runs are cached
with the evaluation's) at ``cpu-used -2`` (where AIC codes) and ``-1`` (libvpx VP8's slowest
fixed real-time speed; ``0`` hands the choice to libvpx, which never goes below speed 4), at four
bitrates around the point of interest, and reads the bitrate each level needs for the VMAF a
default aiortc call reaches at 1.5 Mbps (from the evaluation's JSON), by PCHIP on log-rate. AIC
codes exactly as this encoder does at its effort level, so this bounds its saving on the clip.
Writes ``benchmarks/results/aic-ceiling-<date>-<clip>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.aic import evaluate, quality

LEVELS = (-2, -1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="megamind", choices=[c.name for c in evaluate.CLIPS])
    parser.add_argument("--rates", default="240000,300000,370000,460000", help="targets, bits per second")
    parser.add_argument("--evaluation", type=Path, default=evaluate.RESULTS / "aic-eval-2026-11-26.json")
    parser.add_argument("--out", type=Path, default=evaluate.RESULTS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/aic-eval-cache"), help="shared with evaluate")
    args = parser.parse_args(argv)
    rates = [int(rate) for rate in args.rates.split(",")]
    clip = next(c for c in evaluate.CLIPS if c.name == args.clip)
    anchor = json.loads(args.evaluation.read_text())["clips"][clip.name]["summary"]["default_1500k"]
    source = evaluate.load(clip, None)
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "clip": clip.name,
        "default_call_1500k": {"kbps": anchor["kbps"], "vmaf": anchor["vmaf"]},
        "levels": {},
    }
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aic-ceiling-") as folder:
        reference = evaluate.write_reference(source, Path(folder) / "reference.yuv")
        for level in LEVELS:
            points = []
            for rate in rates:
                config = {"kind": "static-effort", "target_bps": rate, "cpu_used": level}
                row = evaluate.run(source, config, args.cache, reference)
                points.append((row["bitrate_bps"], row["vmaf_mean"]))
                print(json.dumps({"cpu_used": level, "kbps": row["bitrate_bps"] / 1000, "vmaf": row["vmaf_mean"]}))
            needed = quality.rate_at_quality([r for r, _ in points], [q for _, q in points], anchor["vmaf"])
            report["levels"][str(level)] = {
                "points_kbps_vmaf": [[r / 1000, q] for r, q in points],
                "kbps_at_default_call_vmaf": None if needed is None else needed / 1000,
                "saving_vs_default_call_pct": None if needed is None else 100 * (1 - needed / 1000 / anchor["kbps"]),
            }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"aic-ceiling-{report['date']}-{clip.name}.json"
    path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["levels"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Idle cost of a real ``auralink-node up`` daemon: CPU share and memory, with and without a peer.

Prints one JSON object. It starts a daemon in a temporary home on loopback, waits for its ready
line, lets it settle, then reads its CPU time (``/proc/PID/stat``) over a fixed window and its
RSS. With ``--peer`` a second daemon is started and pinged once first, so the window includes
an idle but live connection (keepalives every 10 s). Linux only.

Usage::

    python benchmarks/daemon_idle.py                # 10 s window
    python benchmarks/daemon_idle.py --window 30 --peer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run(*args: str) -> Any:
    done = subprocess.run(["auralink-node", *args, "--json"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def _daemon(home: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    subprocess.run(["auralink-node", "--home", str(home), "init"], capture_output=True, check=True, timeout=60)
    proc = subprocess.Popen(
        ["auralink-node", "--home", str(home), "up", "--listen", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("daemon did not start")
    return proc, json.loads(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=10.0, help="seconds of idle measured")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before measuring")
    parser.add_argument("--peer", action="store_true", help="hold an idle connection to a second daemon")
    args = parser.parse_args()
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc, _ = _daemon(Path(tmp) / "a")
            procs.append(proc)
            if args.peer:
                other, peer_ready = _daemon(Path(tmp) / "b")
                procs.append(other)
                _run(
                    "--home",
                    str(Path(tmp) / "a"),
                    "ping",
                    peer_ready["aura_id"],
                    "--addr",
                    peer_ready["listen"][0],
                    "--count",
                    "1",
                )
            time.sleep(args.settle)  # a measurement window, not synchronisation
            cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.window)
            cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
            result = {
                "benchmark": "daemon_idle",
                "date": time.strftime("%Y-%m-%d"),
                "python": platform.python_version(),
                "cores": os.cpu_count(),
                "window_s": round(t1 - t0, 2),
                "with_idle_peer_connection": args.peer,
                "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
                "cpu_seconds": round(cpu1 - cpu0, 3),
                "rss_mb": round(_rss_mb(proc.pid), 1),
                "clock_tick_s": 1 / _TICKS,
            }
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

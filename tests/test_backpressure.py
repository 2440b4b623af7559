"""200 MB echoed over one app stream between two processes: intact, and memory stays flat.

The receive window and ``drain()`` bound what any process buffers, so a process's peak RSS may
grow by less than 64 MB while 200 MB pass through it in each direction. Run once with embedded
nodes and once through two daemons (apps -> daemon -> daemon -> app), as real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import Daemon, cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "echo.py"
TOTAL = 200_000_000
LIMIT_MB = 64


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _start_server(home: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "serve", "--home", str(home), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["event"] == "ready", ready
    return proc, ready


def _echo(server_home: Path, client_home: Path, expected_backend: str) -> tuple[dict[str, Any], dict[str, Any]]:
    server, ready = _start_server(server_home)
    try:
        assert ready["backend"] == expected_backend
        done = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE),
                "send",
                "--home",
                str(client_home),
                "--listen",
                "127.0.0.1:0",
                "--to",
                ready["aura_id"],
                "--addr",
                ready["listen"][0],
                "--bytes",
                str(TOTAL),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        client = json.loads(done.stdout)
        assert server.stdout is not None
        echoed = json.loads(server.stdout.readline())
    finally:
        server.terminate()
        server.wait(timeout=30)
    return client, echoed


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "server", tmp_path / "client"
    for home in (a, b):
        assert cli(home, "init").returncode == 0
    return a, b


def test_200_mb_echo_between_embedded_nodes(homes: tuple[Path, Path]) -> None:
    client, server = _echo(*homes, expected_backend="embedded")
    assert client["backend"] == "embedded"
    assert client["bytes"] == TOTAL and client["checksum_ok"] is True
    assert server["bytes"] == TOTAL
    assert client["rss_growth_mb"] < LIMIT_MB
    assert server["rss_growth_mb"] < LIMIT_MB


def test_200_mb_echo_through_two_daemons(homes: tuple[Path, Path]) -> None:
    daemons = [Daemon(home) for home in homes]
    try:
        baselines = {d.proc.pid: _kib(d.proc.pid, "VmRSS") for d in daemons}
        client, server = _echo(*homes, expected_backend="daemon")
        assert client["backend"] == "daemon"
        assert client["bytes"] == TOTAL and client["checksum_ok"] is True
        assert server["bytes"] == TOTAL
        assert client["rss_growth_mb"] < LIMIT_MB
        assert server["rss_growth_mb"] < LIMIT_MB
        for pid, baseline in baselines.items():
            assert (_kib(pid, "VmHWM") - baseline) / 1024 < LIMIT_MB, f"daemon {pid} grew too much"
    finally:
        for daemon in daemons:
            daemon.kill()

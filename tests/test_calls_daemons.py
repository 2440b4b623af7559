"""Calls through two real daemons: `auralink-node answer` echoes, `auralink-node call` measures (the daemon backend)."""

from __future__ import annotations

import json
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiortc")

from tests.calls_kit import needs_candidates
from tests.daemons import Daemon, cli, cli_json

pytestmark = [pytest.mark.e2e, needs_candidates]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30.0) -> str:
    """Read ``proc``'s stderr until a line containing ``needle`` (bounded by ``timeout``)."""
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and selector.select(timeout=deadline - time.monotonic()):
            line = proc.stderr.readline()
            if not line or needle in line:
                return line
    finally:
        selector.close()
    raise AssertionError(f"no {needle!r} from {proc.args}")


def test_a_call_by_handle_between_two_daemons_carries_video_audio_and_data(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    for name in ("alice", "bob"):
        assert cli(tmp_path / name, "init", "--handle", name).returncode == 0
    alice, bob = Daemon(tmp_path / "alice"), Daemon(tmp_path / "bob")
    daemons += [alice, bob]
    cli_json(alice.home, "ping", bob.aura_id, "--addr", bob.address, "--count", "1")  # identify: @bob.aura's record
    answering = subprocess.Popen(
        ["auralink-node", "--home", str(bob.home), "answer", "--count", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(answering, "answering calls")
        report = cli_json(alice.home, "call", "@bob.aura", "--duration", "3")
        out, _ = answering.communicate(timeout=30)
    finally:
        answering.kill()
    assert json.loads(out) == {"served": 1}
    assert report["peer"] == bob.aura_id
    assert report["frames"]["video"] > 0 and report["frames"]["audio"] > 0  # the echo of what alice sent
    assert report["echo_latency_ms"]["count"] > 0  # stamped frames made the round trip
    assert report["data_rtt_ms"]["count"] > 0
    assert report["bytes_sent"] > 0 and report["bytes_received"] > 0
    assert report["path"]["kind"] == "host"
    for key in ("setup_s", "resolve_s", "signaling_s", "connect_s", "first_frame_s"):
        assert report[key] is not None and report[key] >= 0


def test_call_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    done = cli(tmp_path / "x", "call", "not-an-id", "--json")
    assert done.returncode != 0 and "error" in json.loads(done.stdout)
    done = cli(tmp_path / "x", "call", "@bob.aura", "--video", str(tmp_path / "missing.mp4"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "--video" in done.stderr

"""End to end: real ``auralink-node up`` processes on loopback, driven through the CLI."""

from __future__ import annotations

import asyncio
import base64
import random
import signal
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auralink.errors import ConnectionBroken
from auralink.identity import AuraID, Identity, Keystore
from auralink.wire import Address
from auralink_node.transport import Endpoint
from tests.daemons import Daemon, cli, cli_json
from tests.test_transport import _garbage, dial_with_unknown_alpn

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def test_two_daemons_ping_by_aura_id_and_address(tmp_path: Path, daemons: list[Daemon]) -> None:
    a = Daemon(tmp_path / "a")
    daemons.append(a)
    b = Daemon(tmp_path / "b")
    daemons.append(b)
    status = cli_json(a.home, "status")
    assert status["aura_id"] == a.aura_id
    assert status["listen"] == [a.address] and status["listen"][0] != "127.0.0.1:0"
    assert status["peers"] == 0
    for _ in range(20):
        result = cli_json(a.home, "ping", b.aura_id, "--addr", b.address, "--count", "1")
        assert (result["target"], result["sent"], result["received"]) == (b.aura_id, 1, 1)
        assert 0 < result["rtt_ms"]["p50"] <= result["rtt_ms"]["p99"]
    burst = cli_json(a.home, "ping", b.aura_id, "--count", "20")  # the address is known now
    assert burst["received"] == 20
    assert cli_json(a.home, "status")["peers"] == 1
    (peer,) = cli_json(b.home, "peers")["peers"]
    assert peer["aura_id"] == a.aura_id and peer["connected"] is True


def test_a_node_with_another_key_is_refused(tmp_path: Path, daemons: list[Daemon]) -> None:
    a, b, impostor = (Daemon(tmp_path / name) for name in ("a", "b", "c"))
    daemons.extend([a, b, impostor])
    done = cli(a.home, "ping", b.aura_id, "--addr", impostor.address, "--json")
    assert done.returncode == 1
    assert "identity mismatch" in done.stderr and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert cli_json(a.home, "ping", b.aura_id, "--addr", b.address, "--count", "1")["received"] == 1


def test_sigterm_and_sigint_stop_cleanly(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        daemon = Daemon(tmp_path / f"n{int(sig)}")
        assert daemon.stop(sig) == 0
        assert not (daemon.home / "node.sock").exists()


def test_data_survives_kill_9(tmp_path: Path, daemons: list[Daemon]) -> None:
    a = Daemon(tmp_path / "a")
    b = Daemon(tmp_path / "b")
    daemons.append(b)
    assert cli_json(a.home, "ping", b.aura_id, "--addr", b.address, "--count", "3")["received"] == 3
    a.kill()
    assert (a.home / "node.sock").exists()  # left behind by the killed daemon
    with sqlite3.connect(a.home / "node.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = Daemon(a.home)
    daemons.append(again)
    (peer,) = cli_json(again.home, "peers")["peers"]
    assert peer["aura_id"] == b.aura_id
    assert b.address in peer["addresses"]
    assert peer["paths"] and peer["paths"][0]["samples"] >= 1
    assert cli_json(again.home, "ping", b.aura_id, "--count", "1")["received"] == 1  # the remembered address


def test_cli_without_a_daemon_says_so(tmp_path: Path) -> None:
    for command in (["status"], ["peers"], ["ping", "y" * 56]):
        done = cli(tmp_path / "nothing", *command)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no daemon is running" in cli(tmp_path / "nothing", "status").stderr


def test_a_second_daemon_for_the_same_home_is_refused(tmp_path: Path, daemons: list[Daemon]) -> None:
    a = Daemon(tmp_path / "a")
    daemons.append(a)
    with pytest.raises(AssertionError, match="did not become ready"):
        Daemon(a.home)
    assert "already running" in (tmp_path / "a.log").read_text()
    assert cli_json(a.home, "status")["aura_id"] == a.aura_id


async def test_garbage_at_a_daemon_leaves_it_serving(tmp_path: Path, daemons: list[Daemon]) -> None:
    """Garbage datagrams, malformed and oversized frames and an unknown ALPN, then a real ping."""
    a = Daemon(tmp_path / "a")
    b = Daemon(tmp_path / "b")
    daemons.extend([a, b])
    host, port = b.address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    try:
        for index, datagram in enumerate(_garbage(random.Random(2), 10_000)):
            await loop.sock_sendto(raw, datagram, (host, int(port)))
            if index % 200 == 0:
                await asyncio.sleep(0)
    finally:
        raw.close()

    # Oversized and malformed frames on authenticated connections: the daemon cuts the peer off.
    async with Endpoint(Identity.generate(), [Address("127.0.0.1", 0)]) as endpoint:
        target, where = AuraID.parse(b.aura_id), [Address.parse(b.address)]
        conn = await endpoint.connect(target, where)
        oversized = await conn.open_stream("auralink/ping/1")
        oversized.write(b"\x01\x01\xc0\x00\x00\x00\xff\xff\xff\xff")  # a Ping frame claiming 4 GiB
        with pytest.raises(ConnectionBroken, match="exceeds the 1056-byte limit"):
            await asyncio.wait_for(oversized.read(), 10)
        conn = await endpoint.connect(target, where)
        malformed = conn._quic.get_next_available_stream_id()
        conn.send_stream_data(malformed, b"\x07not a header at all", end_stream=True)
        await asyncio.wait_for(conn.wait_closed(), 10)

    # An unknown ALPN is refused in the handshake.
    with pytest.raises(ConnectionError):
        await dial_with_unknown_alpn(Identity.generate(), Address.parse(b.address))

    assert cli_json(a.home, "ping", b.aura_id, "--addr", b.address, "--count", "3")["received"] == 3


def test_metrics_and_health_are_served_when_asked(tmp_path: Path, daemons: list[Daemon]) -> None:
    a = Daemon(tmp_path / "a", "--metrics", "127.0.0.1:0")
    b = Daemon(tmp_path / "b")
    daemons.extend([a, b])
    assert b.ready["metrics"] is None  # off unless asked
    assert cli_json(a.home, "ping", b.aura_id, "--addr", b.address, "--count", "3")["received"] == 3
    base = f"http://{a.ready['metrics']}"
    health = httpx.get(f"{base}/health", timeout=10).json()
    assert health == {"status": "ok", "aura_id": a.aura_id}
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'auralink_connections_total{direction="outbound",result="ok"} 1.0' in metrics
    assert "auralink_rtt_seconds_count 3.0" in metrics
    assert 'auralink_bytes_total{direction="sent"}' in metrics
    assert "auralink_handshake_failures_total" in metrics


def test_secrets_never_reach_the_log(tmp_path: Path, daemons: list[Daemon]) -> None:
    home = tmp_path / "a"
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    assert cli(home, "init", "--passphrase-file", str(passphrase)).returncode == 0
    secret = Keystore(home / "key").load(b"correct horse battery staple").seed
    a = Daemon(home, "--passphrase-file", str(passphrase), init=False)
    b = Daemon(tmp_path / "b")
    daemons.extend([a, b])
    assert cli_json(a.home, "ping", b.aura_id, "--addr", b.address, "--count", "2")["received"] == 2
    a.stop()
    log = (tmp_path / "a.log").read_text()
    assert "listening on" in log  # the daemon logged at INFO
    for needle in (secret.hex(), base64.b64encode(secret).decode(), "correct horse"):
        assert needle not in log

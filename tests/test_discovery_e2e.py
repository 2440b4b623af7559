"""Discovery end to end: three real daemons, a DHT across them, resolution and ping by handle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import Daemon, cli, cli_json
from tests.netns import Lab


@pytest.fixture
def three(tmp_path: Path) -> Iterator[dict[str, Daemon]]:
    daemons: dict[str, Daemon] = {}
    try:
        for name in ("a", "b", "c"):
            home = tmp_path / name
            assert cli(home, "init", "--handle", f"@{name}.aura").returncode == 0
            daemons[name] = Daemon(home)
        yield daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


def test_a_resolves_and_pings_c_by_handle_after_both_joined_b(three: dict[str, Daemon]) -> None:
    a, b, c = three["a"], three["b"], three["c"]
    joined_c = cli_json(c.home, "join", b.address)
    assert joined_c["contacts"] >= 1 and joined_c["joined"] == [b.address]
    joined_a = cli_json(a.home, "join", b.address)
    assert joined_a["contacts"] >= 1

    resolved = cli_json(a.home, "resolve", "@c.aura")
    assert resolved["aura_id"] == c.aura_id
    assert resolved["handle"] == "@c.aura"
    assert c.address in resolved["addresses"]
    assert resolved["source"] == "dht"

    pinged = cli_json(a.home, "ping", "@c.aura", "--count", "2")
    assert pinged["target"] == c.aura_id and pinged["received"] == 2

    again = cli_json(a.home, "resolve", "@c.aura")  # now connected: answered from the cache
    assert again["source"] == "cache" and again["aura_id"] == c.aura_id

    status = cli_json(a.home, "dht", "status")
    assert status["contacts"] >= 2  # b, and c learned through the lookup or the connection
    assert status["last_publish"]["accepted"] >= 1


def test_join_saves_the_bootstrap_and_up_uses_it(three: dict[str, Daemon]) -> None:
    a, b = three["a"], three["b"]
    cli_json(a.home, "join", b.address)
    config = (a.home / "config.toml").read_text()
    assert b.address in config
    b_status = cli_json(b.home, "dht", "status")
    assert b_status["stored_records"] >= 2  # a's node record and handle claim


def test_unknown_handle_fails_with_a_clear_error(three: dict[str, Daemon]) -> None:
    a, b = three["a"], three["b"]
    cli_json(a.home, "join", b.address)
    done = cli(a.home, "resolve", "@nobody.aura")
    assert done.returncode == 1
    assert "cannot resolve @nobody.aura" in done.stderr
    again = cli(a.home, "resolve", "@nobody.aura")  # negative cache: answered without a lookup
    assert again.returncode == 1 and "remembered" in again.stderr


def test_join_to_nowhere_saves_nothing(tmp_path: Path, three: dict[str, Daemon]) -> None:
    a = three["a"]
    before = (a.home / "config.toml").read_text()
    done = cli(a.home, "join", "127.0.0.1:9")  # discard port: nothing answers
    assert done.returncode == 1
    assert "no DHT node answered" in done.stderr
    assert (a.home / "config.toml").read_text() == before


@pytest.mark.natlab
@pytest.mark.e2e
def test_two_daemons_in_two_namespaces_find_each_other_over_mdns_with_no_bootstrap(tmp_path: Path) -> None:
    with Lab() as lab:
        host_a, host_b = lab.host("a"), lab.host("b")
        cable = lab.link(host_a, host_b)
        homes = {name: tmp_path / name for name in ("amy", "ben")}
        for name, home in homes.items():
            assert cli(home, "init", "--handle", f"@{name}.aura").returncode == 0
        amy = Daemon(homes["amy"], listen=f"{cable.a_ip}:7700", prefix=host_a.argv())
        try:
            ben = Daemon(homes["ben"], listen=f"{cable.b_ip}:7700", prefix=host_b.argv())
            try:
                started = time.monotonic()
                # The control socket is a file, so the CLI reaches each daemon from here.
                found = cli_json(homes["amy"], "resolve", "@ben.aura")
                took = time.monotonic() - started
                print(f"amy resolved @ben.aura over mDNS {took:.2f} s after ben was ready")
                assert found["aura_id"] == ben.aura_id
                # "cache" when an announcement already made one dial the other (identify brought
                # the signed claim) before we asked; "mdns" when resolve waited for the announcement.
                assert found["source"] in {"mdns", "cache"}
                assert f"{cable.b_ip}:7700" in found["addresses"]
                back = cli_json(homes["ben"], "resolve", amy.aura_id)  # ben dialled amy's hint too, or now does
                assert back["aura_id"] == amy.aura_id and f"{cable.a_ip}:7700" in back["addresses"]
                status = cli_json(homes["amy"], "dht", "status")
                assert status["mdns"] == {"enabled": True, "peers": 1} and status["bootstrap"] == []
                assert any(
                    p["aura_id"] == ben.aura_id and p["connected"] for p in cli_json(homes["amy"], "peers")["peers"]
                )
            finally:
                ben.stop()
        finally:
            amy.stop()

"""LAN discovery over mDNS: the TXT parser, the discovery object, and two hosts in network namespaces.

The parser is pure and property-tested (any input parses or raises RemoteProtocolError). The
discovery object is tested offline, by feeding it zeroconf ``ServiceInfo`` objects built by hand,
and on real multicast: two instances on 127.0.0.1 in this process, and two processes in two
network namespaces joined by a veth pair (skipped where namespaces cannot be made). Nothing
sleeps: every wait is an event with a timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import selectors
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from zeroconf import ServiceInfo, ServiceStateChange

from auralink.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from auralink.identity import AuraID, Identity
from auralink.wire import Address
from auralink_node.mdns import (
    MAX_ADDRESSES,
    SERVICE_TYPE,
    InvalidAdvertisement,
    MdnsDiscovery,
    MdnsPeer,
    instance_name,
    parse_service,
    service_properties,
)
from tests.netns import Host, Lab
from tests.strategies import IDENTITIES, addresses, handle_names

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = IDENTITIES[0], IDENTITIES[1]
WAIT = 10.0
"""Seconds any one wait may take (discovery itself takes about 1.2 s)."""


def props(
    aura_id: AuraID = ALICE.aura_id, handle: str | None = None, **extra: bytes | None
) -> dict[bytes, bytes | None]:
    properties: dict[bytes, bytes | None] = dict(service_properties(aura_id, handle))
    properties.update({key.encode(): value for key, value in extra.items()})
    return properties


def parse(
    name: str = instance_name(ALICE.aura_id),
    properties: dict[bytes, bytes | None] | None = None,
    hosts: list[str] | None = None,
    port: int | None = 7700,
) -> MdnsPeer:
    return parse_service(name, props() if properties is None else properties, hosts or ["192.0.2.1"], port, 5.0)


# -- the pure parser ---------------------------------------------------------------------------


def test_a_valid_advertisement_parses() -> None:
    peer = parse(properties=props(handle="Alice"), hosts=["192.0.2.1", "fd00::1", "192.0.2.1"])
    assert peer == MdnsPeer(
        ALICE.aura_id, "@alice.aura", (Address("192.0.2.1", 7700), Address("fd00::1", 7700)), seen_at=5.0
    )


def test_txt_keys_are_case_insensitive_and_the_first_occurrence_counts() -> None:
    txt = {b"ID": str(ALICE.aura_id).encode(), b"id": str(BOB.aura_id).encode(), b"V": b"1"}
    assert parse(properties=txt).aura_id == ALICE.aura_id


def test_instance_names_compare_case_insensitively() -> None:
    assert parse(name=instance_name(ALICE.aura_id).upper()).aura_id == ALICE.aura_id


def test_unusable_addresses_are_left_out() -> None:
    peer = parse(hosts=["0.0.0.0", "224.0.0.251", "fe80::1", "10.0.0.7"])
    assert peer.addresses == (Address("10.0.0.7", 7700),)


@pytest.mark.parametrize(
    ("reason", "kwargs"),
    [
        ("name", {"name": "alice._auralink._udp.local."}),
        ("name", {"name": f"{ALICE.aura_id}._other._udp.local."}),
        ("name", {"name": f" {ALICE.aura_id}._auralink._udp.local."}),
        ("id", {"properties": {b"v": b"1"}}),
        ("id", {"properties": props(id=None)}),
        ("id", {"properties": props(id=b"not-an-aura-id")}),
        ("id", {"properties": props(id=b"\xff\xfe")}),
        ("id_mismatch", {"properties": props(aura_id=BOB.aura_id)}),
        ("version", {"properties": props(v=b"2")}),
        ("version", {"properties": props(v=None)}),
        ("handle", {"properties": props(h=b"-alice")}),
        ("handle", {"properties": props(h=b"\xc0")}),
        ("handle", {"properties": props(h=None)}),
        ("handle", {"properties": props(h="@\u0430lice.aura".encode())}),  # a Cyrillic look-alike
        ("port", {"port": None}),
        ("port", {"port": 0}),
        ("addresses", {"hosts": [f"10.0.0.{i}" for i in range(MAX_ADDRESSES + 1)]}),
        ("address", {"hosts": ["example.com"]}),
        ("no_address", {"hosts": ["0.0.0.0", "fe80::1"]}),
    ],
)
def test_each_bad_advertisement_is_rejected_with_its_reason(reason: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidAdvertisement) as caught:
        parse(**kwargs)
    assert caught.value.reason == reason
    assert isinstance(caught.value, RemoteProtocolError)


def dialable(host: str) -> bool:
    ip = ipaddress.ip_address(host)
    return not (ip.is_unspecified or ip.is_multicast or (ip.version == 6 and ip.is_link_local))


@given(
    identity=st.sampled_from(IDENTITIES),
    handle=st.none() | handle_names,
    listed=st.lists(addresses, min_size=1, max_size=MAX_ADDRESSES, unique_by=lambda a: a.host),
    port=st.integers(min_value=1, max_value=0xFFFF),
)
def test_what_we_announce_parses_back(identity: Identity, handle: str | None, listed: list[Address], port: int) -> None:
    hosts = [a.host for a in listed if dialable(a.host)]
    assume(hosts)
    peer = parse_service(
        instance_name(identity.aura_id), service_properties(identity.aura_id, handle), hosts, port, 1.0
    )
    assert peer.aura_id == identity.aura_id
    assert peer.handle == (None if handle is None else f"@{handle}.aura")
    assert [a.host for a in peer.addresses] == hosts
    assert all(a.port == port for a in peer.addresses)


_keys = st.sampled_from([b"id", b"ID", b"v", b"h", b"H", b""]) | st.binary(max_size=16)
_values = (
    st.none()
    | st.sampled_from([str(ALICE.aura_id).encode(), str(BOB.aura_id).encode(), b"1", b"@bob.aura"])
    | st.binary(max_size=80)
)
_names = (
    st.sampled_from([instance_name(ALICE.aura_id), instance_name(BOB.aura_id), SERVICE_TYPE])
    | st.text(max_size=80)
    | st.text(max_size=56).map(lambda label: label + "." + SERVICE_TYPE)
)
_hosts = st.lists(
    st.ip_addresses().map(str) | st.text(max_size=40) | st.sampled_from(["0.0.0.0", "::", "fe80::1"]), max_size=20
)


@given(
    name=_names,
    properties=st.dictionaries(_keys, _values, max_size=6),
    hosts=_hosts,
    port=st.none() | st.integers(min_value=-2, max_value=0x10001),
)
def test_any_advertisement_parses_or_raises_remote_protocol_error(
    name: str, properties: dict[bytes, bytes | None], hosts: list[str], port: int | None
) -> None:
    try:
        peer = parse_service(name, properties, hosts, port, 0.0)
    except RemoteProtocolError:
        return
    assert 1 <= len(peer.addresses) <= MAX_ADDRESSES
    assert peer.handle is None or peer.handle.endswith(".aura")


@given(txt=st.binary(max_size=300))
def test_any_raw_txt_record_parses_or_raises_remote_protocol_error(txt: bytes) -> None:
    properties = ServiceInfo(SERVICE_TYPE, instance_name(ALICE.aura_id), properties=txt).properties
    try:
        peer = parse_service(instance_name(ALICE.aura_id), properties, ["192.0.2.1"], 7700, 0.0)
    except RemoteProtocolError:
        return
    assert peer.aura_id == ALICE.aura_id


# -- the discovery object, fed by hand -----------------------------------------------------------


def advertised(
    identity: Identity, *hosts: str, port: int = 7700, handle: str | None = None, **txt: bytes | None
) -> ServiceInfo:
    """The ServiceInfo zeroconf would hand over for a peer's complete advertisement."""
    return ServiceInfo(
        SERVICE_TYPE,
        instance_name(identity.aura_id),
        port=port,
        properties=props(identity.aura_id, handle, **txt),
        parsed_addresses=list(hosts) or ["192.0.2.9"],
    )


def discovery(identity: Identity = ALICE, **kwargs: Any) -> MdnsDiscovery:
    options: dict[str, Any] = {
        "port": 7700,
        "addresses": [Address("127.0.0.1", 7700)],
        "interfaces": ["127.0.0.1"],
        "handle": None,
    }
    options.update(kwargs)
    return MdnsDiscovery(identity.aura_id, **options)


async def test_new_and_changed_peers_are_reported_once_and_removed_ones_drop_out() -> None:
    seen: list[MdnsPeer] = []
    gone: list[AuraID] = []
    mdns = discovery(on_peer=seen.append, on_gone=gone.append, clock=lambda: 42.0)
    mdns._service_resolved(advertised(BOB, "192.0.2.9", handle="bob"))
    mdns._service_resolved(advertised(BOB, "192.0.2.9", handle="bob"))  # a refresh: nothing new
    mdns._service_resolved(advertised(BOB, "192.0.2.10", handle="bob"))
    assert [p.addresses for p in seen] == [(Address("192.0.2.9", 7700),), (Address("192.0.2.10", 7700),)]
    assert mdns.peers() == [seen[-1]]
    assert mdns.find(aura_id=BOB.aura_id) == mdns.find(handle="@Bob.aura") == seen[-1]
    assert mdns.find(aura_id=ALICE.aura_id) is None
    mdns._on_state_change(None, SERVICE_TYPE, instance_name(BOB.aura_id), ServiceStateChange.Removed)
    assert mdns.peers() == [] and gone == [BOB.aura_id]


async def test_bad_services_and_our_own_are_counted_and_never_raise() -> None:
    mdns = discovery(on_peer=lambda peer: pytest.fail(f"reported {peer}"))
    mdns._service_resolved(advertised(ALICE))
    mdns._service_resolved(advertised(BOB, v=b"9"))
    mdns._service_resolved(advertised(BOB, id=str(ALICE.aura_id).encode()))
    mdns._on_state_change(None, SERVICE_TYPE, "printer._auralink._udp.local.", ServiceStateChange.Added)
    mdns._on_state_change(None, SERVICE_TYPE, instance_name(ALICE.aura_id), ServiceStateChange.Added)
    assert mdns.rejected == {"self": 2, "version": 1, "id_mismatch": 1, "name": 1}
    assert mdns.peers() == []


async def test_a_peer_whose_advertisement_turns_bad_is_forgotten() -> None:
    mdns = discovery()
    mdns._service_resolved(advertised(BOB, handle="bob"))
    mdns._service_resolved(advertised(BOB, h=b"-"))
    assert mdns.peers() == [] and mdns.rejected == {"handle": 1}


async def test_a_failing_on_peer_callback_goes_to_the_loop_exception_handler() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        mdns = discovery(on_peer=lambda peer: 1 / 0)
        mdns._service_resolved(advertised(BOB))
    finally:
        loop.set_exception_handler(None)
    assert isinstance(reported[0]["exception"], ZeroDivisionError)
    assert mdns.find(aura_id=BOB.aura_id) is not None


async def test_wait_for_returns_a_known_peer_a_new_peer_or_none_on_timeout() -> None:
    mdns = discovery()
    mdns._service_resolved(advertised(BOB))
    assert await mdns.wait_for(lambda p: p.aura_id == BOB.aura_id, timeout=0) is not None
    carol = IDENTITIES[2]
    asyncio.get_running_loop().call_soon(mdns._service_resolved, advertised(carol, handle="carol"))
    found = await mdns.wait_for(lambda p: p.aura_id == carol.aura_id, timeout=WAIT)
    assert found is not None and found == mdns.find(handle="carol")
    assert await mdns.wait_for(lambda p: p.handle == "@dave.aura", timeout=0.01) is None


async def test_a_failing_predicate_raises_in_its_own_wait_for() -> None:
    mdns = discovery()
    asyncio.get_running_loop().call_soon(mdns._service_resolved, advertised(BOB))
    with pytest.raises(ZeroDivisionError):
        await mdns.wait_for(lambda p: bool(1 / 0), timeout=WAIT)
    assert mdns.find(aura_id=BOB.aura_id) is not None


def test_only_addresses_mdns_can_carry_are_announced() -> None:
    many = [Address(f"10.0.0.{i}", 7700) for i in range(20)]
    mdns = discovery(addresses=[Address("127.0.0.1", 7701), Address("0.0.0.0", 7700), *many])
    assert mdns._hosts == [a.host for a in many[:MAX_ADDRESSES]]


def test_misuse_is_refused_before_anything_opens() -> None:
    for unusable in ([], [Address("127.0.0.1", 7701)], [Address("0.0.0.0", 7700)]):
        with pytest.raises(LocalProtocolError, match="one port"):
            discovery(addresses=unusable)
    with pytest.raises(LocalProtocolError):
        discovery(port=0)
    with pytest.raises(LocalProtocolError):
        discovery().find()


@pytest.mark.parametrize(
    ("interfaces", "message"),
    [
        ([], "set `mdns_interfaces`"),
        (["eth0"], "not an IP address"),
        (["0.0.0.0"], "not the address of one interface"),
        (["::1"], "use 127.0.0.1"),
        (["203.0.113.7"], "not an address of this machine"),
    ],
)
async def test_start_names_the_config_key_when_interfaces_are_unusable(interfaces: list[str], message: str) -> None:
    mdns = discovery(interfaces=interfaces)
    with pytest.raises(ConfigError, match=message) as caught:
        await mdns.start()
    assert caught.value.field == "mdns_interfaces"
    await mdns.stop()


# -- real multicast on 127.0.0.1, in this process ------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@asynccontextmanager
async def nothing_left_behind() -> AsyncIterator[None]:
    """Assert that the block leaves no thread, task or file descriptor behind."""
    threads, fds = threading.enumerate(), open_fds()
    tasks = asyncio.all_tasks()
    yield
    assert threading.enumerate() == threads
    assert asyncio.all_tasks() == tasks
    assert open_fds() == fds


async def test_two_nodes_on_loopback_find_each_other_and_stop_leaves_nothing_behind() -> None:
    # Fresh keys: other test runs on this machine share 127.0.0.1's multicast, and two responders
    # with the same AuraID would make the second one's probe fail.
    alice, bob = Identity.generate(), Identity.generate()
    gone: asyncio.Future[AuraID] = asyncio.get_running_loop().create_future()
    async with nothing_left_behind():
        a = discovery(alice, handle="@alice.aura", on_gone=gone.set_result)
        b = discovery(bob, port=7701, addresses=[Address("127.0.0.1", 7701)])
        async with a, b:
            assert threading.active_count() == len(threading.enumerate())
            found_bob = await a.wait_for(lambda p: p.aura_id == bob.aura_id, timeout=WAIT)
            found_alice = await b.wait_for(lambda p: p.aura_id == alice.aura_id, timeout=WAIT)
            assert found_bob is not None and found_bob.addresses == (Address("127.0.0.1", 7701),)
            assert found_alice is not None and found_alice.handle == "@alice.aura"
            assert a.registered and b.registered
            await b.stop()  # its goodbye packets (RFC 6762 section 10.1) remove it from a at once
            assert await asyncio.wait_for(gone, WAIT) == bob.aura_id
            assert a.find(aura_id=bob.aura_id) is None


async def test_stop_during_probing_leaves_nothing_behind() -> None:
    async with nothing_left_behind():
        mdns = discovery(Identity.generate())
        await mdns.start()
        assert not mdns.registered
        await mdns.stop()
        await mdns.stop()


# -- two hosts in network namespaces -------------------------------------------------------------

CHILD = """
import asyncio, json, sys, time
from auralink.identity import AuraID, Identity
from auralink.wire import Address
from auralink_node.mdns import MdnsDiscovery

async def main(seed: str, ip: str, other: str, handle: str, timeout: float) -> None:
    me = Identity.from_seed(bytes.fromhex(seed))
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    started = time.monotonic()
    mdns = MdnsDiscovery(me.aura_id, port=7700, addresses=[Address(ip, 7700)], interfaces=[ip], handle=handle)
    async with mdns:
        peer = await mdns.wait_for(lambda p: p.aura_id == AuraID.parse(other), timeout)
        report = {"me": str(me.aura_id), "seconds": time.monotonic() - started, "peer": None}
        if peer is not None:
            report["peer"] = {
                "aura_id": str(peer.aura_id), "handle": peer.handle, "addresses": [str(a) for a in peer.addresses]
            }
        print(json.dumps(report), flush=True)
        async with asyncio.timeout(timeout):
            await stdin.read()  # stay announced until the parent has both reports
    print(json.dumps({"rejected": dict(mdns.rejected)}), flush=True)

asyncio.run(main(*sys.argv[1:5], float(sys.argv[5])))
"""


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next line ``proc`` prints, parsed; fails after ``timeout`` seconds without sleeping."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=timeout), f"no output within {timeout} s"
    line = proc.stdout.readline()
    assert line, f"exited with {proc.wait(timeout=timeout)} before reporting"
    return dict(json.loads(line))


def discover_across_namespaces(lab: Lab, stderr_dir: Path) -> list[dict[str, Any]]:
    """Run one discovery process in each of two hosts joined by a veth pair; their reports."""
    a, b = lab.host("a"), lab.host("b")
    cable = lab.link(a, b)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    plan: list[tuple[Host, Identity, str, Identity, str]] = [
        (a, ALICE, cable.a_ip, BOB, "@alice.aura"),
        (b, BOB, cable.b_ip, ALICE, "@bob.aura"),
    ]
    procs = []
    logs = ExitStack()
    log_paths = [stderr_dir / f"{host.name}.log" for host, *_ in plan]
    for (host, me, ip, other, handle), log_path in zip(plan, log_paths, strict=True):
        procs.append(
            host.popen(
                sys.executable,
                "-c",
                CHILD,
                me.seed.hex(),
                ip,
                str(other.aura_id),
                handle,
                str(WAIT),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logs.enter_context(log_path.open("w")),
                env=env,
                cwd=ROOT,
            )
        )
    with logs:
        reports = [read_json_line(proc, 2 * WAIT) for proc in procs]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc, log_path in zip(procs, log_paths, strict=True):
            final = read_json_line(proc, WAIT)
            assert proc.wait(timeout=WAIT) == 0, log_path.read_text()
            assert set(final["rejected"]) <= {"self"}  # alone on the link, each only hears itself besides the peer
    return reports


@pytest.mark.natlab
def test_two_hosts_joined_by_a_veth_pair_discover_each_other(tmp_path: Path) -> None:
    with Lab() as lab:
        alice, bob = discover_across_namespaces(lab, tmp_path)
        cable = lab.links[0]
    assert alice["peer"] == {"aura_id": str(BOB.aura_id), "handle": "@bob.aura", "addresses": [f"{cable.b_ip}:7700"]}
    assert bob["peer"] == {"aura_id": str(ALICE.aura_id), "handle": "@alice.aura", "addresses": [f"{cable.a_ip}:7700"]}


@pytest.mark.natlab
def test_the_lab_removes_its_namespaces_even_when_the_test_fails() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        names = [lab.host("a").name, lab.host("b").name]
        lab.link(lab.hosts[0], lab.hosts[1])
        raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert names and not any(name in listed.split() for name in names)

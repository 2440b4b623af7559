"""Two embedded meshes on this host that can call each other (fixtures for the call tests).

aioice never offers 127.0.0.1 as a candidate, so calls between two meshes on one host need a
non-loopback address; modules that import these fixtures skip when the host has none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import ifaddr
import pytest

import auralink
from auralink.mesh import Mesh
from tests.daemons import cli

HAS_NON_LOOPBACK = any(
    not ipaddress.ip_address((ip.ip if isinstance(ip.ip, str) else ip.ip[0]).split("%")[0]).is_loopback
    for adapter in ifaddr.get_adapters()
    for ip in adapter.ips
)
"""aioice gathers candidates only from non-loopback addresses."""

needs_candidates = pytest.mark.skipif(
    not HAS_NON_LOOPBACK, reason="only loopback here: aioice never offers 127.0.0.1 as a candidate"
)


async def embedded_mesh(tmp_path: Path, name: str) -> AsyncIterator[Mesh]:
    """An embedded mesh whose identity holds ``@name.aura``."""
    home = tmp_path / name
    assert cli(home, "init", "--handle", name).returncode == 0
    async with auralink.connect(home, backend="embedded", listen=["127.0.0.1:0"]) as mesh:
        yield mesh


@pytest.fixture
async def alice(tmp_path: Path) -> AsyncIterator[Mesh]:
    async for mesh in embedded_mesh(tmp_path, "alice"):
        yield mesh


@pytest.fixture
async def bob(tmp_path: Path, alice: Mesh) -> AsyncIterator[Mesh]:
    async for mesh in embedded_mesh(tmp_path, "bob"):
        await alice.dial(mesh.identity.aura_id, [str((await mesh.status())["listen"][0])])
        yield mesh


async def settled(tasks_before: set[asyncio.Task[object]], threads_before: int) -> tuple[list[object], int]:
    """Wait (bounded: 5 s) until the tasks and threads started since the baseline are gone; returns what is left."""
    leftover: list[object] = []
    for _ in range(100):
        leftover = [t for t in asyncio.all_tasks() - tasks_before if t is not asyncio.current_task()]
        if not leftover and threading.active_count() <= threads_before:
            break
        await asyncio.sleep(0.05)
    return leftover, threading.active_count()

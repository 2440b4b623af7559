"""Two embedded meshes on this host that can call each other (fixtures for the call tests).

aioice never offers 127.0.0.1 as a candidate, so calls between two meshes on one host need a
non-loopback address; modules that import these fixtures skip when the host has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
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


def embedded(tmp_path: Path, name: str) -> contextlib.AbstractAsyncContextManager[Mesh]:
    """An embedded mesh whose identity holds ``@name.aura`` (a fresh home under ``tmp_path``)."""
    home = tmp_path / name
    assert cli(home, "init", "--handle", name).returncode == 0
    return auralink.connect(home, backend="embedded", listen=["127.0.0.1:0"])


async def embedded_mesh(tmp_path: Path, name: str) -> AsyncIterator[Mesh]:
    """:func:`embedded` as an async generator, for fixtures."""
    async with embedded(tmp_path, name) as mesh:
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


def open_sockets() -> int:
    """Sockets this process holds open (from /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed while we looked
    return count


def call_threads() -> set[str]:
    """Threads other than asyncio's default-executor workers (``asyncio_N``).

    aiortc encodes in ``loop.run_in_executor(None, ...)``: the loop's shared, bounded worker pool
    (``min(32, cpus + 4)`` threads) keeps its workers for the next job, as any asyncio app's
    would. Everything else a call starts (decoder threads, media readers) must end with it.
    """
    return {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def settled(tasks_before: set[asyncio.Task[object]], threads_before: set[str]) -> tuple[list[object], set[str]]:
    """Wait (bounded: 5 s) until tasks and threads started since the baseline are gone; returns what is left."""
    leftover: list[object] = []
    extra: set[str] = set()
    for _ in range(100):
        leftover = [t for t in asyncio.all_tasks() - tasks_before if t is not asyncio.current_task()]
        extra = call_threads() - threads_before
        if not leftover and not extra:
            break
        await asyncio.sleep(0.05)  # bounded polling: threads end on their own schedule
    return leftover, extra

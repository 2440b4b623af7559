"""Real in-process nodes on loopback for tests: a home with a fresh key, and a running node."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from auralink.identity import Identity
from auralink_node.config import NodeConfig
from auralink_node.home import NodeHome
from auralink_node.node import Node


def make_home(root: Path, name: str) -> NodeHome:
    """``root/name`` with a new, unsealed identity."""
    home = NodeHome(root / name)
    home.root.mkdir(parents=True, exist_ok=True)
    home.keystore().create(Identity.generate())
    return home


@contextlib.asynccontextmanager
async def running(home: NodeHome, **config: Any) -> AsyncIterator[Node]:
    """A node of ``home`` on 127.0.0.1 (port 0), without a control socket; ``config`` sets other keys."""
    async with Node(home, NodeConfig(listen=("127.0.0.1:0",), **config), control_api=False) as node:
        yield node

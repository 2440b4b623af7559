"""The node's persistent memory: SQLite at ``<home>/node.db``.

Theory of operation
-------------------
:class:`NodeStore` (in :mod:`auralink_node.store.db`) keeps the peers a node has seen, their
addresses and per-path statistics across restarts, ``kill -9`` included. The schema grows by
appending a :class:`Migration` to :data:`MIGRATIONS`; later layers (reputation, DHT contacts) add
their tables that way. See :mod:`auralink_node.store.db` for durability, refusals and threading.
"""

from auralink_node.store.db import (
    ADDRESS_SOURCES,
    MIGRATIONS,
    AddressRow,
    AddressSource,
    Migration,
    NodeStore,
    PathRow,
    PeerRow,
    StoreCorrupt,
    StoreError,
    StoreTooNew,
    direct_path,
    relay_path,
)

__all__ = [
    "ADDRESS_SOURCES",
    "MIGRATIONS",
    "AddressRow",
    "AddressSource",
    "Migration",
    "NodeStore",
    "PathRow",
    "PeerRow",
    "StoreCorrupt",
    "StoreError",
    "StoreTooNew",
    "direct_path",
    "relay_path",
]

"""The daemon's errors: an extension of :mod:`auralink.errors`, not a second tree.

```text
auralink.errors.AuralinkError
└── NodeError                     something about this node (its home, its daemon) is wrong
    ├── HomeError                 the node home directory is unusable
    ├── StoreError                the node database cannot be used
    │   ├── StoreCorrupt          not SQLite, damaged, or another program's database
    │   └── StoreTooNew           written by a newer AuraLink
    └── DHTError                  the DHT could not do what was asked
        ├── PublishFailed         no node in the network accepted a record
        └── UnsafeOperation       a kademlia feature AuraLink forbids (pickle state files)

auralink.errors.RemoteProtocolError
└── InvalidAdvertisement          an mDNS service that is not a valid AuraLink announcement
```

Configuration problems raise :class:`auralink.errors.ConfigError` (with ``field`` set), and
identity problems the :class:`auralink.errors.IdentityError` family, exactly as in the SDK. A
CLI command that finds no daemon raises the SDK's
:class:`auralink.mesh.daemon.DaemonUnavailable` (a :class:`~auralink.errors.ConnectionClosed`).
"""

from __future__ import annotations

from auralink.errors import AuralinkError, RemoteProtocolError

__all__ = [
    "DHTError",
    "HomeError",
    "InvalidAdvertisement",
    "NodeError",
    "PublishFailed",
    "StoreCorrupt",
    "StoreError",
    "StoreTooNew",
    "UnsafeOperation",
]


class InvalidAdvertisement(RemoteProtocolError):
    """A service under ``_auralink._udp.local.`` that is not a valid AuraLink advertisement."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """A short key for counting: ``name``, ``id``, ``handle``... (see :mod:`auralink_node.mdns`)."""


class NodeError(AuralinkError):
    """Something about this node (its home, its daemon) is wrong."""


class HomeError(NodeError):
    """The node home directory cannot be used."""


class StoreError(NodeError):
    """The node database cannot be opened, read or written."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreCorrupt(StoreError):
    """The file is not a SQLite database, is damaged, or belongs to another program."""


class StoreTooNew(StoreError):
    """The file was written by a newer AuraLink, with a schema this build does not know."""

    def __init__(self, message: str, path: str, version: int, supported: int) -> None:
        super().__init__(message, path)
        self.version = version
        self.supported = supported


class DHTError(NodeError):
    """The DHT could not do what was asked."""


class PublishFailed(DHTError):
    """No node accepted the record: none answered, or every one rejected it."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class UnsafeOperation(DHTError):
    """A kademlia feature that AuraLink forbids, such as pickled state files."""

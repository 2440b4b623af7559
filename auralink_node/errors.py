"""The daemon's errors: an extension of :mod:`auralink.errors`, not a second tree.

```text
auralink.errors.AuralinkError
└── NodeError                     something about this node (its home, its daemon) is wrong
    ├── HomeError                 the node home directory is unusable
    └── StoreError                the node database cannot be used
        ├── StoreCorrupt          not SQLite, damaged, or another program's database
        └── StoreTooNew           written by a newer AuraLink
```

Configuration problems raise :class:`auralink.errors.ConfigError` (with ``field`` set), and
identity problems the :class:`auralink.errors.IdentityError` family, exactly as in the SDK. A
CLI command that finds no daemon raises the SDK's
:class:`auralink.mesh.daemon.DaemonUnavailable` (a :class:`~auralink.errors.ConnectionClosed`).
"""

from __future__ import annotations

from auralink.errors import AuralinkError

__all__ = ["HomeError", "NodeError", "StoreCorrupt", "StoreError", "StoreTooNew"]


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

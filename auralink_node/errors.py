"""The daemon's errors: an extension of :mod:`auralink.errors`, not a second tree.

```text
auralink.errors.AuralinkError
└── NodeError                     something about this node (its home, its daemon) is wrong
    ├── HomeError                 the node home directory is unusable
    └── DaemonNotRunning          the CLI found no daemon on the control socket
```

Configuration problems raise :class:`auralink.errors.ConfigError` (with ``field`` set), and
identity problems the :class:`auralink.errors.IdentityError` family, exactly as in the SDK.
"""

from __future__ import annotations

from auralink.errors import AuralinkError

__all__ = ["DaemonNotRunning", "HomeError", "NodeError"]


class NodeError(AuralinkError):
    """Something about this node (its home, its daemon) is wrong."""


class HomeError(NodeError):
    """The node home directory cannot be used."""


class DaemonNotRunning(NodeError):
    """No daemon answers on the control socket of this home."""

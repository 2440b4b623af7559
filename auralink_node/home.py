"""Where a node keeps its files, and what each file is.

The home is chosen once, in this order: ``--home DIR``, then ``$AURALINK_HOME``, then
``~/.auralink``. It holds:

* ``key``: the keystore (mode 0600), see :mod:`auralink.identity.keystore`;
* ``config.toml``: the node's configuration, see :mod:`auralink_node.config`.

Later layers add ``node.db`` (SQLite) and ``node.sock`` (the control API) beside them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from auralink.identity.keystore import KdfLimits, Keystore

__all__ = ["NodeHome", "resolve_home"]


def resolve_home(explicit: Path | str | None = None, environ: dict[str, str] | None = None) -> Path:
    """Pick the home directory: the explicit argument, else ``$AURALINK_HOME``, else ``~/.auralink``."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser()
    if env.get("AURALINK_HOME"):
        return Path(env["AURALINK_HOME"]).expanduser()
    return Path.home() / ".auralink"


@dataclass(frozen=True, slots=True)
class NodeHome:
    """The files of one node."""

    root: Path
    """The home directory itself."""

    @property
    def key_path(self) -> Path:
        """The keystore file."""
        return self.root / "key"

    @property
    def config_path(self) -> Path:
        """The TOML configuration file."""
        return self.root / "config.toml"

    def keystore(self, kdf: KdfLimits | None = None) -> Keystore:
        """The keystore object for this home (nothing is read yet)."""
        return Keystore(self.key_path, kdf=kdf)

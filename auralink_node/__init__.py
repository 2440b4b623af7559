"""The AuraLink node: the daemon ``auralink-node`` and the library behind it.

Today it provides the node home (:mod:`auralink_node.home`), the configuration model
(:mod:`auralink_node.config`) and the CLI (:mod:`auralink_node.cli`). The QUIC transport,
discovery, relays and routing arrive in later layers.
"""

import logging

from auralink_node.config import NodeConfig
from auralink_node.errors import NodeError
from auralink_node.home import NodeHome, resolve_home

__all__ = ["NodeConfig", "NodeError", "NodeHome", "resolve_home"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

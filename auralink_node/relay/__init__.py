"""Relays: nodes that forward opaque packets between AuraIDs that cannot reach each other directly.

Theory of operation
-------------------
A relay (``auralink-node up --relay``) runs a :class:`RelayService`; every node may hold a
session on it through a :class:`RelayLink`. The end-to-end QUIC connection between two nodes
runs *through* the relay, packet by packet: the relay sees the two AuraIDs and ciphertext, and
nothing else. A connection can start on a relay and move to a direct path, and back, without
QUIC noticing (:meth:`PeerConnection.set_path
<auralink_node.transport.connection.PeerConnection.set_path>`), as iroh's relays do.
:mod:`auralink_node.relay.protocol` is the wire format.
"""

from auralink_node.relay.client import RelayLink, RelayPath
from auralink_node.relay.protocol import RELAY_PROTOCOL
from auralink_node.relay.server import RelayPolicy, RelayService, TokenBucket

__all__ = ["RELAY_PROTOCOL", "RelayLink", "RelayPath", "RelayPolicy", "RelayService", "TokenBucket"]

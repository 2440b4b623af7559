"""The node's transport: identity-bound QUIC over one UDP socket per listen address.

* :mod:`.tls`: certificates carrying the node's Ed25519 key, and the peer-key check.
* :mod:`.quic`: aioquic's connection with client certificates and read-driven receive credit.
* :mod:`.connection`: :class:`PeerConnection`, the asyncio pump around one connection.
* :mod:`.streams`: :class:`MeshStream`, protocol-tagged streams with backpressure.
* :mod:`.endpoint`: :class:`Endpoint`, sockets, admission control, dialling and routing.
"""

from auralink_node.transport.connection import PeerConnection
from auralink_node.transport.endpoint import MESH_ALPN, Endpoint, ProtocolRouter, StreamHandler, TransportConfig
from auralink_node.transport.streams import ErrorCode, MeshStream

__all__ = [
    "MESH_ALPN",
    "Endpoint",
    "ErrorCode",
    "MeshStream",
    "PeerConnection",
    "ProtocolRouter",
    "StreamHandler",
    "TransportConfig",
]

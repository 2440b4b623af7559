"""TURN on relay nodes: a media fallback for callers that no direct ICE path can connect.

Theory of operation
-------------------
When both callers sit behind symmetric NATs, ICE's host and server-reflexive candidates fail
and media must go through a relay. Relay nodes run a standard TURN server (RFC 8656, UDP
allocations), so any WebRTC stack can use them: aiortc's ICE agent (aioice) has a TURN client,
and so does every browser. The pieces:

* :mod:`auralink_node.turn.core`: :class:`TurnServer`, the sans-I/O server (allocations,
  permissions, channels, nonces, quotas), driven with explicit time;
* :mod:`auralink_node.turn.server`: :class:`TurnService`, its asyncio adapter on UDP sockets,
  and the ``auralink/turn/1`` stream handler that issues credentials to AuraIDs the mesh has
  authenticated;
* :mod:`auralink_node.turn.credentials`: "TURN REST API" credentials,
  ``username = "<expires_at>:<AuraID>"`` and ``password = base64(HMAC-SHA1(secret, username))``.

The client side is :func:`auralink.calls.turn.turn_server`.
"""

from auralink_node.turn.core import TurnConfig, TurnServer
from auralink_node.turn.server import DEFAULT_TURN_PORT, TURN_PROTOCOL, TurnService

__all__ = ["DEFAULT_TURN_PORT", "TURN_PROTOCOL", "TurnConfig", "TurnServer", "TurnService"]

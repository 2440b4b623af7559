"""Calls between AuraIDs: signaling over the mesh, media and data peer to peer with aiortc.

Theory of operation
-------------------
The package has three layers, from the bottom up:

* :mod:`auralink.calls.messages`: the ``auralink/signal/1`` wire messages (offer, answer,
  trickled ICE candidates, ringing, hang-up) and their codec. Pure.
* :mod:`auralink.calls.signaling`: :class:`CallSignaling`, one call's signaling as a sans-I/O
  state machine with explicit time, glare handling and timeouts. Pure.
* :mod:`auralink.calls.grants`, :mod:`auralink.calls.room_state` and
  :mod:`auralink.calls.room`: rooms whose owner signs capability grants, checked by an SFU that
  forwards encoded video (``mesh.create_room``, ``mesh.grant``, ``mesh.join_room``).
* :mod:`auralink.calls.ice` and :mod:`auralink.calls.call`: the aiortc side. ICE configuration is
  always explicit (never aiortc's default public STUN server), and :class:`CallAgent` pumps the
  machines over mesh streams. aiortc is imported lazily: without the ``calls`` extra the pure
  layers still import, and the aiortc layer raises :class:`~auralink.errors.CallsNotInstalled`.

```python
async with auralink.connect() as mesh:
    async with await mesh.call("@bob.aura", video=stamped_video(), audio=True) as call:
        call.send(b"hello")                       # data channel
        async for frame in (await call.track("video")).frames():
            ...
```

:mod:`auralink.calls.media` has the sources (files, devices, numpy frames, test patterns) and
the sinks (callbacks, iterators, recorders) of a call's tracks.
"""

from __future__ import annotations

from auralink.calls.call import Call, CallAgent, CallEvent, CallPath, CallStats, Invite, PathChanged, TrackAdded
from auralink.calls.grants import Capability, Grant, RoomId, verify
from auralink.calls.ice import IceConfig, IceServer, checked_configuration, rtc_configuration
from auralink.calls.media import FileSource, RemoteTrack
from auralink.calls.messages import SIGNAL_PROTOCOL, HangupReason, MediaKinds
from auralink.calls.room import Room, RoomEvent, RoomServer, Subscription
from auralink.calls.room_messages import ROOM_PROTOCOL
from auralink.calls.room_state import RoomConfig
from auralink.calls.signaling import CallConnected, CallEnded, CallSignaling, CallState, SignalingTimeouts

__all__ = [
    "ROOM_PROTOCOL",
    "SIGNAL_PROTOCOL",
    "Call",
    "CallAgent",
    "CallConnected",
    "CallEnded",
    "CallEvent",
    "CallPath",
    "CallSignaling",
    "CallState",
    "CallStats",
    "Capability",
    "FileSource",
    "Grant",
    "HangupReason",
    "IceConfig",
    "IceServer",
    "Invite",
    "MediaKinds",
    "PathChanged",
    "RemoteTrack",
    "Room",
    "RoomConfig",
    "RoomEvent",
    "RoomId",
    "RoomServer",
    "SignalingTimeouts",
    "Subscription",
    "TrackAdded",
    "checked_configuration",
    "rtc_configuration",
    "verify",
]

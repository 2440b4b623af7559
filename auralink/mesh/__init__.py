"""The mesh from an app's point of view: ``async with auralink.connect() as mesh``.

Theory of operation
-------------------
:func:`connect` gives a :class:`Mesh` for a node home. If a daemon (``auralink-node up``) serves
that home, the mesh is a client of its control socket: JSON calls over HTTP, and streams proxied
through HTTP upgrades (:mod:`auralink.mesh.daemon`). Otherwise it starts an embedded node in this
process; that is the one place the SDK imports ``auralink_node``, lazily. Apps see the same
operations, the same :class:`~auralink.mesh.stream.Stream` interface and the same exceptions on
both back ends; the test suite runs the same scenarios against both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from auralink.errors import AuralinkError, ConfigError, ConnectionError_, RemoteProtocolError
from auralink.identity import AuraID
from auralink.mesh.daemon import DaemonClient, DaemonUnavailable, ProxyStream
from auralink.mesh.resolution import Resolution, ResolveSource

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from auralink.calls.call import Call, Invite
    from auralink.calls.grants import Capability, Grant, RoomId
    from auralink.calls.ice import IceConfig
    from auralink.calls.room import Room
    from auralink.calls.room_state import RoomConfig
from auralink.mesh.stream import Stream, StreamHandler
from auralink.wire import Address, Buffer, FrameDecoder
from auralink.wire import proxy as wire

__all__ = [
    "Mesh",
    "MeshIdentity",
    "PeerInfo",
    "Resolution",
    "ResolveSource",
    "Stream",
    "StreamHandler",
    "connect",
]

logger = logging.getLogger(__name__)

Backend = Literal["auto", "embedded", "daemon"]


@dataclass(frozen=True, slots=True)
class MeshIdentity:
    """Who this mesh endpoint is."""

    aura_id: AuraID
    """The node's AuraID."""
    handle: str | None
    """Its handle, if configured."""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """An authenticated connection to a peer."""

    aura_id: AuraID
    """The peer's proven AuraID."""
    address: Address
    """Where the connection goes."""


def _home(home: Path | str | None) -> Path:
    if home:
        return Path(home).expanduser()
    if os.environ.get("AURALINK_HOME"):
        return Path(os.environ["AURALINK_HOME"]).expanduser()
    return Path.home() / ".auralink"


def _is_handle(target: AuraID | str) -> bool:
    return isinstance(target, str) and (target.strip().startswith("@") or target.strip().endswith(".aura"))


class Mesh:
    """Operations on the mesh; obtained from :func:`connect`. Targets are AuraIDs or ``@handles``."""

    backend: str
    """``"embedded"`` (a node in this process) or ``"daemon"`` (the home's running daemon)."""
    identity: MeshIdentity
    """This node's AuraID and handle."""

    async def resolve(self, target: AuraID | str) -> Resolution:
        """Where ``target`` (an AuraID or ``@handle``) is: its current key, handle and addresses.

        The node answers from records it holds, or races the DHT and mDNS; the first valid
        record wins. Raises :class:`~auralink.errors.ResolveFailed` if nobody knows the target.
        """
        raise NotImplementedError

    async def peer_of(self, target: AuraID | str) -> AuraID:
        """``target`` itself if it is an AuraID, else the key its handle resolves to."""
        if not _is_handle(target):
            return target if isinstance(target, AuraID) else AuraID.parse(str(target))
        return (await self.resolve(target)).aura_id

    async def dial(self, target: AuraID | str, addresses: Sequence[Address | str] = ()) -> PeerInfo:
        """Connect to ``target`` (authenticated by its AuraID) and exchange records with it."""
        raise NotImplementedError

    async def open_stream(self, target: AuraID | str, protocol: str, addresses: Sequence[Address | str] = ()) -> Stream:
        """Open a ``protocol`` stream to ``target``, connecting first if needed."""
        raise NotImplementedError

    async def serve(self, protocol: str, handler: StreamHandler) -> None:
        """Serve incoming ``protocol`` streams with ``handler`` until the mesh closes."""
        raise NotImplementedError

    async def ping(
        self, target: AuraID | str, addresses: Sequence[Address | str] = (), *, count: int = 1
    ) -> dict[str, Any]:
        """Ping ``target``; returns ``{"target", "sent", "received", "rtt_ms": {...}}``."""
        raise NotImplementedError

    async def status(self) -> dict[str, Any]:
        """The node's status."""
        raise NotImplementedError

    _exit: contextlib.AsyncExitStack
    _agent: Any = None

    async def call(
        self,
        target: AuraID | str,
        *,
        audio: bool | MediaStreamTrack = False,
        video: bool | MediaStreamTrack = False,
        data: bool = True,
        aic: str | None = None,
    ) -> Call:
        """Call ``target`` (an AuraID or ``@handle``); returns once connected (see :mod:`auralink.calls`).

        ``audio``/``video``: False, True (receive only) or a track to send (:mod:`auralink.calls.media`).
        ``aic``: ``conservative``, ``adaptive`` or ``aggressive`` lets AIC drive the video encoder.

        Needs the ``calls`` extra (aiortc). Raises :class:`~auralink.errors.CallDeclined` if the
        callee declines or is busy, :class:`~auralink.errors.CallFailed` if it never connects.
        """
        agent = await self._call_agent()
        call: Call = await agent.call(target, audio=audio, video=video, data=data, aic=aic)
        return call

    async def incoming_calls(self) -> AsyncIterator[Invite]:
        """Calls to this mesh as they ring; ``accept()`` or ``decline(reason)`` each."""
        agent = await self._call_agent()
        async for invite in agent.incoming():
            yield invite

    # -- rooms ----------------------------------------------------------------------------------
    async def create_room(
        self, name: str, *, host: bool = True, config: RoomConfig | None = None, ice: IceConfig | None = None
    ) -> RoomId:
        """A room owned by this mesh's identity (only it signs the room's grants; see :meth:`grant`).

        With ``host`` this mesh also serves the room as its SFU (:class:`~auralink.calls.room.RoomServer`,
        started once and kept until the mesh closes); ``config`` and ``ice`` apply to that server.
        Needs the ``calls`` extra.
        """
        from auralink.calls.grants import RoomId  # noqa: PLC0415

        room = RoomId(self.identity.aura_id, name)
        if host and self._rooms is None:
            from auralink.calls.room import RoomServer  # noqa: PLC0415 - aiortc loads only for rooms

            self._rooms = await self._exit.enter_async_context(RoomServer(self, config=config, ice=ice))
        return room

    async def grant(
        self,
        room: RoomId | str,
        subject: AuraID | str,
        capabilities: Capability | None = None,
        *,
        ttl: float = 3600.0,
        not_before: int | None = None,
    ) -> Grant:
        """Sign a grant for ``subject`` (an AuraID or ``@handle``) in one of our rooms, valid for ``ttl`` seconds.

        ``capabilities`` default to an ordinary participant's (join, publish, subscribe,
        publish_data). The grant is signed by this mesh's key (by the daemon, over its control
        socket, when the mesh is a daemon client); hand it to the participant, who passes it to
        :meth:`join_room`.
        """
        from auralink.calls.grants import Capability, RoomId  # noqa: PLC0415

        room_id = room if isinstance(room, RoomId) else RoomId(self.identity.aura_id, room)
        if room_id.owner != self.identity.aura_id:
            raise ConfigError(f"only the owner of {room_id.short()} can sign its grants", "room")
        start = int(time.time()) if not_before is None else not_before
        return await self._sign_grant(
            room_id,
            await self.peer_of(subject),
            capabilities if capabilities is not None else Capability.participant(),
            start,
            start + max(1, round(ttl)),
        )

    async def _sign_grant(
        self, room: RoomId, subject: AuraID, capabilities: Capability, not_before: int, expires_at: int
    ) -> Grant:
        raise NotImplementedError

    def join_room(self, sfu: AuraID | str, grant: Grant, *, ice: IceConfig | None = None) -> Room:
        """Join the room of ``grant`` on the SFU node ``sfu``: ``async with mesh.join_room(sfu, grant) as room``."""
        from auralink.calls.room import Room  # noqa: PLC0415

        return Room(self, sfu, grant, ice=ice)

    _rooms: Any = None

    async def _call_agent(self) -> Any:
        if self._agent is None:
            from auralink.calls.call import CallAgent  # noqa: PLC0415 - aiortc loads only for calls

            self._agent = await self._exit.enter_async_context(CallAgent(self))
        return self._agent


class _EmbeddedMesh(Mesh):
    backend = "embedded"

    def __init__(self, node: Any) -> None:
        self._node = node
        self.identity = MeshIdentity(node.aura_id, node.config.handle)

    async def resolve(self, target: AuraID | str) -> Resolution:
        resolution: Resolution = await self._node.resolve(target)
        return resolution

    async def _sign_grant(
        self, room: RoomId, subject: AuraID, capabilities: Capability, not_before: int, expires_at: int
    ) -> Grant:
        from auralink.calls.grants import Grant  # noqa: PLC0415

        return Grant.create(
            self._node.identity, room, subject, capabilities, not_before=not_before, expires_at=expires_at
        )

    async def dial(self, target: AuraID | str, addresses: Sequence[Address | str] = ()) -> PeerInfo:
        conn = await self._node.dial(await self.peer_of(target), [Address.parse(str(a)) for a in addresses])
        return PeerInfo(conn.peer, conn.remote)

    async def open_stream(self, target: AuraID | str, protocol: str, addresses: Sequence[Address | str] = ()) -> Stream:
        stream: Stream = await self._node.open_stream(
            await self.peer_of(target), protocol, [Address.parse(str(a)) for a in addresses]
        )
        return stream

    async def serve(self, protocol: str, handler: StreamHandler) -> None:
        self._node.serve(protocol, handler)

    async def ping(
        self, target: AuraID | str, addresses: Sequence[Address | str] = (), *, count: int = 1
    ) -> dict[str, Any]:
        report = await self._node.ping(
            await self.peer_of(target), [Address.parse(str(a)) for a in addresses], count=count
        )
        result: dict[str, Any] = report.as_dict()
        return result

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._node.status()
        return result


class _DaemonMesh(Mesh):
    backend = "daemon"

    def __init__(self, client: DaemonClient, status: dict[str, Any], tasks: asyncio.TaskGroup) -> None:
        self._client = client
        self._tasks = tasks
        self._workers: set[asyncio.Task[None]] = set()
        self.identity = MeshIdentity(AuraID.parse(status["aura_id"]), status.get("handle"))

    def _spawn(self, coro: Any) -> None:
        task = self._tasks.create_task(coro)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    def cancel_workers(self) -> None:
        for task in list(self._workers):
            task.cancel()

    async def resolve(self, target: AuraID | str) -> Resolution:
        body = await self._client.request("GET", f"/v1/resolve?{urlencode({'target': str(target).strip()})}")
        return Resolution.from_dict(body)

    async def _sign_grant(
        self, room: RoomId, subject: AuraID, capabilities: Capability, not_before: int, expires_at: int
    ) -> Grant:
        from auralink.calls.grants import decode_grant  # noqa: PLC0415

        body = await self._client.request(
            "POST",
            "/v1/grants",
            {
                "room": room.name,
                "subject": str(subject),
                "capabilities": int(capabilities),
                "not_before": not_before,
                "expires_at": expires_at,
            },
        )
        return decode_grant(bytes.fromhex(str(body["grant"])))

    async def dial(self, target: AuraID | str, addresses: Sequence[Address | str] = ()) -> PeerInfo:
        body = await self._client.request(
            "POST",
            "/v1/connect",
            {
                "aura_id": str(await self.peer_of(target)),
                "addresses": [str(a) for a in addresses],
            },
        )
        return PeerInfo(AuraID.parse(body["aura_id"]), Address.parse(body["address"]))

    async def open_stream(self, target: AuraID | str, protocol: str, addresses: Sequence[Address | str] = ()) -> Stream:
        return await self._client.open_stream(await self.peer_of(target), protocol, tuple(str(a) for a in addresses))

    async def serve(self, protocol: str, handler: StreamHandler) -> None:
        reader, writer, early = await self._client.listen(protocol)
        self._spawn(self._listen(protocol, handler, reader, writer, early))

    async def _listen(
        self,
        protocol: str,
        handler: StreamHandler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        early: bytes,
    ) -> None:
        decoder = FrameDecoder(max_size=wire.MAX_PROXY_FRAME)
        decoder.feed(early)
        try:
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    data = await reader.read(65536)
                    if not data:
                        logger.warning("the daemon closed the listener for %s", protocol)
                        return
                    decoder.feed(data)
                    continue
                if frame.type != wire.INCOMING:
                    raise RemoteProtocolError(f"unexpected listener frame type {frame.type}")
                buf = Buffer(frame.payload)
                ticket = buf.pull_varint()
                peer = AuraID(buf.pull_bytes(AuraID.SIZE))
                self._spawn(self._run_handler(ticket, protocol, peer, handler))
        except (AuralinkError, ConnectionError) as exc:  # never take the app's mesh down with the listener
            logger.warning("listener for %s ended: %s", protocol, exc)
        finally:
            writer.close()

    async def _run_handler(self, ticket: int, protocol: str, peer: AuraID, handler: StreamHandler) -> None:
        try:
            stream: ProxyStream = await self._client.accept(ticket, protocol, peer)
        except AuralinkError as exc:
            logger.info("could not claim incoming %s stream: %s", protocol, exc)
            return
        try:
            await handler(stream)
        except ConnectionError_ as exc:
            logger.debug("stream %r ended: %s", stream, exc)
        except Exception:  # an app's handler bug must not end the mesh; log it loudly
            logger.exception("handler for %s failed", protocol)
            stream.reset()

    async def ping(
        self, target: AuraID | str, addresses: Sequence[Address | str] = (), *, count: int = 1
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._client.request(
            "POST",
            "/v1/ping",
            {"target": str(target), "addresses": [str(a) for a in addresses], "count": count},
            timeout=30.0 + count * 5.0,
        )
        return result

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._client.request("GET", "/v1/status")
        return result


@contextlib.asynccontextmanager
async def connect(
    home: Path | str | None = None,
    *,
    backend: Backend = "auto",
    listen: Sequence[str] | None = None,
    passphrase: bytes | None = None,
) -> AsyncIterator[Mesh]:
    """The mesh of node home ``home`` (default: ``$AURALINK_HOME`` or ``~/.auralink``).

    With ``backend="auto"`` a running daemon for the home is used if there is one; otherwise an
    embedded node starts in this process (``listen`` and ``passphrase`` apply to it only).
    """
    root = _home(home)
    socket_path = root / "node.sock"
    if backend in ("auto", "daemon"):
        client = DaemonClient(socket_path)
        try:
            status = await client.request("GET", "/v1/status")
        except DaemonUnavailable:
            await client.aclose()
            if backend == "daemon":
                raise
        else:
            try:
                async with asyncio.TaskGroup() as tasks:
                    mesh = _DaemonMesh(client, status, tasks)
                    try:
                        async with contextlib.AsyncExitStack() as mesh._exit:
                            yield mesh
                    finally:
                        mesh.cancel_workers()
            finally:
                await client.aclose()
            return
    if listen is not None and not listen:
        raise ConfigError("listen needs at least one HOST:PORT", "listen")
    # The SDK's one import of the node package, lazily, only to start an embedded node.
    from auralink_node.config import resolve_config  # noqa: PLC0415
    from auralink_node.home import NodeHome  # noqa: PLC0415
    from auralink_node.node import Node  # noqa: PLC0415

    node_home = NodeHome(root)
    config = resolve_config(node_home.config_path, overrides={"listen": list(listen) if listen else None})
    async with Node(node_home, config, passphrase=passphrase, control_api=False) as node:
        embedded = _EmbeddedMesh(node)
        async with contextlib.AsyncExitStack() as embedded._exit:
            yield embedded

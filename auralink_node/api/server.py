"""The control API: HTTP over ``<home>/node.sock``, the daemon's only interface to the CLI and apps.

Theory of operation
-------------------
The socket file has mode 0600, so only the node's owner can talk to it; there is no other
authentication. JSON operations (status, peers, connect, ping, records) map one to one onto
:class:`~auralink_node.node.Node` methods. Mesh streams cross the socket by HTTP upgrade, framed
as :mod:`auralink.wire.proxy` describes:

* ``POST /v1/streams?peer=..&protocol=..`` opens a stream to a peer (connecting first) and then
  switches the HTTP connection to that stream.
* ``POST /v1/serve?protocol=..`` registers ``protocol`` on the node for as long as the upgraded
  listener socket stays open. Each incoming stream is parked under a ticket and announced on the
  listener; ``POST /v1/accept?ticket=..`` switches a new HTTP connection to it. Unclaimed streams
  are reset after :data:`CLAIM_TIMEOUT` seconds.

A proxied stream is pumped both ways with backpressure: the pump only reads from one side after
the other side accepted the previous chunk (``drain``), so neither the daemon nor the app buffers
more than a frame per direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from auralink import __version__
from auralink.errors import ConnectionError_, RemoteProtocolError, StreamReset
from auralink.identity import AuraID, NodeRecord, decode_record, parse_handle
from auralink.wire import Address, FrameDecoder
from auralink.wire import proxy as wire
from auralink.wire.buffer import Buffer
from auralink.wire.codes import ErrorCode
from auralink_node.api import models
from auralink_node.api.http import ApiError, HttpServer, Request, Response, Route, Upgrade, json_response, openapi
from auralink_node.errors import NodeError
from auralink_node.transport import MeshStream

if TYPE_CHECKING:
    from auralink_node.node import Node

__all__ = ["CLAIM_TIMEOUT", "ControlServer", "pump"]

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT = 10.0
"""Seconds an incoming stream waits for the app to claim it before it is reset."""


def _record_model(record: NodeRecord) -> models.RecordModel:
    return models.RecordModel(
        aura_id=str(record.aura_id),
        seq=record.seq,
        issued_at=record.issued_at,
        expires_at=record.expires_at,
        addresses=[str(a) for a in record.addresses],
        relays=[str(r) for r in record.relays],
        protocols=list(record.protocols),
        encoded=record.encode().hex(),
    )


async def pump(stream: MeshStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes) -> None:
    """Carry ``stream`` over an upgraded socket until both directions have ended."""

    async def app_to_mesh() -> None:
        decoder = FrameDecoder(max_size=wire.MAX_PROXY_FRAME)
        decoder.feed(early)
        ended = False
        while True:
            frame = decoder.next_frame()
            if frame is None:
                data = await reader.read(65536)
                if not data:
                    if not ended:
                        stream.reset(ErrorCode.CANCELLED)  # the app went away mid-stream
                    return
                decoder.feed(data)
                continue
            if frame.type == wire.DATA and not ended:
                await stream.send(frame.payload)
            elif frame.type == wire.END and not ended:
                ended = True
                stream.write_eof()
            elif frame.type == wire.RESET:
                stream.reset(Buffer(frame.payload).pull_varint() if frame.payload else ErrorCode.CANCELLED)
                return
            else:
                raise RemoteProtocolError(f"unexpected proxy frame type {frame.type}")

    async def mesh_to_app() -> None:
        try:
            while chunk := await stream.read(wire.MAX_PROXY_FRAME):
                writer.write(wire.encode(wire.DATA, chunk))
                await writer.drain()
            writer.write(wire.encode(wire.END))
        except StreamReset as exc:
            writer.write(wire.encode_reset(exc.error_code))
        except ConnectionError_:
            writer.write(wire.encode_reset(ErrorCode.CONNECTION_LOST))
        await writer.drain()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(app_to_mesh())
            group.create_task(mesh_to_app())
    except* (ConnectionError, OSError, RemoteProtocolError, ConnectionError_) as errors:
        logger.debug("proxied stream %r ended: %s", stream, errors.exceptions[0])
        stream.reset(ErrorCode.CANCELLED)


class _Parked:
    """An incoming stream waiting for the app to claim it."""

    def __init__(self, stream: MeshStream) -> None:
        loop = asyncio.get_running_loop()
        self.stream = stream
        self.claimed: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def finish(self) -> None:
        for future in (self.claimed, self.done):
            if not future.done():
                future.set_result(None)


class _Listener:
    """One app's registration of a protocol, alive while its listener socket is open."""

    def __init__(self, protocol: str, writer: asyncio.StreamWriter) -> None:
        self.protocol = protocol
        self.writer = writer


class ControlServer:
    """Serves the control API of ``node`` on the unix socket ``path``."""

    def __init__(self, node: Node, path: Path) -> None:
        self._node = node
        self.path = path
        self._server: asyncio.Server | None = None
        self._inode = 0
        self._tickets = itertools.count(1)
        self._parked: dict[int, _Parked] = {}
        self._listeners: dict[str, _Listener] = {}
        self.http = HttpServer(self._routes(), title="AuraLink node control API", version=__version__)
        self._schema = json.dumps(
            openapi(self.http, description="Local control API of auralink-node, over HTTP on a unix socket.")
        ).encode()

    def _routes(self) -> list[Route]:
        q_peer = ("peer", True, "AuraID of the peer")
        q_protocol = ("protocol", True, "stream protocol, e.g. myapp/chat/1")
        q_addr = ("addr", False, "comma-separated HOST:PORT addresses to dial")
        return [
            Route("GET", "/health", self._health, "Liveness of the daemon", response=models.Health),
            Route("GET", "/openapi.json", self._openapi, "This document"),
            Route(
                "GET", "/v1/status", self._status, "Identity, addresses and peer count", response=models.StatusResponse
            ),
            Route("GET", "/v1/peers", self._peers, "Peers known to the node", response=models.PeersResponse),
            Route(
                "POST",
                "/v1/connect",
                self._connect,
                "Connect to a peer by AuraID",
                body=models.ConnectRequest,
                response=models.ConnectResponse,
                errors=(400, 409, 502),
            ),
            Route(
                "POST",
                "/v1/ping",
                self._ping,
                "Ping a peer",
                body=models.PingRequest,
                response=models.PingResponse,
                errors=(400, 404, 409, 502),
            ),
            Route(
                "GET",
                "/v1/resolve",
                self._resolve_target,
                "Current key and addresses of an AuraID or @handle (cache, DHT and mDNS raced)",
                query=(("target", True, "AuraID or @handle"),),
                response=models.ResolveResponse,
                errors=(400, 404, 502),
            ),
            Route(
                "POST",
                "/v1/join",
                self._join,
                "Join the DHT through known nodes",
                body=models.JoinRequest,
                response=models.JoinResponse,
                errors=(400,),
            ),
            Route(
                "POST",
                "/v1/grants",
                self._grant,
                "Sign a room grant as this node's identity (the owner of its rooms)",
                body=models.GrantRequest,
                response=models.GrantResponse,
                errors=(400,),
            ),
            Route(
                "GET",
                "/v1/why",
                self._why,
                "The path to a connected peer, the candidates with their scores, and the switches",
                query=(("target", True, "AuraID or @handle"),),
                response=models.WhyResponse,
                errors=(400, 404),
            ),
            Route(
                "GET", "/v1/dht", self._dht, "The DHT's routing table and publishing", response=models.DhtStatusResponse
            ),
            Route(
                "DELETE",
                "/v1/pins",
                self._forget_pin,
                "Forget the key a handle was pinned to",
                query=(("handle", True, "the @handle"),),
                response=models.PinResponse,
                errors=(400,),
            ),
            Route(
                "GET",
                "/v1/records",
                self._records,
                "Our node record and every valid record held",
                response=models.RecordsResponse,
            ),
            Route(
                "GET",
                "/v1/records/{aura_id}",
                self._record,
                "The node record of one AuraID",
                response=models.RecordModel,
                errors=(400, 404),
            ),
            Route(
                "POST",
                "/v1/streams",
                self._open_stream,
                "Open a mesh stream and switch to it",
                query=(q_peer, q_protocol, q_addr),
                upgrade=wire.STREAM_UPGRADE,
                errors=(400, 409, 502),
            ),
            Route(
                "POST",
                "/v1/serve",
                self._serve,
                "Serve a protocol while this listener stays open",
                query=(q_protocol,),
                upgrade=wire.LISTEN_UPGRADE,
                errors=(400, 409),
            ),
            Route(
                "POST",
                "/v1/accept",
                self._accept,
                "Switch to an incoming stream announced on a listener",
                query=(("ticket", True, "ticket from an INCOMING notice"),),
                upgrade=wire.STREAM_UPGRADE,
                errors=(404,),
            ),
        ]

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the socket; refuses if another daemon already serves this home."""
        if self.path.exists():
            if await _answers(self.path):
                raise NodeError(f"a daemon is already running for {self.path.parent} (socket {self.path})")
            self.path.unlink()  # left behind by a daemon that was killed
        self._server = await asyncio.start_unix_server(self.http.handle, path=str(self.path))
        os.chmod(self.path, 0o600)
        self._inode = self.path.stat().st_ino

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then close the socket and every connection."""
        try:
            await stop.wait()
        finally:
            assert self._server is not None
            self._server.close()
            self.http.close_connections()
            for parked in self._parked.values():
                parked.stream.reset(ErrorCode.SHUTDOWN)
                parked.finish()
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_ino == self._inode:  # never remove a newer daemon's socket
                    self.path.unlink()

    # -- JSON operations -------------------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        return json_response(models.Health(status="ok", aura_id=str(self._node.aura_id)))

    async def _openapi(self, request: Request) -> Response:
        return Response(200, self._schema)

    async def _status(self, request: Request) -> Response:
        return json_response(models.StatusResponse(**self._node.status()))

    async def _peers(self, request: Request) -> Response:
        return json_response(models.PeersResponse(peers=[models.PeerModel(**p) for p in self._node.peers()]))

    async def _connect(self, request: Request) -> Response:
        body: models.ConnectRequest = request.json(models.ConnectRequest)
        conn = await self._node.dial(AuraID.parse(body.aura_id), [Address.parse(a) for a in body.addresses])
        rtt = conn.rtt
        return json_response(
            models.ConnectResponse(
                aura_id=str(conn.peer),
                address=str(conn.remote),
                alpn=conn.alpn,
                rtt_ms=round(rtt * 1000, 3) if rtt is not None else None,
            )
        )

    async def _resolve_target(self, request: Request) -> Response:
        resolution = await self._node.resolve(request.one("target") or "")
        return json_response(models.ResolveResponse(**resolution.as_dict()))

    async def _ping(self, request: Request) -> Response:
        body: models.PingRequest = request.json(models.PingRequest)
        peer = await self._node.peer_of(body.target)
        report = await self._node.ping(peer, [Address.parse(a) for a in body.addresses], count=body.count)
        return json_response(models.PingResponse(**report.as_dict()))

    async def _join(self, request: Request) -> Response:
        body: models.JoinRequest = request.json(models.JoinRequest)
        answered = await self._node.discovery.join(body.addresses)
        return json_response(models.JoinResponse(joined=answered, contacts=self._node.discovery.contact_count()))

    async def _grant(self, request: Request) -> Response:
        from auralink.calls.grants import Capability, Grant, RoomId  # noqa: PLC0415 - pure, but only rooms need it

        body: models.GrantRequest = request.json(models.GrantRequest)
        grant = Grant.create(
            self._node.identity,
            RoomId(self._node.aura_id, body.room),
            AuraID.parse(body.subject),
            Capability(body.capabilities),
            not_before=body.not_before,
            expires_at=body.expires_at,
        )
        return json_response(models.GrantResponse(grant=grant.encode().hex()))

    async def _why(self, request: Request) -> Response:
        peer = await self._node.peer_of(request.one("target") or "")
        why = self._node.paths.why(peer)
        if why is None:
            raise ApiError(
                404, f"not connected to {peer.short()}; connect first (e.g. `auralink-node ping`)", "NotFound"
            )
        return json_response(models.WhyResponse(**why))

    async def _dht(self, request: Request) -> Response:
        return json_response(models.DhtStatusResponse(**self._node.discovery.status()))

    async def _forget_pin(self, request: Request) -> Response:
        handle = parse_handle(request.one("handle") or "")
        return json_response(models.PinResponse(handle=handle, forgotten=self._node.store.forget_pin(handle)))

    async def _records(self, request: Request) -> Response:
        now = self._node._wall_clock()
        known = []
        for row in self._node.store.peers():
            record = self._node.book.node(AuraID.parse(row.aura_id), now)
            if record is not None:
                known.append(_record_model(record))
        return json_response(models.RecordsResponse(own=_record_model(self._node.record), known=known))

    async def _record(self, request: Request) -> Response:
        aura_id = AuraID.parse(request.params["aura_id"])
        now = self._node._wall_clock()
        record = self._node.book.node(aura_id, now)
        if record is None:
            row = self._node.store.peer(aura_id)
            if row is not None and row.last_record is not None:
                stored = decode_record(row.last_record)
                if isinstance(stored, NodeRecord) and stored.expires_at > now:
                    record = stored
        if record is None:
            raise ApiError(404, f"no valid record for {aura_id.short()}", "NotFound")
        return json_response(_record_model(record))

    # -- streams ---------------------------------------------------------------------------------
    async def _open_stream(self, request: Request) -> Upgrade:
        peer = AuraID.parse(request.one("peer") or "")
        protocol = request.one("protocol") or ""
        addresses = [Address.parse(a) for a in (request.one("addr", required=False) or "").split(",") if a]
        stream = await self._node.open_stream(peer, protocol, addresses)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes) -> None:
            await pump(stream, reader, writer, early)

        return Upgrade(wire.STREAM_UPGRADE, run, headers=(("auralink-peer", str(peer)),))

    async def _serve(self, request: Request) -> Upgrade:
        protocol = request.one("protocol") or ""
        if protocol in self._listeners or self._node.router.handler(protocol) is not None:
            raise ApiError(409, f"protocol {protocol!r} is already served on this node", "Conflict")

        async def handler(stream: MeshStream) -> None:
            await self._park(protocol, stream)

        self._node.serve(protocol, handler)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes) -> None:
            self._listeners[protocol] = _Listener(protocol, writer)
            try:
                while await reader.read(4096):
                    pass  # the app sends nothing; EOF means it stopped serving
            finally:
                self._listeners.pop(protocol, None)
                self._node.unserve(protocol)

        return Upgrade(wire.LISTEN_UPGRADE, run)

    async def _park(self, protocol: str, stream: MeshStream) -> None:
        listener = self._listeners.get(protocol)
        if listener is None or stream.peer is None:
            stream.reset(ErrorCode.PROTOCOL_UNSUPPORTED)
            return
        ticket = next(self._tickets)
        parked = self._parked[ticket] = _Parked(stream)
        try:
            listener.writer.write(wire.encode_incoming(ticket, stream.peer.public_key))
            await listener.writer.drain()
            async with asyncio.timeout(CLAIM_TIMEOUT):
                await parked.claimed
        except (TimeoutError, ConnectionError):
            stream.reset(ErrorCode.PROTOCOL_UNSUPPORTED)
            return
        finally:
            self._parked.pop(ticket, None)
        await parked.done  # the handler lives as long as the proxied stream

    async def _accept(self, request: Request) -> Upgrade:
        try:
            ticket = int(request.one("ticket") or "")
        except ValueError as exc:
            raise ApiError(422, "ticket must be an integer", "ValidationError") from exc
        parked = self._parked.get(ticket)
        if parked is None or parked.claimed.done():
            raise ApiError(404, f"no incoming stream with ticket {ticket} (claimed already, or timed out)", "NotFound")
        parked.claimed.set_result(None)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes) -> None:
            try:
                await pump(parked.stream, reader, writer, early)
            finally:
                parked.finish()

        return Upgrade(wire.STREAM_UPGRADE, run, headers=(("auralink-peer", str(parked.stream.peer)),))


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True

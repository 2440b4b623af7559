"""The client of a running daemon's control API (``<home>/node.sock``): JSON calls and proxied streams.

Theory of operation
-------------------
JSON operations go through ``httpx`` over the unix socket. Streams cannot: they need the socket
itself after an HTTP upgrade, so :func:`_upgrade` speaks the one request with h11 on a raw
asyncio unix connection and hands back the socket. On it, :class:`ProxyStream` speaks the framing
of :mod:`auralink.wire.proxy`, so a reset (and its error code) crosses the daemon intact and an app
sees the same exceptions it would see with an embedded node.

Errors from the daemon arrive as ``{"error": {"type", "message"}}``; :func:`_raise_for` turns the
type name back into the matching :mod:`auralink.errors` class, so code that catches
``PeerIdentityMismatch`` works on both back ends. A missing or dead socket raises
:class:`DaemonUnavailable` with what to do next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h11
import httpx

from auralink.errors import (
    AuralinkError,
    ConnectionBroken,
    ConnectionClosed,
    LocalProtocolError,
    ProtocolNotSupported,
    RemoteProtocolError,
    StreamReset,
    rebuild_error,
)
from auralink.identity import AuraID
from auralink.mesh.stream import StreamHelpers
from auralink.wire import Buffer, FrameDecoder
from auralink.wire import proxy as wire
from auralink.wire.codes import ErrorCode

__all__ = ["DaemonClient", "DaemonError", "DaemonUnavailable", "ProxyStream"]

_BASE = "http://auralink"
_TIMEOUT = 30.0


class DaemonUnavailable(ConnectionClosed):
    """No daemon answers on the control socket."""


class DaemonError(AuralinkError):
    """The daemon answered with an error that has no more specific class."""

    def __init__(self, message: str, status: int, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _raise_for(status: int, payload: Any) -> None:
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    kind = str(error.get("type", "DaemonError"))
    message = str(error.get("message", f"daemon answered HTTP {status}"))
    raw_details = error.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    rebuilt = rebuild_error(kind, message, details)
    if rebuilt is not None:
        raise rebuilt
    raise DaemonError(message, status, kind)


class DaemonClient:
    """Talks to the daemon that serves ``socket_path``."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), base_url=_BASE, timeout=_TIMEOUT
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _unavailable(self) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"no daemon is running for {self.socket_path.parent} (no answer on {self.socket_path}); "
            f"start one with `auralink-node --home {self.socket_path.parent} up`"
        )

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """One JSON call; returns the decoded body or raises the daemon's error."""
        if not self.socket_path.exists():
            raise self._unavailable()
        try:
            response = await self._http.request(
                method, path, json=body, timeout=timeout if timeout is not None else _TIMEOUT
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise self._unavailable() from exc
        except httpx.TimeoutException as exc:
            raise ConnectionBroken(f"the daemon did not answer {method} {path} in time") from exc
        try:
            payload = response.json()
        except ValueError as exc:
            raise DaemonError(
                f"daemon answered HTTP {response.status_code} with no JSON", response.status_code, "BadResponse"
            ) from exc
        if response.status_code >= 400:
            _raise_for(response.status_code, payload)
        return payload

    async def open_stream(self, peer: AuraID, protocol: str, addresses: tuple[str, ...] = ()) -> ProxyStream:
        """Open a mesh stream through the daemon."""
        query = {"peer": str(peer), "protocol": protocol}
        if addresses:
            query["addr"] = ",".join(addresses)
        reader, writer, early, _ = await self._upgrade(f"/v1/streams?{urlencode(query)}", wire.STREAM_UPGRADE)
        return ProxyStream(reader, writer, early, peer, protocol)

    async def listen(self, protocol: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """Register ``protocol`` with the daemon; the returned socket carries INCOMING notices."""
        reader, writer, early, _ = await self._upgrade(
            f"/v1/serve?{urlencode({'protocol': protocol})}", wire.LISTEN_UPGRADE
        )
        return reader, writer, early

    async def accept(self, ticket: int, protocol: str, peer: AuraID) -> ProxyStream:
        """Claim an announced incoming stream."""
        reader, writer, early, _ = await self._upgrade(f"/v1/accept?ticket={ticket}", wire.STREAM_UPGRADE)
        return ProxyStream(reader, writer, early, peer, protocol)

    async def _upgrade(
        self, target: str, token: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes, dict[str, str]]:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError as exc:
            raise self._unavailable() from exc
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("host", "auralink"),
                ("upgrade", token),
                ("connection", "upgrade"),
                ("content-length", "0"),
            ],
        )
        writer.write((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        try:
            async with asyncio.timeout(_TIMEOUT):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                        continue
                    if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                        return reader, writer, bytes(conn.trailing_data[0]), headers
                    if isinstance(event, h11.Response):
                        body = bytearray()
                        while not isinstance(part := conn.next_event(), h11.EndOfMessage):
                            if part is h11.NEED_DATA:
                                conn.receive_data(await reader.read(65536))
                            elif isinstance(part, h11.Data):
                                body += part.data
                            else:
                                break
                        try:
                            payload = json.loads(body)
                        except ValueError:
                            payload = {}
                        _raise_for(event.status_code, payload)
                    if isinstance(event, h11.ConnectionClosed):
                        raise self._unavailable()
        except (h11.ProtocolError, ConnectionError, TimeoutError) as exc:
            writer.close()
            raise ConnectionBroken(f"upgrade {target} failed: {exc}") from exc
        except BaseException:
            writer.close()
            raise


def _reset_error(protocol: str, code: int) -> StreamReset:
    if code == ErrorCode.PROTOCOL_UNSUPPORTED:
        return ProtocolNotSupported(protocol, code)
    if code == ErrorCode.CONNECTION_LOST:
        return StreamReset(f"connection carrying {protocol!r} was lost", code)
    return StreamReset(f"peer reset stream {protocol!r} (code {code:#x})", code)


class ProxyStream(StreamHelpers):
    """A mesh stream carried over the daemon's control socket; behaves like the embedded ``MeshStream``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes, peer: AuraID, protocol: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self.protocol = protocol
        self._decoder = FrameDecoder(max_size=wire.MAX_PROXY_FRAME)
        self._decoder.feed(early)
        self._chunks: deque[bytes] = deque()
        self._eof_received = False
        self._eof_sent = False
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"ProxyStream({self.protocol}, peer={self._peer.short()})"

    @property
    def peer(self) -> AuraID | None:
        """The verified AuraID at the other end."""
        return self._peer

    async def _fill(self) -> None:
        while not self._chunks and not self._eof_received and self._error is None:
            frame = self._decoder.next_frame()
            if frame is None:
                data = await self._reader.read(wire.MAX_PROXY_FRAME)
                if not data:
                    self._error = ConnectionBroken(f"the daemon closed stream {self.protocol!r}")
                    return
                self._decoder.feed(data)
            elif frame.type == wire.DATA:
                if frame.payload:
                    self._chunks.append(frame.payload)
            elif frame.type == wire.END:
                self._eof_received = True
                self._close_if_done()
            elif frame.type == wire.RESET:
                self._error = _reset_error(self.protocol, Buffer(frame.payload).pull_varint())
                self._writer.close()
            else:
                raise RemoteProtocolError(f"unexpected proxy frame type {frame.type}")

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` once the peer ended the stream."""
        if n <= 0:
            raise LocalProtocolError("read size must be positive")
        await self._fill()
        if self._chunks:
            chunk = self._chunks.popleft()
            if len(chunk) > n:
                self._chunks.appendleft(chunk[n:])
                chunk = chunk[:n]
            return chunk
        if self._error is not None:
            raise self._error
        return b""

    def write(self, data: bytes) -> None:
        """Queue bytes for sending."""
        if self._error is not None:
            raise self._error
        if self._eof_sent:
            raise LocalProtocolError(f"stream {self.protocol!r} was already ended with write_eof()")
        for offset in range(0, len(data), wire.MAX_PROXY_FRAME):
            self._writer.write(wire.encode(wire.DATA, data[offset : offset + wire.MAX_PROXY_FRAME]))

    async def drain(self) -> None:
        """Wait until the daemon has taken what was written."""
        if self._error is not None:
            raise self._error
        if self._writer.is_closing():
            return
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            self._error = ConnectionBroken(f"the daemon closed stream {self.protocol!r}")
            raise self._error from exc

    def write_eof(self) -> None:
        """End our side of the stream."""
        if self._error is not None:
            raise self._error
        if not self._eof_sent:
            self._eof_sent = True
            self._writer.write(wire.encode(wire.END))
            self._close_if_done()

    def _close_if_done(self) -> None:
        if self._eof_sent and self._eof_received and not self._writer.is_closing():
            self._writer.close()  # flushes what is buffered, then closes

    def reset(self, error_code: int = ErrorCode.CANCELLED) -> None:
        """Abandon the stream."""
        if self._error is None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self._writer.write(wire.encode_reset(error_code))
            self._error = StreamReset(f"stream {self.protocol!r} was reset locally", error_code)
            self._writer.close()

    async def aclose(self) -> None:
        """End our side and wait until the daemon took everything."""
        if self._error is None:
            self.write_eof()
            await self.drain()

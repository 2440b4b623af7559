"""A small HTTP/1.1 server on h11, for the control API (unix socket) and the metrics endpoint.

Theory of operation
-------------------
h11 does the protocol; this module does the rest, and no more than the node needs:

* Routes are declared with :class:`Route`: method, path template (``/v1/records/{aura_id}``),
  handler, and pydantic models for the JSON body and the response. The same table produces the
  OpenAPI 3.1 document (:func:`openapi`), so the schema cannot drift from the code.
* A handler returns a :class:`Response`, or an :class:`Upgrade`: the server answers
  ``101 Switching Protocols`` and hands the raw socket to the upgrade's callback. This is how the
  control API proxies mesh streams (a CONNECT-style upgrade, as the design asks).
* Errors are JSON ``{"error": {"type", "message"}}``: :class:`ApiError` carries its status code;
  an AuraLink error from the node maps to a status by kind (bad input 400, unknown peer or
  record 404, identity mismatch 409, dial failures 502); anything else is a bug, logged with its
  traceback, and answered 500, and the server keeps serving.
* Limits: request heads of at most 16 KiB, bodies of at most 1 MiB, an idle keep-alive timeout,
  and a bounded number of requests per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from pydantic import BaseModel, ValidationError

from auralink.errors import (
    AuralinkError,
    ConnectionError_,
    DialFailed,
    IdentityError,
    LocalProtocolError,
    PeerIdentityMismatch,
    RemoteProtocolError,
    ResolveFailed,
)
from auralink_node.errors import NodeError

__all__ = [
    "ApiError",
    "HttpServer",
    "Request",
    "Response",
    "Route",
    "Upgrade",
    "json_response",
    "openapi",
]

logger = logging.getLogger(__name__)

_MAX_HEAD = 16 * 1024
_MAX_BODY = 1024 * 1024
_IDLE_TIMEOUT = 60.0
_MAX_REQUESTS = 10_000
_READ = 65536


class ApiError(NodeError):
    """An error answered with an HTTP status and a JSON body."""

    def __init__(
        self, status: int, message: str, kind: str | None = None, *, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind or type(self).__name__
        self.headers = headers
        """Extra response headers, e.g. ``Allow`` on a 405."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, with its body read."""

    method: str
    """Upper-case method."""
    path: str
    """The path, without the query."""
    params: dict[str, str]
    """Values of ``{name}`` segments of the route's path."""
    query: dict[str, list[str]]
    """Query parameters."""
    headers: dict[str, str]
    """Lower-case header names to values (the last one wins)."""
    body: bytes
    """The request body."""

    def json(self, model: type[BaseModel]) -> Any:
        """The body validated as ``model``; 422 with the field and reason if it is not."""
        try:
            return model.model_validate_json(self.body or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(422, f"{where}: {first['msg']}", "ValidationError") from exc

    def one(self, name: str, *, required: bool = True) -> str | None:
        """A single query parameter."""
        values = self.query.get(name)
        if not values:
            if required:
                raise ApiError(422, f"query parameter {name!r} is required", "ValidationError")
            return None
        return values[-1]


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response."""

    status: int = 200
    """Status code."""
    body: bytes = b""
    """The body."""
    content_type: str = "application/json"
    """The ``Content-Type``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers."""


Upgraded = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Switch the connection to another protocol after ``101``."""

    protocol: str
    """The ``Upgrade`` token."""
    run: Upgraded
    """Takes over the socket: ``(reader, writer, bytes already received)``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers on the ``101`` response."""


Handler = Callable[[Request], Awaitable[Response | Upgrade]]


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the API."""

    method: str
    """HTTP method."""
    path: str
    """Path template; ``{name}`` matches one segment."""
    handler: Handler
    """Serves the request."""
    summary: str
    """One line for the OpenAPI document."""
    body: type[BaseModel] | None = None
    """The JSON body model, if any."""
    response: type[BaseModel] | None = None
    """The JSON response model, if any."""
    query: tuple[tuple[str, bool, str], ...] = ()
    """Query parameters: ``(name, required, description)``."""
    upgrade: str | None = None
    """The ``Upgrade`` token, for operations that switch protocols."""
    errors: tuple[int, ...] = ()
    """Error statuses this operation documents besides 422 and 500."""
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        object.__setattr__(self, "_pattern", re.compile(regex))

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` matches this route."""
        found = self._pattern.match(path)
        return found.groupdict() if found else None


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> Response:
    """A JSON response from a model or a dict."""
    body = model.model_dump_json() if isinstance(model, BaseModel) else json.dumps(model)
    return Response(status, body.encode())


def _status_for(exc: AuralinkError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, PeerIdentityMismatch):
        return 409
    if isinstance(exc, ResolveFailed):
        return 404
    if isinstance(exc, DialFailed | ConnectionError_):
        return 502
    if isinstance(exc, IdentityError | LocalProtocolError | RemoteProtocolError | ValueError):
        return 400
    return 500


def _error_body(kind: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"type": kind, "message": message}
    if details:
        error["details"] = details
    return json.dumps({"error": error}).encode()


class HttpServer:
    """Serves ``routes`` on connections handed to :meth:`handle`."""

    def __init__(self, routes: Sequence[Route], *, title: str, version: str) -> None:
        self.routes = tuple(routes)
        self.title = title
        self.version = version
        self._connections: set[asyncio.Task[Any]] = set()

    def _find(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:  # RFC 9110 section 15.5.6: a 405 MUST list the methods the resource supports
            raise ApiError(
                405, f"{method} is not allowed on {path}", "MethodNotAllowed", headers=(("allow", ", ".join(allowed)),)
            )
        raise ApiError(404, f"no such endpoint: {path}", "NotFound")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it closes, idles out or upgrades."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def close_connections(self) -> None:
        """Cancel every connection being served."""
        for task in list(self._connections):
            task.cancel()

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(_IDLE_TIMEOUT):
                data = await reader.read(_READ)
            conn.receive_data(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        for _ in range(_MAX_REQUESTS):
            try:
                event = await self._next_event(conn, reader)
            except h11.RemoteProtocolError as exc:
                await self._send_error(conn, writer, exc.error_status_hint, "BadRequest", str(exc))
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            body = bytearray()
            try:
                while True:
                    part = await self._next_event(conn, reader)
                    if isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > _MAX_BODY:
                            raise ApiError(413, f"request body over {_MAX_BODY} bytes", "PayloadTooLarge")
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
            except ApiError as exc:
                await self._send_error(conn, writer, exc.status, exc.kind, str(exc))
                return
            except h11.RemoteProtocolError as exc:
                await self._send_error(conn, writer, exc.error_status_hint, "BadRequest", str(exc))
                return
            upgrade = await self._dispatch(conn, writer, event, bytes(body))
            if upgrade is not None:
                trailing, _closed = conn.trailing_data
                await upgrade.run(reader, writer, bytes(trailing))
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _dispatch(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Request, body: bytes
    ) -> Upgrade | None:
        target = event.target.decode("latin-1")
        split = urlsplit(target)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers}
        method = event.method.decode("ascii", "replace").upper()
        try:
            route, params = self._find(method, split.path)
            request = Request(method, split.path, params, parse_qs(split.query), headers, body)
            if route.upgrade is not None and headers.get("upgrade", "").lower() != route.upgrade:
                raise ApiError(426, f"this endpoint needs `Upgrade: {route.upgrade}`", "UpgradeRequired")
            result = await route.handler(request)
        except AuralinkError as exc:
            if isinstance(exc, ApiError):
                await self._send_error(conn, writer, exc.status, exc.kind, str(exc), headers=exc.headers)
            else:
                await self._send_error(
                    conn, writer, _status_for(exc), type(exc).__name__, str(exc), details=exc.details()
                )
            return None
        except Exception:  # a bug in a handler: answer 500, log it, keep serving
            logger.exception("control API handler for %s %s failed", method, split.path)
            await self._send_error(conn, writer, 500, "InternalError", "internal error; see the daemon's log")
            return None
        if isinstance(result, Upgrade):
            head = [(b"upgrade", result.protocol.encode()), (b"connection", b"upgrade")]
            head += [(k.encode(), v.encode()) for k, v in result.headers]
            writer.write(conn.send(h11.InformationalResponse(status_code=101, headers=head)) or b"")
            await writer.drain()
            return result
        await self._send(conn, writer, result)
        return None

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
        ] + [(k.encode(), v.encode()) for k, v in response.headers]
        data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
        data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        writer.write(data)
        await writer.drain()

    async def _send_error(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        kind: str,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = _error_body(kind, message, details)
        with contextlib.suppress(h11.LocalProtocolError):
            await self._send(conn, writer, Response(status, body, headers=headers))


def openapi(server: HttpServer, *, description: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``server``'s routes."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["type", "message"],
                }
            },
            "required": ["error"],
        }
    }

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    paths: dict[str, Any] = {}
    for route in server.routes:
        operation: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__.strip("_")}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": required, "description": text, "schema": {"type": "string"}}
            for name, required, text in route.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(route.body)}}}
        responses: dict[str, Any] = {}
        if route.upgrade is not None:
            responses["101"] = {"description": f"switched to `{route.upgrade}`"}
            responses["426"] = error
        elif route.response is not None:
            responses["200"] = {"description": "ok", "content": {"application/json": {"schema": ref(route.response)}}}
        else:
            responses["200"] = {"description": "ok"}
        for status in (*route.errors, 422, 500):
            responses[str(status)] = error
        operation["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": server.title, "version": server.version, "description": description},
        "paths": paths,
        "components": {"schemas": schemas},
    }

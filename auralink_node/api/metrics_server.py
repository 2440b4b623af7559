"""The opt-in metrics endpoint: Prometheus ``/metrics`` and ``/health`` over TCP.

Off unless ``--metrics HOST:PORT`` (or ``metrics = "..."`` in the config) is given. It serves
read-only data and nothing secret, but it should still listen on loopback or a private address.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from auralink import __version__
from auralink.wire import Address
from auralink_node.api.http import HttpServer, Request, Response, Route, json_response

if TYPE_CHECKING:
    from auralink_node.node import Node

__all__ = ["MetricsServer"]


class MetricsServer:
    """Serves a node's metrics on ``address``."""

    def __init__(self, node: Node, address: Address) -> None:
        self._node = node
        self._address = address
        self._server: asyncio.Server | None = None
        self.http = HttpServer(
            [
                Route("GET", "/metrics", self._metrics, "Prometheus metrics"),
                Route("GET", "/health", self._health, "Liveness"),
            ],
            title="AuraLink node metrics",
            version=__version__,
        )

    @property
    def bound(self) -> Address:
        """The address actually bound."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return Address(host, port)

    async def start(self) -> None:
        """Bind the TCP socket."""
        self._server = await asyncio.start_server(self.http.handle, self._address.host, self._address.port)

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        try:
            await stop.wait()
        finally:
            assert self._server is not None
            self._server.close()
            self.http.close_connections()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _metrics(self, request: Request) -> Response:
        body, content_type = self._node.metrics.render()
        return Response(200, body, content_type)

    async def _health(self, request: Request) -> Response:
        return json_response({"status": "ok", "aura_id": str(self._node.aura_id)})

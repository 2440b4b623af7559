"""The stream interface apps program against, whichever back end carries the stream.

:class:`Stream` is a structural protocol: the embedded node's ``MeshStream`` and the daemon
back end's :class:`~auralink.mesh.daemon.ProxyStream` both satisfy it, so an app's handler and its
client code run unchanged on either. The semantics follow asyncio streams: ``read`` returns
``b""`` at the peer's clean end; ``write`` queues and ``drain`` waits for room (backpressure);
``write_eof`` ends our side; ``reset`` abandons both sides; errors are the
:class:`~auralink.errors.ConnectionError_` family.
"""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

from auralink.errors import ConnectionBroken
from auralink.identity import AuraID
from auralink.wire.codes import ErrorCode

__all__ = ["Stream", "StreamHandler", "StreamHelpers"]


@runtime_checkable
class Stream(Protocol):
    """A bidirectional byte stream to a peer, speaking one protocol."""

    @property
    def peer(self) -> AuraID | None:
        """The verified AuraID at the other end."""
        ...

    protocol: str

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the peer's clean end of stream."""
        ...

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`~auralink.errors.ConnectionBroken`."""
        ...

    async def read_all(self, limit: int) -> bytes:
        """Everything until the end of stream, at most ``limit`` bytes."""
        ...

    def write(self, data: bytes) -> None:
        """Queue bytes for sending."""
        ...

    async def drain(self) -> None:
        """Wait for room to write (backpressure)."""
        ...

    async def send(self, data: bytes) -> None:
        """``write`` then ``drain``."""
        ...

    def write_eof(self) -> None:
        """End our side of the stream."""
        ...

    def reset(self, error_code: int = ...) -> None:
        """Abandon the stream."""
        ...

    async def aclose(self) -> None:
        """End our side and wait until it is delivered."""
        ...


class StreamHandler(Protocol):
    """Serves one incoming stream."""

    async def __call__(self, stream: Stream) -> None: ...


class StreamHelpers:
    """``readexactly``, ``read_all``, ``send`` and ``async with`` on a stream's primitives, for both back ends."""

    protocol: str

    async def read(self, n: int = 65536) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        raise NotImplementedError

    def reset(self, error_code: int = ErrorCode.CANCELLED) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        """``write`` then ``drain``."""
        self.write(data)
        await self.drain()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """On success end our side cleanly (:meth:`aclose`); on an exception abandon the stream."""
        if exc_info[0] is None:
            await self.aclose()
        else:
            self.reset()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; raises :class:`~auralink.errors.ConnectionBroken` if the stream ends first."""
        parts: list[bytes] = []
        missing = n
        while missing:
            chunk = await self.read(missing)
            if not chunk:
                raise ConnectionBroken(f"stream {self.protocol!r} ended after {n - missing} of {n} bytes")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    async def read_all(self, limit: int) -> bytes:
        """Everything until the peer ends the stream, refusing more than ``limit`` bytes."""
        parts: list[bytes] = []
        total = 0
        while chunk := await self.read():
            total += len(chunk)
            if total > limit:
                self.reset(ErrorCode.PROTOCOL_VIOLATION)
                raise ConnectionBroken(f"stream {self.protocol!r} sent more than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

"""Reading typed messages off a :class:`~auralink_node.transport.streams.MeshStream`.

A protocol's messages travel as :mod:`auralink.wire` frames. :class:`MessageReader` feeds what
the stream delivers into a :class:`~auralink.wire.FrameDecoder` and decodes each frame with the
protocol's :class:`~auralink.wire.MessageCodec`, so a malformed or oversized message raises
:class:`~auralink.errors.RemoteProtocolError` however the bytes were chunked.
"""

from __future__ import annotations

from typing import TypeVar

from auralink.errors import RemoteProtocolError
from auralink.wire import FrameDecoder, Message, MessageCodec
from auralink_node.transport.streams import MeshStream

__all__ = ["MessageReader"]

_M = TypeVar("_M", bound=Message)


class MessageReader:
    """Typed messages from one stream."""

    def __init__(self, stream: MeshStream, codec: MessageCodec) -> None:
        self._stream = stream
        self._codec = codec
        self._decoder = FrameDecoder(max_size=codec.max_size)

    async def next(self) -> Message | None:
        """The next message, or None when the peer ended the stream cleanly between messages."""
        while True:
            frame = self._decoder.next_frame()
            if frame is not None:
                return self._codec.decode(frame)
            chunk = await self._stream.read()
            if not chunk:
                self._decoder.feed_eof()
                if self._decoder.next_frame() is None:
                    return None
                raise RemoteProtocolError("stream ended inside a message")  # pragma: no cover - next_frame raises
            self._decoder.feed(chunk)

    async def expect(self, kind: type[_M]) -> _M:
        """The next message, which must be a ``kind``."""
        message = await self.next()
        if not isinstance(message, kind):
            got = "end of stream" if message is None else type(message).__name__
            raise RemoteProtocolError(f"{self._codec.protocol}: expected {kind.__name__}, got {got}")
        return message

"""The aioquic connection, adjusted for mutual authentication and real receive flow control.

Theory of operation
-------------------
:class:`NodeQuicConnection` is aioquic's sans-I/O ``QuicConnection`` with a few changes, all at
seams aioquic keeps private (so the aioquic version range in ``pyproject.toml`` is pinned):

0. **One key-exchange group.** Both ends offer and accept only X25519, which saves three key
   generations per ClientHello and the P-256 exchange aioquic would otherwise choose.

1. **Client certificates.** A server connection asks the client for its certificate by setting
   ``tls._request_client_certificate`` right after aioquic creates its TLS context
   (``_initialize``), before the ClientHello is processed. See :mod:`.tls` for the key check.

2. **Receive credit follows the application.** Stock aioquic doubles a stream's receive window
   (``MAX_STREAM_DATA``) whenever the peer has sent half of it, whether or not anybody read the
   data: a slow reader lets a fast sender fill memory without bound. Here a stream's credit is
   ``consumed + window``, where ``consumed`` counts bytes the application has actually read
   (:meth:`consume`). The update is sent once less than half a window of credit is left, so a
   reader that keeps up costs one ``MAX_STREAM_DATA`` frame per half window, and a reader that
   stops makes the sender stop after one window (RFC 9000 section 4.1). Connection-level credit
   is left to aioquic: it is bounded by the per-stream windows times the stream limit.

3. **0-RTT survives a Retry.** A client that acts on a Retry (RFC 9000 section 17.2.5) sends a
   new ClientHello, and aioquic re-initialises the connection for it, dropping its packet
   spaces with whatever they had in flight. Stream data sent as 0-RTT with the first ClientHello
   was then neither acknowledged nor sent again, and its stream stalled for good. Those packets
   are declared lost first, so their data goes out again with the new ClientHello.
"""

from __future__ import annotations

from typing import Any, cast

from aioquic import tls
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicDeliveryState, QuicPacketBuilder, QuicSentPacket
from aioquic.quic.stream import QuicStream

__all__ = ["NodeQuicConnection"]


class NodeQuicConnection(QuicConnection):
    """A ``QuicConnection`` that requests client certificates and grants credit only as data is read."""

    def __init__(self, *, stream_window: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stream_window = stream_window
        self._consumed: dict[int, int] = {}

    def consume(self, stream_id: int, nbytes: int) -> bool:
        """Record that the application read ``nbytes`` more of a stream; True if new credit is due."""
        consumed = self._consumed[stream_id] = self._consumed.get(stream_id, 0) + nbytes
        stream = self._streams.get(stream_id)
        if stream is None or not stream.max_stream_data_local:
            return False
        return stream.max_stream_data_local - consumed <= self._stream_window // 2

    def forget_stream(self, stream_id: int) -> None:
        """Drop the accounting of a finished stream."""
        self._consumed.pop(stream_id, None)

    def unsent_bytes(self, stream_id: int) -> int:
        """Bytes written to a stream that the peer has not acknowledged yet (0 for unknown streams)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return int(sender._buffer_stop - sender._buffer_start)

    def _initialize(self, peer_cid: bytes) -> None:
        self._abandon_first_flight()  # called again on a Retry: see point 3 of the module doc
        super()._initialize(peer_cid)
        # Both ends are AuraLink nodes: agree on X25519 alone. aioquic would otherwise make four key
        # shares per ClientHello (P-256, P-384, X25519, X448) and pick P-256 on the server.
        self.tls._supported_groups = [tls.Group.X25519]
        if not self._is_client:
            self.tls._request_client_certificate = True

    def _abandon_first_flight(self) -> None:
        """Declare lost what the packet spaces about to be replaced have in flight."""
        in_flight: list[QuicSentPacket] = []
        for epoch, space in self._spaces.items():
            for packet in space.sent_packets.values():
                if packet.in_flight:
                    in_flight.append(packet)
                if epoch == tls.Epoch.ONE_RTT:  # 0-RTT packets: requeue their stream data (crypto data is rebuilt)
                    for handler, args in packet.delivery_handlers:
                        handler(QuicDeliveryState.LOST, *args)
            space.sent_packets.clear()
        if in_flight:
            self._loss._cc.on_packets_expired(packets=in_flight)

    def _write_stream_limits(self, builder: QuicPacketBuilder, space: Any, stream: QuicStream) -> None:
        if not stream.max_stream_data_local:  # a stream we opened for sending only
            return
        stream_id = cast(int, stream.stream_id)
        target = self._consumed.get(stream_id, 0) + self._stream_window
        if target - stream.max_stream_data_local >= self._stream_window // 2:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

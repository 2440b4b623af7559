"""Remote compression hints: the ``auralink/aic/1`` mesh protocol, its service and its client.

Theory of operation
-------------------
A weak device (a phone, a Raspberry Pi) can measure its frames cheaply but may not want to run the
rate model, or wants a better model than it ships. It asks a stronger node over the mesh, where
both AuraIDs are already proven:

```text
weak device                                    hint node
  HintRequest(id, mode, frame stats, network)  ──▶   its HintEngine for this stream
                                               ◀──   HintReply(id, hint_id, bitrate, scale, fps, quality, confidence)
                                               or    HintRefusal(id, reason)
  ... the next request on the same stream
```

One stream carries many requests, one at a time, so the service keeps one :class:`HintEngine` per
stream and its hysteresis follows that sender. Every message is an :mod:`auralink.wire` frame;
:data:`CODEC` raises :class:`~auralink.errors.RemoteProtocolError` for anything that does not
decode, including out-of-range statistics (NaN, negative, zero-size frames), which the
dataclasses' own checks refuse.

Deadline and fallback. :meth:`RemoteHintClient.hint` waits at most ``deadline`` (50 ms by default,
the hint cycle of issue 6) for the answer. When it is late, refused, or the stream breaks, the
client asks its *local* engine instead and counts a fallback (:attr:`RemoteHintClient.fallbacks`);
a late answer that arrives afterwards is recognised by its request id and dropped. The hint the
client returns has ``issued_at`` and ``deadline`` on the client's own clock (the server's clock
means nothing here), so :meth:`HintEngine.apply_or_native` and the controller treat a remote hint
like a local one.

Floats travel as IEEE 754 binary32: ample for statistics and hint values, and half the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

from auralink.aic.engine import DEFAULT_DEADLINE, Hint, HintEngine, Mode, NetworkStats
from auralink.aic.features import FrameStats
from auralink.errors import AuralinkError, LocalProtocolError, RemoteProtocolError
from auralink.wire import Buffer, FrameDecoder, MessageCodec

if TYPE_CHECKING:
    from auralink.identity import AuraID
    from auralink.mesh import Mesh, Stream

__all__ = [
    "AIC_PROTOCOL",
    "CODEC",
    "HintRefusal",
    "HintReply",
    "HintRequest",
    "HintService",
    "RemoteHintClient",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

AIC_PROTOCOL = "auralink/aic/1"
"""The mesh protocol name."""
MAX_REASON = 200
"""Longest refusal reason, in bytes of UTF-8."""
MAX_SIDE = 65_535
"""Largest frame width or height a request may carry."""
_F32 = struct.Struct("!f")
_MODES = (Mode.CONSERVATIVE, Mode.ADAPTIVE, Mode.AGGRESSIVE)
"""Wire code of each mode: its index."""


def _push_f32(buf: Buffer, value: float) -> None:
    try:
        buf.push_bytes(_F32.pack(value))
    except (OverflowError, struct.error) as exc:
        raise LocalProtocolError(f"{value!r} does not fit a binary32 float") from exc


def _pull_f32(buf: Buffer) -> float:
    value: float = _F32.unpack(buf.pull_bytes(4))[0]
    return value


def mode_code(mode: Mode) -> int:
    """The byte that names ``mode`` on the wire (also in the RTP header extension)."""
    return _MODES.index(mode)


def mode_of(code: int) -> Mode:
    """The mode a wire byte names; :class:`RemoteProtocolError` for an unknown one."""
    if not 0 <= code < len(_MODES):
        raise RemoteProtocolError(f"{AIC_PROTOCOL}: unknown mode {code}")
    return _MODES[code]


@dataclass(frozen=True, slots=True)
class HintRequest:
    """Asks for a hint for one frame on one path."""

    TYPE: ClassVar[int] = 1
    request_id: int
    """Chosen by the client, increasing; echoed in the answer."""
    mode: Mode
    """The mode to make the hint in."""
    frame: FrameStats
    """The frame's statistics."""
    network: NetworkStats
    """The path's statistics."""

    def __post_init__(self) -> None:
        if isinstance(self.request_id, bool) or not isinstance(self.request_id, int) or self.request_id < 0:
            raise LocalProtocolError(f"request_id must be an int >= 0, not {self.request_id!r}")
        if self.frame.width > MAX_SIDE or self.frame.height > MAX_SIDE:
            raise LocalProtocolError(
                f"frame sides must be at most {MAX_SIDE}, not {self.frame.width}x{self.frame.height}"
            )

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        """Decode from a frame payload."""
        request_id = buf.pull_varint()
        mode = mode_of(buf.pull_uint8())
        width, height = buf.pull_uint16(), buf.pull_uint16()
        fps, si, ti, motion = (_pull_f32(buf) for _ in range(4))
        flags = buf.pull_uint8()
        if flags & ~1:
            raise RemoteProtocolError(f"{AIC_PROTOCOL}: unknown frame flags {flags:#x}")
        rtt, loss, jitter, bandwidth = (_pull_f32(buf) for _ in range(4))
        frame = FrameStats(
            width=width,
            height=height,
            fps=fps,
            spatial_information=si,
            temporal_information=ti,
            motion=motion,
            scene_change=bool(flags & 1),
        )
        return cls(
            request_id, mode, frame, NetworkStats(rtt_s=rtt, loss=loss, jitter_s=jitter, bandwidth_bps=bandwidth)
        )

    def push(self, buf: Buffer) -> None:
        """Encode into a frame payload."""
        f, n = self.frame, self.network
        buf.push_varint(self.request_id)
        buf.push_uint8(mode_code(self.mode))
        buf.push_uint16(f.width)
        buf.push_uint16(f.height)
        for value in (f.fps, f.spatial_information, f.temporal_information, f.motion):
            _push_f32(buf, value)
        buf.push_uint8(1 if f.scene_change else 0)
        for value in (n.rtt_s, n.loss, n.jitter_s, n.bandwidth_bps):
            _push_f32(buf, value)


@dataclass(frozen=True, slots=True)
class HintReply:
    """A hint for the request ``request_id``."""

    TYPE: ClassVar[int] = 2
    request_id: int
    """The request answered."""
    hint_id: int
    """The server engine's hint id (carried to the receiver for correlation)."""
    mode: Mode
    """The mode the hint was made in."""
    target_bitrate_bps: int
    """Encoder target, bits per second."""
    resolution_scale: float
    """Scale of each side, in (0, 1]."""
    fps: float
    """Frame rate to send."""
    predicted_quality: float
    """Expected quality in the server model's unit, 0..100."""
    confidence: float
    """0..1."""

    def __post_init__(self) -> None:
        for name in ("request_id", "hint_id", "target_bitrate_bps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LocalProtocolError(f"HintReply.{name} must be an int >= 0, not {value!r}")
        checks = (
            ("resolution_scale", self.resolution_scale, 0.0 < self.resolution_scale <= 1.0),
            ("fps", self.fps, 0.0 < self.fps <= 1000.0),
            ("predicted_quality", self.predicted_quality, 0.0 <= self.predicted_quality <= 100.0),
            ("confidence", self.confidence, 0.0 <= self.confidence <= 1.0),
        )
        for name, value, ok in checks:
            if not (isinstance(value, float | int) and math.isfinite(value) and ok):
                raise LocalProtocolError(f"HintReply.{name} is out of range: {value!r}")

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        """Decode from a frame payload."""
        request_id, hint_id = buf.pull_varint(), buf.pull_varint()
        mode = mode_of(buf.pull_uint8())
        bitrate = buf.pull_varint()
        scale, fps, quality, confidence = (_pull_f32(buf) for _ in range(4))
        return cls(request_id, hint_id, mode, bitrate, scale, fps, quality, confidence)

    def push(self, buf: Buffer) -> None:
        """Encode into a frame payload."""
        buf.push_varint(self.request_id)
        buf.push_varint(self.hint_id)
        buf.push_uint8(mode_code(self.mode))
        buf.push_varint(self.target_bitrate_bps)
        for value in (self.resolution_scale, self.fps, self.predicted_quality, self.confidence):
            _push_f32(buf, value)

    @classmethod
    def of(cls, request_id: int, hint: Hint) -> Self:
        """The reply carrying ``hint``."""
        return cls(
            request_id,
            hint.hint_id,
            hint.mode,
            hint.target_bitrate_bps,
            hint.resolution_scale,
            hint.fps,
            min(100.0, max(0.0, hint.predicted_quality)),
            min(1.0, max(0.0, hint.confidence)),
        )


@dataclass(frozen=True, slots=True)
class HintRefusal:
    """The service will not answer ``request_id`` (for example, it is overloaded)."""

    TYPE: ClassVar[int] = 3
    request_id: int
    """The request refused."""
    reason: str
    """Why, for logs."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        """Decode from a frame payload."""
        return cls(buf.pull_varint(), buf.pull_str(MAX_REASON, "reason"))

    def push(self, buf: Buffer) -> None:
        """Encode into a frame payload."""
        buf.push_varint(self.request_id)
        buf.push_length_prefixed(self.reason.encode(), MAX_REASON, "reason")


CODEC = MessageCodec(AIC_PROTOCOL, [HintRequest, HintReply, HintRefusal], max_size=256)
"""Encodes and decodes ``auralink/aic/1`` messages as :mod:`auralink.wire` frames."""


class HintService:
    """Serves ``auralink/aic/1``: one :class:`HintEngine` per stream, made by ``engine_factory``.

    Use ``await mesh.serve(AIC_PROTOCOL, HintService())``. ``clock`` gives the engine its ``now``.
    """

    def __init__(
        self, engine_factory: Callable[[], HintEngine] = HintEngine, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._factory = engine_factory
        self._clock = clock
        self.answered = 0
        """Hints sent, over all streams."""

    async def __call__(self, stream: Stream) -> None:
        """Answer the requests of one stream until it ends; a malformed request ends the stream."""
        engine = self._factory()
        decoder = FrameDecoder(max_size=CODEC.max_size)
        try:
            while chunk := await stream.read():
                decoder.feed(chunk)
                while (frame := decoder.next_frame()) is not None:
                    request = CODEC.decode(frame)
                    if not isinstance(request, HintRequest):
                        raise RemoteProtocolError(f"{AIC_PROTOCOL}: expected HintRequest, got {type(request).__name__}")
                    engine.mode = request.mode
                    hint = engine.hint(request.frame, request.network, self._clock())
                    stream.write(CODEC.encode(HintReply.of(request.request_id, hint)))
                    self.answered += 1
                await stream.drain()
        except RemoteProtocolError as exc:
            logger.info("%s: ending a stream from %s: %s", AIC_PROTOCOL, stream.peer, exc)
            stream.reset()
            return
        stream.write_eof()


class RemoteHintClient:
    """Asks a hint node for hints, within a deadline, and falls back to ``local`` when it is late.

    Open it with :meth:`open` (over the mesh) or give it any :class:`~auralink.mesh.Stream`. Use
    ``async with``: closing ends the stream.
    """

    def __init__(
        self,
        stream: Stream,
        local: HintEngine,
        *,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(deadline) and deadline > 0):
            raise LocalProtocolError(f"deadline must be a positive number of seconds, not {deadline!r}")
        self._stream: Stream | None = stream
        self._local = local
        self._deadline = deadline
        self._clock = clock
        self._decoder = FrameDecoder(max_size=CODEC.max_size)
        self._next_id = 0
        self.remote_hints = 0
        """Hints the node answered in time."""
        self.fallbacks = 0
        """Hints made locally because the node was late, refused, or unreachable."""

    @classmethod
    async def open(
        cls,
        mesh: Mesh,
        node: AuraID | str,
        local: HintEngine,
        *,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> RemoteHintClient:
        """Open an ``auralink/aic/1`` stream to ``node`` (an AuraID or ``@handle``)."""
        stream = await mesh.open_stream(node, AIC_PROTOCOL)
        return cls(stream, local, deadline=deadline, clock=clock)

    @property
    def connected(self) -> bool:
        """Whether the stream to the node is still usable."""
        return self._stream is not None

    async def hint(self, frame: FrameStats, network: NetworkStats, mode: Mode | None = None) -> Hint:
        """A hint from the node if it answers within the deadline, else from the local engine."""
        mode = self._local.mode if mode is None else mode
        started = self._clock()
        request = HintRequest(self._next_id, mode, frame, network)
        self._next_id += 1
        reply: HintReply | None = None
        if self._stream is not None:
            try:
                async with asyncio.timeout(self._deadline):
                    reply = await self._exchange(request)
            except TimeoutError:
                reply = None
            except (AuralinkError, ConnectionError) as exc:
                logger.info("%s: the hint node is gone (%s); hints are local from now on", AIC_PROTOCOL, exc)
                self._drop_stream()
        if reply is None:
            self.fallbacks += 1
            self._local.mode = mode
            return self._local.hint(frame, network, self._clock())
        self.remote_hints += 1
        return Hint(
            hint_id=reply.hint_id,
            mode=reply.mode,
            target_bitrate_bps=reply.target_bitrate_bps,
            resolution_scale=reply.resolution_scale,
            fps=reply.fps,
            predicted_quality=reply.predicted_quality,
            confidence=reply.confidence,
            issued_at=started,
            deadline=started + self._deadline,
        )

    async def _exchange(self, request: HintRequest) -> HintReply | None:
        """Send ``request`` and read until its answer; answers to earlier (timed-out) requests are dropped."""
        stream = self._stream
        assert stream is not None
        stream.write(CODEC.encode(request))
        await stream.drain()
        while True:
            frame = self._decoder.next_frame()
            if frame is None:
                chunk = await stream.read()
                if not chunk:
                    raise RemoteProtocolError(f"{AIC_PROTOCOL}: the node ended the stream")
                self._decoder.feed(chunk)
                continue
            answer = CODEC.decode(frame)
            if not isinstance(answer, HintReply | HintRefusal):
                raise RemoteProtocolError(f"{AIC_PROTOCOL}: the node sent a {type(answer).__name__}")
            if answer.request_id < request.request_id:
                continue  # the answer to a request we already gave up on
            if answer.request_id > request.request_id:
                raise RemoteProtocolError(f"{AIC_PROTOCOL}: answer to request {answer.request_id} not yet sent")
            if isinstance(answer, HintRefusal):
                logger.debug("%s: request %d refused: %s", AIC_PROTOCOL, answer.request_id, answer.reason)
                return None
            return answer

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.reset()
            self._stream = None

    async def aclose(self) -> None:
        """End the stream (hints are local afterwards)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(AuralinkError, ConnectionError):
                stream.write_eof()
                await stream.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

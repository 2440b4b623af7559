"""Media for calls: sources that feed a call's tracks, and sinks for the tracks a call receives.

Theory of operation
-------------------
A call sends aiortc ``MediaStreamTrack`` objects. This module makes the usual ones:

* :class:`FileSource`: a media file (or anything FFmpeg opens) through aiortc's ``MediaPlayer``,
  with ``.audio`` and ``.video`` tracks. Frames decoded from files can arrive marked as keyframes,
  and aiortc's VP8 encoder then codes *every* frame as a keyframe (measured at 893 kbps against a
  100 kbps target), so the video track resets ``pict_type`` on each frame.
* :class:`DeviceSource`: a camera or microphone, also through ``MediaPlayer`` (``v4l2``/``alsa``).
* :func:`numpy_video` and :func:`numpy_audio`: frames computed by the app, paced in real time.
* :func:`stamped_video` and :func:`tone`: synthetic media for tests, demos and benchmarks. Each
  test-pattern frame carries a *stamp*: its sequence number and the sender's monotonic clock in
  milliseconds, drawn as 64 large black or white blocks that survive VP8 coding.
  :func:`read_stamp` reads it back on the far side, so a receiver can tell real, distinct frames
  from repeats and estimate glass-to-glass latency (both ends on one host share the clock).

A call reads every track it receives in a pump task that it owns, whether or not the app
listens: aiortc queues decoded frames without bound until someone calls ``recv()``. The pump
hands each frame to a :class:`RemoteTrack`'s sinks: callbacks (:meth:`RemoteTrack.on_frame`),
async iterators (:meth:`RemoteTrack.frames`, each with a bounded queue that drops its oldest
frame when the app falls behind, counted in :attr:`RemoteTrack.dropped`) and recorders
(:meth:`RemoteTrack.record`, aiortc's ``MediaRecorder``). All of them end with the track.

aiortc and PyAV are imported lazily, so this module imports without the ``calls`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from auralink.errors import CallsNotInstalled, ConfigError

if TYPE_CHECKING:
    import numpy as np
    from aiortc import MediaStreamTrack
    from av import AudioFrame, VideoFrame

    Frame = AudioFrame | VideoFrame

__all__ = [
    "DeviceSource",
    "FileSource",
    "RemoteTrack",
    "Stamp",
    "numpy_audio",
    "numpy_video",
    "pushed_track",
    "read_stamp",
    "stamped_video",
    "tone",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Kind = Literal["audio", "video"]

VIDEO_CLOCK = 90_000
"""RTP clock rate of video, in ticks per second."""

STAMP_COLUMNS = 32
"""Stamp blocks per row; the stamp has two rows of blocks across the top of the frame."""


def _modules() -> tuple[Any, Any, Any]:
    try:
        import aiortc  # noqa: PLC0415
        import av  # noqa: PLC0415
        import numpy  # noqa: PLC0415
    except ImportError as exc:
        raise CallsNotInstalled(
            "call media needs aiortc, PyAV and numpy: pip install 'auralink[calls]'", "aiortc"
        ) from exc
    return aiortc, av, numpy


# -- pacing ---------------------------------------------------------------------------------------
class _Pacer:
    """Real-time pacing for a generated track: frame ``n`` is due ``n / rate`` seconds after the first."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.index = -1
        self._start = 0.0

    async def next(self) -> int:
        loop = asyncio.get_running_loop()
        self.index += 1
        if self.index == 0:
            self._start = loop.time()
        else:
            delay = self._start + self.index / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing a media clock, not synchronisation
        return self.index


def _track_class() -> type[MediaStreamTrack]:
    aiortc, _, _ = _modules()
    base: type[MediaStreamTrack] = aiortc.MediaStreamTrack
    return base


# -- numpy sources --------------------------------------------------------------------------------
def numpy_video(
    frames: Callable[[int], np.ndarray] | Iterable[np.ndarray], *, fps: float = 15.0, format: str = "rgb24"
) -> MediaStreamTrack:
    """A video track from numpy images: ``frames(n)`` for frame ``n``, or an iterable (the track ends with it).

    Each image is ``(height, width, 3)`` uint8 for ``rgb24``/``bgr24``, ``(height * 3 // 2, width)``
    for ``yuv420p``, or ``(height, width)`` for ``gray``.
    """
    _, av, _ = _modules()
    if not fps > 0:
        raise ConfigError(f"fps must be positive, not {fps}", "fps")
    produce = _producer(frames)

    class NumpyVideoTrack(_track_class()):  # type: ignore[misc]
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._pacer = _Pacer(fps)

        async def recv(self) -> VideoFrame:
            index = await self._pacer.next()
            image = produce(index)
            if image is None:
                self.stop()
                raise _media_error()
            frame = av.VideoFrame.from_ndarray(image, format=format)
            frame.pts = round(index * VIDEO_CLOCK / fps)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            video: VideoFrame = frame
            return video

    return NumpyVideoTrack()


def numpy_audio(
    samples: Callable[[int], np.ndarray] | Iterable[np.ndarray],
    *,
    rate: int = 48_000,
    frame_ms: int = 20,
    layout: Literal["mono", "stereo"] = "mono",
) -> MediaStreamTrack:
    """An audio track from numpy int16 samples, ``frame_ms`` at a time: ``samples(n)`` for chunk ``n``, or an iterable.

    Each chunk is ``(rate * frame_ms // 1000,)`` int16 for mono, ``(2 * that,)`` interleaved for stereo.
    """
    _, av, np_ = _modules()
    if rate <= 0 or frame_ms <= 0:
        raise ConfigError("rate and frame_ms must be positive", "audio")
    produce = _producer(samples)
    per_frame = rate * frame_ms // 1000
    channels = 2 if layout == "stereo" else 1

    class NumpyAudioTrack(_track_class()):  # type: ignore[misc]
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._pacer = _Pacer(1000 / frame_ms)

        async def recv(self) -> AudioFrame:
            index = await self._pacer.next()
            chunk = produce(index)
            if chunk is None:
                self.stop()
                raise _media_error()
            data = np_.asarray(chunk, dtype=np_.int16).reshape(1, -1)
            if data.shape[1] != per_frame * channels:
                raise ConfigError(
                    f"audio chunk {index} has {data.shape[1]} samples, not {per_frame * channels}", "audio"
                )
            frame = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = index * per_frame
            frame.time_base = fractions.Fraction(1, rate)
            sound: AudioFrame = frame
            return sound

    return NumpyAudioTrack()


def _producer(source: Callable[[int], Any] | Iterable[Any]) -> Callable[[int], Any]:
    if callable(source):
        return source
    iterator: Iterator[Any] = iter(source)
    return lambda _index: next(iterator, None)


def _media_error() -> Exception:
    from aiortc.mediastreams import MediaStreamError  # noqa: PLC0415

    return MediaStreamError()


# -- synthetic media ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stamp:
    """What a test-pattern frame says about itself."""

    sequence: int
    """The frame's number at the sender, modulo 2**16."""
    sent_ms: int
    """The sender's monotonic clock when it made the frame, in ms modulo 2**32."""

    def age_ms(self, now_ms: int | None = None) -> int:
        """Milliseconds since the frame was made, by this host's monotonic clock (same-host senders only)."""
        now = time.monotonic_ns() // 1_000_000 if now_ms is None else now_ms
        return (now - self.sent_ms) % 2**32


def _stamp_bits(sequence: int, sent_ms: int) -> list[int]:
    sequence &= 0xFFFF
    sent_ms &= 0xFFFFFFFF
    check = (sequence ^ (sent_ms & 0xFFFF) ^ (sent_ms >> 16) ^ 0xA5A5) & 0xFFFF
    word = (sequence << 48) | (sent_ms << 16) | check
    return [(word >> (63 - i)) & 1 for i in range(64)]


def draw_stamp(luma: np.ndarray, sequence: int, sent_ms: int) -> None:
    """Draw a stamp into the top two block rows of a luma plane (in place)."""
    width = luma.shape[1]
    block = width // STAMP_COLUMNS
    for i, bit in enumerate(_stamp_bits(sequence, sent_ms)):
        row, col = divmod(i, STAMP_COLUMNS)
        luma[row * block : (row + 1) * block, col * block : (col + 1) * block] = 235 if bit else 16


def read_stamp(frame: VideoFrame) -> Stamp | None:
    """The stamp of a received test-pattern frame, or None if it carries none (or coding garbled it)."""
    _, _, np_ = _modules()
    luma = frame.to_ndarray(format="gray")
    block = luma.shape[1] // STAMP_COLUMNS
    if block < 2 or luma.shape[0] < 2 * block:
        return None
    word = 0
    inset = block // 4
    for i in range(64):
        row, col = divmod(i, STAMP_COLUMNS)
        top, left = row * block + inset, col * block + inset
        cell = luma[top : top + block - 2 * inset, left : left + block - 2 * inset]
        word = (word << 1) | int(float(np_.mean(cell)) > 125.5)
    sequence, sent_ms, check = word >> 48, (word >> 16) & 0xFFFFFFFF, word & 0xFFFF
    if check != (sequence ^ (sent_ms & 0xFFFF) ^ (sent_ms >> 16) ^ 0xA5A5) & 0xFFFF:
        return None
    return Stamp(sequence, sent_ms)


def stamped_video(width: int = 320, height: int = 240, fps: float = 15.0) -> MediaStreamTrack:
    """A moving test pattern whose every frame carries a :class:`Stamp` (see :func:`read_stamp`)."""
    _, _, np_ = _modules()
    if width < 64 or height < 48 or width % 2 or height % 2:
        raise ConfigError(f"test pattern size {width}x{height}: need even sides of at least 64x48", "video")
    ramp = (np_.arange(width, dtype=np_.uint16)[None, :] + np_.arange(height, dtype=np_.uint16)[:, None]) % 256
    chroma = np_.full((height // 2, width), 128, dtype=np_.uint8)

    def frame(index: int) -> np.ndarray:
        luma = ((ramp + 4 * index) % 200 + 28).astype(np_.uint8)
        draw_stamp(luma, index, time.monotonic_ns() // 1_000_000)
        image: np.ndarray = np_.concatenate([luma, chroma])
        return image

    return numpy_video(frame, fps=fps, format="yuv420p")


def tone(frequency: float = 440.0, *, rate: int = 48_000, frame_ms: int = 20, level: float = 0.2) -> MediaStreamTrack:
    """A sine tone, mono int16."""
    _, _, np_ = _modules()
    per_frame = rate * frame_ms // 1000
    amplitude = int(32767 * min(max(level, 0.0), 1.0))

    def chunk(index: int) -> np.ndarray:
        t = (np_.arange(per_frame) + index * per_frame) / rate
        samples: np.ndarray = (amplitude * np_.sin(2 * np_.pi * frequency * t)).astype(np_.int16)
        return samples

    return numpy_audio(chunk, rate=rate, frame_ms=frame_ms)


# -- files and devices ----------------------------------------------------------------------------
class FileSource:
    """A media file's audio and video, paced in real time (aiortc's ``MediaPlayer``); ``close()`` when done."""

    def __init__(self, path: str | Path, *, loop: bool = False, format: str | None = None) -> None:
        aiortc_media = _player_module()
        if format is None and not Path(path).exists():
            raise ConfigError(f"no media file at {path}", "media")
        try:
            self._player = aiortc_media.MediaPlayer(str(path), format=format, loop=loop)
        except Exception as exc:  # PyAV raises many kinds; all mean "cannot open"
            raise ConfigError(f"cannot open media {path}: {exc}", "media") from exc
        self.audio: MediaStreamTrack | None = self._player.audio
        """The audio track, or None if the file has no audio."""
        self.video: MediaStreamTrack | None = _fresh_pictures(self._player.video) if self._player.video else None
        """The video track (keyframe marks reset), or None if the file has no video."""

    def close(self) -> None:
        """Stop reading the file (ends both tracks and the player's thread)."""
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()


class DeviceSource(FileSource):
    """A camera or microphone, e.g. ``DeviceSource("/dev/video0", format="v4l2")`` or ``("default", format="alsa")``."""

    def __init__(self, device: str, *, format: str, options: dict[str, str] | None = None) -> None:
        aiortc_media = _player_module()
        try:
            self._player = aiortc_media.MediaPlayer(device, format=format, options=options or {})
        except Exception as exc:
            raise ConfigError(f"cannot open device {device} ({format}): {exc}", "media") from exc
        self.audio = self._player.audio
        self.video = _fresh_pictures(self._player.video) if self._player.video else None


def _player_module() -> Any:
    _modules()
    import aiortc.contrib.media  # noqa: PLC0415

    return aiortc.contrib.media


def _fresh_pictures(track: MediaStreamTrack) -> MediaStreamTrack:
    """``track`` with every frame's ``pict_type`` reset, so the encoder decides where keyframes go."""

    class FreshPictures(_track_class()):  # type: ignore[misc]
        kind = "video"

        async def recv(self) -> VideoFrame:
            frame: VideoFrame = await track.recv()  # type: ignore[assignment]
            frame.pict_type = 0  # NONE; FFmpeg marks many decoded frames as I
            return frame

        def stop(self) -> None:
            super().stop()
            track.stop()

    return FreshPictures()


def pushed_track(kind: Kind, *, queue: int = 30) -> tuple[MediaStreamTrack, Callable[[Any], None]]:
    """A track fed by the app: returns ``(track, push)``; each ``push(frame)`` queues a frame to send.

    At most ``queue`` frames wait; pushing onto a full queue drops the oldest (live media, not a
    file). Pushing ``None`` ends the track. Used to send back what a call receives (an echo).
    """
    pending: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(1, queue))

    class PushedTrack(_track_class()):  # type: ignore[misc]
        async def recv(self) -> Any:
            if self.readyState != "live":
                raise _media_error()
            frame = await pending.get()
            if frame is None:
                self.stop()
                raise _media_error()
            return frame

    PushedTrack.kind = kind

    def push(frame: Any) -> None:
        if pending.full():
            pending.get_nowait()
        pending.put_nowait(frame)

    return PushedTrack(), push


# -- sinks ----------------------------------------------------------------------------------------
class RemoteTrack:
    """A track the peer sends: hand its frames to callbacks, async iterators or a recorder.

    The call reads the track in a task it owns (see the module docstring); sinks see frames
    from the moment they attach.
    """

    def __init__(self, track: MediaStreamTrack) -> None:
        self.kind: Kind = track.kind  # type: ignore[assignment]
        """``audio`` or ``video``."""
        self.track = track
        """The aiortc track (read by the call's pump; do not ``recv()`` it yourself)."""
        self.frames_received = 0
        """Frames the pump read so far."""
        self.first_frame_at: float | None = None
        """Loop time of the first frame."""
        self.dropped = 0
        """Frames dropped because an iterator's queue was full."""
        self._callbacks: list[Callable[[Any], None]] = []
        self._queues: list[asyncio.Queue[Any]] = []
        self._ended = asyncio.Event()
        self._recorders: list[Any] = []

    def __repr__(self) -> str:
        return f"<RemoteTrack {self.kind} frames={self.frames_received}>"

    @property
    def ended(self) -> bool:
        """True once the track has ended (the call hung up or the peer stopped sending)."""
        return self._ended.is_set()

    def on_frame(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(frame)`` for every frame from now on (on the event loop: keep it quick).

        Returns a function that removes the callback again.
        """
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    async def wait_ended(self) -> None:
        """Wait until the track has ended."""
        await self._ended.wait()

    async def frames(self, *, queue: int = 30) -> AsyncIterator[Any]:
        """The frames from now on, until the track ends; at most ``queue`` wait (older ones are dropped)."""
        pending: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(1, queue))
        self._queues.append(pending)
        try:
            while True:
                if pending.empty() and self._ended.is_set():
                    return
                getter = asyncio.ensure_future(pending.get())
                ended = asyncio.ensure_future(self._ended.wait())
                try:
                    await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    getter.cancel()
                    ended.cancel()
                if getter.done() and not getter.cancelled():
                    yield getter.result()
        finally:
            self._queues.remove(pending)

    async def record(self, path: str | Path, *, format: str | None = None) -> None:
        """Record the track from now on into ``path`` (aiortc's ``MediaRecorder``); it closes when the track ends."""
        aiortc_media = _player_module()
        recorder = aiortc_media.MediaRecorder(str(path), format=format)
        recorder.addTrack(self._feed())
        await recorder.start()
        self._recorders.append(recorder)

    def _feed(self) -> MediaStreamTrack:
        pending: asyncio.Queue[Any] = asyncio.Queue(maxsize=120)
        self._queues.append(pending)
        remote = self

        class Feed(_track_class()):  # type: ignore[misc]
            kind = remote.kind

            async def recv(self) -> Any:
                if pending.empty() and remote.ended:
                    raise _media_error()
                return await pending.get()

        return Feed()

    async def _pump(self, clock: Callable[[], float]) -> None:
        """Read the track until it ends, dispatching frames (the call runs this in its task group)."""
        from aiortc.mediastreams import MediaStreamError  # noqa: PLC0415

        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    return
                self.frames_received += 1
                if self.first_frame_at is None:
                    self.first_frame_at = clock()
                for callback in list(self._callbacks):
                    try:
                        callback(frame)
                    except Exception:
                        logger.exception("frame callback failed; removing it")
                        self._callbacks.remove(callback)
                for pending in self._queues:
                    if pending.full():
                        pending.get_nowait()
                        self.dropped += 1
                    pending.put_nowait(frame)
        finally:
            self._ended.set()
            for recorder in self._recorders:
                with contextlib.suppress(Exception):
                    await recorder.stop()
            self._recorders.clear()

"""Voice activity detection and endpointing: a pure core that cuts a stream of PCM into utterances.

Theory of operation
===================

The co-host agent hears a call as a stream of small PCM frames. Before a recogniser can caption
it, something must say where each utterance starts and, above all, where it *ends*: a caption is
final only once the speaker has stopped, so the endpoint decides the caption latency. This
module does that without I/O, without a clock and without a model, in the shape of aioquic's
connection: :meth:`Endpointer.feed` takes samples and ``now`` and returns events;
:meth:`Endpointer.flush` ends the stream.

**Frames.** Input chunks of any length are cut into analysis frames of
:attr:`VadConfig.frame_seconds` (20 ms). For each frame two features are computed (with numpy):

* the energy, as RMS in dBFS (0 dB is a full-scale square wave);
* the zero-crossing rate, the fraction of adjacent samples that change sign. Voiced speech
  crosses rarely (under about 0.15); fricatives (``s``, ``f``, ``th``) are noise-like and cross
  often, but are quiet, so energy alone misses word edges that start or end with them.

**Noise floor.** The floor is the minimum frame energy over the last
:attr:`VadConfig.noise_window_seconds` (minimum statistics, as in Martin's noise estimator): a
room's hum or a line's hiss is the quietest thing that lasts, while speech always has gaps
between words. It adapts up when the background gets louder, within one window, and down at once.

**Decision.** A frame is *voiced* if its energy is at least :attr:`VadConfig.min_dbfs` and
either :attr:`VadConfig.margin_db` above the floor, or :attr:`VadConfig.fricative_margin_db`
above it with a zero-crossing rate of at least :attr:`VadConfig.fricative_zcr`.

**Endpointing** is a two-state machine with hysteresis:

* *silence* -> *speech* after :attr:`VadConfig.start_seconds` of consecutive voiced frames. The
  utterance starts at the first of them; its audio starts :attr:`VadConfig.pre_roll_seconds`
  earlier (a ring buffer keeps that much), so a soft onset the detector missed is still heard.
  :class:`SpeechStarted`, then a :class:`SpeechExtended` with the pre-roll and the frames so far.
* In *speech*, every frame's samples go out in :class:`SpeechExtended` as they arrive, so a
  streaming recogniser decodes while the speaker talks; each says whether it was voiced, so the
  recogniser can decode at once when the speaker pauses and leave the hangover's silence alone.
* *speech* -> *silence* after :attr:`VadConfig.hangover_seconds` of consecutive unvoiced frames
  (the hangover bridges the pauses between words), or when the utterance reaches
  :attr:`VadConfig.max_utterance_seconds`, or at :meth:`Endpointer.flush`. :class:`SpeechEnded`
  says where speech ended (the end of the last voiced frame) in stream time, and *when* it
  ended on the caller's clock, so the latency of a caption behind the end of speech can be
  measured.

**Two time bases.** Stream time is seconds of audio since the first sample fed (it never jumps,
whatever the network does). ``now`` is the caller's monotonic clock when a chunk arrived, taken
as the arrival of its last sample; an earlier frame of the same chunk arrived
``samples_after / rate`` seconds before. The hangover is counted in frames, that is in stream
time: the endpointer adds no timer, and a stream that stops dead is ended by :meth:`flush`.

The sample rate is fixed by the first chunk; another rate later is refused with
:class:`~auralink.errors.UnsupportedAudio`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from auralink.errors import ConfigError, UnsupportedAudio

__all__ = [
    "EndReason",
    "Endpointer",
    "FrameFeatures",
    "SpeechEnded",
    "SpeechExtended",
    "SpeechStarted",
    "VadConfig",
    "VadEvent",
    "frame_features",
]

_FULL_SCALE = 32768.0
_SILENT_DBFS = -120.0

EndReason = Literal["silence", "max_length", "flush"]
"""Why an utterance ended: enough unvoiced frames, the length cap, or the end of the stream."""


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Tuning of the detector and the endpointer; the defaults suit read or conversational speech at 16 kHz and up."""

    frame_seconds: float = 0.02
    """Length of an analysis frame."""
    min_dbfs: float = -55.0
    """Frames quieter than this are never voiced, however quiet the floor."""
    margin_db: float = 12.0
    """How far above the noise floor a frame must be to be voiced."""
    fricative_margin_db: float = 6.0
    """The smaller margin for a frame with a fricative's zero-crossing rate."""
    fricative_zcr: float = 0.3
    """The zero-crossing rate from which a frame counts as fricative-like."""
    noise_window_seconds: float = 3.0
    """The window of the minimum that estimates the noise floor."""
    start_seconds: float = 0.06
    """Consecutive voiced audio that starts an utterance."""
    hangover_seconds: float = 0.3
    """Consecutive unvoiced audio that ends one (0.4 s until the caption-latency work; 0.3 s cost no word)."""
    pre_roll_seconds: float = 0.25
    """Audio kept from before the start and given with it."""
    max_utterance_seconds: float = 20.0
    """An utterance this long is cut, even without a pause."""

    def __post_init__(self) -> None:
        positive = {
            "frame_seconds": self.frame_seconds,
            "noise_window_seconds": self.noise_window_seconds,
            "start_seconds": self.start_seconds,
            "hangover_seconds": self.hangover_seconds,
            "max_utterance_seconds": self.max_utterance_seconds,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"VadConfig.{name} must be a positive number of seconds, not {value!r}", name)
        if not (math.isfinite(self.pre_roll_seconds) and self.pre_roll_seconds >= 0):
            raise ConfigError("VadConfig.pre_roll_seconds must be zero or more", "pre_roll_seconds")
        if self.frame_seconds > 0.1:
            raise ConfigError("VadConfig.frame_seconds is at most 0.1 s", "frame_seconds")
        if not 0 <= self.fricative_zcr <= 1:
            raise ConfigError("VadConfig.fricative_zcr is a rate from 0 to 1", "fricative_zcr")
        if self.max_utterance_seconds < self.start_seconds + self.hangover_seconds:
            raise ConfigError("VadConfig.max_utterance_seconds is shorter than a start and a hangover", "max")


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """What the detector measures of one frame."""

    dbfs: float
    """RMS energy in dB relative to full scale (-120 for digital silence)."""
    zcr: float
    """Zero-crossing rate: the fraction of adjacent sample pairs that change sign, 0 to 1."""


def frame_features(samples: bytes) -> FrameFeatures:
    """Energy and zero-crossing rate of 16-bit little-endian mono PCM."""
    values = np.frombuffer(samples, dtype="<i2").astype(np.float64)
    if values.size == 0:
        return FrameFeatures(_SILENT_DBFS, 0.0)
    power = float(np.mean(values * values)) / (_FULL_SCALE * _FULL_SCALE)
    dbfs = max(_SILENT_DBFS, 10.0 * math.log10(power)) if power > 0 else _SILENT_DBFS
    signs = np.signbit(values)
    zcr = float(np.count_nonzero(signs[1:] != signs[:-1])) / max(1, values.size - 1)
    return FrameFeatures(dbfs, zcr)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """An utterance began."""

    utterance: int
    """Its number in this stream, from 0."""
    start: float
    """Stream seconds of its first voiced frame."""
    audio_start: float
    """Stream seconds where its audio begins (the start less the pre-roll, not before 0)."""
    at: float
    """The caller's clock when the start was detected."""


@dataclass(frozen=True, slots=True)
class SpeechExtended:
    """More audio of the open utterance, in order (the first one holds the pre-roll)."""

    utterance: int
    """The utterance it belongs to."""
    samples: bytes
    """16-bit little-endian mono PCM at the stream's rate."""
    voiced: bool = True
    """False for an unvoiced frame within the utterance (a pause, or the hangover that may end it)."""


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """An utterance ended."""

    utterance: int
    """Its number."""
    start: float
    """Stream seconds of its first voiced frame."""
    end: float
    """Stream seconds of the end of its last voiced frame."""
    speech_ended_at: float
    """The caller's clock when that last voiced frame arrived: the end of speech, for latency."""
    at: float
    """The caller's clock when the end was detected."""
    reason: EndReason
    """``silence``, ``max_length`` or ``flush``."""


VadEvent = SpeechStarted | SpeechExtended | SpeechEnded
"""What :meth:`Endpointer.feed` returns."""


class _Minimum:
    """The minimum of the last ``size`` values, in O(1) amortised per value (a monotonic deque)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._index = 0
        self._queue: deque[tuple[int, float]] = deque()

    def push(self, value: float) -> float:
        while self._queue and self._queue[-1][1] >= value:
            self._queue.pop()
        self._queue.append((self._index, value))
        while self._queue[0][0] <= self._index - self._size:
            self._queue.popleft()
        self._index += 1
        return self._queue[0][1]


class Endpointer:
    """Cuts a PCM stream into utterances; see the module docstring. No I/O, no clock: pass ``now``."""

    def __init__(self, config: VadConfig | None = None) -> None:
        """Construct; the sample rate is fixed by the first :meth:`feed`."""
        self.config = config or VadConfig()
        """The tuning."""
        self._rate = 0
        self._frame = 0
        self._pending = b""
        self._position = 0
        self._floor: _Minimum | None = None
        self.noise_floor = _SILENT_DBFS
        """The current noise floor estimate, in dBFS."""
        self._pre_roll: deque[bytes] = deque()
        self._pre_roll_frames = 0
        self._utterance = 0
        self._in_speech = False
        self._voiced_run: list[tuple[int, bytes]] = []
        self._unvoiced = 0
        self._start = 0
        self._last_voiced_end = 0
        self._last_voiced_at = 0.0
        self._frames_in_utterance = 0
        self._start_frames = 0
        self._hangover_frames = 0
        self._max_frames = 0

    def __repr__(self) -> str:
        state = "speech" if self._in_speech else "silence"
        return f"Endpointer({state}, rate={self._rate}, floor={self.noise_floor:.1f} dBFS)"

    @property
    def sample_rate(self) -> int:
        """The stream's sample rate (0 until the first feed)."""
        return self._rate

    @property
    def in_speech(self) -> bool:
        """True while an utterance is open."""
        return self._in_speech

    @property
    def position(self) -> float:
        """Stream seconds analysed so far."""
        return self._position / self._rate if self._rate else 0.0

    def _configure(self, sample_rate: int) -> None:
        config = self.config
        self._rate = sample_rate
        self._frame = max(1, round(config.frame_seconds * sample_rate))
        frame_seconds = self._frame / sample_rate
        self._floor = _Minimum(max(1, round(config.noise_window_seconds / frame_seconds)))
        self._pre_roll_frames = round(config.pre_roll_seconds / frame_seconds)
        self._start_frames = max(1, round(config.start_seconds / frame_seconds))
        self._hangover_frames = max(1, round(config.hangover_seconds / frame_seconds))
        self._max_frames = max(1, round(config.max_utterance_seconds / frame_seconds))

    def feed(self, samples: bytes, sample_rate: int, now: float) -> list[VadEvent]:
        """Analyse more audio (16-bit little-endian mono PCM) that arrived by ``now``; the events it caused."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise UnsupportedAudio(f"a sample rate is a positive int, not {sample_rate!r}")
        if len(samples) % 2:
            raise UnsupportedAudio("16-bit PCM has an even number of bytes")
        if self._rate == 0:
            self._configure(sample_rate)
        elif sample_rate != self._rate:
            raise UnsupportedAudio(f"the stream's sample rate changed from {self._rate} Hz to {sample_rate} Hz")
        data = self._pending + samples
        size = self._frame * 2
        count = len(data) // size
        self._pending = data[count * size :]
        after = len(self._pending) // 2
        events: list[VadEvent] = []
        for index in range(count):
            frame = data[index * size : (index + 1) * size]
            arrived = now - ((count - index - 1) * self._frame + after) / self._rate
            self._frame_in(frame, arrived, events)
        return events

    def flush(self, now: float) -> list[VadEvent]:
        """The stream ended: end the open utterance (the unanalysed tail of under a frame goes with it)."""
        events: list[VadEvent] = []
        if self._in_speech:
            if self._pending:
                events.append(SpeechExtended(self._utterance, self._pending))
            self._end(now, "flush", events)
        self._pending = b""
        return events

    def _voiced(self, features: FrameFeatures) -> bool:
        config = self.config
        if features.dbfs < config.min_dbfs:
            return False
        above = features.dbfs - self.noise_floor
        return above >= config.margin_db or (
            above >= config.fricative_margin_db and features.zcr >= config.fricative_zcr
        )

    def _frame_in(self, frame: bytes, arrived: float, events: list[VadEvent]) -> None:
        assert self._floor is not None
        features = frame_features(frame)
        self.noise_floor = self._floor.push(features.dbfs)
        voiced = self._voiced(features)
        start = self._position
        self._position += self._frame
        if self._in_speech:
            events.append(SpeechExtended(self._utterance, frame, voiced))
            self._frames_in_utterance += 1
            if voiced:
                self._unvoiced = 0
                self._last_voiced_end, self._last_voiced_at = self._position, arrived
            else:
                self._unvoiced += 1
            if self._unvoiced >= self._hangover_frames:
                self._end(arrived, "silence", events)
            elif self._frames_in_utterance >= self._max_frames:
                self._end(arrived, "max_length", events)
            return
        if not voiced:
            for _, held in self._voiced_run:
                self._hold(held)
            self._voiced_run.clear()
            self._hold(frame)
            return
        self._voiced_run.append((start, frame))
        self._last_voiced_end, self._last_voiced_at = self._position, arrived
        if len(self._voiced_run) >= self._start_frames:
            self._begin(arrived, events)

    def _hold(self, frame: bytes) -> None:
        self._pre_roll.append(frame)
        while len(self._pre_roll) > self._pre_roll_frames:
            self._pre_roll.popleft()

    def _begin(self, arrived: float, events: list[VadEvent]) -> None:
        self._in_speech = True
        self._start = self._voiced_run[0][0]
        pre_roll = b"".join(self._pre_roll)
        audio_start = self._start - len(pre_roll) // 2
        events.append(SpeechStarted(self._utterance, self._start / self._rate, audio_start / self._rate, arrived))
        events.append(SpeechExtended(self._utterance, pre_roll + b"".join(f for _, f in self._voiced_run)))
        self._frames_in_utterance = len(self._voiced_run)
        self._pre_roll.clear()
        self._voiced_run.clear()
        self._unvoiced = 0

    def _end(self, now: float, reason: EndReason, events: list[VadEvent]) -> None:
        events.append(
            SpeechEnded(
                self._utterance,
                self._start / self._rate,
                self._last_voiced_end / self._rate,
                self._last_voiced_at,
                now,
                reason,
            )
        )
        self._in_speech = False
        self._utterance += 1
        self._unvoiced = 0
        self._frames_in_utterance = 0

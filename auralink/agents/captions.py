"""Audio in, words out: the frames the agent accepts, and the streaming recognisers that caption utterances.

Theory of operation
===================

**Frames.** The agent hears an async iterator of frames. A :class:`PcmFrame` is 16-bit mono PCM
with its sample rate (and, optionally, who is speaking); a PyAV ``av.AudioFrame``, which is what
a call's remote audio track delivers (48 kHz, ``s16`` mono or stereo), is accepted too, and
either may come wrapped in an :class:`ArrivedFrame` that says when it arrived.
:class:`FrameConverter` turns both into PCM at one rate: PyAV frames go through PyAV's own
resampler (``av.AudioResampler``, to 16 kHz mono ``s16``), which keeps its filter state across
frames; PCM frames keep their rate, which must not change within a stream. The recogniser's
model needs 16 kHz or more (:data:`~auralink.agents.speech.MIN_SAMPLE_RATE`).

**Streaming recognition.** A caption is only useful if it arrives while the words still matter,
so the recogniser decodes *while* the speaker talks: a :class:`StreamingRecognizer` is given an
utterance's audio in pieces (:meth:`~StreamingRecognizer.feed`, which returns the partial
hypothesis so far) and closes it with :meth:`~StreamingRecognizer.finish`, which returns the
final :class:`~auralink.agents.speech.Recognition` with word times. The agent decodes what was
said as soon as the speaker pauses (the first unvoiced frame), and of the hangover's silence it
decodes only :attr:`~auralink.agents.AgentConfig.tail_seconds`; so when the endpointer says the
speaker stopped, only that short tail and the final search remain. The final search is the
one-pass lattice (pocketsphinx's second, flat-lexicon pass is off: see
:class:`SphinxStreamingRecognizer`), which takes milliseconds.

* :class:`SphinxStreamingRecognizer` (the offline default) drives one pocketsphinx ``Decoder``
  with ``process_raw(..., full_utt=False)``, in a worker thread. pocketsphinx cannot normalise
  the cepstra over the whole utterance when it streams (the batch mode that
  :class:`~auralink.agents.speech.SphinxRecognizer` uses), so it is a little less accurate than a
  whole-clip decode: ``docs/concepts/agents.md`` gives both word error rates.
* :class:`RouterRecognizer` serves a tenant's speech-to-text chain through the
  :class:`~auralink.agents.providers.ProviderRouter` (Whisper, Azure, Google... or the local
  pocketsphinx at its end): it collects the utterance and transcribes it whole at the end, so it
  gives no partial captions and its latency is the provider's round trip.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from auralink.agents.providers.router import ProviderRouter
from auralink.agents.speech.audio import PcmAudio, write_wav
from auralink.agents.speech.sphinx import (
    MIN_SAMPLE_RATE,
    Recognition,
    RecognizedWord,
    SphinxModel,
    load_pocketsphinx,
)
from auralink.errors import ConfigError, UnsupportedAudio

__all__ = [
    "AGENT_SAMPLE_RATE",
    "ArrivedFrame",
    "CMN_INIT",
    "FrameConverter",
    "PcmFrame",
    "RouterRecognizer",
    "SphinxStreamingRecognizer",
    "StreamingRecognizer",
]

AGENT_SAMPLE_RATE = 16000
"""The rate PyAV frames are resampled to: the recogniser's model rate."""

_FILLERS = ("<s>", "</s>", "<sil>")

CMN_INIT = "57.28,4.45,-0.26,16.08,12.27,-3.18,1.14,-10.87,-4.00,6.60,-8.06,3.10,-9.25"
"""The cepstral mean a fresh decoder starts from: measured on 8.8 s of Piper speech (the joe voice).

pocketsphinx's own start (``40,3,-1``) is far from real speech, and a streaming decoder only
learns the mean as utterances end, so its first utterance suffered most: on the four LibriVox
clips, each decoded by a fresh decoder, WER 0.397 with the default and 0.349 with this."""


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """A piece of audio: 16-bit little-endian mono PCM, any length (20 ms is typical)."""

    samples: bytes = field(repr=False)
    """The samples, two bytes each."""
    sample_rate: int
    """Samples per second."""
    speaker: str | None = None
    """Who is speaking, if the source knows (an AuraID string or a display name)."""
    arrived: float | None = None
    """The agent's clock when the audio arrived, if it waited in a queue (None: when the agent reads it)."""

    def __post_init__(self) -> None:
        if len(self.samples) % 2:
            raise UnsupportedAudio("16-bit PCM has an even number of bytes")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise UnsupportedAudio(f"a sample rate is a positive int, not {self.sample_rate!r}")

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.samples) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class ArrivedFrame:
    """A frame (:class:`PcmFrame` or ``av.AudioFrame``) stamped with when it arrived, on the agent's clock.

    Audio that waits in a queue while the agent decodes would otherwise be timed when the agent
    reads it, which understates the caption latency; the in-call adapter stamps each frame as the
    call delivers it.
    """

    frame: object
    """The audio."""
    arrived: float
    """The agent's clock when it arrived."""


class FrameConverter:
    """Turns :class:`PcmFrame` and ``av.AudioFrame`` input into PCM frames at one rate (see the module docstring)."""

    def __init__(self, rate: int = AGENT_SAMPLE_RATE) -> None:
        """``rate`` is what PyAV frames are resampled to; PCM frames keep theirs."""
        self._rate = rate
        self._resampler: Any = None

    def convert(self, frame: object) -> list[PcmFrame]:
        """The PCM of one input frame (a resampler may hold some back, so zero or more frames)."""
        if isinstance(frame, ArrivedFrame):
            return [replace(pcm, arrived=frame.arrived) for pcm in self.convert(frame.frame)]
        if isinstance(frame, PcmFrame):
            if frame.sample_rate < MIN_SAMPLE_RATE:
                raise UnsupportedAudio(
                    f"captions need audio at {MIN_SAMPLE_RATE} Hz or more, not {frame.sample_rate} Hz"
                )
            return [frame]
        if type(frame).__name__ == "AudioFrame" and type(frame).__module__.startswith("av"):
            return self._resample(frame)
        raise UnsupportedAudio(f"the agent hears PcmFrame or av.AudioFrame, not {type(frame).__name__}")

    def _resample(self, frame: Any) -> list[PcmFrame]:
        if self._resampler is None:
            import av  # noqa: PLC0415 - only for PyAV input, which means PyAV is installed

            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._rate)
        try:
            out = self._resampler.resample(frame)
        except (ValueError, RuntimeError) as exc:  # av.error.FFmpegError derives from these
            raise UnsupportedAudio(f"cannot resample this audio frame: {exc}") from exc
        frames: list[PcmFrame] = []
        for piece in out:
            data = bytes(piece.planes[0])[: piece.samples * 2]
            frames.append(PcmFrame(data, self._rate))
        return frames


@runtime_checkable
class StreamingRecognizer(Protocol):
    """Speech to text fed one utterance at a time, in pieces, as it is spoken."""

    @property
    def name(self) -> str:
        """The recogniser's name, for captions and logs."""
        ...

    async def start(self, sample_rate: int) -> None:
        """Open an utterance of audio at ``sample_rate``."""
        ...

    async def feed(self, samples: bytes) -> str:
        """Decode more of it; the partial hypothesis so far (empty if none, or if the recogniser gives none)."""
        ...

    async def finish(self) -> Recognition:
        """Close the utterance: the final recognition, word times relative to its first sample."""
        ...


class _SphinxStream:
    """The blocking part: one pocketsphinx decoder per sample rate, one utterance at a time."""

    def __init__(self, model: SphinxModel, provider: str, cmn_init: str | None, fwdflat: bool) -> None:
        self._model = model
        self._provider = provider
        self._cmn_init = cmn_init
        self._fwdflat = fwdflat
        self._decoders: dict[int, Any] = {}
        self._decoder: Any = None
        self._fed = 0
        self._rate = 0
        self._lock = threading.Lock()

    def _make(self, sample_rate: int) -> Any:
        decoder = self._decoders.get(sample_rate)
        if decoder is not None:
            return decoder
        if sample_rate < MIN_SAMPLE_RATE:
            raise UnsupportedAudio(
                f"pocketsphinx's wideband model needs at least {MIN_SAMPLE_RATE} Hz, not {sample_rate} Hz",
                self._provider,
            )
        pocketsphinx = load_pocketsphinx(self._provider)
        options: dict[str, Any] = {"samprate": sample_rate, "loglevel": "ERROR", "fwdflat": self._fwdflat}
        if self._cmn_init is not None:
            options["cmninit"] = self._cmn_init
        for key, path in (("hmm", self._model.hmm), ("lm", self._model.lm), ("dict", self._model.dictionary)):
            if path is not None:
                options[key] = str(path)
        try:
            decoder = pocketsphinx.Decoder(**options)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ConfigError(f"pocketsphinx could not load its model {self._model!r}: {exc}", "model") from exc
        self._decoders[sample_rate] = decoder
        return decoder

    def warm(self, sample_rate: int) -> None:
        with self._lock:
            self._make(sample_rate)

    def start(self, sample_rate: int) -> None:
        with self._lock:
            decoder = self._make(sample_rate)
            if self._decoder is not None:
                self._decoder.end_utt()
            decoder.start_utt()
            self._decoder, self._fed, self._rate = decoder, 0, sample_rate

    def feed(self, samples: bytes) -> str:
        with self._lock:
            if self._decoder is None:
                raise ConfigError("feed() before start(): no utterance is open", "recognizer")
            if samples:
                self._decoder.process_raw(samples, False, False)
                self._fed += len(samples) // 2
            hypothesis = self._decoder.hyp()
            return _clean(hypothesis.hypstr) if hypothesis is not None else ""

    def finish(self) -> Recognition:
        with self._lock:
            decoder, self._decoder = self._decoder, None
            if decoder is None:
                raise ConfigError("finish() before start(): no utterance is open", "recognizer")
            decoder.end_utt()
            frame_rate = float(decoder.config["frate"])
            words = tuple(
                RecognizedWord(
                    _clean(segment.word),
                    segment.start_frame / frame_rate,
                    (segment.end_frame + 1) / frame_rate,
                    min(1.0, max(0.0, float(segment.prob))),
                )
                for segment in decoder.seg()
                if _clean(segment.word)
            )
            duration = self._fed / self._rate if self._rate else 0.0
        confidence = sum(w.probability for w in words) / len(words) if words else None
        return Recognition(" ".join(w.word for w in words), words, duration, confidence)


def _clean(word: str) -> str:
    """A word without pocketsphinx's markup: fillers vanish, ``read(2)`` is ``read``."""
    out = []
    for token in word.split():
        if token in _FILLERS or (token.startswith("[") and token.endswith("]")) or token.startswith("<"):
            continue
        out.append(token[: token.index("(")] if token.endswith(")") and "(" in token else token)
    return " ".join(out)


class SphinxStreamingRecognizer:
    """Offline streaming captions with pocketsphinx (:class:`StreamingRecognizer`); decodes in a worker thread."""

    def __init__(
        self,
        model: SphinxModel | None = None,
        *,
        name: str = "pocketsphinx",
        cmn_init: str | None = CMN_INIT,
        fwdflat: bool = False,
    ) -> None:
        """Construct; loads nothing until :meth:`warm_up` or the first :meth:`start`.

        ``cmn_init`` is the cepstral mean a fresh decoder starts from (:data:`CMN_INIT`; None
        for the model's own); a custom ``model`` may need its own. ``fwdflat`` turns on
        pocketsphinx's second, flat-lexicon search, which runs when the utterance ends: it cost
        0.14-0.36 s of every final caption on the four LibriVox clips and changed no word in a
        session, and each clip on a fresh decoder did better without it (WER 0.317 against 0.349), so it is off.
        """
        self._name = name
        self._settings = (model or SphinxModel(), cmn_init, fwdflat)
        self._stream = _SphinxStream(self._settings[0], name, cmn_init, fwdflat)

    def __repr__(self) -> str:
        return f"SphinxStreamingRecognizer(name={self._name!r})"

    def fresh(self) -> SphinxStreamingRecognizer:
        """Another recogniser with the same model and settings and a decoder of its own (one per speaker)."""
        model, cmn_init, fwdflat = self._settings
        return SphinxStreamingRecognizer(model, name=self._name, cmn_init=cmn_init, fwdflat=fwdflat)

    @property
    def name(self) -> str:
        """``pocketsphinx`` unless renamed."""
        return self._name

    async def warm_up(self, sample_rate: int = AGENT_SAMPLE_RATE) -> None:
        """Load the model for ``sample_rate`` now (about 0.4 s), not in the first utterance."""
        await asyncio.to_thread(self._stream.warm, sample_rate)

    async def start(self, sample_rate: int) -> None:
        """Open an utterance."""
        await asyncio.to_thread(self._stream.start, sample_rate)

    async def feed(self, samples: bytes) -> str:
        """Decode a piece; the partial hypothesis."""
        return await asyncio.to_thread(self._stream.feed, samples)

    async def finish(self) -> Recognition:
        """The final recognition of the utterance."""
        return await asyncio.to_thread(self._stream.finish)


class RouterRecognizer:
    """A tenant's speech-to-text chain as a (non-streaming) :class:`StreamingRecognizer`: one call per utterance."""

    def __init__(self, router: ProviderRouter, tenant_id: str, *, language: str | None = None) -> None:
        """Transcribe through ``router`` for ``tenant_id``; ``language`` is a BCP-47 tag or None."""
        self._router = router
        self._tenant = tenant_id
        self._language = language
        self._rate = 0
        self._chunks: list[bytes] = []

    def fresh(self) -> RouterRecognizer:
        """Another recogniser for the same tenant, collecting utterances of its own (one per speaker)."""
        return RouterRecognizer(self._router, self._tenant, language=self._language)

    @property
    def name(self) -> str:
        """``router:<tenant>``."""
        return f"router:{self._tenant}"

    async def start(self, sample_rate: int) -> None:
        """Open an utterance."""
        self._rate, self._chunks = sample_rate, []

    async def feed(self, samples: bytes) -> str:
        """Collect audio; no partial hypothesis (empty)."""
        self._chunks.append(samples)
        return ""

    async def finish(self) -> Recognition:
        """Transcribe the utterance through the tenant's stt chain; no word times."""
        audio = PcmAudio(b"".join(self._chunks), self._rate)
        self._chunks = []
        transcript = await self._router.transcribe(self._tenant, write_wav(audio), language=self._language)
        return Recognition(transcript.text.strip(), (), audio.duration, transcript.confidence)

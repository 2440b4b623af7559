"""Offline speech to text with pocketsphinx 5: a blocking recognizer and its asyncio adapter.

Theory of operation
===================

:class:`SphinxRecognizer` wraps one pocketsphinx ``Decoder`` per sample rate. The ``pocketsphinx``
wheel ships CMU's US-English continuous acoustic model, a trigram language model and the CMU
pronouncing dictionary, so nothing is downloaded; :class:`SphinxModel` may point at other files.
A decoder is built on first use (about 0.45 s to load the model here) and kept.

:meth:`SphinxRecognizer.recognize` decodes a whole utterance in one pass (``full_utt=True``,
with batch cepstral mean normalisation, which suits recorded clips) and returns a
:class:`Recognition`: the text, each word with its start and end in seconds and its posterior
probability, and the mean of those posteriors as a confidence. The posteriors are pocketsphinx's
own lattice estimates: useful to rank words within one recognition, not calibrated, and not
comparable with a cloud provider's confidence. Fillers (``<s>``, ``<sil>``, ``[NOISE]``) are not
words, and alternate pronunciations (``read(2)``) are reported by their word.

pocketsphinx computes its mel filterbank in hertz (130 Hz to 6.8 kHz for this model), so audio at
16 kHz or any higher rate is decoded at its own rate without resampling; the decoder for that
rate is configured with ``samprate``. Below 16 kHz the model's band does not fit, and the audio is
refused with :class:`~auralink.errors.UnsupportedAudio` (a :class:`~auralink.errors.ProviderRejected`,
so a router tries the next provider).

Decoding is CPU-bound C code: about 0.2 x real time on these machines. The recognizer is
blocking and thread-safe (one lock per recognizer: a decoder holds one utterance at a time).
:class:`PocketSphinxSTT` is the :class:`~auralink.agents.providers.types.SpeechToText` adapter:
it parses the WAV (:func:`~auralink.agents.speech.audio.read_wav`) and runs the recognizer in a
worker thread (``asyncio.to_thread``), so the event loop keeps serving while it decodes. If the
caller's timeout cancels the await, the decode still finishes in its thread and its result is
dropped; the next call waits for the lock.

Quality, honestly: the bundled model is from 2015 and is far behind neural recognisers. On the
LibriVox clips of Debian's ``pocketsphinx-testdata`` it makes about one error in four words (see
``docs/concepts/speech.md`` and ``benchmarks/stt.py``). It is the offline floor of a fallback
chain, and a caption track that says so.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auralink.agents.providers.types import Transcript, Usage
from auralink.agents.speech.audio import WAV_CONTENT_TYPES, PcmAudio, read_wav
from auralink.errors import ConfigError, ProviderNotInstalled, ProviderRejected, UnsupportedAudio

__all__ = [
    "MIN_SAMPLE_RATE",
    "PocketSphinxSTT",
    "Recognition",
    "RecognizedWord",
    "SphinxModel",
    "SphinxRecognizer",
    "load_pocketsphinx",
]

MIN_SAMPLE_RATE = 16000
"""The lowest sample rate the bundled (wideband) model can decode."""

_FILLER = re.compile(r"^(<.*>|\[.*\])$")
_ALTERNATE = re.compile(r"\(\d+\)$")


def load_pocketsphinx(provider: str = "pocketsphinx") -> Any:
    """The ``pocketsphinx`` module, or :class:`~auralink.errors.ProviderNotInstalled` naming the extra."""
    try:
        return importlib.import_module("pocketsphinx")
    except ImportError as exc:
        raise ProviderNotInstalled(
            "offline speech to text needs pocketsphinx; install it with: pip install 'auralink[agents]'",
            provider,
            "pocketsphinx",
        ) from exc


@dataclass(frozen=True, slots=True)
class SphinxModel:
    """The model files; each None means the one the ``pocketsphinx`` wheel ships (US English)."""

    hmm: Path | None = None
    """The acoustic model directory."""
    lm: Path | None = None
    """The n-gram language model (ARPA or binary)."""
    dictionary: Path | None = None
    """The pronouncing dictionary."""


@dataclass(frozen=True, slots=True)
class RecognizedWord:
    """One word of a recognition, placed in the audio."""

    word: str
    """The word, in the dictionary's spelling (lower case for the bundled model)."""
    start: float
    """Seconds from the start of the audio to the word's first frame."""
    end: float
    """Seconds from the start of the audio to the end of the word's last frame."""
    probability: float
    """The word's posterior probability in the lattice, 0 to 1 (not calibrated)."""


@dataclass(frozen=True, slots=True)
class Recognition:
    """What the recognizer heard in one utterance."""

    text: str
    """The words, space-separated; empty if nothing was recognised."""
    words: tuple[RecognizedWord, ...]
    """Each word with its times and posterior."""
    duration: float
    """Seconds of audio decoded."""
    confidence: float | None
    """The mean word posterior, or None if there were no words."""


class SphinxRecognizer:
    """A blocking, thread-safe pocketsphinx recognizer: one decoder per sample rate, built on first use."""

    def __init__(self, model: SphinxModel | None = None, *, provider: str = "pocketsphinx") -> None:
        """Construct; loads nothing until :meth:`load` or the first :meth:`recognize`."""
        self._model = model or SphinxModel()
        self._provider = provider
        self._decoders: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SphinxRecognizer(model={self._model!r}, loaded_rates={sorted(self._decoders)!r})"

    @property
    def model(self) -> SphinxModel:
        """The model files this recognizer uses."""
        return self._model

    def load(self, sample_rate: int = MIN_SAMPLE_RATE) -> None:
        """Build the decoder for ``sample_rate`` now, rather than in the first call."""
        with self._lock:
            self._decoder(sample_rate)

    def _decoder(self, sample_rate: int) -> Any:
        decoder = self._decoders.get(sample_rate)
        if decoder is not None:
            return decoder
        if sample_rate < MIN_SAMPLE_RATE:
            raise UnsupportedAudio(
                f"pocketsphinx's wideband model needs at least {MIN_SAMPLE_RATE} Hz, not {sample_rate} Hz",
                self._provider,
            )
        pocketsphinx = load_pocketsphinx(self._provider)
        options: dict[str, Any] = {"samprate": sample_rate, "loglevel": "ERROR"}
        for key, path in (("hmm", self._model.hmm), ("lm", self._model.lm), ("dict", self._model.dictionary)):
            if path is not None:
                options[key] = str(path)
        try:
            decoder = pocketsphinx.Decoder(**options)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ConfigError(f"pocketsphinx could not load its model {self._model!r}: {exc}", "model") from exc
        self._decoders[sample_rate] = decoder
        return decoder

    def recognize(self, audio: PcmAudio) -> Recognition:
        """Decode one utterance (blocking; about 0.2 s per second of audio here)."""
        if audio.frames == 0:
            return Recognition("", (), 0.0, None)
        with self._lock:
            decoder = self._decoder(audio.sample_rate)
            decoder.start_utt()
            try:
                decoder.process_raw(audio.samples, False, True)
            finally:
                decoder.end_utt()
            frame_rate = float(decoder.config["frate"])
            words = tuple(
                RecognizedWord(
                    _ALTERNATE.sub("", segment.word),
                    segment.start_frame / frame_rate,
                    (segment.end_frame + 1) / frame_rate,
                    min(1.0, max(0.0, float(segment.prob))),
                )
                for segment in decoder.seg()
                if not _FILLER.match(segment.word)
            )
        confidence = sum(w.probability for w in words) / len(words) if words else None
        return Recognition(" ".join(w.word for w in words), words, audio.duration, confidence)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class PocketSphinxSTT:
    """Offline speech to text (:class:`~auralink.agents.providers.types.SpeechToText`) with pocketsphinx."""

    def __init__(self, recognizer: SphinxRecognizer | None = None, *, name: str = "pocketsphinx") -> None:
        """Construct; loads nothing (call :meth:`warm_up` to load the model before the first call)."""
        self._name = name
        self._recognizer = recognizer or SphinxRecognizer(provider=name)

    def __repr__(self) -> str:
        return f"PocketSphinxSTT(name={self._name!r})"

    @property
    def name(self) -> str:
        """The provider's name in chains, logs and the usage meter."""
        return self._name

    @property
    def recognizer(self) -> SphinxRecognizer:
        """The blocking recognizer underneath (for word timings: :meth:`SphinxRecognizer.recognize`)."""
        return self._recognizer

    async def warm_up(self, sample_rate: int = MIN_SAMPLE_RATE) -> None:
        """Load the model for ``sample_rate`` in a worker thread."""
        await asyncio.to_thread(self._recognizer.load, sample_rate)

    async def recognize(self, audio: PcmAudio) -> Recognition:
        """:meth:`SphinxRecognizer.recognize` in a worker thread."""
        return await asyncio.to_thread(self._recognizer.recognize, audio)

    async def transcribe(
        self, audio: bytes, *, content_type: str = "audio/wav", language: str | None = None
    ) -> Transcript:
        """Transcribe a WAV recording of US-English speech.

        ``language`` (BCP-47) must be None or English (``en``, ``en-US``...): the bundled model
        knows no other language, and says so with :class:`~auralink.errors.ProviderRejected`.
        """
        if language is not None and language.lower().replace("_", "-").split("-")[0] != "en":
            raise ProviderRejected(
                f"{self._name}: the bundled model is US English, not {language!r}", self._name, code="language"
            )
        if _media_type(content_type) not in WAV_CONTENT_TYPES:
            raise UnsupportedAudio(f"{self._name}: reads WAV audio, not {content_type!r}", self._name)
        try:
            pcm = read_wav(audio)
        except UnsupportedAudio as exc:
            raise UnsupportedAudio(f"{self._name}: {exc}", self._name) from exc
        result = await self.recognize(pcm)
        return Transcript(
            text=result.text,
            language="en-US",
            confidence=result.confidence,
            usage=Usage(audio_seconds=pcm.duration),
            provider=self._name,
        )

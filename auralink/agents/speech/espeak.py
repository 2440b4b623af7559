"""Offline text to speech with the espeak-ng program: the light fallback voice.

Theory of operation
===================

:class:`EspeakTTS` runs Debian's ``espeak-ng`` (``apt-get install espeak-ng``) once per call:
``espeak-ng -b 1 -v VOICE -s WPM --stdin --stdout``, with the text on its standard input (never
on the command line, so no text can become an option) and a WAV on its standard output. The
formant synthesiser is small and fast (a sentence in about 30 ms here) and sounds robotic; it is
the voice of last resort, when Piper is not installed.

espeak-ng writes a streaming WAV whose RIFF and ``data`` sizes are placeholders;
:func:`~auralink.agents.speech.audio.read_wav` reads it to the end of the output and
:func:`~auralink.agents.speech.audio.write_wav` returns a file with correct sizes.

The process is an asyncio subprocess owned by the call: if the call is cancelled (the router's
timeout, a hang-up), the process is killed and reaped before the cancellation goes on, so no
process outlives its call. A missing program is
:class:`~auralink.errors.ProviderNotInstalled`; a non-zero exit is
:class:`~auralink.errors.ProviderUnavailable` with the program's last words on stderr.

Licence: espeak-ng is GPL-3.0-or-later. It runs as a separate program that AuraLink starts and
talks to through pipes, and AuraLink neither ships nor links it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

from auralink.agents.providers.types import SpeechAudio, Usage
from auralink.agents.speech.audio import read_wav, write_wav
from auralink.errors import ConfigError, ProviderNotInstalled, ProviderRejected, ProviderUnavailable, UnsupportedAudio

__all__ = ["EspeakTTS"]

_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-]{0,39}$")
_MAX_TEXT = 100_000


class EspeakTTS:
    """Offline text to speech (:class:`~auralink.agents.providers.types.TextToSpeech`) with espeak-ng."""

    def __init__(
        self,
        *,
        name: str = "espeak-ng",
        voice: str = "en-us",
        words_per_minute: int = 165,
        executable: str = "espeak-ng",
    ) -> None:
        """Construct; starts nothing. ``voice`` is an espeak-ng voice name (``en-us``, ``en-gb``, ``fr``...)."""
        if not _VOICE.match(voice):
            raise ConfigError(f"not an espeak-ng voice name: {voice!r}", "voice")
        if not 80 <= words_per_minute <= 450:
            raise ConfigError(f"words_per_minute is between 80 and 450, not {words_per_minute}", "words_per_minute")
        self._name = name
        self._voice = voice
        self._wpm = words_per_minute
        self._executable = executable

    def __repr__(self) -> str:
        return f"EspeakTTS(name={self._name!r}, voice={self._voice!r})"

    @property
    def name(self) -> str:
        """The provider's name in chains, logs and the usage meter."""
        return self._name

    @property
    def voice(self) -> str:
        """The voice it speaks with unless a call names another."""
        return self._voice

    def available(self) -> bool:
        """Is the ``espeak-ng`` program on the PATH?"""
        return shutil.which(self._executable) is not None

    async def synthesize(self, text: str, *, voice: str | None = None) -> SpeechAudio:
        """Speak ``text`` as a 16-bit mono WAV at 22 050 Hz, in ``voice`` or the configured one."""
        if not text.strip():
            raise ProviderRejected(f"{self._name}: there is no text to speak", self._name, code="empty_text")
        if len(text) > _MAX_TEXT:
            raise ProviderRejected(f"{self._name}: more than {_MAX_TEXT} characters", self._name, code="too_long")
        chosen = self._voice if voice is None else voice
        if not _VOICE.match(chosen):
            raise ProviderRejected(f"{self._name}: not an espeak-ng voice name: {chosen!r}", self._name, code="voice")
        program = shutil.which(self._executable)
        if program is None:
            raise ProviderNotInstalled(
                f"{self._name}: the {self._executable} program is not installed (apt-get install espeak-ng)",
                self._name,
                "espeak-ng",
            )
        args = [program, "-b", "1", "-v", chosen, "-s", str(self._wpm), "--stdin", "--stdout"]
        process = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = await process.communicate(text.encode("utf-8"))
        except BaseException:
            if process.returncode is None:
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            said = (err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"])[0][:200]
            if "voice does not exist" in said:
                raise ProviderRejected(f"{self._name}: no voice {chosen!r}", self._name, code="voice")
            raise ProviderUnavailable(f"{self._name}: exited with {process.returncode}: {said}", self._name)
        try:
            pcm = read_wav(out)
        except UnsupportedAudio as exc:
            raise ProviderUnavailable(f"{self._name}: wrote audio that is not a WAV file: {exc}", self._name) from exc
        return SpeechAudio(
            audio=write_wav(pcm),
            content_type="audio/wav",
            usage=Usage(audio_seconds=pcm.duration, characters=len(text)),
            provider=self._name,
        )

"""ElevenLabs text to speech: ``POST /v1/text-to-speech/{voice_id}`` with the ``xi-api-key`` header.

Theory of operation
===================

:class:`ElevenLabsTTS` sends ``{"text", "model_id"}`` as JSON, the voice in the path and the
audio format as the ``output_format`` query parameter (``mp3_44100_128`` by default; ``pcm_*``,
``ulaw_8000`` and ``opus_*`` exist, some only on paid tiers). The 200 answer's body is the audio
itself. A 200 whose ``Content-Type`` is not audio (a JSON body, an HTML page from a proxy) breaks
the protocol and raises :class:`~auralink.errors.ProviderProtocolError`.

ElevenLabs reports errors as ``{"detail": {"status", "message"}}``, or as FastAPI's validation
list on 422. Its ``quota_exceeded`` status comes with HTTP 401 but is not an authentication
failure: it maps to :class:`~auralink.errors.ProviderQuotaExhausted` (see
:func:`~auralink.agents.providers.wire.error_for_status`).

Usage is metered in characters of ``text``, the unit ElevenLabs bills in (some models bill half
a credit a character; the meter counts characters, not credits).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from pydantic import SecretStr

from auralink.agents.providers._http import send
from auralink.agents.providers.types import SpeechAudio, Usage
from auralink.agents.providers.wire import MAX_AUDIO_BODY, wav_info
from auralink.errors import ProviderProtocolError

__all__ = ["ELEVENLABS_BASE_URL", "ElevenLabsTTS"]

ELEVENLABS_BASE_URL = "https://api.elevenlabs.io"
"""ElevenLabs' API, without the version segment."""

_FORMAT_TYPES = {"mp3": "audio/mpeg", "pcm": "audio/L16", "ulaw": "audio/basic", "alaw": "audio/x-alaw-basic"}


class ElevenLabsTTS:
    """Text to speech with ElevenLabs."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        voice_id: str,
        api_key: SecretStr | None,
        model_id: str = "eleven_multilingual_v2",
        output_format: str = "mp3_44100_128",
        base_url: str = ELEVENLABS_BASE_URL,
        name: str = "elevenlabs",
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._voice = voice_id
        self._key = api_key
        self._model = model_id
        self._format = output_format
        self._base = base_url.rstrip("/")
        self._name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"ElevenLabsTTS(name={self._name!r}, url={self._base!r}, voice_id={self._voice!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def synthesize(self, text: str, *, voice: str | None = None) -> SpeechAudio:
        """Speak ``text`` with ``voice`` (an ElevenLabs voice ID) or the configured voice."""
        secret = () if self._key is None else (self._key.get_secret_value(),)
        reply = await send(
            self._http,
            "POST",
            f"{self._base}/v1/text-to-speech/{quote(voice or self._voice, safe='')}",
            provider=self._name,
            dialect="elevenlabs",
            headers={} if self._key is None else {"xi-api-key": self._key.get_secret_value()},
            limit=MAX_AUDIO_BODY,
            secrets=secret,
            timeout=self._timeout,
            params={"output_format": self._format},
            json={"text": text, "model_id": self._model},
        )
        media = reply.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not (media.startswith("audio/") or media == "application/octet-stream") or not reply.body:
            raise ProviderProtocolError(
                f"{self._name}: expected audio, got {media or 'no content type'} ({len(reply.body)} bytes)", self._name
            )
        if not media.startswith("audio/"):
            media = _FORMAT_TYPES.get(self._format.split("_", 1)[0], "application/octet-stream")
        info = wav_info(reply.body)
        usage = Usage(characters=len(text), audio_seconds=info.duration if info else 0.0)
        return SpeechAudio(reply.body, media, usage, self._name)

"""Google Cloud Speech-to-Text v1 and Text-to-Speech v1 over REST, with an API key.

Theory of operation
===================

Both clients send JSON and authenticate with the API key in the ``X-Goog-Api-Key`` header
(Google also accepts ``?key=``, but a key in the URL would end up in httpx's request log).

:class:`GoogleSpeechToText` posts ``{"config": {"languageCode", ...}, "audio": {"content":
<base64>}}`` to ``POST {base_url}/v1/speech:recognize``
(:func:`~auralink.agents.providers.wire.encode_google_recognize`; WAV and FLAC describe themselves,
Ogg Opus needs a sample rate). Synchronous recognition takes about a minute of audio at most. The
answer's ``results`` are consecutive portions of the audio, each with ranked ``alternatives``; the
transcript joins the top alternative of each. ``totalBilledTime`` is what usage is metered in.

:class:`GoogleTextToSpeech` posts ``{"input": {"text"}, "voice": {"languageCode", "name"?},
"audioConfig": {"audioEncoding"}}`` to ``POST {base_url}/v1/text:synthesize`` and decodes the
base64 ``audioContent``. ``LINEAR16`` (the default) comes with a WAV header.

Google reports errors as ``{"error": {"code", "message", "status", "details"}}``. An invalid key
is an HTTP 400 whose ``ErrorInfo.reason`` is ``API_KEY_INVALID``: it maps to
:class:`~auralink.errors.ProviderAuthFailed`, not to a rejected request.
"""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import SecretStr

from auralink.agents.providers._http import send
from auralink.agents.providers.types import SpeechAudio, Transcript, Usage
from auralink.agents.providers.wire import (
    MAX_AUDIO_BODY,
    MAX_JSON_BODY,
    decode_google_recognition,
    decode_google_synthesis,
    encode_google_recognize,
    encode_google_synthesize,
    wav_info,
)

__all__ = [
    "GOOGLE_STT_BASE_URL",
    "GOOGLE_TTS_BASE_URL",
    "GoogleAudioEncoding",
    "GoogleSpeechToText",
    "GoogleTextToSpeech",
]

GOOGLE_STT_BASE_URL = "https://speech.googleapis.com"
"""Google Cloud Speech-to-Text, without the version segment."""
GOOGLE_TTS_BASE_URL = "https://texttospeech.googleapis.com"
"""Google Cloud Text-to-Speech, without the version segment."""

GoogleAudioEncoding = Literal["LINEAR16", "MP3", "OGG_OPUS", "MULAW", "ALAW"]
"""Audio encodings Text-to-Speech can return."""

_MEDIA_TYPES = {
    "LINEAR16": "audio/wav",
    "MP3": "audio/mpeg",
    "OGG_OPUS": "audio/ogg",
    "MULAW": "audio/wav",
    "ALAW": "audio/wav",
}


def _headers(api_key: SecretStr | None) -> dict[str, str]:
    return {} if api_key is None else {"X-Goog-Api-Key": api_key.get_secret_value()}


def _secrets(api_key: SecretStr | None) -> tuple[str, ...]:
    return () if api_key is None else (api_key.get_secret_value(),)


class GoogleSpeechToText:
    """Google Cloud Speech-to-Text v1, synchronous ``speech:recognize``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: SecretStr | None,
        base_url: str = GOOGLE_STT_BASE_URL,
        language_code: str = "en-US",
        sample_rate_hertz: int | None = None,
        name: str = "google",
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._key = api_key
        self._url = base_url.rstrip("/") + "/v1/speech:recognize"
        self._language = language_code
        self._rate = sample_rate_hertz
        self._name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"GoogleSpeechToText(name={self._name!r}, url={self._url!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def transcribe(
        self, audio: bytes, *, content_type: str = "audio/wav", language: str | None = None
    ) -> Transcript:
        """Transcribe one recording (WAV, FLAC or Ogg Opus; about a minute at most)."""
        body = encode_google_recognize(
            audio,
            content_type=content_type,
            language_code=language or self._language,
            sample_rate_hertz=self._rate,
            provider=self._name,
        )
        reply = await send(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="google",
            headers={**_headers(self._key), "Accept": "application/json"},
            limit=MAX_JSON_BODY,
            secrets=_secrets(self._key),
            timeout=self._timeout,
            json=body,
        )
        info = wav_info(audio)
        return decode_google_recognition(reply.body, provider=self._name, audio_seconds=info.duration if info else None)


class GoogleTextToSpeech:
    """Google Cloud Text-to-Speech v1, ``text:synthesize``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: SecretStr | None,
        base_url: str = GOOGLE_TTS_BASE_URL,
        language_code: str = "en-US",
        voice_name: str | None = None,
        audio_encoding: GoogleAudioEncoding = "LINEAR16",
        name: str = "google",
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._key = api_key
        self._url = base_url.rstrip("/") + "/v1/text:synthesize"
        self._language = language_code
        self._voice = voice_name
        self._encoding = audio_encoding
        self._name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"GoogleTextToSpeech(name={self._name!r}, url={self._url!r}, voice={self._voice!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def synthesize(self, text: str, *, voice: str | None = None) -> SpeechAudio:
        """Speak ``text`` in ``voice`` (a Google voice name) or the configured one."""
        reply = await send(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="google",
            headers={**_headers(self._key), "Accept": "application/json"},
            limit=MAX_AUDIO_BODY,
            secrets=_secrets(self._key),
            timeout=self._timeout,
            json=encode_google_synthesize(
                text, language_code=self._language, voice_name=voice or self._voice, audio_encoding=self._encoding
            ),
        )
        audio = decode_google_synthesis(reply.body, provider=self._name)
        info = wav_info(audio)
        usage = Usage(characters=len(text), audio_seconds=info.duration if info else 0.0)
        return SpeechAudio(audio, _MEDIA_TYPES.get(self._encoding, "application/octet-stream"), usage, self._name)

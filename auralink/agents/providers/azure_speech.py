"""Azure AI Speech over REST: short-audio speech to text, and SSML text to speech.

Theory of operation
===================

Both clients authenticate with the resource key in ``Ocp-Apim-Subscription-Key`` (Azure also
accepts a bearer token from ``issueToken``; a key needs no token exchange and works with every
endpoint form).

:class:`AzureSpeechToText` posts the audio as the body of
``POST https://{region}.stt.speech.microsoft.com/speech/recognition/conversation/cognitiveservices/v1?language=en-US&format=detailed``.
The REST API for short audio takes at most 60 seconds of 16 kHz mono WAV (PCM) or Ogg Opus, and
the ``Content-Type`` must say which: ``audio/wav; codecs=audio/pcm; samplerate=16000`` (the rate
is read from the WAV header) or ``audio/ogg; codecs=opus``. Anything else is refused before it is
sent (:class:`~auralink.errors.ProviderRejected`), so a fallback chain moves on at once. The
answer's ``RecognitionStatus`` decides: ``Success`` carries text, the silence statuses an empty
transcript, ``Error`` is the service failing (:class:`~auralink.errors.ProviderUnavailable`).

:class:`AzureTextToSpeech` posts an SSML document (:func:`~auralink.agents.providers.wire.build_ssml`:
the text XML-escaped inside ``<voice name=...>``) to
``POST https://{region}.tts.speech.microsoft.com/cognitiveservices/v1`` with
``Content-Type: application/ssml+xml``, the audio format in ``X-Microsoft-OutputFormat``
(``riff-24khz-16bit-mono-pcm`` by default, a WAV file) and a ``User-Agent``, which Azure requires.
The body of the 200 answer is the audio.

``endpoint`` replaces the regional host (sovereign clouds, a custom domain, or a test server).
Usage: seconds of audio sent (STT, from the WAV header), characters of text (TTS).
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from auralink.agents.providers._http import send
from auralink.agents.providers.types import SpeechAudio, Transcript, Usage
from auralink.agents.providers.wire import MAX_AUDIO_BODY, MAX_JSON_BODY, build_ssml, decode_azure_recognition, wav_info
from auralink.errors import ConfigError, ProviderProtocolError, ProviderRejected

__all__ = ["AzureSpeechToText", "AzureTextToSpeech", "azure_media_type"]

_STT_PATH = "/speech/recognition/conversation/cognitiveservices/v1"
_TTS_PATH = "/cognitiveservices/v1"


def _base(kind: str, region: str | None, endpoint: str | None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    if not region:
        raise ConfigError(f"an Azure {kind} client needs a region or an endpoint", "region")
    return f"https://{region}.{kind}.speech.microsoft.com"


def _headers(api_key: SecretStr | None) -> dict[str, str]:
    return {} if api_key is None else {"Ocp-Apim-Subscription-Key": api_key.get_secret_value()}


def azure_media_type(output_format: str) -> str:
    """The media type of an ``X-Microsoft-OutputFormat`` (``riff-*`` is WAV, ``*-mp3`` MP3...)."""
    if output_format.startswith("riff-"):
        return "audio/wav"
    if output_format.endswith("-mp3"):
        return "audio/mpeg"
    if output_format.startswith("ogg-"):
        return "audio/ogg"
    if output_format.startswith("webm-"):
        return "audio/webm"
    return "application/octet-stream"


class AzureSpeechToText:
    """Azure's speech to text REST API for short audio (60 seconds at most)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: SecretStr | None,
        region: str | None = None,
        endpoint: str | None = None,
        language: str = "en-US",
        name: str = "azure",
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._key = api_key
        self._url = _base("stt", region, endpoint) + _STT_PATH
        self._language = language
        self._name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AzureSpeechToText(name={self._name!r}, url={self._url!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def transcribe(
        self, audio: bytes, *, content_type: str = "audio/wav", language: str | None = None
    ) -> Transcript:
        """Transcribe one recording of at most 60 seconds (16 kHz mono PCM WAV, or Ogg Opus)."""
        media = content_type.split(";", 1)[0].strip().lower()
        info = wav_info(audio)
        if media in ("audio/wav", "audio/x-wav", "audio/wave"):
            rate = info.sample_rate if info else 16000
            wire_type = f"audio/wav; codecs=audio/pcm; samplerate={rate}"
        elif media in ("audio/ogg", "audio/opus"):
            wire_type = "audio/ogg; codecs=opus"
        else:
            raise ProviderRejected(
                f"{self._name}: Azure short-audio recognition takes WAV (PCM) or Ogg Opus, not {media!r}", self._name
            )
        reply = await send(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="azure",
            headers={**_headers(self._key), "Content-Type": wire_type, "Accept": "application/json"},
            limit=MAX_JSON_BODY,
            secrets=() if self._key is None else (self._key.get_secret_value(),),
            timeout=self._timeout,
            params={"language": language or self._language, "format": "detailed"},
            content=audio,
        )
        return decode_azure_recognition(reply.body, provider=self._name, audio_seconds=info.duration if info else None)


class AzureTextToSpeech:
    """Azure's text to speech REST API (SSML in, audio out)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: SecretStr | None,
        region: str | None = None,
        endpoint: str | None = None,
        voice: str = "en-US-AvaMultilingualNeural",
        language: str = "en-US",
        output_format: str = "riff-24khz-16bit-mono-pcm",
        name: str = "azure",
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._key = api_key
        self._url = _base("tts", region, endpoint) + _TTS_PATH
        self._voice = voice
        self._language = language
        self._format = output_format
        self._name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AzureTextToSpeech(name={self._name!r}, url={self._url!r}, voice={self._voice!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def synthesize(self, text: str, *, voice: str | None = None) -> SpeechAudio:
        """Speak ``text`` in ``voice`` (an Azure voice name) or the configured one."""
        reply = await send(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="azure",
            headers={
                **_headers(self._key),
                "Content-Type": "application/ssml+xml",
                "X-Microsoft-OutputFormat": self._format,
            },
            limit=MAX_AUDIO_BODY,
            secrets=() if self._key is None else (self._key.get_secret_value(),),
            timeout=self._timeout,
            content=build_ssml(text, voice=voice or self._voice, language=self._language),
        )
        if not reply.body:
            raise ProviderProtocolError(f"{self._name}: the synthesis answer holds no audio", self._name)
        media = reply.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not media.startswith("audio/"):
            media = azure_media_type(self._format)
        info = wav_info(reply.body)
        return SpeechAudio(
            reply.body, media, Usage(characters=len(text), audio_seconds=info.duration if info else 0.0), self._name
        )

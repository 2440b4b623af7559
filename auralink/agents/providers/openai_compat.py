"""OpenAI-compatible clients: chat completions (also Ollama, vLLM, llama.cpp) and Whisper transcription.

Theory of operation
===================

:class:`OpenAIChat` speaks ``POST {base_url}/chat/completions``; :class:`OpenAITranscriber`
speaks ``POST {base_url}/audio/transcriptions``. ``base_url`` includes the version segment
(``https://api.openai.com/v1``, ``http://127.0.0.1:11434/v1`` for Ollama,
``http://127.0.0.1:8080/v1`` for llama.cpp's server), so one client covers every server that
copies the OpenAI API. Authentication is ``Authorization: Bearer <key>``; a local server that
needs no key gets no header at all.

Streaming asks for ``"stream": true`` and, unless ``stream_usage`` is off (for servers that
reject unknown fields), ``"stream_options": {"include_usage": true}`` so the last chunk carries
the token counts. The body is fed, as it arrives, to the sans-I/O
:class:`~auralink.agents.providers.wire.ChatStreamDecoder`; when the stream ends without usage
the client estimates it. Text chunks are passed on as they arrive; every stream then ends with
one text-less chunk that holds the ``finish_reason`` and the :class:`~auralink.agents.providers.types.Usage`.

Transcription sends ``multipart/form-data`` with the audio as the ``file`` part (its filename's
extension tells Whisper the format) and ``model``, ``response_format`` and, when given,
``language`` as fields. ``verbose_json`` (the default) returns the duration that usage is
metered in; a server that returns none is metered by the WAV header's duration.

Wire formats live in :mod:`auralink.agents.providers.wire`; httpx is driven through
:mod:`auralink.agents.providers._http`, which also translates its exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import httpx
from pydantic import SecretStr

from auralink.agents.providers._http import open_stream, send, translate_errors
from auralink.agents.providers.types import ChatChunk, ChatRequest, ChatResult, Transcript, Usage
from auralink.agents.providers.wire import (
    MAX_JSON_BODY,
    ChatStreamDecoder,
    decode_chat_completion,
    decode_transcription,
    encode_chat_request,
    prompt_token_estimate,
    wav_info,
)
from auralink.errors import ProviderRejected

__all__ = ["OPENAI_BASE_URL", "OpenAIChat", "OpenAITranscriber"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""OpenAI's API, version segment included."""

_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
}


def _bearer(api_key: SecretStr | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key.get_secret_value()}"}


def _secrets(api_key: SecretStr | None) -> tuple[str, ...]:
    return () if api_key is None else (api_key.get_secret_value(),)


class OpenAIChat:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        model: str,
        base_url: str = OPENAI_BASE_URL,
        api_key: SecretStr | None = None,
        name: str = "openai",
        stream_usage: bool = True,
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._key = api_key
        self._name = name
        self._stream_usage = stream_usage
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"OpenAIChat(name={self._name!r}, url={self._url!r}, model={self._model!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Ask for the whole answer at once."""
        reply = await send(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="openai",
            headers={**_bearer(self._key), "Accept": "application/json"},
            limit=MAX_JSON_BODY,
            secrets=_secrets(self._key),
            timeout=self._timeout,
            json=encode_chat_request(request, model=self._model, stream=False),
        )
        return decode_chat_completion(reply.body, provider=self._name, prompt_tokens=prompt_token_estimate(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer as it comes; a last, text-less chunk carries the usage (reported or estimated)."""
        decoder = ChatStreamDecoder(self._name)
        text_size = 0
        usage: Usage | None = None
        finish: str | None = None
        async with open_stream(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="openai",
            headers={**_bearer(self._key), "Accept": "text/event-stream"},
            secrets=_secrets(self._key),
            timeout=self._timeout,
            json=encode_chat_request(request, model=self._model, stream=True, stream_usage=self._stream_usage),
        ) as response:
            with translate_errors(self._name):
                async for data in response.aiter_bytes():
                    for chunk in decoder.feed(data):
                        usage = chunk.usage or usage
                        finish = chunk.finish_reason or finish
                        text_size += len(chunk.text)
                        if chunk.text:
                            yield ChatChunk(chunk.text, None, None, self._name)
                    if decoder.done:
                        break
            decoder.close()  # raises if the answer is incomplete
        if usage is None:
            usage = Usage(prompt_token_estimate(request), (text_size + 3) // 4, estimated=True)
        yield ChatChunk("", finish, usage, self._name)


class OpenAITranscriber:
    """Speech to text through OpenAI's ``/audio/transcriptions`` (Whisper, and servers that copy it)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        model: str = "whisper-1",
        base_url: str = OPENAI_BASE_URL,
        api_key: SecretStr | None = None,
        name: str = "whisper",
        response_format: Literal["json", "verbose_json"] = "verbose_json",
        language: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._model = model
        self._url = base_url.rstrip("/") + "/audio/transcriptions"
        self._key = api_key
        self._name = name
        self._format = response_format
        self._language = language
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"OpenAITranscriber(name={self._name!r}, url={self._url!r}, model={self._model!r})"

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        return self._name

    async def transcribe(
        self, audio: bytes, *, content_type: str = "audio/wav", language: str | None = None
    ) -> Transcript:
        """Transcribe one recording (at most 25 MB, as OpenAI allows)."""
        media = content_type.split(";", 1)[0].strip().lower()
        extension = _EXTENSIONS.get(media)
        if extension is None:
            raise ProviderRejected(
                f"{self._name}: transcription does not take {media!r} audio; send WAV, MP3, M4A, Ogg, WebM or FLAC",
                self._name,
            )
        fields = {"model": self._model, "response_format": self._format}
        hint = language or self._language
        if hint:
            fields["language"] = hint.split("-", 1)[0].lower()  # Whisper takes ISO-639-1: "en-US" -> "en"
        reply = await send(
            self._http,
            "POST",
            self._url,
            provider=self._name,
            dialect="openai",
            headers={**_bearer(self._key), "Accept": "application/json"},
            limit=MAX_JSON_BODY,
            secrets=_secrets(self._key),
            timeout=self._timeout,
            files={"file": (f"audio.{extension}", audio, media)},
            data=fields,
        )
        info = wav_info(audio)
        return decode_transcription(reply.body, provider=self._name, audio_seconds=info.duration if info else None)

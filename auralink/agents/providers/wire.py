"""The providers' wire formats, without I/O: request bodies, response decoders, SSE, error bodies, Retry-After.

Theory of operation
===================

This module is the sans-I/O half of every provider client. The httpx adapters in
:mod:`~auralink.agents.providers.openai_compat`, :mod:`~auralink.agents.providers.elevenlabs`,
:mod:`~auralink.agents.providers.azure_speech` and :mod:`~auralink.agents.providers.google_speech`
build requests with the ``encode_*`` functions, send them, and hand the bytes that come back to
the ``decode_*`` functions. Nothing here imports asyncio, sockets or a clock.

The invariant (h11's): **any bytes either decode or raise**
:class:`~auralink.errors.ProviderProtocolError`. A decoder never lets a ``KeyError``,
``json.JSONDecodeError``, ``UnicodeDecodeError``, ``binascii.Error`` or ``RecursionError`` escape,
and never returns a half-typed value: every field it reads is checked for type and range (a bool
is not an int, a float must be finite and non-negative). The property tests feed each decoder
arbitrary bytes, and arbitrary JSON, to hold it to that.

Formats, as documented by each provider
---------------------------------------
* **OpenAI-compatible chat** (OpenAI, Ollama, vLLM, llama.cpp): ``POST {base}/chat/completions``
  with ``{"model", "messages": [{"role", "content"}], "temperature"?, "max_tokens"?}``. The answer
  is ``choices[0].message.content`` plus ``usage.prompt_tokens`` / ``usage.completion_tokens``.
  With ``"stream": true`` the answer is a ``text/event-stream`` of ``data: {chunk}`` events whose
  ``choices[0].delta.content`` carry the text, ended by ``data: [DONE]``; with
  ``"stream_options": {"include_usage": true}`` a last chunk with empty ``choices`` carries the
  usage. :class:`ServerSentEventDecoder` implements the WHATWG event-stream parsing rules (CR, LF
  and CRLF line ends, ``:`` comments, multi-line ``data``, a leading BOM), incrementally, so a
  stream split anywhere decodes the same.
* **OpenAI transcription** (Whisper): a JSON ``{"text"}``; ``verbose_json`` adds ``language`` and
  ``duration``; recent servers add ``usage`` as ``{"type": "duration", "seconds"}`` or
  ``{"type": "tokens", "input_tokens", "output_tokens"}``.
* **Azure Speech, short-audio REST**: ``{"RecognitionStatus", "DisplayText", "Offset",
  "Duration", "NBest": [{"Confidence", "Display", ...}]}``. ``NoMatch``,
  ``InitialSilenceTimeout`` and ``BabbleTimeout`` are answers (an empty transcript), ``Error`` is
  the service failing. Synthesis takes SSML (:func:`build_ssml`).
* **Google Speech v1**: ``speech:recognize`` takes ``{"config": {"languageCode", ...},
  "audio": {"content": base64}}`` and answers ``{"results": [{"alternatives": [{"transcript",
  "confidence"}], "languageCode"}], "totalBilledTime": "3s"}`` (``{}`` when nothing was heard);
  ``text:synthesize`` answers ``{"audioContent": base64}``.

Errors
------
:func:`error_for_status` turns a non-2xx answer into one exception of our tree, reading each
provider's error body (:func:`decode_error_body`): OpenAI's ``{"error": {"message", "type",
"code"}}``, ElevenLabs' ``{"detail": {"status", "message"}}`` (and FastAPI's validation list),
Azure's ``{"error": {"code", "message"}}`` or an empty body, Google's ``{"error": {"code",
"message", "status", "details": [{"reason"}]}}``. The rules, in order: a quota code
(``insufficient_quota``, ``quota_exceeded``) is :class:`~auralink.errors.ProviderQuotaExhausted`
whatever the status (ElevenLabs sends it with 401); 401, 403 and Google's ``API_KEY_INVALID`` are
:class:`~auralink.errors.ProviderAuthFailed`; 429 is :class:`~auralink.errors.RateLimited` with
the parsed ``Retry-After`` (:func:`parse_retry_after`: ``retry-after-ms``, delay-seconds, or an
HTTP-date measured against the response's own ``Date``, RFC 9110 section 10.2.3); 408 and 5xx are
:class:`~auralink.errors.ProviderUnavailable`; any other 4xx is
:class:`~auralink.errors.ProviderRejected`. Messages quoted from an error body are trimmed,
stripped of control characters, and scrubbed of the secrets passed in, so a provider that echoes
a key cannot put it into our logs.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from auralink.agents.providers.types import ChatChunk, ChatRequest, ChatResult, Transcript, Usage, estimate_tokens
from auralink.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)

__all__ = [
    "MAX_AUDIO_BODY",
    "MAX_ERROR_BODY",
    "MAX_JSON_BODY",
    "MAX_SSE_LINE",
    "ChatStreamDecoder",
    "Dialect",
    "ErrorInfo",
    "ServerSentEvent",
    "ServerSentEventDecoder",
    "WavInfo",
    "build_ssml",
    "decode_azure_recognition",
    "decode_chat_chunk",
    "decode_chat_completion",
    "decode_error_body",
    "decode_google_recognition",
    "decode_google_synthesis",
    "decode_transcription",
    "encode_chat_request",
    "encode_google_recognize",
    "encode_google_synthesize",
    "error_for_status",
    "parse_google_duration",
    "parse_retry_after",
    "prompt_token_estimate",
    "scrub",
    "wav_info",
]

MAX_JSON_BODY = 16 * 1024 * 1024
"""The largest JSON response body accepted (bytes)."""
MAX_AUDIO_BODY = 64 * 1024 * 1024
"""The largest audio response body accepted (bytes)."""
MAX_ERROR_BODY = 64 * 1024
"""The most bytes of an error body that are read; the rest is dropped."""
MAX_SSE_LINE = 1024 * 1024
"""The longest event-stream line (and event) accepted (bytes)."""
_MAX_MESSAGE = 300

Dialect = Literal["openai", "elevenlabs", "azure", "google"]
"""Whose error-body format to expect."""

_QUOTA_CODES = frozenset({"insufficient_quota", "quota_exceeded"})
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"})


# ---------------------------------------------------------------------------------------------
# Typed reading of decoded JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_json(body: bytes | str, provider: str, what: str) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProviderProtocolError(f"{provider}: {what} is not valid JSON", provider) from exc


class _Reader:
    """Checks the type of every value read from a decoded JSON document, naming its path on failure."""

    __slots__ = ("provider", "what")

    def __init__(self, provider: str, what: str) -> None:
        self.provider = provider
        self.what = what

    def fail(self, path: str, expected: str) -> ProviderProtocolError:
        return ProviderProtocolError(f"{self.provider}: {self.what}: {path} is not {expected}", self.provider)

    def obj(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "an object")
        return value

    def array(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, "an array")
        return value

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, "a string")
        return value

    def opt_string(self, value: object, path: str) -> str | None:
        return None if value is None else self.string(value, path)

    def count(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(path, "a non-negative integer")
        return value

    def opt_count(self, value: object, path: str) -> int | None:
        return None if value is None else self.count(value, path)

    def number(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, "a number")
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise self.fail(path, "a finite, non-negative number")
        return number

    def opt_number(self, value: object, path: str) -> float | None:
        return None if value is None else self.number(value, path)

    def fraction(self, value: object, path: str) -> float | None:
        if value is None:
            return None
        number = self.number(value, path)
        if number > 1:
            raise self.fail(path, "a confidence between 0 and 1")
        return number


def _clean(text: str) -> str:
    """A message fit for a log line: control characters gone, whitespace collapsed, length bounded."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------------------------------
# Server-sent events (WHATWG HTML, "9.2.6 Interpreting an event stream")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event of a ``text/event-stream``."""

    data: str
    """The event's data lines, joined with newlines."""
    event: str = "message"
    """The event type (``message`` unless an ``event:`` field said otherwise)."""
    id: str | None = None
    """The last event ID seen so far, if any."""


class ServerSentEventDecoder:
    """Incremental event-stream parser: :meth:`feed` bytes as they arrive, get whole events back.

    Lines end with CRLF, LF or CR; a CR at the end of one :meth:`feed` may be the first half of a
    CRLF, so it is held until the next byte decides. A line that is not valid UTF-8, or longer than
    ``max_line`` bytes, raises :class:`~auralink.errors.ProviderProtocolError`. At the end of the
    stream an event not yet terminated by a blank line is dropped, as the specification says.
    """

    def __init__(self, provider: str = "provider", *, max_line: int = MAX_SSE_LINE) -> None:
        self._provider = provider
        self._max = max_line
        self._buffer = bytearray()
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream; return the events they complete."""
        self._buffer += data
        if not self._started:
            if len(self._buffer) < 3 and b"\xef\xbb\xbf".startswith(bytes(self._buffer)):
                return []  # could still be a BOM
            if self._buffer.startswith(b"\xef\xbb\xbf"):
                del self._buffer[:3]
            self._started = True
        events: list[ServerSentEvent] = []
        while True:
            if self._pending_cr:
                if not self._buffer:
                    break
                if self._buffer[0] == 0x0A:  # the LF of a CRLF
                    del self._buffer[0]
                self._pending_cr = False
            cut = _line_end(self._buffer)
            if cut < 0:
                if len(self._buffer) > self._max:
                    raise ProviderProtocolError(
                        f"{self._provider}: event-stream line longer than {self._max} bytes", self._provider
                    )
                break
            raw = bytes(self._buffer[:cut])
            self._pending_cr = self._buffer[cut] == 0x0D
            del self._buffer[: cut + 1]
            event = self._line(raw)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[ServerSentEvent]:
        """The stream ended: an unterminated line or event is discarded, as the specification says."""
        self._buffer.clear()
        self._data, self._event, self._data_size = [], "", 0
        return []

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProviderProtocolError(f"{self._provider}: event-stream line is not UTF-8", self._provider) from exc
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (servers send them as keep-alives)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(raw)
            if self._data_size > self._max:
                raise ProviderProtocolError(f"{self._provider}: event larger than {self._max} bytes", self._provider)
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return ServerSentEvent("\n".join(data), event or "message", self._last_id)


def _line_end(buffer: bytearray) -> int:
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if lf < 0:
        return cr
    if cr < 0:
        return lf
    return min(lf, cr)


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible chat completions


def encode_chat_request(request: ChatRequest, *, model: str, stream: bool, stream_usage: bool = True) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``."""
    body: dict[str, Any] = {
        "model": request.model or model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def prompt_token_estimate(request: ChatRequest) -> int:
    """A rough count of the prompt's tokens, for servers that report no usage."""
    return sum(estimate_tokens(m.content) + 4 for m in request.messages)


def _chat_usage(read: _Reader, value: object, path: str) -> Usage | None:
    if value is None:
        return None
    usage = read.obj(value, path)
    return Usage(
        input_tokens=read.opt_count(usage.get("prompt_tokens"), f"{path}.prompt_tokens") or 0,
        output_tokens=read.opt_count(usage.get("completion_tokens"), f"{path}.completion_tokens") or 0,
    )


def decode_chat_completion(body: bytes, *, provider: str = "provider", prompt_tokens: int = 0) -> ChatResult:
    """Decode a ``chat.completion`` object; ``prompt_tokens`` is the estimate used if it reports no usage."""
    read = _Reader(provider, "chat completion")
    document = read.obj(_load_json(body, provider, "chat completion"), "the body")
    choices = read.array(document.get("choices"), "choices")
    if not choices:
        raise read.fail("choices", "a non-empty array")
    choice = read.obj(choices[0], "choices[0]")
    message = read.obj(choice.get("message"), "choices[0].message")
    text = read.opt_string(message.get("content"), "choices[0].message.content") or ""
    finish = read.opt_string(choice.get("finish_reason"), "choices[0].finish_reason")
    model = read.opt_string(document.get("model"), "model") or ""
    usage = _chat_usage(read, document.get("usage"), "usage")
    if usage is None:
        usage = Usage(input_tokens=prompt_tokens, output_tokens=estimate_tokens(text), estimated=True)
    return ChatResult(text, model, finish, usage, provider)


def decode_chat_chunk(data: str, *, provider: str = "provider") -> ChatChunk:
    """Decode the data of one streamed ``chat.completion.chunk`` event (not ``[DONE]``).

    A chunk that carries an ``error`` object (servers report failures mid-stream that way) raises
    :class:`~auralink.errors.ProviderUnavailable`.
    """
    read = _Reader(provider, "chat stream chunk")
    document = read.obj(_load_json(data, provider, "chat stream chunk"), "the chunk")
    if "error" in document and "choices" not in document:
        info = _error_info("openai", document)
        raise ProviderUnavailable(f"{provider}: the stream failed: {info.message or 'no reason given'}", provider)
    choices = read.array(document.get("choices", []), "choices")
    text, finish = "", None
    if choices:
        choice = read.obj(choices[0], "choices[0]")
        delta = read.obj(choice.get("delta", {}), "choices[0].delta")
        text = read.opt_string(delta.get("content"), "choices[0].delta.content") or ""
        finish = read.opt_string(choice.get("finish_reason"), "choices[0].finish_reason")
    usage = _chat_usage(read, document.get("usage"), "usage")
    return ChatChunk(text, finish, usage, provider)


class ChatStreamDecoder:
    """Bytes of a streamed chat completion in, :class:`ChatChunk` out, until ``data: [DONE]``.

    :meth:`close` at the end of the HTTP body raises :class:`~auralink.errors.ProviderProtocolError`
    if the stream ended before ``[DONE]`` and before any chunk gave a ``finish_reason``: the answer
    is incomplete. Bytes after ``[DONE]`` are ignored.
    """

    def __init__(self, provider: str = "provider") -> None:
        self._provider = provider
        self._events = ServerSentEventDecoder(provider)
        self.done = False
        """True once ``[DONE]`` was seen."""
        self.finished = False
        """True once a chunk gave a ``finish_reason``."""

    def feed(self, data: bytes) -> list[ChatChunk]:
        """Take the next bytes of the body; return the chunks they complete."""
        if self.done:
            return []
        return self._chunks(self._events.feed(data))

    def close(self) -> list[ChatChunk]:
        """The body ended; return any last chunks, or raise if the answer is incomplete."""
        chunks = [] if self.done else self._chunks(self._events.close())
        if not (self.done or self.finished):
            raise ProviderProtocolError(
                f"{self._provider}: the chat stream ended before [DONE] and before a finish_reason", self._provider
            )
        return chunks

    def _chunks(self, events: list[ServerSentEvent]) -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        for event in events:
            if self.done:
                break
            if event.data.strip() == "[DONE]":
                self.done = True
                break
            if event.event == "error":
                info = decode_error_body("openai", event.data.encode("utf-8", "replace"))
                message = info.message or "no reason given"
                raise ProviderUnavailable(f"{self._provider}: the stream failed: {message}", self._provider)
            chunk = decode_chat_chunk(event.data, provider=self._provider)
            if chunk.finish_reason is not None:
                self.finished = True
            chunks.append(chunk)
        return chunks


# ---------------------------------------------------------------------------------------------
# Transcription: OpenAI (Whisper), Azure, Google


def decode_transcription(body: bytes, *, provider: str = "provider", audio_seconds: float | None = None) -> Transcript:
    """Decode an OpenAI ``json`` or ``verbose_json`` transcription.

    ``audio_seconds`` (from the WAV header) is used when the server reports no duration.
    """
    read = _Reader(provider, "transcription")
    document = read.obj(_load_json(body, provider, "transcription"), "the body")
    text = read.string(document.get("text"), "text")
    language = read.opt_string(document.get("language"), "language")
    seconds = read.opt_number(document.get("duration"), "duration")
    input_tokens = output_tokens = 0
    if document.get("usage") is not None:
        usage = read.obj(document["usage"], "usage")
        kind = read.opt_string(usage.get("type"), "usage.type")
        if kind == "duration":
            seconds = read.number(usage.get("seconds"), "usage.seconds")
        elif kind == "tokens":
            input_tokens = read.opt_count(usage.get("input_tokens"), "usage.input_tokens") or 0
            output_tokens = read.opt_count(usage.get("output_tokens"), "usage.output_tokens") or 0
    return Transcript(
        text.strip(), language, None, _stt_usage(seconds, audio_seconds, input_tokens, output_tokens), provider
    )


def _stt_usage(reported: float | None, fallback: float | None, input_tokens: int = 0, output_tokens: int = 0) -> Usage:
    if reported is not None:
        return Usage(input_tokens, output_tokens, audio_seconds=reported)
    return Usage(input_tokens, output_tokens, audio_seconds=fallback or 0.0, estimated=True)


_AZURE_SILENCE = frozenset({"NoMatch", "InitialSilenceTimeout", "BabbleTimeout"})


def decode_azure_recognition(
    body: bytes, *, provider: str = "provider", audio_seconds: float | None = None
) -> Transcript:
    """Decode an Azure short-audio recognition result (``simple`` or ``detailed`` format).

    Azure bills the audio sent, so usage is ``audio_seconds`` (from the WAV header) when known,
    else the recognised speech's ``Duration`` (100-nanosecond ticks).
    """
    read = _Reader(provider, "recognition result")
    document = read.obj(_load_json(body, provider, "recognition result"), "the body")
    status = read.string(document.get("RecognitionStatus"), "RecognitionStatus")
    ticks = _azure_ticks(read, document.get("Duration"), "Duration")
    spoken = None if ticks is None else ticks / 10_000_000
    usage = Usage(audio_seconds=audio_seconds) if audio_seconds is not None else _stt_usage(spoken, None)
    if status in _AZURE_SILENCE:
        return Transcript("", None, None, usage, provider)
    if status == "Error":
        raise ProviderUnavailable(f"{provider}: the recognition service reported an internal error", provider)
    if status != "Success":
        raise read.fail("RecognitionStatus", "a known status")
    text = read.opt_string(document.get("DisplayText"), "DisplayText")
    confidence = None
    if document.get("NBest") is not None:
        best = read.array(document["NBest"], "NBest")
        if best:
            top = read.obj(best[0], "NBest[0]")
            confidence = read.fraction(top.get("Confidence"), "NBest[0].Confidence")
            if text is None:
                text = read.opt_string(top.get("Display"), "NBest[0].Display")
    if text is None:
        raise read.fail("DisplayText", "present on Success")
    return Transcript(text.strip(), None, confidence, usage, provider)


def _azure_ticks(read: _Reader, value: object, path: str) -> int | None:
    # The documentation shows both 8400000 and "1236645672289".
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return read.count(value, path)


_GOOGLE_DURATION = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?s")


def parse_google_duration(text: str) -> float:
    """A protobuf JSON ``Duration`` (``"3s"``, ``"1.500s"``) in seconds; ValueError if malformed or negative."""
    match = _GOOGLE_DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a non-negative protobuf Duration: {text[:40]!r}")
    seconds, nanos = match.groups()
    return int(seconds) + (int(nanos.ljust(9, "0")) / 1e9 if nanos else 0.0)


def encode_google_recognize(
    audio: bytes,
    *,
    content_type: str,
    language_code: str,
    sample_rate_hertz: int | None = None,
    provider: str = "google",
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/speech:recognize``, audio inline as base64.

    WAV and FLAC carry their encoding and rate in a header, so Google reads them from there;
    Ogg Opus needs ``sample_rate_hertz``. Other formats raise
    :class:`~auralink.errors.ProviderRejected` before anything is sent.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    config: dict[str, Any] = {"languageCode": language_code, "enableAutomaticPunctuation": True}
    if media in ("audio/wav", "audio/x-wav", "audio/wave"):
        pass  # Google reads the encoding and the rate from the WAV header
    elif media in ("audio/flac", "audio/x-flac"):
        config["encoding"] = "FLAC"
    elif media in ("audio/ogg", "audio/opus"):
        config["encoding"] = "OGG_OPUS"
        config["sampleRateHertz"] = sample_rate_hertz or 48000
    else:
        raise ProviderRejected(
            f"{provider}: Google speech-to-text does not take {media!r} audio; send WAV, FLAC or Ogg Opus", provider
        )
    return {"config": config, "audio": {"content": base64.b64encode(audio).decode("ascii")}}


def decode_google_recognition(
    body: bytes, *, provider: str = "provider", audio_seconds: float | None = None
) -> Transcript:
    """Decode a ``RecognizeResponse``: the top alternative of each result, joined in order."""
    read = _Reader(provider, "recognize response")
    document = read.obj(_load_json(body, provider, "recognize response"), "the body")
    parts: list[str] = []
    confidences: list[float] = []
    language = None
    for index, item in enumerate(read.array(document.get("results", []), "results")):
        result = read.obj(item, f"results[{index}]")
        alternatives = read.array(result.get("alternatives", []), f"results[{index}].alternatives")
        language = read.opt_string(result.get("languageCode"), f"results[{index}].languageCode") or language
        if not alternatives:
            continue
        top = read.obj(alternatives[0], f"results[{index}].alternatives[0]")
        transcript = read.opt_string(top.get("transcript"), f"results[{index}].alternatives[0].transcript")
        confidence = read.fraction(top.get("confidence"), f"results[{index}].alternatives[0].confidence")
        if transcript and transcript.strip():
            parts.append(transcript.strip())
        if confidence is not None:
            confidences.append(confidence)
    billed = None
    if document.get("totalBilledTime") is not None:
        try:
            billed = parse_google_duration(read.string(document["totalBilledTime"], "totalBilledTime"))
        except ValueError as exc:
            raise read.fail("totalBilledTime", "a protobuf Duration") from exc
    confidence = min(confidences) if confidences else None
    return Transcript(" ".join(parts), language, confidence, _stt_usage(billed, audio_seconds), provider)


def encode_google_synthesize(
    text: str, *, language_code: str, voice_name: str | None, audio_encoding: str
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/text:synthesize``."""
    voice: dict[str, Any] = {"languageCode": language_code}
    if voice_name:
        voice["name"] = voice_name
    return {"input": {"text": text}, "voice": voice, "audioConfig": {"audioEncoding": audio_encoding}}


def decode_google_synthesis(body: bytes, *, provider: str = "provider") -> bytes:
    """The audio of a ``SynthesizeSpeechResponse`` (``audioContent``, base64 per proto3 JSON)."""
    read = _Reader(provider, "synthesize response")
    document = read.obj(_load_json(body, provider, "synthesize response"), "the body")
    content = read.string(document.get("audioContent"), "audioContent")
    try:
        # proto3 JSON accepts standard or URL-safe base64, with or without padding.
        text = content.replace("-", "+").replace("_", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise read.fail("audioContent", "base64") from exc


# ---------------------------------------------------------------------------------------------
# Azure SSML


def _xml_char_ok(ch: str) -> bool:
    code = ord(ch)
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


def build_ssml(text: str, *, voice: str, language: str) -> bytes:
    """The SSML document Azure's ``cognitiveservices/v1`` endpoint speaks: ``text`` escaped, in ``voice``.

    Characters XML 1.0 forbids (most control characters) are dropped, so any string makes a
    well-formed document.
    """
    clean = "".join(ch for ch in text if _xml_char_ok(ch))
    return (
        "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' "
        f"xml:lang={quoteattr(language)}><voice name={quoteattr(voice)}>{escape(clean)}</voice></speak>"
    ).encode()


# ---------------------------------------------------------------------------------------------
# WAV headers


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a RIFF/WAVE header says about its audio."""

    sample_rate: int
    """Samples per second."""
    channels: int
    """Number of channels."""
    bits_per_sample: int
    """Bits in one sample of one channel."""
    duration: float
    """Seconds of audio in the ``data`` chunk (as much as is present, for a truncated file)."""


def wav_info(audio: bytes) -> WavInfo | None:
    """Parse a RIFF/WAVE header; None if ``audio`` is not a WAV file this can read. Never raises."""
    if len(audio) < 12 or audio[:4] != b"RIFF" or audio[8:12] != b"WAVE":
        return None
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(audio):
        chunk, size = audio[pos : pos + 4], int.from_bytes(audio[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(audio):
            channels = int.from_bytes(audio[body + 2 : body + 4], "little")
            rate = int.from_bytes(audio[body + 4 : body + 8], "little")
            byte_rate = int.from_bytes(audio[body + 8 : body + 12], "little")
            bits = int.from_bytes(audio[body + 14 : body + 16], "little")
            fmt = (channels, rate, byte_rate, bits)
        elif chunk == b"data":
            if fmt is None or fmt[2] == 0:
                return None
            available = len(audio) - body
            length = available if size in (0, 0xFFFFFFFF) or size > available else size
            return WavInfo(fmt[1], fmt[0], fmt[3], length / fmt[2])
        pos = body + size + (size & 1)
    return None


# ---------------------------------------------------------------------------------------------
# Error bodies and statuses


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What a provider's error body says, as far as it can be read."""

    message: str = ""
    """The human-readable message, cleaned for logs (may be empty)."""
    code: str | None = None
    """The provider's error code or status string (``invalid_api_key``, ``quota_exceeded``...)."""
    reason: str | None = None
    """Google's ``ErrorInfo.reason`` (``API_KEY_INVALID``...)."""


def decode_error_body(dialect: Dialect, body: bytes) -> ErrorInfo:
    """Read a provider's error body. Never raises: an unreadable body gives an empty :class:`ErrorInfo`."""
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return ErrorInfo(_clean(body[:_MAX_MESSAGE].decode("utf-8", "replace")))
    return _error_info(dialect, document)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _error_info(dialect: Dialect, document: object) -> ErrorInfo:
    if not isinstance(document, dict):
        return ErrorInfo(_clean(document) if isinstance(document, str) else "")
    if dialect == "elevenlabs" and "detail" in document:
        detail = document["detail"]
        if isinstance(detail, dict):
            return ErrorInfo(_clean(_text(detail.get("message")) or ""), _text(detail.get("status")))
        if isinstance(detail, list):
            parts = []
            for item in detail[:5]:
                if isinstance(item, dict) and isinstance(item.get("msg"), str):
                    location = item.get("loc")
                    where = ".".join(str(p) for p in location) if isinstance(location, list) else ""
                    parts.append(f"{where}: {item['msg']}" if where else item["msg"])
            return ErrorInfo(_clean("; ".join(parts)), "validation_error" if parts else None)
        return ErrorInfo(_clean(_text(detail) or ""))
    error = document.get("error")
    if isinstance(error, str):
        return ErrorInfo(_clean(error))
    if isinstance(error, dict):
        message = _text(error.get("message")) or ""
        if dialect == "google":
            reason = None
            details = error.get("details")
            if isinstance(details, list):
                for item in details:
                    if isinstance(item, dict) and isinstance(item.get("reason"), str):
                        reason = item["reason"]
                        break
            return ErrorInfo(_clean(message), _text(error.get("status")), reason)
        code = _text(error.get("code"))
        kind = _text(error.get("type"))
        if dialect == "openai" and kind in _QUOTA_CODES:
            code = kind
        return ErrorInfo(_clean(message), code if code is not None else kind)
    # vLLM and FastAPI-style servers put the message at the top level.
    message = _text(document.get("message")) or _text(document.get("detail")) or ""
    return ErrorInfo(_clean(message), _text(document.get("code")) or _text(document.get("type")))


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a 429's headers, or None if they do not say. Never raises.

    ``retry-after-ms`` (OpenAI) wins; then ``Retry-After`` as delay-seconds, or as an HTTP-date
    measured against the response's ``Date`` header (no clock is read here).
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000
    text = headers.get("retry-after")
    if text is None:
        return None
    text = text.strip()
    if text.isascii() and text.isdigit():
        return float(int(text[:12]))
    date = headers.get("date")
    if date is None:
        return None
    try:
        delay = (email.utils.parsedate_to_datetime(text) - email.utils.parsedate_to_datetime(date)).total_seconds()
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def error_for_status(
    provider: str,
    dialect: Dialect,
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """The exception for a non-2xx answer (see the module docstring for the rules)."""
    info = decode_error_body(dialect, body)
    message = scrub(info.message, tuple(secrets))
    text = f"{provider}: HTTP {status}"
    if info.code:
        text += f" ({_clean(scrub(info.code, tuple(secrets)))[:60]})"
    if message:
        text += f": {message}"
    if info.code in _QUOTA_CODES:
        return ProviderQuotaExhausted(f"{text}; add credit to the account or use another provider", provider, status)
    if status in (401, 403) or info.reason in _AUTH_REASONS:
        return ProviderAuthFailed(f"{text}; check the tenant's API key for {provider}", provider, status)
    if status == 429:
        return RateLimited(text, provider, status, retry_after)
    if status == 408 or status >= 500:
        return ProviderUnavailable(text, provider, status)
    if 400 <= status < 500:
        return ProviderRejected(text, provider, status, info.code)
    return ProviderProtocolError(f"{provider}: unexpected HTTP status {status}", provider, status)

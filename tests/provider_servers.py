"""Loopback HTTP servers that speak the AI providers' real wire formats, for the provider client tests.

Each server is a real HTTP/1.1 server (asyncio streams and h11, keep-alive included) on
127.0.0.1 with a port the kernel picks. What it checks and answers follows each provider's
documentation: paths, methods, auth headers, body shapes, streaming, and error bodies. A request
that breaks the documented shape is answered the way the provider answers it (400 or 422 with its
error body) *and* recorded in ``violations``, so a test can fail with the reason rather than with
a puzzling status. Faults (``fail_next``) replace the next answers with a provider-shaped error, a
stall (no answer until the server closes), a dropped connection, or a stream cut short.

Nothing here sleeps: a stalled request waits on an event that closing the server sets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.parser
import email.policy
import io
import json
import math
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import h11

SSML_NS = "{http://www.w3.org/2001/10/synthesis}"


# ---------------------------------------------------------------------------------------------
# The HTTP layer


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """An answer: a whole body, or ``chunks`` sent one write each with chunked transfer coding."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    chunks: tuple[bytes, ...] | None = None
    cut: bool = False
    """Close the connection after the chunks, without ending the message."""
    stall_after: bool = False
    """After the chunks, send nothing more until the server closes."""

    @classmethod
    def json(cls, document: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, json.dumps(document).encode(), "application/json", headers)


@dataclass(frozen=True)
class Stall:
    """Read the request, then answer nothing until the server closes (a hung provider)."""


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without an answer."""


Action = Reply | Stall | Drop
AppT = TypeVar("AppT", bound=Callable[[Recorded], Awaitable[Reply]])


class LoopbackServer(Generic[AppT]):
    """An HTTP/1.1 server on 127.0.0.1:0 that hands each request to ``app`` (or to a queued fault)."""

    def __init__(self, app: AppT) -> None:
        self.app = app
        self.requests: list[Recorded] = []
        self.faults: deque[Action] = deque()
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, *actions: Action) -> None:
        """Answer the next requests with these actions instead of the app's answers."""
        self.faults.extend(actions)

    async def __aenter__(self) -> LoopbackServer[AppT]:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closing.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                recorded = await self._read(conn, reader)
                if recorded is None:
                    return
                self.requests.append(recorded)
                action = self.faults.popleft() if self.faults else await self.app(recorded)
                if isinstance(action, Stall):
                    await self._closing.wait()
                    return
                if isinstance(action, Drop):
                    return
                if not await self._send(conn, writer, action):
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _read(conn: h11.Connection, reader: asyncio.StreamReader) -> Recorded | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
        assert request is not None
        target = urlsplit(request.target.decode("ascii"))
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        return Recorded(
            request.method.decode("ascii"),
            unquote(target.path),
            parse_qs(target.query, keep_blank_values=True),
            headers,
            bytes(body),
        )

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply) -> bool:
        headers = [("content-type", reply.content_type), *reply.headers]
        if reply.chunks is None:
            headers.append(("content-length", str(len(reply.body))))
        else:
            headers.append(("transfer-encoding", "chunked"))
        writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        for chunk in reply.chunks if reply.chunks is not None else (reply.body,):
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
        if reply.cut:
            return False
        if reply.stall_after:
            await self._closing.wait()
            return False
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        return True


# ---------------------------------------------------------------------------------------------
# Helpers


def make_wav(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit PCM WAV file of a quiet tone."""
    frames = int(seconds * rate)
    samples = bytearray()
    for i in range(frames):
        value = int(800 * math.sin(2 * math.pi * 440 * i / rate))
        samples += value.to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(bytes(samples))
    return out.getvalue()


def wav_seconds(audio: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(audio)) as file:
            return file.getnframes() / file.getframerate()
    except (wave.Error, EOFError):
        return None


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, str, bytes]]:
    """``multipart/form-data`` parts by name: (filename, content type, payload)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        parts[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    return parts


class Checks:
    """Collects what a request got wrong against the provider's documentation."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, condition: object, problem: str) -> bool:
        if not condition:
            self.problems.append(problem)
        return bool(condition)


# ---------------------------------------------------------------------------------------------
# Provider-shaped errors (bodies as the providers document and send them)


def openai_error(status: int, message: str, kind: str, code: str | None = None, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply.json(body, status, tuple((k.replace("_", "-"), v) for k, v in headers.items()))


def openai_rate_limited(retry_after: str | None = None) -> Reply:
    headers = {"retry_after": retry_after} if retry_after is not None else {}
    return openai_error(
        429,
        "Rate limit reached for requests. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
        **headers,
    )


def openai_server_error(status: int = 500) -> Reply:
    return openai_error(
        status, "The server had an error while processing your request. Sorry about that!", "server_error"
    )


def elevenlabs_error(status: int, kind: str, message: str) -> Reply:
    return Reply.json({"detail": {"status": kind, "message": message}}, status)


def azure_error(status: int, message: str = "") -> Reply:
    if not message:
        return Reply(status, b"", "text/plain")
    return Reply.json({"error": {"code": str(status), "message": message}}, status)


def google_error(status: int, kind: str, message: str, reason: str | None = None) -> Reply:
    error: dict[str, Any] = {"code": status, "message": message, "status": kind}
    if reason is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
        ]
    return Reply.json({"error": error}, status)


# ---------------------------------------------------------------------------------------------
# OpenAI (chat completions, transcriptions) and compatible servers


@dataclass
class OpenAIApp:
    """``/v1/chat/completions`` and ``/v1/audio/transcriptions`` as OpenAI documents them."""

    api_key: str | None
    reply_text: str = "Hello from the model"
    transcript: str = "hello world"
    model_name: str = "gpt-4o-mini-2024-07-18"
    report_usage: bool = True
    fragment: int = 0
    """Split SSE bodies into writes of this many bytes (0: one write per event)."""
    violations: list[str] = field(default_factory=list)

    async def __call__(self, request: Recorded) -> Reply:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            shown = request.headers.get("authorization", "")[-4:]
            return openai_error(
                401,
                f"Incorrect API key provided: sk-...{shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if self.api_key is None and "authorization" in request.headers:
            self.violations.append("a key was sent to a server that needs none")
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return self._chat(request)
        if request.method == "POST" and request.path == "/v1/audio/transcriptions":
            return self._transcription(request)
        self.violations.append(f"unknown endpoint {request.method} {request.path}")
        return openai_error(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")

    def _reject(self, check: Checks) -> Reply | None:
        if not check.problems:
            return None
        self.violations.extend(check.problems)
        return openai_error(400, "; ".join(check.problems), "invalid_request_error")

    def _chat(self, request: Recorded) -> Reply:
        check = Checks()
        check(request.headers.get("content-type", "").startswith("application/json"), "content-type is not JSON")
        try:
            body = request.json()
        except ValueError:
            body = None
        if not check(isinstance(body, dict), "body is not a JSON object"):
            return self._reject(check) or Reply()
        check(isinstance(body.get("model"), str) and body["model"], "model is missing")
        messages = body.get("messages")
        if check(isinstance(messages, list) and messages, "messages is not a non-empty array"):
            for m in messages:
                check(
                    isinstance(m, dict) and m.get("role") in ("system", "user", "assistant", "developer", "tool"),
                    f"bad message role in {m!r}",
                )
                check(isinstance(m, dict) and isinstance(m.get("content"), str), f"bad message content in {m!r}")
        if "temperature" in body:
            check(isinstance(body["temperature"], int | float) and 0 <= body["temperature"] <= 2, "bad temperature")
        if "max_tokens" in body:
            check(isinstance(body["max_tokens"], int) and body["max_tokens"] > 0, "bad max_tokens")
        stream = body.get("stream", False)
        check(isinstance(stream, bool), "stream is not a boolean")
        if "stream_options" in body:
            check(stream is True, "stream_options without stream")
            check(body["stream_options"] == {"include_usage": True}, "unexpected stream_options")
        rejected = self._reject(check)
        if rejected is not None:
            return rejected
        prompt_tokens = sum(len(m["content"].split()) + 4 for m in messages)
        words = self.reply_text.split(" ")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        if not stream:
            document: dict[str, Any] = {
                "id": "chatcmpl-123",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": self.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply_text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "system_fingerprint": "fp_test",
            }
            if self.report_usage:
                document["usage"] = usage
            return Reply.json(document)
        include_usage = self.report_usage and body.get("stream_options", {}).get("include_usage") is True
        events = [self._chunk({"role": "assistant", "content": ""}, None, include_usage)]
        for i, word in enumerate(words):
            events.append(self._chunk({"content": word if i == 0 else " " + word}, None, include_usage))
        events.append(self._chunk({}, "stop", include_usage))
        if include_usage:
            events.append({**self._chunk({}, None, False), "choices": [], "usage": usage})
        stream_body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        if self.fragment:
            chunks = tuple(stream_body[i : i + self.fragment] for i in range(0, len(stream_body), self.fragment))
        else:
            chunks = (*(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events), b"data: [DONE]\n\n")
        return Reply(200, b"", "text/event-stream; charset=utf-8", (("cache-control", "no-cache"),), chunks)

    def _chunk(self, delta: dict[str, Any], finish: str | None, include_usage: bool) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.model_name,
            "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        return chunk

    def _transcription(self, request: Recorded) -> Reply:
        check = Checks()
        content_type = request.headers.get("content-type", "")
        if not check(content_type.startswith("multipart/form-data"), "not multipart/form-data"):
            return self._reject(check) or Reply()
        parts = parse_multipart(content_type, request.body)
        file = parts.get("file")
        if check(file is not None, "no file part"):
            assert file is not None
            filename, media, audio = file
            check(filename is not None and "." in filename, "the file part has no filename with an extension")
            check(media.startswith("audio/"), f"the file part's type is {media}")
            check(len(audio) > 0, "the file is empty")
        model = parts.get("model")
        check(model is not None and model[2], "no model field")
        response_format = parts.get("response_format")
        fmt = response_format[2].decode() if response_format else "json"
        check(fmt in ("json", "verbose_json", "text", "srt", "vtt"), f"bad response_format {fmt}")
        if "language" in parts:
            check(len(parts["language"][2]) == 2, "language is not ISO-639-1")
        rejected = self._reject(check)
        if rejected is not None:
            return rejected
        assert file is not None
        seconds = wav_seconds(file[2]) or 0.0
        document: dict[str, Any] = {"text": self.transcript}
        if fmt == "verbose_json":
            document.update(task="transcribe", language="english", duration=round(seconds, 2), segments=[])
        return Reply.json(document)


# ---------------------------------------------------------------------------------------------
# ElevenLabs


@dataclass
class ElevenLabsApp:
    """``POST /v1/text-to-speech/{voice_id}`` as ElevenLabs documents it."""

    api_key: str
    voices: tuple[str, ...] = ("JBFqnCBsd6RMkjVDRZzb",)
    credits: int = 10_000
    violations: list[str] = field(default_factory=list)

    async def __call__(self, request: Recorded) -> Reply:
        if request.headers.get("xi-api-key") != self.api_key:
            return elevenlabs_error(401, "invalid_api_key", "Invalid API key")
        prefix = "/v1/text-to-speech/"
        if request.method != "POST" or not request.path.startswith(prefix):
            self.violations.append(f"unknown endpoint {request.method} {request.path}")
            return Reply.json({"detail": "Not Found"}, 404)
        voice = request.path[len(prefix) :]
        if voice not in self.voices:
            return elevenlabs_error(404, "voice_not_found", f"A voice with voice_id {voice} was not found.")
        check = Checks()
        output_format = request.query.get("output_format", ["mp3_44100_128"])[0]
        check(output_format.split("_")[0] in ("mp3", "pcm", "ulaw", "alaw", "opus"), "bad output_format")
        try:
            body = request.json()
        except ValueError:
            body = None
        problems = []
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            problems.append({"loc": ["body", "text"], "msg": "Field required", "type": "missing"})
        elif isinstance(body, dict) and "model_id" in body and not isinstance(body["model_id"], str):
            problems.append({"loc": ["body", "model_id"], "msg": "Input should be a valid string", "type": "string"})
        if problems or check.problems:
            self.violations.extend([p["msg"] for p in problems] + check.problems)
            return Reply.json({"detail": problems or [{"loc": ["query"], "msg": check.problems[0]}]}, 422)
        assert isinstance(body, dict)
        text = body["text"]
        if len(text) > self.credits:
            return elevenlabs_error(
                401,
                "quota_exceeded",
                f"This request exceeds your quota of 10000. You have {self.credits} credits remaining, "
                f"while {len(text)} credits are required for this request.",
            )
        self.credits -= len(text)
        audio = b"ID3\x04\x00\x00\x00\x00\x00\x00" + text.encode()[:64].ljust(64, b"\x00")
        return Reply(
            200,
            audio,
            "audio/mpeg",
            (("character-cost", str(len(text))), ("request-id", "req-123")),
        )


# ---------------------------------------------------------------------------------------------
# Azure Speech


@dataclass
class AzureApp:
    """Short-audio recognition and SSML synthesis as Azure's REST reference documents them."""

    api_key: str
    transcript: str = "Remind me to buy 5 pencils."
    violations: list[str] = field(default_factory=list)

    async def __call__(self, request: Recorded) -> Reply:
        if request.headers.get("ocp-apim-subscription-key") != self.api_key:
            return azure_error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        if request.method == "POST" and request.path == "/speech/recognition/conversation/cognitiveservices/v1":
            return self._recognize(request)
        if request.method == "POST" and request.path == "/cognitiveservices/v1":
            return self._synthesize(request)
        self.violations.append(f"unknown endpoint {request.method} {request.path}")
        return azure_error(404)

    def _recognize(self, request: Recorded) -> Reply:
        check = Checks()
        check(request.query.get("language") == ["en-US"], f"language query is {request.query.get('language')}")
        check(request.query.get("format") == ["detailed"], "format is not detailed")
        check(
            request.headers.get("content-type") == "audio/wav; codecs=audio/pcm; samplerate=16000",
            f"content-type is {request.headers.get('content-type')!r}",
        )
        check(request.headers.get("accept") == "application/json", "accept is not application/json")
        seconds = wav_seconds(request.body)
        check(seconds is not None, "the body is not a WAV file")
        if check.problems:
            self.violations.extend(check.problems)
            return azure_error(400)
        assert seconds is not None
        ticks = int(seconds * 10_000_000)
        return Reply.json(
            {
                "RecognitionStatus": "Success",
                "Offset": "700000",
                "Duration": str(ticks),
                "NBest": [
                    {
                        "Confidence": 0.9052885,
                        "Display": self.transcript,
                        "ITN": self.transcript.lower(),
                        "Lexical": self.transcript.lower(),
                        "MaskedITN": self.transcript.lower(),
                    }
                ],
            }
        )

    def _synthesize(self, request: Recorded) -> Reply:
        check = Checks()
        check(request.headers.get("content-type") == "application/ssml+xml", "content-type is not SSML")
        output_format = request.headers.get("x-microsoft-outputformat", "")
        check(output_format == "riff-24khz-16bit-mono-pcm", f"output format is {output_format!r}")
        check(request.headers.get("user-agent"), "no User-Agent (Azure requires one)")
        text = ""
        try:
            root = ElementTree.fromstring(request.body)
        except ElementTree.ParseError:
            check(False, "the body is not well-formed XML")
        else:
            check(root.tag == f"{SSML_NS}speak", f"the root is {root.tag}")
            check(root.get("version") == "1.0", "speak version is not 1.0")
            voice = root.find(f"{SSML_NS}voice")
            if check(voice is not None, "no voice element"):
                assert voice is not None
                check(voice.get("name"), "the voice has no name")
                text = voice.text or ""
        if check.problems:
            self.violations.extend(check.problems)
            return azure_error(400)
        return Reply(200, make_wav(0.01 * max(1, len(text)), rate=24000), "audio/x-wav")


# ---------------------------------------------------------------------------------------------
# Google Speech


@dataclass
class GoogleApp:
    """``v1/speech:recognize`` and ``v1/text:synthesize`` as Google's REST references document them."""

    api_key: str
    transcript: str = "to be or not to be"
    violations: list[str] = field(default_factory=list)

    async def __call__(self, request: Recorded) -> Reply:
        if request.headers.get("x-goog-api-key") != self.api_key:
            return google_error(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
            )
        if "key" in request.query:
            self.violations.append("the key was sent in the URL")
        try:
            body = request.json()
        except ValueError:
            body = None
        if request.method == "POST" and request.path == "/v1/speech:recognize":
            return self._recognize(body)
        if request.method == "POST" and request.path == "/v1/text:synthesize":
            return self._synthesize(body)
        self.violations.append(f"unknown endpoint {request.method} {request.path}")
        return google_error(404, "NOT_FOUND", "The requested URL was not found on this server.")

    def _reject(self, check: Checks) -> Reply | None:
        if not check.problems:
            return None
        self.violations.extend(check.problems)
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. " + "; ".join(check.problems))

    def _recognize(self, body: Any) -> Reply:
        check = Checks()
        audio = b""
        if check(isinstance(body, dict), "the body is not an object"):
            config = body.get("config")
            if check(isinstance(config, dict), "no config"):
                check(isinstance(config.get("languageCode"), str), "no config.languageCode")
                check(config.get("encoding") in (None, "LINEAR16", "FLAC", "OGG_OPUS"), "bad encoding")
            content = body.get("audio", {}).get("content") if isinstance(body.get("audio"), dict) else None
            if check(isinstance(content, str), "no audio.content"):
                try:
                    audio = base64.b64decode(content, validate=True)
                except ValueError:
                    check(False, "audio.content is not base64")
        rejected = self._reject(check)
        if rejected is not None:
            return rejected
        seconds = wav_seconds(audio) or 0.0
        words = self.transcript.split(" ")
        half = len(words) // 2
        return Reply.json(
            {
                "results": [
                    {
                        "alternatives": [{"transcript": " ".join(words[:half]), "confidence": 0.98}],
                        "resultEndTime": f"{seconds / 2:.3f}s",
                        "languageCode": "en-us",
                    },
                    {
                        "alternatives": [{"transcript": " " + " ".join(words[half:]), "confidence": 0.91}],
                        "resultEndTime": f"{seconds:.3f}s",
                        "languageCode": "en-us",
                    },
                ],
                "totalBilledTime": f"{math.ceil(seconds)}s",
                "requestId": "8474823737469472",
            }
        )

    def _synthesize(self, body: Any) -> Reply:
        check = Checks()
        text = ""
        if check(isinstance(body, dict), "the body is not an object"):
            source = body.get("input")
            if check(isinstance(source, dict) and isinstance(source.get("text"), str), "no input.text"):
                text = source["text"]
            voice = body.get("voice")
            check(isinstance(voice, dict) and isinstance(voice.get("languageCode"), str), "no voice.languageCode")
            audio_config = body.get("audioConfig")
            check(
                isinstance(audio_config, dict)
                and audio_config.get("audioEncoding") in ("LINEAR16", "MP3", "OGG_OPUS", "MULAW", "ALAW"),
                "bad audioConfig.audioEncoding",
            )
        rejected = self._reject(check)
        if rejected is not None:
            return rejected
        audio = make_wav(0.01 * max(1, len(text)), rate=24000)
        return Reply.json({"audioContent": base64.b64encode(audio).decode("ascii")})

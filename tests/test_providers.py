"""The provider clients and router against loopback servers that speak each provider's real wire format.

Every test runs the real httpx clients against ``tests.provider_servers``: real HTTP/1.1 on
127.0.0.1, real request parsing (JSON, multipart, SSML, base64), and the providers' documented
answers and error bodies. Breakers run on a FakeClock and the meter on a fake wall clock; the only
real waiting is for the per-call timeouts under test (0.2 s, against a server that never answers).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import sqlite3
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from pydantic import SecretStr

from auralink.agents.providers import (
    AzureSpeechConfig,
    AzureSpeechToText,
    AzureTextToSpeech,
    BreakerPolicy,
    BreakerState,
    Chains,
    ChatMessage,
    ChatRequest,
    ElevenLabsConfig,
    ElevenLabsTTS,
    GoogleSpeechConfig,
    GoogleSpeechToText,
    GoogleTextToSpeech,
    KeySealer,
    OpenAIChat,
    OpenAIChatConfig,
    OpenAITranscriber,
    PlanLimits,
    ProviderRouter,
    ProviderStore,
    TenantConfig,
    Usage,
    WhisperConfig,
)
from auralink.agents.providers.store import SCHEMA_VERSION
from auralink.errors import (
    AllProvidersFailed,
    ConfigError,
    LocalProtocolError,
    ProviderAuthFailed,
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderStoreError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
    SealedKeyError,
)
from auralink.testing import FakeClock
from tests.provider_servers import (
    SSML_NS,
    AzureApp,
    Drop,
    ElevenLabsApp,
    GoogleApp,
    LoopbackServer,
    OpenAIApp,
    Reply,
    Stall,
    azure_error,
    elevenlabs_error,
    google_error,
    make_wav,
    openai_error,
    openai_rate_limited,
    openai_server_error,
    parse_multipart,
)
from tests.test_sqlite import SPOILED, assert_refused_untouched, spoil

KEYS = {
    "openai": "sk-proj-OPENAI-3f9a1c7e5b2d48a0",
    "eleven": "xi-ELEVEN-8c2e4a6f1b3d5e79",
    "azure": "AZURE0c1d2e3f4a5b6c7d8e9f0a1b2c3d",
    "google": "AIzaGOOGLE-7e6d5c4b3a2f1e0d9c8b",
}
SEALER = KeySealer(bytes(range(32)))
VOICE = "JBFqnCBsd6RMkjVDRZzb"
JAN_1 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
FEB_1 = 1_769_904_000.0  # 2026-02-01 00:00 UTC
HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello")]
TIMEOUT = 0.2


@dataclass
class Servers:
    openai: LoopbackServer[OpenAIApp]
    local: LoopbackServer[OpenAIApp]
    eleven: LoopbackServer[ElevenLabsApp]
    azure: LoopbackServer[AzureApp]
    google: LoopbackServer[GoogleApp]

    def all(self) -> list[LoopbackServer[Any]]:
        return [self.openai, self.local, self.eleven, self.azure, self.google]


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with (
        LoopbackServer(OpenAIApp(KEYS["openai"])) as openai,
        LoopbackServer(OpenAIApp(None, reply_text="Hi from the local model", report_usage=False)) as local,
        LoopbackServer(ElevenLabsApp(KEYS["eleven"])) as eleven,
        LoopbackServer(AzureApp(KEYS["azure"])) as azure,
        LoopbackServer(GoogleApp(KEYS["google"])) as google,
    ):
        found = Servers(openai, local, eleven, azure, google)
        yield found
    for server in found.all():  # every request any test made had the documented shape
        assert server.app.violations == [], server.app.violations


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(JAN_1 + 3600)


@pytest.fixture
def store(tmp_path: Path) -> AsyncIterator[ProviderStore]:
    with ProviderStore.open(tmp_path / "agents" / "providers.db") as opened:
        yield opened


@pytest.fixture
async def router(store: ProviderStore, clock: FakeClock, wall: FakeClock) -> AsyncIterator[ProviderRouter]:
    policy = BreakerPolicy(failure_threshold=3, cool_down=30.0, max_cool_down=120.0)
    async with ProviderRouter(sealer=SEALER, store=store, breaker=policy, clock=clock, wall_clock=wall) as routing:
        yield routing


def acme(servers: Servers, **changes: Any) -> TenantConfig:
    """A tenant with every provider, chains primary-first, keys sealed."""
    sealed = {name: SEALER.seal(key) for name, key in KEYS.items()}
    config = TenantConfig(
        tenant_id="acme",
        providers=(
            OpenAIChatConfig(name="openai", model="gpt-4o-mini", base_url=f"{servers.openai.url}/v1",
                             api_key=sealed["openai"]),
            OpenAIChatConfig(name="local", model="llama3.2", base_url=f"{servers.local.url}/v1"),
            WhisperConfig(name="whisper", base_url=f"{servers.openai.url}/v1", api_key=sealed["openai"]),
            ElevenLabsConfig(name="eleven", base_url=servers.eleven.url, voice_id=VOICE, api_key=sealed["eleven"]),
            AzureSpeechConfig(name="azure", stt_endpoint=servers.azure.url, tts_endpoint=servers.azure.url,
                              api_key=sealed["azure"]),
            GoogleSpeechConfig(name="google", stt_base_url=servers.google.url, tts_base_url=servers.google.url,
                               api_key=sealed["google"]),
        ),
        chains=Chains(chat=("openai", "local"), stt=("whisper", "azure", "google"), tts=("eleven", "azure", "google")),
    )  # fmt: skip
    return config.model_copy(update=changes)


def tweak(config: TenantConfig, name: str, **changes: Any) -> TenantConfig:
    """``config`` with the provider called ``name`` changed (a shorter timeout, a limit...)."""
    providers = tuple(p.model_copy(update=changes) if p.name == name else p for p in config.providers)
    return config.model_copy(update={"providers": providers})


# ---------------------------------------------------------------------------------------------
# Requests have the documented shape


async def test_chat_request_and_answer_follow_the_openai_format(servers: Servers, router: ProviderRouter) -> None:
    router.set_tenant(acme(servers))
    result = await router.chat("acme", HELLO, temperature=0.3, max_tokens=64)
    assert (result.text, result.model, result.finish_reason, result.provider) == (
        "Hello from the model",
        "gpt-4o-mini-2024-07-18",
        "stop",
        "openai",
    )
    assert result.usage == Usage(input_tokens=12, output_tokens=4)
    (request,) = servers.openai.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEYS['openai']}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "temperature": 0.3,
        "max_tokens": 64,
    }


@pytest.mark.parametrize("fragment", [0, 1, 7])
async def test_chat_streams_sse_however_the_bytes_are_split(
    servers: Servers, router: ProviderRouter, fragment: int
) -> None:
    servers.openai.app.fragment = fragment
    router.set_tenant(acme(servers))
    chunks = [chunk async for chunk in router.stream_chat("acme", HELLO)]
    assert "".join(c.text for c in chunks) == "Hello from the model"
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].usage == Usage(12, 4) and chunks[-1].finish_reason == "stop"
    body = servers.openai.requests[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert servers.openai.requests[0].headers["accept"] == "text/event-stream"


async def test_a_local_server_gets_no_key_and_unreported_usage_is_estimated(
    servers: Servers, router: ProviderRouter
) -> None:
    router.set_tenant(acme(servers, chains=Chains(chat=("local",))))
    result = await router.chat("acme", HELLO)
    assert result.text == "Hi from the local model" and result.usage.estimated
    assert result.usage.output_tokens == 6 and result.usage.input_tokens > 0
    chunks = [chunk async for chunk in router.stream_chat("acme", HELLO)]
    assert "".join(c.text for c in chunks) == "Hi from the local model"
    assert chunks[-1].usage is not None and chunks[-1].usage.estimated
    assert all("authorization" not in r.headers for r in servers.local.requests)


async def test_whisper_gets_multipart_with_the_audio_as_a_named_file(servers: Servers, router: ProviderRouter) -> None:
    router.set_tenant(acme(servers))
    audio = make_wav(1.0)
    transcript = await router.transcribe("acme", audio, language="en-US")
    assert (transcript.text, transcript.language, transcript.provider) == ("hello world", "english", "whisper")
    assert transcript.usage == Usage(audio_seconds=1.0)
    (request,) = servers.openai.requests
    assert (request.method, request.path) == ("POST", "/v1/audio/transcriptions")
    assert request.headers["authorization"] == f"Bearer {KEYS['openai']}"
    parts = parse_multipart(request.headers["content-type"], request.body)
    assert parts["file"] == ("audio.wav", "audio/wav", audio)
    assert {name: parts[name][2] for name in ("model", "response_format", "language")} == {
        "model": b"whisper-1",
        "response_format": b"verbose_json",
        "language": b"en",
    }


async def test_elevenlabs_gets_the_voice_in_the_path_and_the_key_in_xi_api_key(
    servers: Servers, router: ProviderRouter
) -> None:
    router.set_tenant(acme(servers))
    speech = await router.synthesize("acme", "Hello there")
    assert speech.audio.startswith(b"ID3") and speech.content_type == "audio/mpeg"
    assert speech.usage.characters == 11 and speech.provider == "eleven"
    (request,) = servers.eleven.requests
    assert (request.method, request.path) == ("POST", f"/v1/text-to-speech/{VOICE}")
    assert request.headers["xi-api-key"] == KEYS["eleven"] and "authorization" not in request.headers
    assert request.query == {"output_format": ["mp3_44100_128"]}
    assert request.json() == {"text": "Hello there", "model_id": "eleven_multilingual_v2"}


async def test_azure_gets_pcm_wav_and_escaped_ssml(servers: Servers) -> None:
    key = SecretStr(KEYS["azure"])
    async with httpx.AsyncClient() as http:
        stt = AzureSpeechToText(http, api_key=key, endpoint=servers.azure.url)
        transcript = await stt.transcribe(make_wav(1.5))
        tts = AzureTextToSpeech(http, api_key=key, endpoint=servers.azure.url, voice="en-US-JennyNeural")
        speech = await tts.synthesize('Fish & <chips> "now"')
    assert transcript.text == "Remind me to buy 5 pencils." and transcript.confidence == pytest.approx(0.905, abs=1e-3)
    assert transcript.usage == Usage(audio_seconds=1.5)
    assert speech.content_type == "audio/x-wav" and speech.usage.audio_seconds == pytest.approx(0.2)
    recognize, synthesize = servers.azure.requests
    assert recognize.query == {"language": ["en-US"], "format": ["detailed"]}
    assert recognize.headers["ocp-apim-subscription-key"] == KEYS["azure"]
    voice = ElementTree.fromstring(synthesize.body).find(f"{SSML_NS}voice")
    assert voice is not None and voice.get("name") == "en-US-JennyNeural" and voice.text == 'Fish & <chips> "now"'
    assert synthesize.headers["user-agent"].startswith("auralink/")
    with pytest.raises(ProviderRejected, match="WAV"):  # refused before anything is sent
        await stt.transcribe(b"ID3...", content_type="audio/mpeg")
    assert len(servers.azure.requests) == 2


async def test_google_gets_the_key_in_a_header_and_audio_in_base64(servers: Servers) -> None:
    key = SecretStr(KEYS["google"])
    audio = make_wav(1.5)
    async with httpx.AsyncClient() as http:
        transcript = await GoogleSpeechToText(http, api_key=key, base_url=servers.google.url).transcribe(audio)
        tts = GoogleTextToSpeech(http, api_key=key, base_url=servers.google.url, voice_name="en-US-Neural2-C")
        speech = await tts.synthesize("Hello")
    assert (transcript.text, transcript.language, transcript.confidence) == ("to be or not to be", "en-us", 0.91)
    assert transcript.usage == Usage(audio_seconds=2.0)  # totalBilledTime, rounded up by Google
    assert speech.audio.startswith(b"RIFF") and speech.content_type == "audio/wav"
    recognize, synthesize = servers.google.requests
    assert recognize.path == "/v1/speech:recognize" and recognize.query == {}
    assert recognize.headers["x-goog-api-key"] == KEYS["google"]
    body = recognize.json()
    assert base64.b64decode(body["audio"]["content"]) == audio and body["config"]["languageCode"] == "en-US"
    assert synthesize.json() == {
        "input": {"text": "Hello"},
        "voice": {"languageCode": "en-US", "name": "en-US-Neural2-C"},
        "audioConfig": {"audioEncoding": "LINEAR16"},
    }


# ---------------------------------------------------------------------------------------------
# Errors become ours


async def test_refused_keys_raise_auth_failed_for_every_provider(servers: Servers) -> None:
    wrong = SecretStr("wrong-key-0123456789")
    async with httpx.AsyncClient() as http:
        calls = [
            OpenAIChat(http, model="m", base_url=f"{servers.openai.url}/v1", api_key=wrong).complete(
                ChatRequest(tuple(HELLO))
            ),
            OpenAITranscriber(http, base_url=f"{servers.openai.url}/v1", api_key=wrong).transcribe(make_wav(0.1)),
            ElevenLabsTTS(http, voice_id=VOICE, api_key=wrong, base_url=servers.eleven.url).synthesize("hi"),
            AzureSpeechToText(http, api_key=wrong, endpoint=servers.azure.url).transcribe(make_wav(0.1)),
            AzureTextToSpeech(http, api_key=wrong, endpoint=servers.azure.url).synthesize("hi"),
            GoogleSpeechToText(http, api_key=wrong, base_url=servers.google.url).transcribe(make_wav(0.1)),
            GoogleTextToSpeech(http, api_key=wrong, base_url=servers.google.url).synthesize("hi"),
        ]
        for call in calls:
            with pytest.raises(ProviderAuthFailed) as caught:
                await call
            assert caught.value.status in (400, 401) and "wrong-key-0123456789" not in str(caught.value)


async def test_provider_side_quotas_rejections_and_rate_limits(servers: Servers) -> None:
    key = SecretStr(KEYS["openai"])
    servers.eleven.app.credits = 5
    async with httpx.AsyncClient() as http:
        chat = OpenAIChat(http, model="m", base_url=f"{servers.openai.url}/v1", api_key=key)
        eleven = ElevenLabsTTS(http, voice_id=VOICE, api_key=SecretStr(KEYS["eleven"]), base_url=servers.eleven.url)
        with pytest.raises(ProviderQuotaExhausted, match="add credit"):
            await eleven.synthesize("more than five characters")
        with pytest.raises(ProviderRejected) as rejected:
            await eleven.synthesize("hi", voice="no-such-voice")
        assert (rejected.value.status, rejected.value.code) == (404, "voice_not_found")
        servers.openai.fail_next(
            openai_error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
            openai_rate_limited("7"),
            openai_error(429, "slow down", "requests", retry_after_ms="1500"),
        )
        with pytest.raises(ProviderQuotaExhausted):
            await chat.complete(ChatRequest(tuple(HELLO)))
        with pytest.raises(RateLimited) as limited:
            await chat.complete(ChatRequest(tuple(HELLO)))
        assert limited.value.retry_after == 7.0
        with pytest.raises(RateLimited) as limited:
            await chat.complete(ChatRequest(tuple(HELLO)))
        assert limited.value.retry_after == 1.5


async def test_malformed_and_broken_answers_raise_our_errors(servers: Servers) -> None:
    key = SecretStr(KEYS["openai"])
    done = b"data: [DONE]\n\n"
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}\n\n'
    async with httpx.AsyncClient() as http:
        chat = OpenAIChat(http, model="m", base_url=f"{servers.openai.url}/v1", api_key=key)
        request = ChatRequest(tuple(HELLO))
        cases: list[tuple[Any, type[ProviderError], bool]] = [
            (Reply(200, b"{not json"), ProviderProtocolError, False),
            (Reply.json({"choices": []}), ProviderProtocolError, False),
            (Reply(200, b"<html>proxy error</html>", "text/html"), ProviderProtocolError, False),
            (Drop(), ProviderUnavailable, False),
            (Reply(200, b"", "text/event-stream", chunks=(chunk,), cut=True), ProviderUnavailable, True),
            (Reply(200, b"", "text/event-stream", chunks=(chunk,)), ProviderProtocolError, True),  # no [DONE]
            (Reply(200, b"", "text/event-stream", chunks=(b"data: {oops}\n\n", done)), ProviderProtocolError, True),
            (
                Reply(200, b"", "text/event-stream", chunks=(b'data: {"error": {"message": "overloaded"}}\n\n',)),
                ProviderUnavailable,
                True,
            ),
        ]
        for fault, expected, streaming in cases:
            servers.openai.fail_next(fault)
            with pytest.raises(expected):
                if streaming:
                    async for _ in chat.stream(request):
                        pass
                else:
                    await chat.complete(request)
        eleven = ElevenLabsTTS(http, voice_id=VOICE, api_key=SecretStr(KEYS["eleven"]), base_url=servers.eleven.url)
        servers.eleven.fail_next(Reply.json({"audio": "not here"}))
        with pytest.raises(ProviderProtocolError, match="expected audio"):
            await eleven.synthesize("hi")
        closed = OpenAIChat(http, model="m", base_url="http://127.0.0.1:9/v1")  # nothing listens on port 9
        with pytest.raises(ProviderUnavailable, match="cannot reach"):
            await closed.complete(request)


# ---------------------------------------------------------------------------------------------
# The router: fallback, timeouts, breakers


async def test_falls_back_on_429_and_honours_retry_after(
    servers: Servers, router: ProviderRouter, clock: FakeClock
) -> None:
    router.set_tenant(acme(servers))
    servers.openai.fail_next(openai_rate_limited("20"))
    assert (await router.chat("acme", HELLO)).provider == "local"
    assert router.breaker_state("acme", "openai") is BreakerState.OPEN  # Retry-After opens it at once
    assert (await router.chat("acme", HELLO)).provider == "local"
    assert len(servers.openai.requests) == 1  # not asked again while it said to wait
    clock.advance(19.9)
    assert (await router.chat("acme", HELLO)).provider == "local"
    clock.advance(0.1)
    assert (await router.chat("acme", HELLO)).provider == "openai"
    assert router.breaker_state("acme", "openai") is BreakerState.CLOSED
    assert len(servers.openai.requests) == 2 and len(servers.local.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_falls_back_on_5xx(servers: Servers, router: ProviderRouter, status: int) -> None:
    router.set_tenant(acme(servers))
    servers.openai.fail_next(openai_server_error(status))
    result = await router.chat("acme", HELLO)
    assert result.provider == "local" and len(servers.openai.requests) == 1
    assert router.breaker_state("acme", "openai") is BreakerState.CLOSED  # one failure is not enough


async def test_falls_back_on_timeout(servers: Servers, router: ProviderRouter) -> None:
    router.set_tenant(tweak(acme(servers), "openai", timeout=TIMEOUT))  # the local model keeps 30 s
    servers.openai.fail_next(Stall())
    result = await router.chat("acme", HELLO)
    assert result.provider == "local" and len(servers.openai.requests) == 1
    servers.openai.fail_next(Stall())
    chunks = [c async for c in router.stream_chat("acme", HELLO)]
    assert chunks[-1].provider == "local" and "".join(c.text for c in chunks) == "Hi from the local model"


async def test_a_per_call_timeout_overrides_the_providers(servers: Servers, router: ProviderRouter) -> None:
    router.set_tenant(acme(servers, chains=Chains(chat=("openai",))))
    servers.openai.fail_next(Stall())
    with pytest.raises(AllProvidersFailed) as caught:
        await router.chat("acme", HELLO, timeout=TIMEOUT)
    assert isinstance(caught.value.__cause__, ProviderTimeout)
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}\n\n'
    servers.openai.fail_next(Reply(200, b"", "text/event-stream", chunks=(first,), stall_after=True))
    received = []
    with pytest.raises(ProviderTimeout, match="stalled"):
        async for chunk in router.stream_chat("acme", HELLO, timeout=TIMEOUT):
            received.append(chunk.text)
    assert received == ["Hel"]


async def test_circuit_opens_after_repeated_failures_and_recovers_after_the_cool_down(
    servers: Servers, router: ProviderRouter, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="auralink")
    router.set_tenant(acme(servers))
    servers.openai.fail_next(openai_server_error(503), openai_server_error(500), Drop())
    for _ in range(3):
        assert (await router.chat("acme", HELLO)).provider == "local"
    assert router.breaker_state("acme", "openai") is BreakerState.OPEN
    assert "circuit of openai opened for 30.0 s after 3 failures" in caplog.text
    for _ in range(3):  # open: the provider is not called at all
        assert (await router.chat("acme", HELLO)).provider == "local"
    assert len(servers.openai.requests) == 3
    clock.advance(29.9)
    assert router.breaker_state("acme", "openai") is BreakerState.OPEN
    clock.advance(0.1)
    assert router.breaker_state("acme", "openai") is BreakerState.HALF_OPEN
    servers.openai.fail_next(openai_server_error(503))  # the probe fails: open for twice as long
    assert (await router.chat("acme", HELLO)).provider == "local"
    assert len(servers.openai.requests) == 4
    clock.advance(59.9)
    assert (await router.chat("acme", HELLO)).provider == "local"
    assert len(servers.openai.requests) == 4
    clock.advance(0.1)
    assert (await router.chat("acme", HELLO)).provider == "openai"  # the probe succeeds
    assert router.breaker_state("acme", "openai") is BreakerState.CLOSED
    assert "circuit of openai closed again" in caplog.text


async def test_every_provider_failing_gives_one_error_with_the_reasons(
    servers: Servers, router: ProviderRouter
) -> None:
    router.set_tenant(acme(servers))
    servers.openai.fail_next(openai_rate_limited("5"))
    servers.local.fail_next(openai_server_error(502))
    with pytest.raises(AllProvidersFailed) as caught:
        await router.chat("acme", HELLO)
    error = caught.value
    assert error.capability == "chat" and len(error.reasons) == 2 and error.retry_after == 5.0
    assert "openai: HTTP 429" in error.reasons[0] and "local: HTTP 502" in error.reasons[1]
    assert isinstance(error.__cause__, ProviderUnavailable) and error.__cause__.status == 502
    with pytest.raises(AllProvidersFailed, match="circuit open"):
        servers.local.fail_next(openai_server_error(500))
        await router.chat("acme", HELLO)


async def test_streams_fall_back_before_the_first_chunk_but_not_after(
    servers: Servers, router: ProviderRouter, store: ProviderStore
) -> None:
    router.set_tenant(acme(servers))
    servers.openai.fail_next(openai_server_error(503))
    chunks = [c async for c in router.stream_chat("acme", HELLO)]
    assert {c.provider for c in chunks} == {"local"}
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}\n\n'
    servers.openai.fail_next(Reply(200, b"", "text/event-stream", chunks=(first,), cut=True))
    received = []
    with pytest.raises(ProviderUnavailable):
        async for chunk in router.stream_chat("acme", HELLO):
            received.append(chunk.text)
    assert received == ["Hel"] and len(servers.local.requests) == 1  # no fallback once text went out
    partial = store.usage("acme", provider="openai")
    assert partial.estimated and partial.output_tokens == 1  # what was received is metered


async def test_a_stream_closed_early_is_metered_at_once(
    servers: Servers, router: ProviderRouter, store: ProviderStore
) -> None:
    router.set_tenant(acme(servers))
    async with contextlib.aclosing(router.stream_chat("acme", HELLO)) as chunks:
        async for chunk in chunks:
            assert chunk.text == "Hello"
            break
    usage = store.usage("acme", provider="openai")
    assert usage.estimated and usage.output_tokens == 2  # "Hello": five characters, two tokens by estimate
    assert router.breaker_state("acme", "openai") is BreakerState.CLOSED


async def test_stt_and_tts_chains_fall_back_across_providers(servers: Servers, router: ProviderRouter) -> None:
    router.set_tenant(acme(servers))
    servers.openai.fail_next(openai_server_error(500))
    assert (await router.transcribe("acme", make_wav(0.5))).provider == "azure"
    servers.openai.fail_next(openai_server_error(500))
    servers.azure.fail_next(azure_error(503))
    assert (await router.transcribe("acme", make_wav(0.5))).provider == "google"
    servers.eleven.fail_next(elevenlabs_error(429, "too_many_concurrent_requests", "Too many concurrent requests"))
    assert (await router.synthesize("acme", "hello")).provider == "azure"
    router.set_tenant(tweak(acme(servers), "eleven", timeout=TIMEOUT))
    servers.eleven.fail_next(Stall())
    servers.azure.fail_next(azure_error(401, "Access denied due to invalid subscription key."))
    assert (await router.synthesize("acme", "hello")).provider == "google"


async def test_a_refused_key_falls_back_without_tripping_the_breaker(servers: Servers, router: ProviderRouter) -> None:
    config = acme(servers)
    bad = config.providers[0].model_copy(update={"api_key": SEALER.seal("sk-not-the-right-one-000")})
    router.set_tenant(config.model_copy(update={"providers": (bad, *config.providers[1:])}))
    for _ in range(4):
        assert (await router.chat("acme", HELLO)).provider == "local"
    assert router.breaker_state("acme", "openai") is BreakerState.CLOSED  # the provider is up; the key is wrong
    assert len(servers.openai.requests) == 4


async def test_our_own_misconfiguration_is_loud_not_a_fallback(
    servers: Servers, store: ProviderStore, clock: FakeClock
) -> None:
    async with ProviderRouter(sealer=KeySealer.generate(), clock=clock) as router:
        router.set_tenant(acme(servers, limits=None))
        with pytest.raises(SealedKeyError):
            await router.chat("acme", HELLO)
        with pytest.raises(ProviderNotConfigured, match="unknown tenant"):
            await router.chat("nobody", HELLO)
        router.set_tenant(acme(servers, chains=Chains()))
        with pytest.raises(ProviderNotConfigured, match="no chat provider"):
            await router.chat("acme", HELLO)
        with pytest.raises(ConfigError, match="usage store"):
            router.set_tenant(acme(servers, limits=PlanLimits(max_tokens=10)))
    assert servers.openai.requests == []


# ---------------------------------------------------------------------------------------------
# Keys stay sealed


async def test_keys_never_appear_in_logs_errors_reprs_or_the_database(
    servers: Servers, router: ProviderRouter, store: ProviderStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything: ours, httpx's and httpcore's
    config = tweak(acme(servers), "openai", timeout=TIMEOUT)
    router.set_tenant(config)
    errors: list[BaseException] = []
    reprs: list[str] = []
    echo = openai_error(400, f"Bad request for key {KEYS['openai']}", "invalid_request_error")
    servers.openai.fail_next(echo, openai_server_error(500), Stall())
    for _ in range(3):  # rejected (echoing the key), 500, timeout: each falls back to the local model
        assert (await router.chat("acme", HELLO)).provider == "local"
    async for _ in router.stream_chat("acme", HELLO):
        pass
    await router.transcribe("acme", make_wav(0.2))
    servers.eleven.fail_next(elevenlabs_error(400, "bad", f"key {KEYS['eleven']} is odd"))
    servers.azure.fail_next(azure_error(400, f"key {KEYS['azure']}"))
    servers.google.fail_next(google_error(403, "PERMISSION_DENIED", f"key {KEYS['google']} is blocked"))
    with pytest.raises(AllProvidersFailed) as every_tts:
        await router.synthesize("acme", "hello")
    errors.append(every_tts.value)
    await router.synthesize("acme", "hello")
    servers.openai.fail_next(openai_rate_limited("1"))
    servers.local.fail_next(openai_server_error(500))
    with pytest.raises(AllProvidersFailed) as every_chat:
        await router.chat("acme", HELLO)
    errors.append(every_chat.value)
    async with httpx.AsyncClient() as http:
        for key in KEYS.values():
            chat = OpenAIChat(http, model="m", base_url=f"{servers.openai.url}/v1", api_key=SecretStr(key))
            servers.openai.fail_next(openai_error(401, f"Incorrect API key provided: {key}", "invalid_request_error"))
            with pytest.raises(ProviderAuthFailed) as refused:
                await chat.complete(ChatRequest(tuple(HELLO)))
            errors.append(refused.value)
            reprs.append(repr(chat))
    seen_by_servers = " ".join(str(r.headers) for s in servers.all() for r in s.requests)
    database = b"".join(p.read_bytes() for p in store.path.parent.iterdir() if p.name.startswith(store.path.name))
    sealed_box = config.providers[0].api_key.box if config.providers[0].api_key else ""
    assert sealed_box.encode() in database  # the tenant config is stored, sealed
    surfaces = {
        "logs": caplog.text,
        "errors": " ".join(f"{e!s} {e!r} {e.__cause__!s} {e.__cause__!r}" for e in errors),
        "reprs": f"{router!r} {config!r} {config} {config.model_dump_json()} {' '.join(reprs)}",
    }
    for name, key in KEYS.items():
        assert key in seen_by_servers, name  # the key was really used...
        for surface, text in surfaces.items():
            assert key not in text, (name, surface)  # ...and shown nowhere
        assert key.encode() not in database, name
    store.close()  # checkpoint the WAL into the main file, and look again
    assert all(key.encode() not in store.path.read_bytes() for key in KEYS.values())


# ---------------------------------------------------------------------------------------------
# Usage and plan limits


async def test_usage_is_metered_per_tenant_and_provider_in_sqlite(
    servers: Servers, router: ProviderRouter, store: ProviderStore, tmp_path: Path
) -> None:
    router.set_tenant(acme(servers))
    router.set_tenant(acme(servers).model_copy(update={"tenant_id": "globex"}))
    await router.chat("acme", HELLO)
    async for _ in router.stream_chat("acme", HELLO):
        pass
    await router.transcribe("acme", make_wav(1.5))
    await router.synthesize("acme", "Hello there")
    await router.chat("globex", HELLO)
    assert store.usage("acme", provider="openai") == Usage(24, 8)
    assert store.usage("acme", provider="whisper") == Usage(audio_seconds=1.5)
    assert store.usage("acme", provider="eleven") == Usage(characters=11)
    assert store.usage("acme") == Usage(24, 8, 1.5, 11)
    assert store.usage("globex") == Usage(12, 4)
    assert store.usage("acme", since=JAN_1 + 3601) == Usage()
    path = store.path
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with ProviderStore.open(path) as reopened:
        assert reopened.usage("acme") == Usage(24, 8, 1.5, 11)
        assert reopened.tenant_ids() == ["acme", "globex"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def create_provider_database(path: Path) -> None:
    ProviderStore.open(path).close()


@pytest.mark.parametrize("case", SPOILED)
def test_a_spoiled_provider_file_raises_provider_store_error_and_is_left_untouched(tmp_path: Path, case: str) -> None:
    path = tmp_path / "providers.db"
    message = spoil(path, case, create=create_provider_database, latest=SCHEMA_VERSION)
    refusal = assert_refused_untouched(ProviderStore.open, path, ProviderStoreError, message)
    if case != "newer":
        assert "Choose another path for the provider database" in str(refusal)


def test_a_closed_provider_store_refuses_calls(tmp_path: Path) -> None:
    store = ProviderStore.open(tmp_path / "providers.db")
    store.close()
    store.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        store.tenant_ids()


async def test_a_tenant_limit_throttles_until_the_next_period(
    servers: Servers, router: ProviderRouter, wall: FakeClock
) -> None:
    router.set_tenant(acme(servers, limits=PlanLimits(period="month", max_tokens=30)))
    await router.chat("acme", HELLO)  # 16 tokens
    await router.chat("acme", HELLO)  # 32 tokens: over now
    with pytest.raises(QuotaExceeded) as caught:
        await router.chat("acme", HELLO)
    assert (caught.value.tenant, caught.value.unit, caught.value.limit) == ("acme", "tokens", 30.0)
    assert "resets at 2026-02-01 00:00 UTC" in str(caught.value)
    with pytest.raises(QuotaExceeded):
        async for _ in router.stream_chat("acme", HELLO):
            pass
    assert len(servers.openai.requests) == 2
    wall.set(FEB_1)
    assert (await router.chat("acme", HELLO)).provider == "openai"


async def test_a_provider_limit_switches_to_the_next_provider(servers: Servers, router: ProviderRouter) -> None:
    config = acme(servers)
    capped = config.providers[0].model_copy(update={"limits": PlanLimits(max_tokens=20, on_exceeded="switch")})
    router.set_tenant(config.model_copy(update={"providers": (capped, *config.providers[1:])}))
    assert (await router.chat("acme", HELLO)).provider == "openai"
    assert (await router.chat("acme", HELLO)).provider == "openai"  # 16 < 20 before this call
    assert (await router.chat("acme", HELLO)).provider == "local"
    assert (await router.chat("acme", HELLO)).provider == "local"
    assert len(servers.openai.requests) == 2


async def test_a_provider_limit_can_throttle_and_counts_what_a_call_will_cost(
    servers: Servers, router: ProviderRouter
) -> None:
    config = acme(servers)
    eleven = config.providers[3].model_copy(update={"limits": PlanLimits(period="day", max_characters=30)})
    providers = (*config.providers[:3], eleven, *config.providers[4:])
    router.set_tenant(config.model_copy(update={"providers": providers}))
    await router.synthesize("acme", "x" * 20)
    with pytest.raises(QuotaExceeded, match="30 characters per day") as caught:
        await router.synthesize("acme", "y" * 11)  # 20 + 11 > 30: refused before it is spent
    assert caught.value.provider == "eleven"
    await router.synthesize("acme", "z" * 10)  # exactly 30 still fits
    assert len(servers.eleven.requests) == 2 and servers.azure.requests == []


async def test_tenants_are_loaded_from_the_store(
    servers: Servers, store: ProviderStore, clock: FakeClock, wall: FakeClock
) -> None:
    async with ProviderRouter(sealer=SEALER, store=store, clock=clock, wall_clock=wall) as first:
        first.set_tenant(acme(servers))
    async with ProviderRouter(sealer=SEALER, store=store, clock=clock, wall_clock=wall) as second:
        assert (await second.chat("acme", HELLO)).provider == "openai"
        second.remove_tenant("acme")
        with pytest.raises(ProviderNotConfigured):
            await second.chat("acme", HELLO)
    assert store.usage("acme") == Usage(12, 4)  # removing a tenant keeps its metered usage

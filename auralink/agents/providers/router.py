"""The provider router: per-tenant fallback chains, per-call timeouts, circuit breakers and metered plan limits.

Theory of operation
===================

A :class:`ProviderRouter` serves many tenants. For a call (:meth:`~ProviderRouter.chat`,
:meth:`~ProviderRouter.stream_chat`, :meth:`~ProviderRouter.transcribe`,
:meth:`~ProviderRouter.synthesize`) it looks up the tenant's
:class:`~auralink.agents.providers.config.TenantConfig` (in memory, else in the
:class:`~auralink.agents.providers.store.ProviderStore`) and walks the chain of the capability:

1. **Tenant limits.** If the tenant's own :class:`~auralink.agents.providers.config.PlanLimits`
   are reached for the period, the call is refused with :class:`~auralink.errors.QuotaExceeded`
   before any provider is asked.
2. For each provider of the chain, in order:

   a. **Provider limits.** Reached, with ``on_exceeded="throttle"``: the call is refused
      (:class:`~auralink.errors.QuotaExceeded`). With ``"switch"``: the provider is skipped.
   b. **Breaker.** The provider's :class:`~auralink.agents.providers.breaker.CircuitBreaker` (one per
      tenant and provider, since each tenant has its own key and its own rate limits) may refuse;
      the provider is skipped (:class:`~auralink.errors.CircuitOpen`).
   c. **Call**, under ``asyncio.timeout`` (the call's ``timeout=``, else the provider's
      ``timeout``). Success: the breaker closes, the usage is metered, the result is returned.
      Failure: a :class:`~auralink.errors.ProviderError` (429, 5xx, timeout, refused connection,
      bad key, malformed answer...) is logged and the next provider is tried. Only the failures
      that say the provider is unhealthy count against its breaker (see
      :mod:`~auralink.agents.providers.breaker`); a 429's Retry-After opens it at once.
3. When the chain is exhausted: :class:`~auralink.errors.AllProvidersFailed`, whose ``reasons``
   say what happened at each provider, whose ``retry_after`` says when the soonest one may be back,
   and whose ``__cause__`` is the last provider's error.

**Local providers.** The router may own offline providers (``local=LocalProviders(stt=...,
tts=..., chat=...)``): any object that speaks the capability's protocol, such as
:class:`~auralink.agents.speech.PocketSphinxSTT` or :class:`~auralink.agents.speech.PiperTTS`.
The local provider of a capability ends every tenant's chain of that capability, after the
tenant's own providers, and is the whole chain of a tenant that names none: a tenant with no keys
works offline, and a tenant with keys falls back to the embedded default when its providers fail.
It goes through the same steps as the others (breaker, timeout ``LocalProviders.timeout``,
metering under its ``name``, and the tenant-wide limits); it has no provider limits of its own. A
tenant may not name one of its providers like a local provider (:class:`~auralink.errors.ConfigError`).

Errors that are ours rather than a provider's are not swallowed: a
:class:`~auralink.errors.SealedKeyError` (wrong sealing key) or another
:class:`~auralink.errors.ConfigError` propagates at once, as does cancellation.

**Streams** fall back only until the first chunk arrives: once text has been passed on, another
provider cannot continue it, so a failure mid-stream raises that provider's error. The per-call
timeout bounds the wait for the first chunk and then for each next one. A stream is metered when
it ends, also when the consumer stops early (then with an estimate of what was received).

**Clocks.** Breakers run on ``clock`` (monotonic seconds); the meter and plan periods on
``wall_clock`` (epoch seconds, since usage outlives the process). Both are injected, so tests move
time by hand. Nothing here sleeps.

**Keys.** A provider's sealed key is opened when its client is first built and kept inside the
client as a ``SecretStr``; it goes out only in the request header the provider's API specifies.
Logs name tenants, providers and error classes, never keys; error messages quoted from providers
are scrubbed of the key (see :mod:`~auralink.agents.providers.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import SecretStr

from auralink.agents.providers.azure_speech import AzureSpeechToText, AzureTextToSpeech
from auralink.agents.providers.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from auralink.agents.providers.config import (
    AzureSpeechConfig,
    ElevenLabsConfig,
    GoogleSpeechConfig,
    KeySealer,
    OpenAIChatConfig,
    PlanLimits,
    ProviderConfig,
    TenantConfig,
    WhisperConfig,
    limit_reached,
    period_start,
)
from auralink.agents.providers.elevenlabs import ElevenLabsTTS
from auralink.agents.providers.google_speech import GoogleSpeechToText, GoogleTextToSpeech
from auralink.agents.providers.openai_compat import OpenAIChat, OpenAITranscriber
from auralink.agents.providers.store import ProviderStore
from auralink.agents.providers.types import (
    Capability,
    ChatChunk,
    ChatMessage,
    ChatModel,
    ChatRequest,
    ChatResult,
    SpeechAudio,
    SpeechToText,
    TextToSpeech,
    Transcript,
    Usage,
)
from auralink.agents.providers.wire import prompt_token_estimate, wav_info
from auralink.errors import (
    AllProvidersFailed,
    CircuitOpen,
    ConfigError,
    LocalProtocolError,
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderQuotaExhausted,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)

__all__ = ["LocalProviders", "ProviderRouter", "is_unhealthy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", ChatModel, SpeechToText, TextToSpeech)

_DEFAULT_HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def is_unhealthy(error: ProviderError) -> bool:
    """Does this failure count against the provider's circuit breaker?"""
    return isinstance(error, ProviderUnavailable | RateLimited | ProviderQuotaExhausted | ProviderProtocolError)


def _key(sealer: KeySealer, config: ProviderConfig) -> SecretStr | None:
    return None if config.api_key is None else sealer.unseal(config.api_key)


@dataclass(frozen=True, slots=True)
class LocalProviders:
    """Offline providers that end every tenant's chain of their capability; see the module docstring."""

    chat: ChatModel | None = None
    """The local chat model, if any."""
    stt: SpeechToText | None = None
    """The local speech to text (``PocketSphinxSTT()``), if any."""
    tts: TextToSpeech | None = None
    """The local voice (``PiperTTS()``, ``EspeakTTS()``), if any."""
    timeout: float = 120.0
    """Seconds a local call may take, unless the call gives its own ``timeout=``."""

    def of(self, capability: Capability) -> ChatModel | SpeechToText | TextToSpeech | None:
        """The local provider of ``capability``, if any."""
        return {"chat": self.chat, "stt": self.stt, "tts": self.tts}[capability]

    def names(self) -> frozenset[str]:
        """The names of the local providers."""
        return frozenset(p.name for p in (self.chat, self.stt, self.tts) if p is not None)


@dataclass(frozen=True, slots=True)
class _Local:
    """A local provider's place in a chain: what the chain walk reads of a ProviderConfig."""

    name: str
    timeout: float
    limits: None = None


def _local_client(client: C | None, entry: _Local) -> C:
    if client is None:  # pragma: no cover - _chain only places a local provider that exists
        raise ProviderNotConfigured(f"no local provider {entry.name!r}")
    return client


def _period_end(limits: PlanLimits, now: float) -> str:
    start = datetime.fromtimestamp(period_start(limits.period, now), UTC)
    if limits.period == "day":
        end = datetime.fromtimestamp(start.timestamp() + 86400, UTC)
    else:
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return end.strftime("%Y-%m-%d %H:%M UTC")


class ProviderRouter:
    """Routes chat, STT and TTS calls of many tenants across their providers; see the module docstring."""

    def __init__(
        self,
        *,
        sealer: KeySealer,
        store: ProviderStore | None = None,
        tenants: Iterable[TenantConfig] = (),
        http: httpx.AsyncClient | None = None,
        breaker: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        local: LocalProviders | None = None,
    ) -> None:
        """Construct; opens no sockets. ``http`` is shared by every client (the router closes it only if it made it).

        ``local`` holds offline providers that end every tenant's chains (see the module docstring).
        """
        self._local = local or LocalProviders()
        self._sealer = sealer
        self._store = store
        self._http = http
        self._owns_http = http is None
        self._policy = breaker or BreakerPolicy()
        self._clock = clock
        self._wall_clock = wall_clock
        self._tenants: dict[str, TenantConfig] = {}
        self._chat: dict[tuple[str, str], ChatModel] = {}
        self._stt: dict[tuple[str, str], SpeechToText] = {}
        self._tts: dict[tuple[str, str], TextToSpeech] = {}
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        for config in tenants:
            self._install(config)

    def __repr__(self) -> str:
        return f"ProviderRouter(tenants={sorted(self._tenants)!r}, sealer={self._sealer!r})"

    async def __aenter__(self) -> ProviderRouter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if the router made it."""
        if self._owns_http and self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # -- tenants -------------------------------------------------------------------------------

    def set_tenant(self, config: TenantConfig) -> None:
        """Add or replace a tenant (and save it in the store, if there is one); its breakers start closed."""
        self._install(config)
        if self._store is not None:
            self._store.save_tenant(config, self._wall_clock())

    def _install(self, config: TenantConfig) -> None:
        if not isinstance(config, TenantConfig):
            raise LocalProtocolError(f"expected a TenantConfig, not {type(config).__name__}")
        limited = config.limits is not None or any(p.limits is not None for p in config.providers)
        if limited and self._store is None:
            raise ConfigError(f"tenant {config.tenant_id!r} has plan limits, which need a usage store (store=)")
        clash = sorted(self._local.names() & {p.name for p in config.providers})
        if clash:
            raise ConfigError(
                f"tenant {config.tenant_id!r} names a provider {clash[0]!r} like a local provider; rename it",
                "providers",
            )
        self._forget(config.tenant_id)
        self._tenants[config.tenant_id] = config

    def remove_tenant(self, tenant_id: str) -> None:
        """Forget a tenant here and in the store (its metered usage stays, for billing)."""
        self._forget(tenant_id)
        self._tenants.pop(tenant_id, None)
        if self._store is not None:
            self._store.delete_tenant(tenant_id, usage=False)

    def _forget(self, tenant_id: str) -> None:
        for cache in (self._chat, self._stt, self._tts, self._breakers):
            for key in [k for k in cache if k[0] == tenant_id]:
                del cache[key]

    def tenant(self, tenant_id: str) -> TenantConfig:
        """The config of ``tenant_id`` (loaded from the store on first use); ProviderNotConfigured if unknown."""
        config = self._tenants.get(tenant_id)
        if config is None and self._store is not None:
            config = self._store.load_tenant(tenant_id)
            if config is not None:
                self._install(config)
        if config is None:
            raise ProviderNotConfigured(f"unknown tenant {tenant_id!r}; add its BYOK config first")
        return config

    def breaker_state(self, tenant_id: str, provider: str) -> BreakerState:
        """The state of the breaker of one tenant's provider, now."""
        return self._breaker(tenant_id, provider).state(self._clock())

    def _breaker(self, tenant_id: str, provider: str) -> CircuitBreaker:
        key = (tenant_id, provider)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(self._policy)
        return breaker

    # -- clients -------------------------------------------------------------------------------

    def _client_http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=_DEFAULT_HTTP_TIMEOUT)
            self._owns_http = True
        return self._http

    def _chat_client(self, tenant: TenantConfig, config: ProviderConfig | _Local) -> ChatModel:
        if isinstance(config, _Local):
            return _local_client(self._local.chat, config)
        key = (tenant.tenant_id, config.name)
        client = self._chat.get(key)
        if client is None:
            if not isinstance(config, OpenAIChatConfig):  # pragma: no cover - TenantConfig validates chains
                raise ConfigError(f"provider {config.name!r} cannot serve chat", "chains.chat")
            client = self._chat[key] = OpenAIChat(
                self._client_http(),
                model=config.model,
                base_url=config.base_url,
                api_key=_key(self._sealer, config),
                name=config.name,
                stream_usage=config.stream_usage,
                timeout=config.timeout,
            )
        return client

    def _stt_client(self, tenant: TenantConfig, config: ProviderConfig | _Local) -> SpeechToText:
        if isinstance(config, _Local):
            return _local_client(self._local.stt, config)
        key = (tenant.tenant_id, config.name)
        client = self._stt.get(key)
        if client is None:
            api_key, http = _key(self._sealer, config), self._client_http()
            if isinstance(config, WhisperConfig):
                client = OpenAITranscriber(
                    http,
                    model=config.model,
                    base_url=config.base_url,
                    api_key=api_key,
                    name=config.name,
                    response_format=config.response_format,
                    language=config.language,
                    timeout=config.timeout,
                )
            elif isinstance(config, AzureSpeechConfig):
                client = AzureSpeechToText(
                    http,
                    api_key=api_key,
                    region=config.region,
                    endpoint=config.stt_endpoint,
                    language=config.language,
                    name=config.name,
                    timeout=config.timeout,
                )
            elif isinstance(config, GoogleSpeechConfig):
                client = GoogleSpeechToText(
                    http,
                    api_key=api_key,
                    base_url=config.stt_base_url,
                    language_code=config.language_code,
                    sample_rate_hertz=config.sample_rate_hertz,
                    name=config.name,
                    timeout=config.timeout,
                )
            else:  # pragma: no cover - TenantConfig validates chains
                raise ConfigError(f"provider {config.name!r} cannot serve stt", "chains.stt")
            self._stt[key] = client
        return client

    def _tts_client(self, tenant: TenantConfig, config: ProviderConfig | _Local) -> TextToSpeech:
        if isinstance(config, _Local):
            return _local_client(self._local.tts, config)
        key = (tenant.tenant_id, config.name)
        client = self._tts.get(key)
        if client is None:
            api_key, http = _key(self._sealer, config), self._client_http()
            if isinstance(config, ElevenLabsConfig):
                client = ElevenLabsTTS(
                    http,
                    voice_id=config.voice_id,
                    api_key=api_key,
                    model_id=config.model_id,
                    output_format=config.output_format,
                    base_url=config.base_url,
                    name=config.name,
                    timeout=config.timeout,
                )
            elif isinstance(config, AzureSpeechConfig):
                client = AzureTextToSpeech(
                    http,
                    api_key=api_key,
                    region=config.region,
                    endpoint=config.tts_endpoint,
                    voice=config.voice,
                    language=config.language,
                    output_format=config.output_format,
                    name=config.name,
                    timeout=config.timeout,
                )
            elif isinstance(config, GoogleSpeechConfig):
                client = GoogleTextToSpeech(
                    http,
                    api_key=api_key,
                    base_url=config.tts_base_url,
                    language_code=config.language_code,
                    voice_name=config.voice_name,
                    audio_encoding=config.audio_encoding,
                    name=config.name,
                    timeout=config.timeout,
                )
            else:  # pragma: no cover - TenantConfig validates chains
                raise ConfigError(f"provider {config.name!r} cannot serve tts", "chains.tts")
            self._tts[key] = client
        return client

    # -- limits and metering ------------------------------------------------------------------

    def _check_limits(
        self, tenant: TenantConfig, limits: PlanLimits | None, provider: str | None, pending: Usage
    ) -> QuotaExceeded | None:
        if limits is None or self._store is None:
            return None
        now = self._wall_clock()
        used = self._store.usage(tenant.tenant_id, since=period_start(limits.period, now), provider=provider)
        reached = limit_reached(limits, used, pending)
        if reached is None:
            return None
        unit, limit = reached
        scope = f"provider {provider!r}" if provider else "all providers"
        return QuotaExceeded(
            f"tenant {tenant.tenant_id!r} reached its plan limit of {limit:g} {unit} per {limits.period} "
            f"for {scope}; it resets at {_period_end(limits, now)}",
            tenant.tenant_id,
            provider,
            unit,
            limit,
        )

    def _meter(self, tenant_id: str, provider: str, capability: Capability, usage: Usage) -> None:
        if self._store is not None:
            self._store.record_usage(tenant_id, provider, capability, usage, self._wall_clock())

    # -- the chain ----------------------------------------------------------------------------

    def _chain(self, tenant: TenantConfig, capability: Capability) -> Sequence[ProviderConfig | _Local]:
        names = tenant.chains.of(capability)
        local = self._local.of(capability)
        if not names and local is None:
            raise ProviderNotConfigured(f"tenant {tenant.tenant_id!r} has no {capability} provider in its chains")
        providers = [tenant.provider(name) for name in names]
        chain: list[ProviderConfig | _Local] = [p for p in providers if p is not None]
        if local is not None:
            chain.append(_Local(local.name, self._local.timeout))
        return chain

    def _admit(
        self,
        tenant: TenantConfig,
        config: ProviderConfig | _Local,
        pending: Usage,
        reasons: list[str],
        waits: list[float],
    ) -> CircuitBreaker | None:
        """Steps 2a and 2b: the breaker to report to if the provider may be called, else None."""
        over = self._check_limits(tenant, config.limits, config.name, pending)
        if over is not None:
            if config.limits is not None and config.limits.on_exceeded == "throttle":
                raise over
            reasons.append(f"{config.name}: {over}")
            logger.info("tenant %s: %s is over its plan limit; switching", tenant.tenant_id, config.name)
            return None
        breaker = self._breaker(tenant.tenant_id, config.name)
        now = self._clock()
        if not breaker.allow(now):
            wait = breaker.retry_after(now)
            reasons.append(f"{config.name}: {CircuitOpen(f'circuit open, retry in {wait:.1f} s', config.name, wait)}")
            waits.append(wait)
            return None
        return breaker

    def _failed(
        self,
        tenant: TenantConfig,
        config: ProviderConfig | _Local,
        breaker: CircuitBreaker,
        error: ProviderError,
        *,
        reasons: list[str],
        waits: list[float],
    ) -> None:
        now = self._clock()
        before = breaker.state(now)
        if is_unhealthy(error):
            breaker.on_failure(now, retry_after=error.retry_after if isinstance(error, RateLimited) else None)
        else:
            breaker.on_success(now)
        after = breaker.state(now)
        if after is BreakerState.OPEN:
            waits.append(breaker.retry_after(now))
            if before is not BreakerState.OPEN:
                logger.warning(
                    "tenant %s: circuit of %s opened for %.1f s after %d failures",
                    tenant.tenant_id,
                    config.name,
                    breaker.retry_after(now),
                    breaker.consecutive_failures,
                )
        reasons.append(str(error))
        logger.warning(
            "tenant %s: %s failed (%s: %s); trying the next provider",
            tenant.tenant_id,
            config.name,
            type(error).__name__,
            error,
        )

    def _succeeded(self, tenant: TenantConfig, config: ProviderConfig | _Local, breaker: CircuitBreaker) -> None:
        now = self._clock()
        if breaker.state(now) is not BreakerState.CLOSED:
            logger.info("tenant %s: circuit of %s closed again", tenant.tenant_id, config.name)
        breaker.on_success(now)

    async def _route(
        self,
        tenant: TenantConfig,
        capability: Capability,
        pending: Usage,
        timeout: float | None,
        attempt: Callable[[ProviderConfig | _Local], Awaitable[tuple[T, Usage]]],
    ) -> T:
        chain = self._chain(tenant, capability)
        over = self._check_limits(tenant, tenant.limits, None, pending)
        if over is not None:
            raise over
        reasons: list[str] = []
        waits: list[float] = []
        last: ProviderError | None = None
        for config in chain:
            breaker = self._admit(tenant, config, pending, reasons, waits)
            if breaker is None:
                continue
            try:
                async with asyncio.timeout(config.timeout if timeout is None else timeout):
                    result, usage = await attempt(config)
            except TimeoutError:
                last = ProviderTimeout(f"{config.name}: no answer within the call's timeout", config.name)
            except ProviderError as error:
                last = error
            except BaseException:
                breaker.on_abandoned(self._clock())
                raise
            else:
                self._succeeded(tenant, config, breaker)
                self._meter(tenant.tenant_id, config.name, capability, usage)
                return result
            self._failed(tenant, config, breaker, last, reasons=reasons, waits=waits)
        raise self._exhausted(tenant, capability, reasons, waits) from last

    @staticmethod
    def _exhausted(
        tenant: TenantConfig, capability: Capability, reasons: list[str], waits: list[float]
    ) -> AllProvidersFailed:
        return AllProvidersFailed(
            f"tenant {tenant.tenant_id!r}: every {capability} provider failed: " + "; ".join(reasons),
            capability,
            tuple(reasons),
            min(waits) if waits else None,
        )

    # -- the calls ----------------------------------------------------------------------------

    async def chat(
        self,
        tenant_id: str,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        """A chat completion from the first provider of the tenant's chat chain that answers."""
        tenant = self.tenant(tenant_id)
        request = ChatRequest(tuple(messages), None, temperature, max_tokens)

        async def attempt(config: ProviderConfig | _Local) -> tuple[ChatResult, Usage]:
            result = await self._chat_client(tenant, config).complete(request)
            return result, result.usage

        return await self._route(tenant, "chat", Usage(), timeout, attempt)

    async def transcribe(
        self,
        tenant_id: str,
        audio: bytes,
        *,
        content_type: str = "audio/wav",
        language: str | None = None,
        timeout: float | None = None,
    ) -> Transcript:
        """A transcript from the first provider of the tenant's stt chain that answers.

        ``language`` is a BCP-47 tag (``en-US``); each client adapts it to its provider's form.
        """
        tenant = self.tenant(tenant_id)
        info = wav_info(audio)

        async def attempt(config: ProviderConfig | _Local) -> tuple[Transcript, Usage]:
            client = self._stt_client(tenant, config)
            result = await client.transcribe(audio, content_type=content_type, language=language)
            return result, result.usage

        pending = Usage(audio_seconds=info.duration if info else 0.0)
        return await self._route(tenant, "stt", pending, timeout, attempt)

    async def synthesize(self, tenant_id: str, text: str, *, timeout: float | None = None) -> SpeechAudio:
        """Speech from the first provider of the tenant's tts chain that answers, in its configured voice."""
        tenant = self.tenant(tenant_id)

        async def attempt(config: ProviderConfig | _Local) -> tuple[SpeechAudio, Usage]:
            result = await self._tts_client(tenant, config).synthesize(text)
            return result, result.usage

        return await self._route(tenant, "tts", Usage(characters=len(text)), timeout, attempt)

    async def stream_chat(
        self,
        tenant_id: str,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ChatChunk]:
        """Stream a chat answer; falls back between providers until the first chunk arrives.

        The last chunk carries the usage. To stop early, close the iterator (``await it.aclose()``,
        or iterate inside ``contextlib.aclosing(...)``): what was received is then metered at once.
        """
        tenant = self.tenant(tenant_id)
        chain = self._chain(tenant, "chat")
        over = self._check_limits(tenant, tenant.limits, None, Usage())
        if over is not None:
            raise over
        request = ChatRequest(tuple(messages), None, temperature, max_tokens)
        reasons: list[str] = []
        waits: list[float] = []
        last: ProviderError | None = None
        for config in chain:
            client = self._chat_client(tenant, config)
            breaker = self._admit(tenant, config, Usage(), reasons, waits)
            if breaker is None:
                continue
            limit = config.timeout if timeout is None else timeout
            opened = await self._open_stream(client, request, limit, breaker)
            if isinstance(opened, ProviderError):
                last = opened
                self._failed(tenant, config, breaker, last, reasons=reasons, waits=waits)
                continue
            iterator, chunk = opened
            # Committed: text may reach the caller, so no other provider can take over from here.
            self._succeeded(tenant, config, breaker)
            usage: Usage | None = None
            received = 0
            try:
                while True:
                    usage = chunk.usage or usage
                    received += len(chunk.text)
                    yield chunk
                    try:
                        async with asyncio.timeout(limit):
                            chunk = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        breaker.on_failure(self._clock())
                        raise ProviderTimeout(
                            f"{config.name}: the stream stalled for more than {limit:g} s", config.name
                        ) from None
                    except ProviderError as error:
                        if is_unhealthy(error):
                            breaker.on_failure(self._clock())
                        raise
            finally:
                await _close(iterator)
                if usage is None:
                    usage = Usage(prompt_token_estimate(request), math.ceil(received / 4), estimated=True)
                self._meter(tenant.tenant_id, config.name, "chat", usage)
            return
        raise self._exhausted(tenant, "chat", reasons, waits) from last

    async def _open_stream(
        self, client: ChatModel, request: ChatRequest, limit: float, breaker: CircuitBreaker
    ) -> tuple[AsyncIterator[ChatChunk], ChatChunk] | ProviderError:
        """Start a stream and wait for its first chunk; the error instead, if it fails first."""
        iterator = aiter(client.stream(request))
        error: ProviderError
        try:
            async with asyncio.timeout(limit):
                return iterator, await anext(iterator)
        except StopAsyncIteration:
            error = ProviderProtocolError(f"{client.name}: the stream ended without a chunk", client.name)
        except TimeoutError:
            error = ProviderTimeout(f"{client.name}: no first chunk within the call's timeout", client.name)
        except ProviderError as exc:
            error = exc
        except BaseException:
            breaker.on_abandoned(self._clock())
            await _close(iterator)
            raise
        await _close(iterator)
        return error


async def _close(iterator: AsyncIterator[ChatChunk]) -> None:
    """Close an abandoned stream; an error while closing it tells nothing more."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        with contextlib.suppress(ProviderError):
            await close()

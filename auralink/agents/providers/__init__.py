"""BYOK provider routing for the AI plane: chat (LLM), speech to text and text to speech.

Theory of operation
===================

A tenant brings its own keys (BYOK). Its :class:`TenantConfig` names its providers (OpenAI or any
OpenAI-compatible server such as Ollama, vLLM or llama.cpp; Whisper; ElevenLabs; Azure Speech;
Google Speech), with every API key sealed (:class:`KeySealer`, :class:`SealedKey`), and one
fallback chain per capability. A :class:`ProviderRouter` serves the calls::

    sealer = KeySealer.from_env()                       # or KeySealer.from_identity(identity)
    config = TenantConfig(
        tenant_id="acme",
        providers=(
            OpenAIChatConfig(name="openai", model="gpt-4o-mini", api_key=sealer.seal("sk-...")),
            OpenAIChatConfig(name="local", model="llama3.2", base_url="http://127.0.0.1:11434/v1"),
        ),
        chains=Chains(chat=("openai", "local")),
    )
    async with ProviderRouter(sealer=sealer, store=ProviderStore.open(path)) as router:
        router.set_tenant(config)
        answer = await router.chat("acme", [ChatMessage("user", "Hello")])

The layers, each in its own module:

* :mod:`~auralink.agents.providers.types`: the three protocols (:class:`ChatModel`,
  :class:`SpeechToText`, :class:`TextToSpeech`) and their values;
* :mod:`~auralink.agents.providers.wire`: each provider's wire format, sans I/O;
* the httpx clients: :class:`OpenAIChat`, :class:`OpenAITranscriber`, :class:`ElevenLabsTTS`,
  :class:`AzureSpeechToText`, :class:`AzureTextToSpeech`, :class:`GoogleSpeechToText`,
  :class:`GoogleTextToSpeech`;
* :mod:`~auralink.agents.providers.breaker`: the circuit breaker, a pure core;
* :mod:`~auralink.agents.providers.config`: the pydantic BYOK models, sealing, plan limits;
* :mod:`~auralink.agents.providers.store`: tenant configs and metered usage in SQLite;
* :mod:`~auralink.agents.providers.router`: fallback, timeouts, breakers, limits, metering.

Offline providers (:mod:`auralink.agents.speech`: pocketsphinx, a Piper voice) join through
:class:`~auralink.agents.providers.router.LocalProviders`: they end every tenant's chains, and serve
a tenant that brings no keys.

Every error is one of :class:`~auralink.errors.ProviderError`'s family (or a
:class:`~auralink.errors.ConfigError`); httpx's exceptions never escape.
"""

from auralink.agents.providers.azure_speech import AzureSpeechToText, AzureTextToSpeech
from auralink.agents.providers.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from auralink.agents.providers.config import (
    SEALING_KEY_ENV,
    AzureSpeechConfig,
    Chains,
    ElevenLabsConfig,
    GoogleSpeechConfig,
    KeySealer,
    OpenAIChatConfig,
    PlanLimits,
    ProviderConfig,
    SealedKey,
    TenantConfig,
    WhisperConfig,
    parse_tenant_config,
)
from auralink.agents.providers.elevenlabs import ElevenLabsTTS
from auralink.agents.providers.google_speech import GoogleSpeechToText, GoogleTextToSpeech
from auralink.agents.providers.openai_compat import OpenAIChat, OpenAITranscriber
from auralink.agents.providers.router import ProviderRouter
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

__all__ = [
    "SEALING_KEY_ENV",
    "AzureSpeechConfig",
    "AzureSpeechToText",
    "AzureTextToSpeech",
    "BreakerPolicy",
    "BreakerState",
    "Capability",
    "Chains",
    "ChatChunk",
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "ChatResult",
    "CircuitBreaker",
    "ElevenLabsConfig",
    "ElevenLabsTTS",
    "GoogleSpeechConfig",
    "GoogleSpeechToText",
    "GoogleTextToSpeech",
    "KeySealer",
    "OpenAIChat",
    "OpenAIChatConfig",
    "OpenAITranscriber",
    "PlanLimits",
    "ProviderConfig",
    "ProviderRouter",
    "ProviderStore",
    "SealedKey",
    "SpeechAudio",
    "SpeechToText",
    "TenantConfig",
    "TextToSpeech",
    "Transcript",
    "Usage",
    "WhisperConfig",
    "parse_tenant_config",
]

"""The provider-neutral vocabulary: chat messages and results, transcripts, speech, usage, and three protocols.

Theory of operation
===================

Every provider client, cloud or local, speaks one of three small protocols:

* :class:`ChatModel` -- ``complete(request)`` returns a :class:`ChatResult`; ``stream(request)``
  yields :class:`ChatChunk` deltas, the last of which may carry the provider's token counts;
* :class:`SpeechToText` -- ``transcribe(audio, content_type=..., language=...)`` returns a
  :class:`Transcript`;
* :class:`TextToSpeech` -- ``synthesize(text, voice=...)`` returns :class:`SpeechAudio`.

The router (:mod:`auralink.agents.providers.router`) only ever sees these protocols, so an offline
default (pocketsphinx, a local voice) can stand in a fallback chain beside the cloud clients.

Each result carries a :class:`Usage`: the units a provider bills (tokens, seconds of audio,
characters). When a provider reports them, they are the provider's numbers; otherwise the client
estimates them (four characters to a token, the WAV header's duration) and sets
``Usage.estimated``, so a plan limit can never be dodged by a server that reports nothing.

Everything here is a frozen, slotted dataclass or a protocol: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Capability",
    "ChatChunk",
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "ChatResult",
    "Role",
    "SpeechAudio",
    "SpeechToText",
    "TextToSpeech",
    "Transcript",
    "Usage",
    "estimate_tokens",
]

Role = Literal["system", "user", "assistant"]
"""Who said a chat message."""

Capability = Literal["chat", "stt", "tts"]
"""What a provider does: chat completions, speech to text, or text to speech."""


def estimate_tokens(text: str) -> int:
    """A rough token count for text a provider did not count: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call consumed, in the units providers bill."""

    input_tokens: int = 0
    """Prompt tokens (chat), or audio tokens of token-billed transcription models."""
    output_tokens: int = 0
    """Completion tokens (chat), or text tokens of token-billed transcription models."""
    audio_seconds: float = 0.0
    """Seconds of audio transcribed (STT) or produced (TTS, when the format tells)."""
    characters: int = 0
    """Characters of text synthesised (TTS)."""
    estimated: bool = False
    """True if any number was estimated here rather than reported by the provider."""

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.audio_seconds + other.audio_seconds,
            self.characters + other.characters,
            self.estimated or other.estimated,
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation."""

    role: Role
    """``system``, ``user`` or ``assistant``."""
    content: str
    """The text of the message."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion to ask for; the model defaults to the one the provider is configured with."""

    messages: tuple[ChatMessage, ...]
    """The conversation so far, oldest first."""
    model: str | None = None
    """A model name for this call only; None uses the provider's configured model."""
    temperature: float | None = None
    """Sampling temperature; None leaves the provider's default."""
    max_tokens: int | None = None
    """The most tokens to generate; None leaves the provider's default."""


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A complete chat answer."""

    text: str
    """The assistant's reply (empty if the model returned none, for example a refusal)."""
    model: str
    """The model that answered, as the provider names it."""
    finish_reason: str | None
    """Why generation stopped (``stop``, ``length``...), as the provider says."""
    usage: Usage
    """Tokens consumed."""
    provider: str = ""
    """The name of the provider that answered, from the tenant's config."""


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One piece of a streamed chat answer."""

    text: str
    """New text since the previous chunk (may be empty)."""
    finish_reason: str | None = None
    """Set on the chunk that ends the answer."""
    usage: Usage | None = None
    """Tokens for the whole answer; only on the last chunk, and only if the provider counted them."""
    provider: str = ""
    """The name of the provider that streams the answer."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """What speech to text heard."""

    text: str
    """The transcript; empty if the audio held no recognisable speech."""
    language: str | None
    """The language, if the provider said which."""
    confidence: float | None
    """The provider's confidence from 0 to 1, if it gave one (not comparable across providers)."""
    usage: Usage
    """Seconds of audio (and tokens, for token-billed models)."""
    provider: str = ""
    """The name of the provider that transcribed."""


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """Synthesised speech."""

    audio: bytes = field(repr=False)
    """The encoded audio."""
    content_type: str
    """Its media type (``audio/mpeg``, ``audio/wav``...)."""
    usage: Usage
    """Characters synthesised."""
    provider: str = ""
    """The name of the provider that spoke."""


@runtime_checkable
class ChatModel(Protocol):
    """A chat (LLM) provider."""

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        ...

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The whole answer at once."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer as it is generated; close the iterator to stop early."""
        ...


@runtime_checkable
class SpeechToText(Protocol):
    """A speech-to-text provider."""

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        ...

    async def transcribe(
        self, audio: bytes, *, content_type: str = "audio/wav", language: str | None = None
    ) -> Transcript:
        """Transcribe a short recording (WAV unless ``content_type`` says otherwise)."""
        ...


@runtime_checkable
class TextToSpeech(Protocol):
    """A text-to-speech provider."""

    @property
    def name(self) -> str:
        """The provider's name in the tenant's config."""
        ...

    async def synthesize(self, text: str, *, voice: str | None = None) -> SpeechAudio:
        """Speak ``text``, in ``voice`` or the configured one."""
        ...

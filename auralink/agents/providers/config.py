"""Per-tenant BYOK configuration (pydantic), sealed API keys, and plan limits.

Theory of operation
===================

A :class:`TenantConfig` says, for one tenant, which providers it brings keys for
(:data:`ProviderConfig`, one model per kind of provider, told apart by ``kind``), the fallback
chain for each capability (:class:`Chains`: chat, stt, tts, each a list of provider names tried in
order), and optional :class:`PlanLimits`, for the tenant as a whole or per provider. Models are
frozen and refuse unknown fields, so a typo in a key is an error rather than a silent default.
Build them from untrusted data with :func:`parse_tenant_config`, which turns pydantic's
``ValidationError`` into a :class:`~auralink.errors.ConfigError` naming the field.

Sealed keys
-----------
An API key never sits in a config in clear. :class:`KeySealer` encrypts it with
XSalsa20-Poly1305 (``nacl.secret.SecretBox``, as the keystore does) into a :class:`SealedKey`:
the base64 ``box`` (nonce and ciphertext) and a ``sealer`` fingerprint that names the sealing key
without revealing it, so opening with the wrong key says so instead of failing obscurely. The
32-byte sealing key comes from:

* the environment, :meth:`KeySealer.from_env` (``AURALINK_PROVIDER_SEALING_KEY``, base64); or
* the node's identity, :meth:`KeySealer.from_identity`: BLAKE2b keyed with the identity's seed and
  personalised for this one use, so the keystore (passphrase-sealed or not) protects the keys; or
* the caller, ``KeySealer(key)``.

Keys only travel over TLS: a provider with a key whose URL is plain ``http://`` is refused unless
the host is a loopback address (a local Ollama or llama.cpp server). Only :class:`SealedKey` is ever
serialised: a config written to the provider database or to a file
holds ciphertext. A key is opened (:meth:`KeySealer.unseal`) only when a client is built, into a
pydantic ``SecretStr``, whose ``repr`` and ``str`` are ``'**********'``. :class:`KeySealer` itself
shows only its fingerprint. A tampered box, or one sealed under another key, raises
:class:`~auralink.errors.SealedKeyError`.

Plan limits
-----------
:class:`PlanLimits` caps tokens, seconds of audio and characters per period (a UTC calendar day
or month, :func:`period_start`). ``on_exceeded="throttle"`` refuses the call with
:class:`~auralink.errors.QuotaExceeded`; ``"switch"`` (per-provider limits only) skips that
provider and tries the next one in the chain. :func:`limit_reached` is the pure check the router
runs before each call, with the usage metered so far and what the call will cost if that is
known in advance (characters of text to speak, seconds of audio to transcribe).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import nacl.exceptions
import nacl.secret
import nacl.utils
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from auralink.agents.providers.types import Capability, Usage
from auralink.errors import ConfigError, SealedKeyError
from auralink.identity.keys import Identity

__all__ = [
    "SEALING_KEY_ENV",
    "AzureSpeechConfig",
    "Chains",
    "ElevenLabsConfig",
    "GoogleSpeechConfig",
    "KeySealer",
    "OpenAIChatConfig",
    "PlanLimits",
    "ProviderConfig",
    "SealedKey",
    "TenantConfig",
    "WhisperConfig",
    "capabilities_of",
    "limit_reached",
    "parse_tenant_config",
    "period_start",
]

SEALING_KEY_ENV = "AURALINK_PROVIDER_SEALING_KEY"
"""The environment variable :meth:`KeySealer.from_env` reads: 32 bytes, base64."""

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Name = Annotated[str, Field(pattern=_NAME)]
"""A tenant or provider name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""


# ---------------------------------------------------------------------------------------------
# Sealing


def _fingerprint(key: bytes) -> str:
    return hashlib.blake2b(key, digest_size=4, person=b"auralink-seal-fp").hexdigest()


class SealedKey(BaseModel):
    """An API key sealed with a :class:`KeySealer`: safe to store, log or print."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sealer: str = Field(pattern=r"^[0-9a-f]{8}$")
    """The fingerprint of the sealing key (8 hex digits): which key opens this box."""
    box: str = Field(min_length=1, max_length=4096)
    """Base64 of the SecretBox nonce and ciphertext."""

    def __repr__(self) -> str:
        return f"SealedKey(sealer={self.sealer!r})"

    def __str__(self) -> str:
        return repr(self)


class KeySealer:
    """Seals and opens API keys with one 32-byte key; see the module docstring for where the key comes from."""

    __slots__ = ("_box", "_fingerprint")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ConfigError(f"a sealing key is {nacl.secret.SecretBox.KEY_SIZE} bytes", "sealing_key")
        self._box = nacl.secret.SecretBox(key)
        self._fingerprint = _fingerprint(key)

    def __repr__(self) -> str:
        return f"KeySealer(fingerprint={self._fingerprint!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a KeySealer holds a secret key and cannot be pickled")

    @property
    def fingerprint(self) -> str:
        """8 hex digits that name the sealing key without revealing it."""
        return self._fingerprint

    @classmethod
    def generate(cls) -> KeySealer:
        """A sealer with a fresh random key (for tests, or to print one for the environment)."""
        return cls(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, variable: str = SEALING_KEY_ENV) -> KeySealer:
        """The sealer whose key is the base64 value of ``variable`` (``os.environ`` unless ``environ``)."""
        value = (os.environ if environ is None else environ).get(variable)
        if not value:
            raise ConfigError(
                f"{variable} is not set; set it to 32 random bytes in base64 "
                "(python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')",
                variable,
            )
        try:
            key = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{variable} is not valid base64", variable) from None
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ConfigError(f"{variable} must decode to 32 bytes, not {len(key)}", variable)
        return cls(key)

    @classmethod
    def from_identity(cls, identity: Identity) -> KeySealer:
        """The sealer derived from a node identity's secret seed (BLAKE2b, personalised for BYOK keys)."""
        key = hashlib.blake2b(b"", key=identity.seed, digest_size=32, person=b"auralink-byok-v1").digest()
        return cls(key)

    def seal(self, api_key: str | SecretStr) -> SealedKey:
        """Seal an API key; a fresh random nonce each time, so equal keys give unequal boxes."""
        plain = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not isinstance(plain, str) or not plain:
            raise ConfigError("an API key is a non-empty string", "api_key")
        box = self._box.encrypt(plain.encode("utf-8"))
        return SealedKey(sealer=self._fingerprint, box=base64.b64encode(bytes(box)).decode("ascii"))

    def unseal(self, sealed: SealedKey) -> SecretStr:
        """Open a sealed key, as a ``SecretStr`` that does not show it in ``repr`` or ``str``."""
        if sealed.sealer != self._fingerprint:
            raise SealedKeyError(
                f"this API key was sealed with key {sealed.sealer}, but the sealing key is {self._fingerprint}; "
                f"set {SEALING_KEY_ENV} (or the node identity) that sealed it, or seal the key again",
                "api_key",
            )
        try:
            plain = self._box.decrypt(base64.b64decode(sealed.box, validate=True)).decode("utf-8")
        except (binascii.Error, ValueError, nacl.exceptions.CryptoError):
            raise SealedKeyError("a sealed API key was altered or truncated; seal the key again", "api_key") from None
        return SecretStr(plain)


# ---------------------------------------------------------------------------------------------
# Limits


class PlanLimits(BaseModel):
    """Caps per period; None means no cap for that unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: Literal["day", "month"] = "month"
    """The metering period: a UTC calendar day or month."""
    max_tokens: int | None = Field(default=None, ge=0)
    """Chat tokens (input and output) per period."""
    max_audio_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Seconds of audio transcribed per period."""
    max_characters: int | None = Field(default=None, ge=0)
    """Characters synthesised per period."""
    on_exceeded: Literal["throttle", "switch"] = "throttle"
    """Refuse the call (``throttle``), or skip this provider for the next in the chain (``switch``)."""


def period_start(period: Literal["day", "month"], now: float) -> float:
    """The start (wall-clock seconds, UTC) of the calendar day or month that holds ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.timestamp()


def limit_reached(limits: PlanLimits, used: Usage, pending: Usage) -> tuple[str, float] | None:
    """The unit and limit a call would break, or None. ``pending`` is what the call costs, if known.

    A unit is over its limit when what was used already reaches it, or when what was used plus
    what the call is known to cost exceeds it.
    """
    checks = (
        ("tokens", limits.max_tokens, used.tokens, pending.tokens),
        ("audio_seconds", limits.max_audio_seconds, used.audio_seconds, pending.audio_seconds),
        ("characters", limits.max_characters, used.characters, pending.characters),
    )
    for unit, limit, spent, cost in checks:
        if limit is not None and (spent >= limit or spent + cost > limit):
            return unit, float(limit)
    return None


# ---------------------------------------------------------------------------------------------
# Providers


_URL_FIELDS = ("base_url", "stt_endpoint", "tts_endpoint", "stt_base_url", "tts_base_url")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Provider(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _urls(self) -> _Provider:
        for name in _URL_FIELDS:
            value = getattr(self, name, None)
            if value is None:
                continue
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
                raise ValueError(f"{name} must be an http(s) URL without query or fragment, not {value!r}")
            if self.api_key is not None and url.scheme == "http" and not _loopback(url.hostname):
                raise ValueError(f"{name}: an API key is only sent over https (or to a loopback address)")
        return self

    name: Name
    """The provider's name in this tenant's config, used by the chains (``openai``, ``azure-eu``...)."""
    api_key: SealedKey | None = None
    """The tenant's key, sealed; None for a local server that needs none."""
    timeout: float = Field(default=30.0, gt=0, le=600, allow_inf_nan=False)
    """Seconds a call may take (for a stream: until each next piece arrives)."""
    limits: PlanLimits | None = None
    """Caps on this provider's use by this tenant."""


class OpenAIChatConfig(_Provider):
    """An OpenAI-compatible chat server: OpenAI itself, Ollama, vLLM, llama.cpp..."""

    kind: Literal["openai-chat"] = "openai-chat"
    base_url: str = "https://api.openai.com/v1"
    """The API root, version segment included (``http://127.0.0.1:11434/v1`` for Ollama)."""
    model: str = Field(min_length=1)
    """The model to ask for."""
    stream_usage: bool = True
    """Ask streams for a usage chunk (``stream_options``); turn off for servers that refuse it."""


class WhisperConfig(_Provider):
    """OpenAI's transcription endpoint (Whisper), or a server that copies it."""

    kind: Literal["openai-whisper"] = "openai-whisper"
    base_url: str = "https://api.openai.com/v1"
    """The API root, version segment included."""
    model: str = "whisper-1"
    """The transcription model."""
    response_format: Literal["json", "verbose_json"] = "verbose_json"
    """``verbose_json`` reports the duration usage is metered in (``gpt-4o-transcribe`` needs ``json``)."""
    language: str | None = None
    """An ISO-639-1 hint (``en``), or None to let the model detect it."""


class ElevenLabsConfig(_Provider):
    """ElevenLabs text to speech."""

    kind: Literal["elevenlabs-tts"] = "elevenlabs-tts"
    base_url: str = "https://api.elevenlabs.io"
    """The API root, without the version segment."""
    voice_id: str = Field(min_length=1)
    """The default voice."""
    model_id: str = "eleven_multilingual_v2"
    """The speech model."""
    output_format: str = "mp3_44100_128"
    """``codec_samplerate_bitrate`` as ElevenLabs names it."""


class AzureSpeechConfig(_Provider):
    """Azure AI Speech: speech to text (short audio) and text to speech, with one resource key."""

    kind: Literal["azure-speech"] = "azure-speech"
    region: str | None = Field(default=None, pattern=r"^[a-z0-9]{1,40}$")
    """The resource's region (``westeurope``); builds the regional endpoints."""
    stt_endpoint: str | None = None
    """Replaces ``https://{region}.stt.speech.microsoft.com``."""
    tts_endpoint: str | None = None
    """Replaces ``https://{region}.tts.speech.microsoft.com``."""
    language: str = "en-US"
    """The recognition language and the SSML ``xml:lang``."""
    voice: str = "en-US-AvaMultilingualNeural"
    """The default voice."""
    output_format: str = "riff-24khz-16bit-mono-pcm"
    """The ``X-Microsoft-OutputFormat`` of synthesis."""

    @model_validator(mode="after")
    def _endpoints(self) -> AzureSpeechConfig:
        if self.region is None and not (self.stt_endpoint and self.tts_endpoint):
            raise ValueError("give the Azure region, or both stt_endpoint and tts_endpoint")
        return self


class GoogleSpeechConfig(_Provider):
    """Google Cloud Speech-to-Text and Text-to-Speech, with one API key."""

    kind: Literal["google-speech"] = "google-speech"
    stt_base_url: str = "https://speech.googleapis.com"
    """Speech-to-Text's root, without the version segment."""
    tts_base_url: str = "https://texttospeech.googleapis.com"
    """Text-to-Speech's root, without the version segment."""
    language_code: str = "en-US"
    """BCP-47 language of recognition and synthesis."""
    voice_name: str | None = None
    """The default voice (``en-US-Neural2-C``), or None for Google's choice for the language."""
    audio_encoding: Literal["LINEAR16", "MP3", "OGG_OPUS", "MULAW", "ALAW"] = "LINEAR16"
    """The encoding of synthesised audio."""
    sample_rate_hertz: int | None = Field(default=None, ge=8000, le=48000)
    """The sample rate of Ogg Opus audio sent for recognition (WAV and FLAC say their own)."""


ProviderConfig = Annotated[
    OpenAIChatConfig | WhisperConfig | ElevenLabsConfig | AzureSpeechConfig | GoogleSpeechConfig,
    Field(discriminator="kind"),
]
"""One provider of a tenant, told apart by ``kind``."""

_CAPABILITIES: dict[str, frozenset[Capability]] = {
    "openai-chat": frozenset({"chat"}),
    "openai-whisper": frozenset({"stt"}),
    "elevenlabs-tts": frozenset({"tts"}),
    "azure-speech": frozenset({"stt", "tts"}),
    "google-speech": frozenset({"stt", "tts"}),
}


def capabilities_of(provider: ProviderConfig) -> frozenset[Capability]:
    """What a provider of this kind can do."""
    return _CAPABILITIES[provider.kind]


class Chains(BaseModel):
    """The fallback chain of each capability: provider names, tried in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chat: tuple[Name, ...] = ()
    """Chat completion providers."""
    stt: tuple[Name, ...] = ()
    """Speech to text providers."""
    tts: tuple[Name, ...] = ()
    """Text to speech providers."""

    def of(self, capability: Capability) -> tuple[str, ...]:
        """The chain of ``capability``."""
        return {"chat": self.chat, "stt": self.stt, "tts": self.tts}[capability]


class TenantConfig(BaseModel):
    """Everything the router knows about one tenant: its providers, chains and limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: Name
    """The tenant (an organisation, an app, or an AuraID's short form)."""
    providers: tuple[ProviderConfig, ...] = ()
    """The providers the tenant brings keys for."""
    chains: Chains = Chains()
    """Which providers serve which capability, in fallback order."""
    limits: PlanLimits | None = None
    """Caps on the tenant's use of all providers together (always ``throttle``)."""

    @model_validator(mode="after")
    def _consistent(self) -> TenantConfig:
        names = [p.name for p in self.providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique; repeated: {', '.join(duplicates)}")
        by_name = {p.name: p for p in self.providers}
        capabilities: tuple[Capability, ...] = ("chat", "stt", "tts")
        for capability in capabilities:
            chain = self.chains.of(capability)
            if len(set(chain)) != len(chain):
                raise ValueError(f"the {capability} chain names a provider twice")
            for name in chain:
                if name not in by_name:
                    raise ValueError(f"the {capability} chain names {name!r}, which is not a provider of this tenant")
                if capability not in capabilities_of(by_name[name]):
                    raise ValueError(f"provider {name!r} ({by_name[name].kind}) cannot serve {capability}")
        if self.limits is not None and self.limits.on_exceeded != "throttle":
            raise ValueError("tenant-wide limits can only throttle (switching providers would not help)")
        return self

    def provider(self, name: str) -> ProviderConfig | None:
        """The provider called ``name``, if any."""
        return next((p for p in self.providers if p.name == name), None)


def parse_tenant_config(data: Mapping[str, Any] | str | bytes) -> TenantConfig:
    """Validate a tenant config from a mapping or JSON; errors are :class:`~auralink.errors.ConfigError`."""
    try:
        if isinstance(data, str | bytes):
            return TenantConfig.model_validate_json(data)
        return TenantConfig.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        where = f"{field}: " if field else ""
        raise ConfigError(f"invalid tenant config: {where}{first['msg']}", field) from None

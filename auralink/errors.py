"""The one exception tree of the ``auralink`` SDK.

Every error that AuraLink raises on purpose derives from :class:`AuralinkError`, so an
application can catch everything of ours with one clause and let real bugs through.
The tree keeps apart who is at fault, in the manner of h11 and httpx:

```text
AuralinkError
├── LocalProtocolError          you (the caller) asked for something the protocol forbids
│   └── RecordTooLarge          a record would encode to more than 1000 bytes
├── RemoteProtocolError         bytes from a peer or a file violate the format
│   ├── FrameTooLarge           a length prefix exceeds the frame-size limit
│   ├── UnknownFrameType        a type tag nobody registered
│   └── UnsupportedVersion      a version byte this build does not speak
├── IdentityError               identities, handles and signed records
│   ├── InvalidAuraID           a mistyped or malformed AuraID string
│   ├── InvalidHandle           a handle outside the ``@name.aura`` rules
│   ├── SignatureError          a forged or tampered signature, or the wrong key
│   ├── RecordExpired           ``expires_at`` has passed
│   ├── RecordFromFuture        ``issued_at`` lies beyond the allowed clock skew
│   ├── RecordLifetimeTooLong   valid for longer than the protocol allows (squatting)
│   ├── StaleRecord             a higher ``seq`` is already known (replay)
│   ├── HandleTaken             another key holds an unexpired claim to the handle
│   ├── ResolveFailed           no valid record says who holds a handle or where an AuraID is
│   └── KeystoreError           the key file cannot be used
│       ├── KeystorePermissionError  the file is readable by others (mode not 0600)
│       ├── KeystoreCorrupt          the file is truncated or malformed
│       ├── WrongPassphrase          the passphrase does not open the sealed key
│       └── KeystoreExists           refusing to overwrite an existing identity
├── ConfigError                 a config file, environment variable or flag is invalid
│   └── SealedKeyError          a sealed BYOK API key does not open with this sealing key
├── ProviderError               a BYOK cloud or local AI provider could not serve a call
│   ├── ProviderUnavailable     no usable answer: unreachable, reset, 5xx, or the circuit is open
│   │   ├── ProviderTimeout     no answer within the call's timeout
│   │   ├── CircuitOpen         not called: its breaker is open after repeated failures
│   │   ├── AllProvidersFailed  every provider in a fallback chain failed (``reasons`` says how)
│   │   └── ProviderNotInstalled  a local engine's package or program is missing (the message names the extra)
│   ├── RateLimited             HTTP 429; ``retry_after`` says when to try again, if the provider said
│   ├── ProviderQuotaExhausted  the provider account is out of credit (the provider's limit, not ours)
│   ├── ProviderAuthFailed      the provider refused the tenant's API key
│   ├── ProviderRejected        the provider refused this request (another 4xx)
│   │   └── UnsupportedAudio    a local engine cannot take this audio (container, encoding, sample rate)
│   ├── ProviderProtocolError   a response that breaks the provider's wire format (also a RemoteProtocolError)
│   ├── QuotaExceeded           the tenant reached a plan limit of its own BYOK config
│   ├── ProviderNotConfigured   the tenant has no provider for the capability (or is unknown)
│   └── ProviderStoreError      the provider database (tenant configs, usage) cannot be used
├── ToolError                   an agent tool (a tool of an MCP server) could not be listed or called
│   ├── ToolUnavailable         the tool server did not start, failed its handshake, or went away
│   │   └── ToolTimeout         no answer within the connect or call timeout
│   ├── ToolRejected            the call was refused, before sending or by the server (``code``)
│   │   ├── ToolNotFound        the server lists no tool of that name
│   │   └── ToolArgumentsInvalid  the arguments break the tool's input schema (``path`` says where)
│   ├── ToolFailed              the tool ran and reported an error (``ToolResult.raise_for_error``)
│   └── ToolProtocolError       the server broke the MCP protocol (also a RemoteProtocolError)
├── AgentMemoryError            the agent memory store (``auralink.agents.memory``) refused or failed an operation
│   ├── MemoryInputError        bad text, kind, id, provenance, weights or embedding dims (also a LocalProtocolError)
│   ├── MemoryNotFound          no memory with that id belongs to that identity
│   ├── EmbedderMismatch        the database's vectors were made by another embedder (name or dims)
│   └── MemoryStoreError        the memory database cannot be opened, read or written, or another process has it
├── CallError                   a call (``auralink.calls``) could not be placed, answered or carried on
│   ├── CallStateError          you asked a call for something its state forbids (also a LocalProtocolError)
│   ├── SignalingProtocolError  the peer broke ``auralink/signal/1`` (also a RemoteProtocolError)
│   ├── CallFailed              the call ended before it connected (``reason`` says why)
│   │   └── CallDeclined        the callee declined or was busy
│   ├── CallsNotInstalled       aiortc or PyAV is missing: install ``auralink[calls]``
│   ├── TurnRefused             a relay node refused us TURN credentials (``reason`` says why)
│   └── RoomError               a room (``auralink.calls.room``) refused an action or ended
│       ├── GrantError          a capability grant does not allow what was asked
│       │   ├── GrantForged         its signature is not the room owner's (tampered, or signed by another key)
│       │   ├── GrantExpired        its ``expires_at`` has passed
│       │   ├── GrantNotYetValid    its ``not_before`` lies ahead (beyond the allowed clock skew)
│       │   ├── GrantMismatch       it is for another room or another participant
│       │   └── NotPermitted        it lacks the capability for the action (or an admin muted you)
│       ├── RoomProtocolError   the peer broke ``auralink/room/2`` (also a RemoteProtocolError)
│       └── RoomClosed          you left, were kicked, or the SFU went away (``reason`` says which)
└── ConnectionError_            a connection or stream to a peer ended or could not start
    ├── ConnectionClosed        closed on purpose, by this side or cleanly by the peer
    └── ConnectionBroken        broken by the network or by a peer that misbehaved
        ├── DialFailed          no address of the peer answered with a working handshake
        ├── PeerIdentityMismatch  the peer proved a different key than the AuraID dialled
        └── StreamReset         the peer reset a stream (``error_code`` says why)
            └── ProtocolNotSupported  the peer does not serve the stream protocol asked for
```

Rules:

* Errors carry structured attributes (``field``, ``path``, ``frame_type``...) besides the message,
  and the message says what to do next where there is something to do.
* Exceptions from lower layers (pynacl, ``struct``, ``json``, ``os``) are translated once, at the
  boundary where they occur, with ``raise ... from exc``.
* A peer that misbehaves never raises into user code: adapters catch :class:`RemoteProtocolError`
  and end that peer's connection with an event.

``auralink_node.errors`` extends this tree for the daemon; it does not start a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AgentMemoryError",
    "AuralinkError",
    "CallDeclined",
    "CallError",
    "CallFailed",
    "CallStateError",
    "CallsNotInstalled",
    "ConfigError",
    "ConnectionBroken",
    "ConnectionClosed",
    "ConnectionError_",
    "DialFailed",
    "EmbedderMismatch",
    "FrameTooLarge",
    "GrantError",
    "GrantExpired",
    "GrantForged",
    "GrantMismatch",
    "GrantNotYetValid",
    "HandleTaken",
    "IdentityError",
    "InvalidAuraID",
    "InvalidHandle",
    "KeystoreCorrupt",
    "KeystoreError",
    "KeystoreExists",
    "KeystorePermissionError",
    "LocalProtocolError",
    "MemoryInputError",
    "MemoryNotFound",
    "MemoryStoreError",
    "NotPermitted",
    "PeerIdentityMismatch",
    "AllProvidersFailed",
    "CircuitOpen",
    "ProtocolNotSupported",
    "ProviderAuthFailed",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderNotInstalled",
    "ProviderProtocolError",
    "ProviderQuotaExhausted",
    "ProviderRejected",
    "ProviderStoreError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExceeded",
    "RateLimited",
    "RecordExpired",
    "RecordFromFuture",
    "RecordLifetimeTooLong",
    "RecordTooLarge",
    "RemoteProtocolError",
    "ResolveFailed",
    "RoomClosed",
    "RoomError",
    "RoomProtocolError",
    "SealedKeyError",
    "SignatureError",
    "StaleRecord",
    "StreamReset",
    "ToolArgumentsInvalid",
    "ToolError",
    "ToolFailed",
    "ToolNotFound",
    "ToolProtocolError",
    "ToolRejected",
    "ToolTimeout",
    "ToolUnavailable",
    "TurnRefused",
    "UnknownFrameType",
    "UnsupportedAudio",
    "UnsupportedVersion",
    "WrongPassphrase",
    "rebuild_error",
]


class AuralinkError(Exception):
    """Root of every error AuraLink raises on purpose."""

    def details(self) -> dict[str, Any]:
        """The structured attributes, JSON-ready, for carrying the error across a process boundary."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in vars(self).items()
            if not name.startswith("_") and isinstance(value, str | int | float | bool | tuple | type(None))
        }


def rebuild_error(kind: str, message: str, details: Mapping[str, Any]) -> AuralinkError | None:
    """The inverse of :meth:`AuralinkError.details`: an instance of the class named ``kind``, or None.

    Used where an error crossed a process boundary (the daemon's control API), so that an app sees
    the same class, message and attributes whichever side raised it.
    """
    cls = globals().get(kind)
    if not (isinstance(cls, type) and issubclass(cls, AuralinkError)):
        return None
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    for name, value in details.items():
        setattr(error, name, tuple(value) if isinstance(value, list) else value)
    return error


class LocalProtocolError(AuralinkError):
    """The caller asked for something the protocol forbids (a bug on our side of the wire)."""


class RecordTooLarge(LocalProtocolError):
    """A record would encode to more bytes than the protocol allows."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"record encodes to {size} bytes, over the {limit}-byte limit; list fewer addresses, relays or protocols"
        )
        self.size = size
        self.limit = limit


class RemoteProtocolError(AuralinkError):
    """Bytes from a peer (or from a file) violate the wire format."""


class FrameTooLarge(RemoteProtocolError):
    """A frame's length prefix exceeds the negotiated limit; nothing was allocated for it."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the {limit}-byte limit")
        self.length = length
        self.limit = limit


class UnknownFrameType(RemoteProtocolError):
    """A frame carries a type tag that no registered message uses."""

    def __init__(self, frame_type: int, protocol: str) -> None:
        super().__init__(f"unknown frame type {frame_type:#x} for protocol {protocol!r}")
        self.frame_type = frame_type
        self.protocol = protocol


class UnsupportedVersion(RemoteProtocolError):
    """A version byte this build does not speak."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(f"unsupported version {version} (this build speaks version {supported})")
        self.version = version
        self.supported = supported


class IdentityError(AuralinkError):
    """Problems with identities, handles, signed records or the keystore."""


class InvalidAuraID(IdentityError, ValueError):
    """An AuraID string is malformed or fails its checksum (most often a typo)."""


class InvalidHandle(IdentityError, ValueError):
    """A handle breaks the ``@name.aura`` rules."""


class SignatureError(IdentityError):
    """A signature does not verify: the record was forged, tampered with or signed by another key."""


class RecordExpired(IdentityError):
    """The record's ``expires_at`` is not in the future."""


class RecordFromFuture(IdentityError):
    """The record's ``issued_at`` lies further in the future than the allowed clock skew."""


class RecordLifetimeTooLong(IdentityError):
    """The record is valid for longer than the protocol allows; it must be renewed instead."""


class StaleRecord(IdentityError):
    """A record with a higher (or equal) ``seq`` is already known: this one is old or replayed."""


class HandleTaken(IdentityError):
    """Another key holds an unexpired claim to this handle."""


class ResolveFailed(IdentityError):
    """No valid record says who holds a handle (or where an AuraID can be reached)."""

    def __init__(self, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


class KeystoreError(IdentityError):
    """The key file cannot be read, opened or written."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class KeystorePermissionError(KeystoreError):
    """The key file can be read by users other than its owner."""


class KeystoreCorrupt(KeystoreError):
    """The key file is truncated, malformed or does not match its own public key."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the sealed key."""


class KeystoreExists(KeystoreError):
    """An identity already exists where a new one was to be written."""


class ConfigError(AuralinkError, ValueError):
    """A config file, environment variable or command-line flag has an invalid value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SealedKeyError(ConfigError):
    """A sealed BYOK API key does not open: another sealing key, or the sealed bytes were altered."""


# -- AI providers (auralink.agents.providers) -------------------------------------------------


class ProviderError(AuralinkError):
    """A BYOK cloud or local AI provider (chat, speech to text, text to speech) could not serve a call."""

    def __init__(self, message: str, provider: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        """The provider's name in the tenant's config (``openai``, ``azure``...), if one is concerned."""
        self.status = status
        """The HTTP status the provider answered with, if it answered."""


class ProviderUnavailable(ProviderError):
    """No usable answer: the provider was unreachable, broke the connection, answered 5xx, or was skipped."""


class ProviderTimeout(ProviderUnavailable):
    """The provider did not answer within the call's timeout."""


class CircuitOpen(ProviderUnavailable):
    """The provider was not called: its circuit breaker is open after repeated failures (or a Retry-After)."""

    def __init__(self, message: str, provider: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, provider)
        self.retry_after = retry_after
        """Seconds until the breaker lets a probe call through."""


class AllProvidersFailed(ProviderUnavailable):
    """Every provider in a fallback chain failed or was skipped; ``reasons`` has one line per provider."""

    def __init__(
        self, message: str, capability: str, reasons: tuple[str, ...] = (), retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.capability = capability
        """``chat``, ``stt`` or ``tts``."""
        self.reasons = reasons
        """Why each provider of the chain was not used, in chain order."""
        self.retry_after = retry_after
        """Seconds until the earliest provider that asked for a pause (429, open circuit) may be tried again."""


class ProviderNotInstalled(ProviderUnavailable):
    """A local engine (pocketsphinx, a Piper voice, espeak-ng) is not installed; the message says what to install."""

    def __init__(self, message: str, provider: str | None = None, requirement: str = "") -> None:
        super().__init__(message, provider)
        self.requirement = requirement
        """What is missing: a Python distribution (``pocketsphinx``) or a program (``espeak-ng``)."""


class RateLimited(ProviderError):
    """The provider answered HTTP 429 Too Many Requests."""

    def __init__(
        self, message: str, provider: str | None = None, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider, status)
        self.retry_after = retry_after
        """Seconds to wait, from the provider's ``Retry-After`` header; None if it did not say."""


class ProviderQuotaExhausted(ProviderError):
    """The provider says the tenant's account is out of credit or quota; add credit or use another provider."""


class ProviderAuthFailed(ProviderError):
    """The provider refused the tenant's API key (missing, wrong, revoked, or for another region)."""


class ProviderRejected(ProviderError):
    """The provider refused this request as invalid (a 4xx other than 401, 403 and 429)."""

    def __init__(
        self, message: str, provider: str | None = None, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, provider, status)
        self.code = code
        """The provider's own error code, when its error body carries one."""


class UnsupportedAudio(ProviderRejected):
    """A local speech engine cannot take this audio: not WAV, an encoding it cannot read, or too low a sample rate."""


class ProviderProtocolError(ProviderError, RemoteProtocolError):
    """A provider's response breaks its documented wire format (bad JSON, a missing field, a bad stream)."""


class QuotaExceeded(ProviderError):
    """The tenant reached a plan limit of its BYOK config; calls are throttled until the period ends."""

    def __init__(
        self, message: str, tenant: str, provider: str | None = None, unit: str = "", limit: float = 0.0
    ) -> None:
        super().__init__(message, provider)
        self.tenant = tenant
        """The tenant whose limit was reached."""
        self.unit = unit
        """``tokens``, ``audio_seconds`` or ``characters``."""
        self.limit = limit
        """The limit for the period, in ``unit``."""


class ProviderNotConfigured(ProviderError):
    """The tenant is unknown, or its config names no provider for the capability asked for."""


class ProviderStoreError(ProviderError):
    """The provider database (tenant configs and usage) cannot be opened, read or written."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


# -- agent memory (auralink.agents.memory) ---------------------------------------------------


class AgentMemoryError(AuralinkError):
    """The agent memory store refused or failed an operation."""


class MemoryInputError(AgentMemoryError, LocalProtocolError, ValueError):
    """The caller passed a bad value to the memory store: text, kind, id, provenance, weights or an embedding."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The argument (or export field) that was refused."""


class MemoryNotFound(AgentMemoryError, LookupError):
    """No memory with this id belongs to this identity (it never existed, was forgotten, or is another's)."""

    def __init__(self, message: str, memory_id: int | None = None) -> None:
        super().__init__(message)
        self.memory_id = memory_id
        """The id that was asked for."""


class EmbedderMismatch(AgentMemoryError):
    """The memory database was written with another embedder; its vectors cannot be compared with this one's."""

    def __init__(self, message: str, stored: str, offered: str) -> None:
        super().__init__(message)
        self.stored = stored
        """``name/dims`` of the embedder the database was created with."""
        self.offered = offered
        """``name/dims`` of the embedder passed to open it."""


class MemoryStoreError(AgentMemoryError):
    """The memory database cannot be opened, read or written, or another process holds it open."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        """The database file."""


# -- agent tools (auralink.agents.tools) -------------------------------------------------------


class ToolError(AuralinkError):
    """An agent tool (a tool of an MCP server) could not be listed or called."""

    def __init__(self, message: str, server: str | None = None, tool: str | None = None) -> None:
        super().__init__(message)
        self.server = server
        """The tool server's name in the agent's config, if one is concerned."""
        self.tool = tool
        """The tool's name on its server, if one is concerned."""


class ToolUnavailable(ToolError):
    """The tool server did not start, failed the MCP handshake, or its connection (its process) ended."""


class ToolTimeout(ToolUnavailable):
    """The tool server did not answer within the connect or call timeout."""

    def __init__(self, message: str, server: str | None = None, tool: str | None = None, timeout: float = 0.0) -> None:
        super().__init__(message, server, tool)
        self.timeout = timeout
        """The timeout that ran out, in seconds."""


class ToolRejected(ToolError):
    """The call was refused: before it was sent (see the subclasses) or by the server with a JSON-RPC error."""

    def __init__(
        self, message: str, server: str | None = None, tool: str | None = None, code: int | None = None
    ) -> None:
        super().__init__(message, server, tool)
        self.code = code
        """The JSON-RPC error code the server answered with; None if the call was refused before sending."""


class ToolNotFound(ToolRejected):
    """The server lists no tool of that name."""


class ToolArgumentsInvalid(ToolRejected):
    """The arguments do not match the tool's input schema; nothing was sent."""

    def __init__(self, message: str, server: str | None = None, tool: str | None = None, path: str = "") -> None:
        super().__init__(message, server, tool)
        self.path = path
        """Where in the arguments the first error is, as a JSON path (``$.time``)."""


class ToolFailed(ToolError):
    """The tool ran and reported an error (an MCP ``isError`` result); the message is the tool's own text."""


class ToolProtocolError(ToolError, RemoteProtocolError):
    """The tool server broke the MCP protocol: a malformed message, or a result that breaks the tool's output schema."""


# -- calls (auralink.calls) ---------------------------------------------------------------------


class CallError(AuralinkError):
    """A call could not be placed, answered or carried on."""

    def __init__(self, message: str, call_id: str | None = None) -> None:
        super().__init__(message)
        self.call_id = call_id
        """The call's id (hex), if one is concerned."""


class CallStateError(CallError, LocalProtocolError):
    """The app asked a call for something its signaling state forbids (answer a call it placed, hang up twice...)."""

    def __init__(self, message: str, call_id: str | None = None, state: str = "", action: str = "") -> None:
        super().__init__(message, call_id)
        self.state = state
        """The call's signaling state when the action was refused."""
        self.action = action
        """What was asked: ``call``, ``accept``, ``decline``, ``add_candidate``..."""


class SignalingProtocolError(CallError, RemoteProtocolError):
    """The peer broke ``auralink/signal/1``: a message its state forbids, or bytes that do not decode."""

    def __init__(self, message: str, call_id: str | None = None, state: str = "", message_type: str = "") -> None:
        super().__init__(message, call_id)
        self.state = state
        """Our signaling state when the message arrived."""
        self.message_type = message_type
        """The offending message's class name (empty if it did not decode)."""


class CallFailed(CallError):
    """The call ended before it connected: not answered, unreachable, refused, or its media never connected."""

    def __init__(self, message: str, call_id: str | None = None, reason: str = "", by_peer: bool = False) -> None:
        super().__init__(message, call_id)
        self.reason = reason
        """The hang-up reason's name (``NO_ANSWER``, ``CONNECT_FAILED``, ``GLARE``...)."""
        self.by_peer = by_peer
        """True if the peer ended the call, False if this side (or a timeout here) did."""


class CallDeclined(CallFailed):
    """The callee declined the call, or answered that it is busy."""


class CallsNotInstalled(CallError):
    """aiortc or PyAV is not installed; ``pip install 'auralink[calls]'``."""

    def __init__(self, message: str, requirement: str = "") -> None:
        super().__init__(message)
        self.requirement = requirement
        """The missing Python distribution (``aiortc``, ``av``)."""


class ConnectionError_(AuralinkError):
    """A connection to a peer ended; see the two subclasses for whose doing it was."""


class ConnectionClosed(ConnectionError_):
    """The connection was closed on purpose (by this side or by the peer, cleanly)."""


class ConnectionBroken(ConnectionError_):
    """The connection was broken by the network or by a peer that misbehaved."""


class DialFailed(ConnectionBroken):
    """No address of the peer answered with a working, authenticated handshake."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


class PeerIdentityMismatch(ConnectionBroken):
    """The peer proved possession of a different key than the AuraID that was dialled."""

    def __init__(self, expected: str, actual: str | None) -> None:
        shown = actual if actual is not None else "no key at all"
        super().__init__(
            f"peer identity mismatch: dialled {expected[:10]}..., but the peer proved {shown[:10]}...; "
            "the address belongs to another node, or someone is intercepting"
        )
        self.expected = expected
        self.actual = actual


class StreamReset(ConnectionBroken):
    """The peer reset (abandoned) a stream."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class ProtocolNotSupported(StreamReset):
    """The peer does not serve the stream protocol that was asked for."""

    def __init__(self, protocol: str, error_code: int) -> None:
        super().__init__(f"peer does not serve protocol {protocol!r}", error_code)
        self.protocol = protocol


# -- rooms (auralink.calls.room, auralink.calls.grants) -----------------------------------------


class RoomError(CallError):
    """A room refused an action, or the room ended for this participant."""

    def __init__(self, message: str, room: str | None = None, action: str = "") -> None:
        super().__init__(message)
        self.room = room
        """The room, as ``name@owner`` (owner shortened), if one is concerned."""
        self.action = action
        """What was refused: ``join``, ``publish``, ``subscribe``, ``chat``, ``mute``, ``kick``..."""


class GrantError(RoomError):
    """A capability grant does not allow what was asked; the subclass says why."""


class GrantForged(GrantError):
    """The grant's signature does not verify with the room owner's key: it was tampered with or forged."""


class GrantExpired(GrantError):
    """The grant's ``expires_at`` has passed; ask the room owner for a new one."""


class GrantNotYetValid(GrantError):
    """The grant's ``not_before`` lies further ahead than the allowed clock skew."""


class GrantMismatch(GrantError):
    """The grant is genuine but names another room or another participant than the one presenting it."""


class NotPermitted(GrantError):
    """The grant lacks the capability for this action, or an admin muted the participant."""

    def __init__(self, message: str, room: str | None = None, action: str = "", capability: str = "") -> None:
        super().__init__(message, room, action)
        self.capability = capability
        """The capability the action needs (``publish``, ``subscribe``, ``publish_data``, ``admin``)."""


class RoomProtocolError(RoomError, RemoteProtocolError):
    """The peer broke ``auralink/room/2``: bytes that do not decode, or a message out of turn."""


class RoomClosed(RoomError):
    """The room ended for this participant: it left, was kicked, its grant ran out, or the SFU went away."""

    def __init__(self, message: str, room: str | None = None, reason: str = "", by: str | None = None) -> None:
        super().__init__(message, room)
        self.reason = reason
        """``LEFT``, ``KICKED``, ``GRANT_EXPIRED``, ``SERVER_GONE``..."""
        self.by = by
        """The AuraID of the admin who kicked, if one did."""


class TurnRefused(CallError):
    """A relay node refused us TURN credentials: its access policy, or a ban."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        """The relay's own words."""

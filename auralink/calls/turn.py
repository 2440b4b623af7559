"""TURN credentials from our relay nodes: the ``auralink/turn/1`` protocol and its client.

Theory of operation
-------------------
When both callers sit behind symmetric NATs, ICE's host and server-reflexive candidates cannot
connect, and media must go through a TURN server (RFC 8656). Relay nodes run one
(:mod:`auralink_node.turn`), and aiortc's ICE agent (aioice) already speaks TURN over UDP. What a
caller needs is a short-lived TURN username and password for that server. It gets them over the
mesh, where its AuraID is already proven:

```text
caller                                   relay node
  CredentialRequest(token)        ──▶                 the mesh connection proves the caller's AuraID;
                                  ◀──    Credentials(urls, username, password, expires_at)
                                  or     Refusal(reason)   (the relay's policy or its bans said no)
```

One request, one answer, then the stream ends. The credentials follow the "TURN REST API"
convention that coturn and most WebRTC stacks use: ``username = "<expires_at>:<AuraID>"`` and
``password = base64(HMAC-SHA1(relay secret, username))``, so the TURN server recomputes the
password from the username alone and needs no table of issued credentials. They are good for
new allocations until ``expires_at`` (Unix seconds); an allocation made before then lives as
long as the caller keeps refreshing it.

:func:`turn_server` is what a call needs: the :class:`~auralink.calls.ice.IceServer` to put in
its :class:`~auralink.calls.ice.IceConfig`. :func:`turn_credentials` returns the whole answer.

Every message is an :mod:`auralink.wire` frame; :data:`CODEC` raises
:class:`~auralink.errors.RemoteProtocolError` for anything that does not decode.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

from auralink.calls.ice import IceServer
from auralink.errors import AuralinkError, LocalProtocolError, RemoteProtocolError, TurnRefused
from auralink.identity import AuraID
from auralink.wire import Address, Buffer, FrameDecoder, MessageCodec

if TYPE_CHECKING:
    from auralink.mesh import Mesh

__all__ = [
    "CODEC",
    "MAX_URLS",
    "TURN_PROTOCOL",
    "CredentialRequest",
    "Credentials",
    "Refusal",
    "TurnCredentials",
    "turn_credentials",
    "turn_server",
]

TURN_PROTOCOL = "auralink/turn/1"
"""The mesh stream protocol that hands out TURN credentials."""
MAX_URLS = 4
"""Most TURN URLs one answer may list."""
_MAX_URL = 256
_MAX_USERNAME = 512  # RFC 8489 section 14.3: USERNAME is under 513 bytes
_MAX_PASSWORD = 128
_MAX_TOKEN = 256
_MAX_REASON = 256


@dataclass(frozen=True, slots=True)
class CredentialRequest:
    """Caller to relay: TURN credentials, please (sent once, first)."""

    TYPE: ClassVar[int] = 1
    token: bytes = b""
    """The relay's access token, for relays whose policy is ``token`` (as in ``auralink/relay/1``)."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_length_prefixed(_MAX_TOKEN, "token"))

    def push(self, buf: Buffer) -> None:
        buf.push_length_prefixed(self.token, _MAX_TOKEN, "token")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Relay to caller: where its TURN server is and how to log in."""

    TYPE: ClassVar[int] = 2
    urls: tuple[str, ...]
    """``turn:HOST:PORT?transport=udp`` URLs of the relay's TURN server, best first (at least one)."""
    username: str
    """``<expires_at>:<AuraID>``."""
    password: str
    """base64 of HMAC-SHA1(relay secret, username)."""
    expires_at: int
    """Unix seconds after which the relay refuses new allocations with these credentials."""

    def __post_init__(self) -> None:
        if not 1 <= len(self.urls) <= MAX_URLS:
            raise LocalProtocolError(f"credentials list 1 to {MAX_URLS} TURN URLs, not {len(self.urls)}")

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        count = buf.pull_varint_bounded(MAX_URLS, "URL count")
        urls = tuple(buf.pull_str(_MAX_URL, "URL") for _ in range(count))
        username = buf.pull_str(_MAX_USERNAME, "username")
        password = buf.pull_str(_MAX_PASSWORD, "password")
        return cls(urls, username, password, buf.pull_uint64())

    def push(self, buf: Buffer) -> None:
        buf.push_varint(len(self.urls))
        for url in self.urls:
            buf.push_str(url, _MAX_URL, "URL")
        buf.push_str(self.username, _MAX_USERNAME, "username")
        buf.push_str(self.password, _MAX_PASSWORD, "password")
        buf.push_uint64(self.expires_at)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Relay to caller: no credentials, and why (its access policy, or a ban)."""

    TYPE: ClassVar[int] = 3
    reason: str
    """Human-readable, for the caller's error message."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_str(_MAX_REASON, "reason"))

    def push(self, buf: Buffer) -> None:
        buf.push_str(self.reason[:_MAX_REASON], _MAX_REASON, "reason")


CODEC = MessageCodec(TURN_PROTOCOL, [CredentialRequest, Credentials, Refusal], max_size=4096)
"""Encodes and decodes ``auralink/turn/1`` messages as :mod:`auralink.wire` frames."""


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """TURN credentials a relay issued to us."""

    relay: AuraID
    """The relay node that issued them (and runs the TURN server)."""
    urls: tuple[str, ...]
    """Its TURN server's URLs, best first."""
    username: str
    """The TURN username (``<expires_at>:<our AuraID>``)."""
    password: str
    """The TURN password."""
    expires_at: int
    """Unix seconds after which new allocations with these credentials are refused."""

    def ice_server(self) -> IceServer:
        """The first URL as an :class:`~auralink.calls.ice.IceServer` (aiortc uses only one TURN server)."""
        return IceServer(self.urls[0], username=self.username, credential=self.password)


async def turn_credentials(
    mesh: Mesh,
    relay: AuraID | str,
    *,
    addresses: Sequence[Address | str] = (),
    token: bytes = b"",
    timeout: float = 10.0,
) -> TurnCredentials:
    """Ask ``relay`` (an AuraID or ``@handle`` of a relay node) for TURN credentials over the mesh.

    ``addresses`` are passed to :meth:`~auralink.mesh.Mesh.open_stream` (where the relay is, if
    the mesh does not know yet); ``token`` is the relay's access token, if its policy wants one.
    Raises :class:`~auralink.errors.TurnRefused` when the relay says no, a
    :class:`~auralink.errors.ConnectionError_` when it cannot be reached or does not serve
    ``auralink/turn/1``, :class:`~auralink.errors.RemoteProtocolError` for a malformed answer,
    and :class:`TimeoutError` after ``timeout`` seconds.
    """
    async with asyncio.timeout(timeout):
        stream = await mesh.open_stream(relay, TURN_PROTOCOL, addresses)
        try:
            stream.write(CODEC.encode(CredentialRequest(token)))
            stream.write_eof()
            decoder = FrameDecoder(max_size=CODEC.max_size)
            frame = None
            while frame is None:
                chunk = await stream.read()
                if not chunk:
                    decoder.feed_eof()
                    frame = decoder.next_frame()
                    if frame is None:
                        raise RemoteProtocolError(f"{TURN_PROTOCOL}: the relay ended the stream without an answer")
                    break
                decoder.feed(chunk)
                frame = decoder.next_frame()
            answer = CODEC.decode(frame)
        except BaseException:
            stream.reset()
            raise
        with contextlib.suppress(AuralinkError):  # the answer is in; how the stream ends does not matter
            await stream.aclose()
    issuer = stream.peer if stream.peer is not None else await mesh.peer_of(relay)
    if isinstance(answer, Refusal):
        raise TurnRefused(f"relay {issuer.short()} refused TURN credentials: {answer.reason}", answer.reason)
    if not isinstance(answer, Credentials):
        raise RemoteProtocolError(f"{TURN_PROTOCOL}: expected Credentials or Refusal, got {type(answer).__name__}")
    return TurnCredentials(issuer, answer.urls, answer.username, answer.password, answer.expires_at)


async def turn_server(
    mesh: Mesh,
    relay: AuraID | str,
    *,
    addresses: Sequence[Address | str] = (),
    token: bytes = b"",
    timeout: float = 10.0,
) -> IceServer:
    """The TURN server of relay node ``relay``, with fresh credentials for our AuraID, as an ICE server.

    Put it in ``IceConfig(servers=(server,))`` (with ``transport_policy="relay"`` to force media
    through it). Arguments and errors as :func:`turn_credentials`.
    """
    credentials = await turn_credentials(mesh, relay, addresses=addresses, token=token, timeout=timeout)
    return credentials.ice_server()

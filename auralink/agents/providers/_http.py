"""The one place where httpx meets the provider clients: sending, size caps and exception translation.

Theory of operation
===================

Every provider client sends through :func:`send` (a whole response) or :func:`open_stream` (a
streamed one). Both do the same four things, so no client can forget one:

1. **Translate httpx's exceptions once** (:func:`translate_errors`), as httpcore's
   ``map_exceptions`` does: a timeout becomes :class:`~auralink.errors.ProviderTimeout`, any other
   transport failure (refused, reset, a server that breaks HTTP) becomes
   :class:`~auralink.errors.ProviderUnavailable`, a malformed URL a
   :class:`~auralink.errors.ConfigError`. The httpx exception stays as ``__cause__``; its text holds
   no secret, because keys travel only in headers, never in URLs.
2. **Turn non-2xx answers into our exceptions** with :func:`~auralink.agents.providers.wire.error_for_status`,
   after reading at most :data:`~auralink.agents.providers.wire.MAX_ERROR_BODY` bytes of the error
   body and the ``Retry-After`` headers.
3. **Cap bodies**: a 2xx body larger than the caller's ``limit`` raises
   :class:`~auralink.errors.ProviderProtocolError` before it is all in memory.
4. **Scrub**: the key is passed in as a secret, so a provider that echoes it in an error
   message does not put it into the exception (and so into logs).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from auralink import __version__
from auralink.agents.providers.wire import MAX_ERROR_BODY, Dialect, error_for_status, parse_retry_after
from auralink.errors import ConfigError, ProviderProtocolError, ProviderTimeout, ProviderUnavailable

__all__ = ["USER_AGENT", "Reply", "open_stream", "read_capped", "send", "translate_errors"]

USER_AGENT = f"auralink/{__version__}"
"""The ``User-Agent`` of every provider request (Azure requires one)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole 2xx response."""

    status: int
    """The HTTP status (2xx)."""
    headers: httpx.Headers
    """The response headers."""
    body: bytes
    """The response body."""


@contextlib.contextmanager
def translate_errors(provider: str) -> Iterator[None]:
    """Translate httpx exceptions raised inside the block into our tree (see the module docstring)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{provider}: no answer in time ({type(exc).__name__})", provider) from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"{provider}: cannot reach the provider ({_describe(exc)})", provider) from exc
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{provider}: invalid provider URL ({exc})", "base_url") from exc
    except httpx.StreamError as exc:  # pragma: no cover - only from misuse of a response
        raise ProviderUnavailable(f"{provider}: the response stream failed ({type(exc).__name__})", provider) from exc


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


async def read_capped(response: httpx.Response, limit: int, provider: str, *, truncate: bool = False) -> bytes:
    """Read the body, at most ``limit`` bytes: beyond that, stop (``truncate``) or raise ProviderProtocolError."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[: limit - (size - len(chunk))])
                break
            raise ProviderProtocolError(f"{provider}: response body larger than {limit} bytes", provider)
        chunks.append(chunk)
    return b"".join(chunks)


async def _raise_for_status(response: httpx.Response, provider: str, dialect: Dialect, secrets: Sequence[str]) -> None:
    if 200 <= response.status_code < 300:
        return
    body = await read_capped(response, MAX_ERROR_BODY, provider, truncate=True)
    raise error_for_status(
        provider,
        dialect,
        response.status_code,
        body,
        retry_after=parse_retry_after(response.headers),
        secrets=secrets,
    )


def _request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    timeout: float | None,
    **content: Any,
) -> httpx.Request:
    with translate_errors(provider):
        return http.build_request(
            method,
            url,
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout),
            **content,
        )


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    dialect: Dialect,
    headers: Mapping[str, str],
    limit: int,
    secrets: Sequence[str] = (),
    timeout: float | None = None,
    **content: Any,
) -> Reply:
    """Send one request and read the whole 2xx response (``content`` goes to ``httpx.build_request``)."""
    request = _request(http, method, url, provider=provider, headers=headers, timeout=timeout, **content)
    with translate_errors(provider):
        response = await http.send(request, stream=True)
        try:
            await _raise_for_status(response, provider, dialect, secrets)
            body = await read_capped(response, limit, provider)
        finally:
            await response.aclose()
    return Reply(response.status_code, response.headers, body)


@contextlib.asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    dialect: Dialect,
    headers: Mapping[str, str],
    secrets: Sequence[str] = (),
    timeout: float | None = None,
    **content: Any,
) -> AsyncIterator[httpx.Response]:
    """Send one request and yield the 2xx response unread; iterate it inside :func:`translate_errors`."""
    request = _request(http, method, url, provider=provider, headers=headers, timeout=timeout, **content)
    with translate_errors(provider):
        response = await http.send(request, stream=True)
    try:
        with translate_errors(provider):
            await _raise_for_status(response, provider, dialect, secrets)
        yield response
    finally:
        await response.aclose()

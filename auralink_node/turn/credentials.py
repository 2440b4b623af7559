"""TURN credentials in the "TURN REST API" style, and the STUN long-term key they give.

Theory of operation
-------------------
The relay never stores issued credentials. It holds one random secret (per process: see
:func:`auralink_node.turn.server.new_secret`) and derives everything from it:

* ``username = "<expires_at>:<AuraID>"`` (:func:`make_username`): who the credentials are for
  (the caller's AuraID, proven by its mesh connection when they were issued) and until when
  they may open allocations (Unix seconds);
* ``password = base64(HMAC-SHA1(secret, username))`` (:func:`password_for`), the convention of
  coturn's ``use-auth-secret`` and of the IETF draft "A REST API for Access to TURN Services";
* the STUN long-term credential key ``MD5(username ":" realm ":" password)`` (RFC 8489 section
  9.2.2, :func:`integrity_key`), which both sides use for MESSAGE-INTEGRITY.

So the TURN server recomputes the password from the username of each request, and a forged or
altered username fails the MESSAGE-INTEGRITY check. A relay restart draws a new secret, which
invalidates every credential it issued; its allocations died with the process anyway.

This module is a pure core: no I/O, no clock (callers pass Unix seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from auralink.errors import AuralinkError, RemoteProtocolError
from auralink.identity import AuraID

__all__ = ["integrity_key", "make_username", "parse_username", "password_for"]


def make_username(aura_id: AuraID, expires_at: int) -> str:
    """The TURN username for ``aura_id``, good for new allocations until ``expires_at`` (Unix seconds)."""
    return f"{expires_at}:{aura_id}"


def parse_username(username: str) -> tuple[int, AuraID]:
    """``(expires_at, aura_id)`` of a username; :class:`RemoteProtocolError` if it is not one of ours."""
    expiry, sep, who = username.partition(":")
    if not sep or not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
        raise RemoteProtocolError(f"TURN username {username[:80]!r} is not EXPIRES:AURAID")
    try:
        return int(expiry), AuraID.parse(who)
    except AuralinkError as exc:
        raise RemoteProtocolError(f"TURN username {username[:80]!r} names no AuraID: {exc}") from exc


def password_for(secret: bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)): the password the relay gives out with ``username``."""
    return base64.b64encode(hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def integrity_key(username: str, realm: str, password: str) -> bytes:
    """The long-term credential key MD5(username:realm:password) (RFC 8489 section 9.2.2)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()

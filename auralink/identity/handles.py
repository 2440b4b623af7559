"""Human-readable handles: ``@alice.aura``.

Theory of operation
-------------------
A handle is a name a person can say aloud. It is *not* an identity: it is a claim, signed by a
key, that the DHT stores and clients pin on first use (see :mod:`auralink.identity.records`).

The rules are deliberately narrow, so that two handles that look alike are the same handle:

* Input is normalised with Unicode NFKC and lower-cased, so full-width ``@Alice``
  (U+FF20 U+FF21 ...) becomes ``@alice``.
* After that, anything outside ASCII is rejected with a message. There are no confusable
  Cyrillic or Greek look-alikes to worry about, because only ``[a-z0-9-]`` is allowed.
* The name has 1 to 32 characters, and no hyphen at either end (``@c.aura`` is fine).
* The decorations are optional on input (``alice``, ``@alice``, ``alice.aura`` all parse);
  the canonical form is always ``@name.aura``.

This module is a pure core.
"""

from __future__ import annotations

import unicodedata

from auralink.errors import InvalidHandle

__all__ = ["HANDLE_MAX", "HANDLE_MIN", "HANDLE_SUFFIX", "handle_name", "parse_handle"]

HANDLE_MIN = 1
"""Fewest characters in a handle's name part."""
HANDLE_MAX = 32
"""Most characters in a handle's name part."""
HANDLE_SUFFIX = ".aura"
"""The suffix every canonical handle carries."""

_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_MAX_INPUT = 256


def parse_handle(text: str) -> str:
    """Normalise ``text`` and return the canonical ``@name.aura``; raise :class:`InvalidHandle` otherwise."""
    if not isinstance(text, str):
        raise InvalidHandle(f"a handle is a string, not {type(text).__name__}")
    if len(text) > _MAX_INPUT:
        raise InvalidHandle(f"invalid handle: longer than {_MAX_INPUT} characters")
    name = unicodedata.normalize("NFKC", text.strip()).lower()
    name = name.removeprefix("@").removesuffix(HANDLE_SUFFIX)
    shown = text.strip()
    if not name.isascii():
        bad = next(c for c in name if not c.isascii())
        raise InvalidHandle(
            f"invalid handle {shown!r}: {bad!r} (U+{ord(bad):04X}) is not ASCII; "
            "handles use only a-z, 0-9 and '-' so that look-alike names cannot exist"
        )
    if not HANDLE_MIN <= len(name) <= HANDLE_MAX:
        raise InvalidHandle(
            f"invalid handle {shown!r}: the name must have {HANDLE_MIN} to {HANDLE_MAX} characters, has {len(name)}"
        )
    for char in name:
        if char not in _ALLOWED:
            raise InvalidHandle(f"invalid handle {shown!r}: {char!r} is not allowed; use a-z, 0-9 and '-'")
    if name.startswith("-") or name.endswith("-"):
        raise InvalidHandle(f"invalid handle {shown!r}: it may not start or end with '-'")
    return f"@{name}{HANDLE_SUFFIX}"


def handle_name(handle: str) -> str:
    """The bare name of a handle: ``@alice.aura`` gives ``alice``."""
    return parse_handle(handle)[1 : -len(HANDLE_SUFFIX)]

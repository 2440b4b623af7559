"""AIC metadata in RTP: a one-byte header extension (RFC 8285) with the hint id and mode of each packet.

Theory of operation
===================

The element
-----------
A receiver that knows which hint coded a frame can correlate what it sees (quality, stalls, its
own bandwidth estimate) with what the sender decided. The element is RFC 8285's one-byte form,
3 bytes of data, so with its header it adds 4 bytes to a packet::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  ID   | L=2   |mod|        hint id (22 bits, wraps)           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``mod`` (2 bits) is the mode: 0 conservative, 1 adaptive, 2 aggressive
(:func:`auralink.aic.remote.mode_code`; 3 is invalid). :func:`pack_mark` and
:func:`unpack_mark` are the codec; :func:`unpack_mark` raises
:class:`~auralink.errors.RemoteProtocolError` for anything else. The URI is :data:`EXTENSION_URI`.

What aiortc 1.16 allows
-----------------------
aiortc cannot negotiate or carry an extension it does not know, and has no API to add one:

1. ``aiortc.codecs.HEADER_EXTENSIONS`` is a module-global list (mid and abs-send-time for video).
   ``createOffer`` copies it into each transceiver, and ``setRemoteDescription`` keeps only the
   remote extensions that are also in it, so an extension missing there never reaches the
   negotiated ``RTCRtpParameters``. Adding ours to the global list would change every peer
   connection in the process.
2. ``aiortc.rtp.HeaderExtensionsMap`` maps seven fixed URIs to ids (``configure``), writes only
   the seven fixed fields of the ``HeaderExtensions`` dataclass (``set``) and drops every other id
   when parsing (``get``).
3. The sender builds each ``RtpPacket`` inside its private ``_run_rtp`` loop and serialises it with
   its private map ``_RTCRtpSender__rtp_header_extensions_map``; the receiving side parses with
   the DTLS transport's map ``_rtp_header_extensions_map`` (one per transport, shared by audio and
   video under BUNDLE), and ``RTCRtpReceiver`` exposes no extension to the application.

So this module does not use SDP. Both ends agree on the id (:data:`DEFAULT_EXTENSION_ID`, 14,
the last one-byte id; aiortc uses 1 and 2) in AuraLink's own call signalling, and
:func:`attach_sender` / :func:`attach_receiver` swap aiortc's two private maps for subclasses,
per sender and per transport (no global changes): :class:`MarkingExtensionsMap` appends the
current mark to every packet the sender serialises, and :class:`MarkReadingExtensionsMap` reads it
back and calls ``on_mark`` when it changes. aiortc's own extensions keep working through the
parent class. Doing it through SDP would need a fork (or a patch upstream) that lets
``RTCRtpTransceiver`` carry extra ``headerExtensions`` and lets ``HeaderExtensionsMap`` pass
unknown ids through. Note that SRTP does not encrypt header extensions (aiortc does not implement
RFC 6904 or cryptex): the hint id and mode are visible on the path, which is why the element
carries nothing else.

Which mark goes on which packet: ``RTCRtpSender._run_rtp`` asks for the next encoded frame (which
calls the track's ``recv()``, where :class:`~auralink.aic.controller.AICController` makes the
frame's hint) and then sends all its packets before asking again, so the mark current while a
frame's packets are serialised is that frame's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auralink.aic.engine import Hint, Mode
from auralink.aic.remote import mode_code, mode_of
from auralink.errors import LocalProtocolError, RemoteProtocolError

try:
    from aiortc import rtp as aiortc_rtp
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("auralink.aic.rtp needs aiortc; install it with: pip install 'auralink[calls]'") from exc

__all__ = [
    "DEFAULT_EXTENSION_ID",
    "EXTENSION_URI",
    "HINT_ID_BITS",
    "HintMark",
    "MarkReadingExtensionsMap",
    "MarkingExtensionsMap",
    "attach_receiver",
    "attach_sender",
    "pack_mark",
    "unpack_mark",
]

EXTENSION_URI = "urn:auralink:params:rtp-hdrext:aic-hint"
"""The extension's name (not registered with IANA; AuraLink peers agree on it in signalling)."""
DEFAULT_EXTENSION_ID = 14
"""The one-byte extension id used unless signalling says otherwise (aiortc uses 1 and 2)."""
HINT_ID_BITS = 22
"""Bits of the hint id carried; the id wraps modulo ``2 ** HINT_ID_BITS``."""
_HINT_MASK = (1 << HINT_ID_BITS) - 1


@dataclass(frozen=True, slots=True)
class HintMark:
    """What one RTP packet says about the hint that coded it."""

    hint_id: int
    """The hint's id modulo ``2 ** HINT_ID_BITS``."""
    mode: Mode
    """The mode the hint was made in."""

    def __post_init__(self) -> None:
        if isinstance(self.hint_id, bool) or not isinstance(self.hint_id, int) or not 0 <= self.hint_id <= _HINT_MASK:
            raise LocalProtocolError(f"HintMark.hint_id must be an int in [0, 2**{HINT_ID_BITS}), not {self.hint_id!r}")
        if not isinstance(self.mode, Mode):
            raise LocalProtocolError(f"HintMark.mode must be a Mode, not {self.mode!r}")

    @classmethod
    def of(cls, hint: Hint) -> HintMark:
        """The mark of ``hint`` (its id wrapped to 22 bits)."""
        return cls(hint.hint_id & _HINT_MASK, hint.mode)


def pack_mark(mark: HintMark) -> bytes:
    """The element's 3 data bytes."""
    return ((mode_code(mark.mode) << HINT_ID_BITS) | mark.hint_id).to_bytes(3, "big")


def unpack_mark(data: bytes) -> HintMark:
    """Parse the element's data; :class:`RemoteProtocolError` if it is not 3 bytes of a valid mark."""
    if len(data) != 3:
        raise RemoteProtocolError(f"AIC RTP header extension: {len(data)} bytes of data, expected 3")
    value = int.from_bytes(data, "big")
    return HintMark(value & _HINT_MASK, mode_of(value >> HINT_ID_BITS))


def _check_id(extension_id: int) -> int:
    if isinstance(extension_id, bool) or not isinstance(extension_id, int) or not 1 <= extension_id <= 14:
        raise LocalProtocolError(f"a one-byte RTP header extension id lies in [1, 14], not {extension_id!r}")
    return extension_id


class MarkingExtensionsMap(aiortc_rtp.HeaderExtensionsMap):
    """aiortc's map, plus the current :class:`HintMark` on every packet serialised with it."""

    def __init__(self, extension_id: int = DEFAULT_EXTENSION_ID) -> None:
        super().__init__()
        self.extension_id = _check_id(extension_id)
        """The negotiated one-byte id."""
        self.mark: HintMark | None = None
        """The mark put on the packets serialised from now on (None: no element)."""

    def set(self, values: aiortc_rtp.HeaderExtensions) -> tuple[int, bytes]:
        """aiortc's extensions, with the mark appended."""
        profile, value = super().set(values)
        if self.mark is None:
            return profile, value
        elements = aiortc_rtp.unpack_header_extensions(profile, value)
        if any(x_id == self.extension_id for x_id, _ in elements):
            raise LocalProtocolError(f"RTP header extension id {self.extension_id} is already used by aiortc")
        elements.append((self.extension_id, pack_mark(self.mark)))
        packed: tuple[int, bytes] = aiortc_rtp.pack_header_extensions(elements)
        return packed


class MarkReadingExtensionsMap(aiortc_rtp.HeaderExtensionsMap):
    """aiortc's map, plus the mark read back from each packet; ``on_mark`` hears each change."""

    def __init__(self, on_mark: Callable[[HintMark], None], extension_id: int = DEFAULT_EXTENSION_ID) -> None:
        super().__init__()
        self.extension_id = _check_id(extension_id)
        """The negotiated one-byte id."""
        self._on_mark = on_mark
        self.last: HintMark | None = None
        """The latest mark received."""
        self.malformed = 0
        """Elements with our id that did not parse (dropped, as aiortc drops unknown elements)."""

    def get(self, extension_profile: int, extension_value: bytes) -> aiortc_rtp.HeaderExtensions:
        """aiortc's extensions; the mark, if present, goes to ``on_mark`` when it differs from the last."""
        values: aiortc_rtp.HeaderExtensions = super().get(extension_profile, extension_value)
        for x_id, x_value in aiortc_rtp.unpack_header_extensions(extension_profile, extension_value):
            if x_id != self.extension_id:
                continue
            try:
                mark = unpack_mark(x_value)
            except RemoteProtocolError:
                self.malformed += 1
                continue
            if mark != self.last:
                self.last = mark
                self._on_mark(mark)
        return values


_SENDER_MAP = "_RTCRtpSender__rtp_header_extensions_map"
_TRANSPORT_MAP = "_rtp_header_extensions_map"
_IDS = "_HeaderExtensionsMap__ids"


def _swap(owner: Any, attribute: str, replacement: aiortc_rtp.HeaderExtensionsMap) -> None:
    current = getattr(owner, attribute, None)
    if not isinstance(current, aiortc_rtp.HeaderExtensionsMap):
        raise LocalProtocolError(f"{type(owner).__name__} has no aiortc header extension map to extend")
    setattr(replacement, _IDS, getattr(current, _IDS))  # keep what aiortc configured, and share later changes
    setattr(owner, attribute, replacement)


def attach_sender(sender: Any, extension_id: int = DEFAULT_EXTENSION_ID) -> MarkingExtensionsMap:
    """Make ``sender`` (an ``RTCRtpSender``) mark its packets; set ``.mark`` on the result per frame.

    Idempotent: a sender already marking returns its map.
    """
    current = getattr(sender, _SENDER_MAP, None)
    if isinstance(current, MarkingExtensionsMap):
        return current
    marking = MarkingExtensionsMap(extension_id)
    _swap(sender, _SENDER_MAP, marking)
    return marking


def attach_receiver(
    transport: Any, on_mark: Callable[[HintMark], None], extension_id: int = DEFAULT_EXTENSION_ID
) -> MarkReadingExtensionsMap:
    """Read marks from the packets arriving on ``transport`` (an ``RTCDtlsTransport``, e.g. ``receiver.transport``)."""
    reading = MarkReadingExtensionsMap(on_mark, extension_id)
    _swap(transport, _TRANSPORT_MAP, reading)
    return reading

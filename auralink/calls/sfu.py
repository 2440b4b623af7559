"""Selective forwarding of encoded VP8 and Opus frames through aiortc, without decoding or re-encoding.

Theory of operation
-------------------
The SFU holds one ``RTCPeerConnection`` per participant. Each participant sends its video and
its audio on two *publish slots* and receives others' tracks on its *subscription slots* of
each kind (see :mod:`auralink.calls.room_messages`). Forwarding a publisher to a subscriber means moving frames
from one connection's ``RTCRtpReceiver`` to another connection's ``RTCRtpSender``. aiortc
1.16 (pinned below 1.17 in ``pyproject.toml``) lets us do that on encoded frames at both ends:

* **Receive side: tap before the decoder.** ``RTCRtpReceiver._handle_rtp_packet`` depacketizes
  RTP into its jitter buffer, and for each complete frame calls
  ``self.__decoder_queue.put((codec, JitterFrame))``; a ``<kind>-decoder`` thread reads that
  ``queue.Queue``, decodes with libvpx and feeds the track. :func:`install_tap` replaces that
  queue attribute (``_RTCRtpReceiver__decoder_queue``) with an :class:`EncodedTap`: the
  event-loop thread's ``put`` hands the encoded frame (the VP8 bitstream of one picture, payload
  descriptors already stripped, with its 90 kHz RTP timestamp; or one Opus packet with its
  48 kHz timestamp) to our callback instead, and only
  the end-of-stream ``None`` goes through to the real queue, so the idle decoder thread still
  exits when the receiver stops. Nothing is ever decoded at the SFU. NACKs, RTX and the jitter
  buffer's reassembly still run, per hop.
* **Send side: hand the sender packets, not frames.** ``RTCRtpSender._next_encoded_frame``
  calls ``track.recv()``; if it returns an ``av.Packet`` instead of an ``av.Frame`` it calls
  ``encoder.pack(packet)`` (``Vp8Encoder.pack``: packetize with a fresh picture id, convert the
  pts to the RTP clock) and skips encoding; ``OpusEncoder.pack`` does the same for audio.
  :class:`ForwardTrack` is such a track: one per subscription slot, yielding the publisher's
  frames as packets.

Audio is forwarded per publisher, never mixed: mixing would mean decoding every speaker and
encoding one mix per listener (a listener must not hear itself), the MCU design this module
exists to avoid. A subscriber receives one Opus track per publisher it subscribes to, and its
own decoders turn each into ``av.AudioFrame`` objects; it mixes, or not, as it likes (a
captioning agent wants them apart anyway, to know who spoke). Opus has no keyframes: a decoder
can start on any packet (RFC 6716), so an audio slot starts forwarding at once, with no PLI.
aiortc's audio jitter buffer at the SFU holds four packets (80 ms) before releasing one, which
is the SFU's share of the audio latency.

Keyframes (video). A subscriber's decoder needs a keyframe first. When a slot starts forwarding (a
subscribe, a publisher unmuted), and whenever the subscriber's receiver sends a PLI or FIR for
its slot (caught by hooking the SFU sender's ``_send_keyframe``, which aiortc calls on both), the
SFU sends a PLI upstream to the publisher on the publish slot's receiver (``_send_rtcp_pli`` with
the SSRCs of ``getSynchronizationSources()``, at most every :data:`KEYFRAME_INTERVAL` seconds per
publisher), and the slot drops frames until a VP8 keyframe arrives (RFC 6386 section 9.1: bit 0 of the
first byte is 0 on a keyframe). A slot whose queue overflows (a slow subscriber) drops what it
holds and waits for the next keyframe the same way. A slot's pts run on continuously when it is
switched to another publisher, so the subscriber's timestamp mapping never jumps backwards.

What it costs: per forwarded frame, the jitter-buffer reassembly at the SFU, one RTP
packetization and SRTP encryption per subscriber, and no codec work. ``benchmarks/rooms.py``
measures the SFU's CPU per participant.

If aiortc's internals change (the receiver's decoder queue attribute is missing), :func:`install_tap`
raises :class:`~auralink.errors.CallsNotInstalled` naming the supported aiortc range, rather than
silently decoding and re-encoding.

This module imports aiortc and PyAV (the ``calls`` extra); :mod:`auralink.calls.room` imports
it only when a room starts.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender

from auralink.errors import CallsNotInstalled

__all__ = [
    "AUDIO_TIME_BASE",
    "KEYFRAME_INTERVAL",
    "VIDEO_TIME_BASE",
    "EncodedTap",
    "ForwardTrack",
    "Publication",
    "install_tap",
    "is_vp8_keyframe",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

VIDEO_TIME_BASE = Fraction(1, 90000)
"""The RTP clock of video (RFC 7741 section 4.1: VP8 uses 90 kHz)."""
AUDIO_TIME_BASE = Fraction(1, 48000)
"""The RTP clock of Opus (RFC 7587 section 4.1: always 48 kHz)."""
KEYFRAME_INTERVAL = 0.25
"""Least seconds between two keyframe requests the SFU sends one publisher."""
SLOT_QUEUE = 30
"""Frames a subscription slot holds before it drops them and waits for a keyframe."""
_SWITCH_GAP = {"video": 3000, "audio": 960}  # 1/30 s at 90 kHz, 20 ms at 48 kHz: the pts step between publishers
_TIME_BASE = {"video": VIDEO_TIME_BASE, "audio": AUDIO_TIME_BASE}
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


def is_vp8_keyframe(data: bytes) -> bool:
    """True if ``data`` (one VP8 frame) is a keyframe: the P bit of the frame tag is 0 (RFC 6386 section 9.1)."""
    return bool(data) and not data[0] & 0x01


class EncodedTap:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue: encoded frames go to ``on_frame``, not the decoder."""

    def __init__(self, inner: queue.Queue[Any], on_frame: Callable[[bytes, int], None]) -> None:
        self._inner = inner
        self._on_frame = on_frame

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Called on the event loop by the receiver: ``(codec, JitterFrame)``, or None to stop the decoder."""
        if item is None:
            self._inner.put(None)  # the idle decoder thread exits, and ends the receiver's track
            return
        _codec, frame = item
        self._on_frame(frame.data, frame.timestamp)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """What the decoder thread reads: only the end-of-stream marker ever arrives."""
        return self._inner.get(block, timeout)


def install_tap(receiver: RTCRtpReceiver, on_frame: Callable[[bytes, int], None]) -> None:
    """Send ``receiver``'s encoded frames to ``on_frame(data, rtp_timestamp)`` instead of its decoder."""
    inner = getattr(receiver, _DECODER_QUEUE, None)
    if isinstance(inner, EncodedTap):
        raise ValueError("this receiver is already tapped")
    if not isinstance(inner, queue.Queue):
        raise CallsNotInstalled(
            "this aiortc has no RTCRtpReceiver decoder queue to tap; the SFU supports aiortc >=1.16,<1.17",
            "aiortc",
        )
    setattr(receiver, _DECODER_QUEUE, EncodedTap(inner, on_frame))


class Publication:
    """One publisher's track (video or audio) at the SFU: its tapped receiver and the slots it is forwarded to."""

    def __init__(self, receiver: RTCRtpReceiver, clock: Callable[[], float], kind: str = "video") -> None:
        self.receiver = receiver
        """The publish slot's receiver (tapped)."""
        self.kind = kind
        """``"video"`` (VP8) or ``"audio"`` (Opus)."""
        self.open = False
        """True while the room core lets this publisher's frames through."""
        self.sinks: set[ForwardTrack] = set()
        """The subscription slots that carry this publication."""
        self.frames = 0
        """Frames received (forwarded or not)."""
        self._clock = clock
        self._last_request = -KEYFRAME_INTERVAL
        self._keyframes: asyncio.Queue[Publication] | None = None
        install_tap(receiver, self.on_frame)

    def bind(self, keyframes: asyncio.Queue[Publication]) -> None:
        """Where keyframe requests go (the server's keyframe pump)."""
        self._keyframes = keyframes

    def on_frame(self, data: bytes, timestamp: int) -> None:
        """One encoded frame from the publisher (on the event loop, from the receiver's tap)."""
        self.frames += 1
        if not self.open:
            return
        keyframe = self.kind == "audio" or is_vp8_keyframe(data)
        for sink in tuple(self.sinks):
            sink.push(data, timestamp, keyframe)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (video only; at most every :data:`KEYFRAME_INTERVAL` seconds)."""
        now = self._clock()
        if self.kind != "video" or self._keyframes is None or now - self._last_request < KEYFRAME_INTERVAL:
            return
        self._last_request = now
        self._keyframes.put_nowait(self)

    async def send_pli(self) -> None:
        """Send a Picture Loss Indication (RFC 4585 section 6.3.1) to the publisher."""
        for source in self.receiver.getSynchronizationSources():
            await self.receiver._send_rtcp_pli(source.source)

    def close(self) -> None:
        """Stop forwarding to every slot."""
        self.open = False
        for sink in tuple(self.sinks):
            sink.detach()


class ForwardTrack(MediaStreamTrack):
    """One subscription slot at the SFU: an aiortc track that yields a publisher's encoded frames."""

    kind = "video"

    def __init__(self, slot: int, kind: str = "video") -> None:
        super().__init__()
        self.kind = kind
        self.slot = slot
        """Which of the subscriber's slots of its kind this is."""
        self.source: Publication | None = None
        """The publication it carries, if any."""
        self.forwarded = 0
        """Frames handed to the sender."""
        self._frames: deque[tuple[bytes, int]] = deque()
        self._ready = asyncio.Event()
        self._want_keyframe = True
        self._offset: int | None = None
        self._last_pts: int | None = None

    def hook(self, sender: RTCRtpSender) -> None:
        """Relay the subscriber's PLI and FIR for this slot upstream (aiortc calls ``_send_keyframe`` on both)."""
        sender._send_keyframe = self.keyframe_wanted  # type: ignore[method-assign]

    def attach(self, publication: Publication) -> None:
        """Carry ``publication`` from its next keyframe on."""
        self.detach()
        self.source = publication
        publication.sinks.add(self)
        publication.request_keyframe()

    def detach(self) -> None:
        """Carry nothing."""
        if self.source is not None:
            self.source.sinks.discard(self)
            self.source = None
        self._frames.clear()
        self._want_keyframe = True
        self._offset = None

    def keyframe_wanted(self) -> None:
        """The subscriber lost a picture (PLI/FIR): ask the publisher for a keyframe."""
        if self.source is not None:
            self.source.request_keyframe()

    def push(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """Queue one encoded frame from the source (on the event loop)."""
        if self._want_keyframe:
            if not keyframe:
                self.keyframe_wanted()
                return
            self._want_keyframe = False
        if len(self._frames) >= SLOT_QUEUE:  # the subscriber's sender fell behind
            self._frames.clear()
            if self.kind == "video":  # resync on a keyframe; audio just drops the backlog and goes on
                self._want_keyframe = True
                self.keyframe_wanted()
                return
        if self._offset is None:
            start = 0 if self._last_pts is None else self._last_pts + _SWITCH_GAP[self.kind]
            self._offset = start - timestamp
        self._frames.append((data, timestamp + self._offset))
        self._ready.set()

    async def recv(self) -> av.Packet[Any]:
        """The next frame as an ``av.Packet``, which aiortc's sender packetizes without encoding."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        data, pts = self._frames.popleft()
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = _TIME_BASE[self.kind]
        self._last_pts = pts
        self.forwarded += 1
        return packet

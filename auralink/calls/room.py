"""Rooms over the mesh: :class:`RoomServer` (the SFU) and :class:`Room` (a participant).

Theory of operation
-------------------
A room (:class:`~auralink.calls.grants.RoomId`) belongs to its owner, who signs a
:class:`~auralink.calls.grants.Grant` for each participant. A node that opts in runs a
:class:`RoomServer`: it serves ``auralink/room/2`` streams on its mesh, keeps one
:class:`~auralink.calls.room_state.RoomState` core per room and one aiortc
``RTCPeerConnection`` per participant, and forwards video (VP8) and audio (Opus) between them
without decoding (:mod:`auralink.calls.sfu`). It hosts the rooms of the owners it is told to trust (its own
identity's rooms always).

A participant enters with ``async with Room(mesh, sfu, grant) as room``:

1. It builds one peer connection (all m-lines bundled on one ICE transport) with two *publish
   slots* (``sendonly``: VP8 video, then Opus audio), ``slots`` video and ``audio_slots`` audio
   *subscription slots* (``recvonly``), and sends :class:`~auralink.calls.room_messages.Join`
   with the grant and the SDP offer on a mesh stream to the SFU. Who it is, the SFU reads off the
   mesh connection; the grant must name that identity.
2. The SFU checks the grant (:meth:`RoomState.join <auralink.calls.room_state.RoomState.join>`),
   answers the offer, and replies :class:`~auralink.calls.room_messages.Welcome`; a refusal is a
   ``Reply`` whose status the participant raises as a :class:`~auralink.errors.GrantError`.
3. From then on every action is a request checked by the core against the grant:
   :meth:`Room.publish` (a video or an audio track: it starts flowing on its publish slot only once the SFU accepts;
   the SFU forwards a publisher's frames only while the core says it may, so RTP sent without
   the grant reaches nobody), :meth:`Room.subscribe` (the reply names the slot that will carry
   the track, so no SDP renegotiation ever happens), :meth:`Room.send_chat`, :meth:`Room.mute`,
   :meth:`Room.kick`. Notifications arrive as events (:meth:`Room.next_event`).

The server side of one participant is :meth:`RoomServer._serve`, run by the mesh for the
stream; the room's core is pumped after every input, as aioquic's protocol pumps its
connection: messages are written to each participant's stream (held back until its
``Welcome`` is out), media actions applied to the forwarding tracks, and one timer re-armed at
the earliest grant expiry. Grants carry wall-clock times, so the core's ``now`` is
``clock()`` (``time.time`` unless injected).

ICE is :func:`~auralink.calls.ice.rtc_configuration` of the given
:class:`~auralink.calls.ice.IceConfig` (host candidates only by default) on both sides; aiortc
never falls back to a public STUN server.

Every task belongs to the server's or the room's ``asyncio.TaskGroup``; leaving a room closes
its peer connection (which joins aiortc's decoder threads) and ends its stream.

Closing a peer connection while aiortc is still connecting it is safe here. aiortc runs the
connection (ICE, then DTLS, then starting each transceiver) in a task nobody holds; closed
mid-way, that task raises ``InvalidStateError: RTCIceTransport is closed`` at its next
transceiver, and asyncio logs "Task exception was never retrieved". :func:`~auralink.calls.rtc.close_peer_connection`
finds that task before closing and awaits it after, so its exception is retrieved (and logged at
debug level) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, overload

from auralink.calls.grants import Capability, Grant, RoomId, decode_grant
from auralink.calls.ice import IceConfig, checked_configuration, rtc_configuration
from auralink.calls.room_messages import (
    CODEC,
    NO_SLOT,
    ROOM_PROTOCOL,
    ChatReceived,
    Join,
    Kick,
    Leave,
    LeaveReason,
    Mute,
    ParticipantChanged,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    Publish,
    Removed,
    Reply,
    RoomMessage,
    SendChat,
    SlotChanged,
    Status,
    Subscribe,
    TrackKind,
    Unpublish,
    Unsubscribe,
    Welcome,
    error_for,
    status_of,
)
from auralink.calls.room_state import (
    GateChanged,
    ParticipantRemoved,
    RoomConfig,
    RoomState,
    StartForwarding,
    StopForwarding,
)
from auralink.calls.rtc import aiortc_module, close_peer_connection
from auralink.errors import (
    ConnectionError_,
    RemoteProtocolError,
    RoomClosed,
    RoomError,
    RoomProtocolError,
)
from auralink.identity import AuraID
from auralink.mesh import Mesh, Stream
from auralink.wire import FrameDecoder

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver
    from av import AudioFrame, VideoFrame

    from auralink.calls.sfu import ForwardTrack, Publication

__all__ = ["Kind", "Room", "RoomEvent", "RoomServer", "Subscription"]

Kind = Literal["audio", "video"]
"""A room track's kind, as aiortc names it."""
F = TypeVar("F")

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

RoomEvent = ParticipantJoined | ParticipantLeft | ParticipantChanged | ChatReceived | Removed
"""What :meth:`Room.next_event` yields: somebody joined, left or changed, a chat message, or our removal."""

REQUEST_TIMEOUT = 10.0
"""Seconds a participant waits for the SFU's reply to a request."""
JOIN_TIMEOUT = 15.0
"""Seconds the SFU waits for a ``Join``, and a participant for its ``Welcome``."""
_MIMES: dict[TrackKind, tuple[str, ...]] = {
    TrackKind.VIDEO: ("video/vp8", "video/rtx"),
    TrackKind.AUDIO: ("audio/opus",),
}


def _one_codec(transceiver: RTCRtpTransceiver) -> None:
    """Forwarding passes bitstreams through: video transceivers speak VP8 (and RTX) only, audio Opus only."""
    from aiortc import RTCRtpSender  # noqa: PLC0415

    kind = TrackKind.of(transceiver.kind)
    codecs = RTCRtpSender.getCapabilities(kind.label).codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in _MIMES[kind]])


def _configuration(ice: IceConfig) -> RTCConfiguration:
    """Our explicit ICE servers, and every m-line on one transport (a room offer has many)."""
    from aiortc import RTCBundlePolicy  # noqa: PLC0415

    configuration = checked_configuration(rtc_configuration(ice))
    configuration.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
    return configuration


async def _read_message(stream: Stream, decoder: FrameDecoder) -> RoomMessage | None:
    """The next message on ``stream``, or None at its clean end; RemoteProtocolError if malformed."""
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            message: RoomMessage = CODEC.decode(frame)  # type: ignore[assignment]
            return message
        chunk = await stream.read()
        if not chunk:
            decoder.feed_eof()
            if decoder.next_frame() is None:
                return None
            continue
        decoder.feed(chunk)


# -- server ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    """One participant at the SFU."""

    peer: AuraID
    stream: Stream
    pc: RTCPeerConnection | None = None
    publications: dict[TrackKind, Publication] = field(default_factory=dict)
    slots: dict[TrackKind, list[ForwardTrack]] = field(default_factory=dict)
    welcomed: bool = False
    backlog: list[RoomMessage] = field(default_factory=list)
    removed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, message: RoomMessage) -> None:
        if not self.welcomed:
            self.backlog.append(message)
            return
        try:
            self.stream.write(CODEC.encode(message))
        except ConnectionError_ as exc:
            logger.debug("room stream to %s broke: %s", self.peer.short(), exc)


class _Host:
    """One room at the SFU: its core, its sessions and its publications."""

    def __init__(self, server: RoomServer, room: RoomId) -> None:
        self.server = server
        self.state = RoomState(room, server.config)
        self.sessions: dict[AuraID, _Session] = {}
        self.publications: dict[tuple[AuraID, TrackKind], Publication] = {}
        self._timer: asyncio.TimerHandle | None = None

    def pump(self) -> None:
        for peer, message in self.state.messages_to_send():
            session = self.sessions.get(peer)
            if session is not None:
                session.send(message)
        while (action := self.state.next_action()) is not None:
            self._apply(action)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.state.get_timer()
        if deadline is not None:
            delay = max(0.0, deadline - self.server.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.state.handle_timer(self.server.clock())
        self.pump()

    def _slot(self, subscriber: AuraID, kind: TrackKind, slot: int) -> ForwardTrack | None:
        session = self.sessions.get(subscriber)
        if session is None:
            return None
        tracks = session.slots.get(kind, [])
        return tracks[slot] if slot < len(tracks) else None

    def _apply(self, action: Any) -> None:
        if isinstance(action, StartForwarding):
            publication = self.publications.get((action.publisher, action.kind))
            track = self._slot(action.subscriber, action.kind, action.slot)
            if publication is not None and track is not None:
                track.attach(publication)
        elif isinstance(action, StopForwarding):
            track = self._slot(action.subscriber, action.kind, action.slot)
            if track is not None:
                track.detach()
        elif isinstance(action, GateChanged):
            publication = self.publications.get((action.publisher, action.kind))
            if publication is not None:
                publication.open = action.open
                if action.open:
                    publication.request_keyframe()
        elif isinstance(action, ParticipantRemoved):
            session = self.sessions.get(action.participant)
            if session is not None:
                session.removed.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state.close()
        self.pump()


class RoomServer:
    """The SFU: serves ``auralink/room/2`` on ``mesh``; ``async with RoomServer(mesh) as server``.

    It hosts the rooms of this mesh's own identity and of every AuraID in ``owners``.
    """

    def __init__(
        self,
        mesh: Mesh,
        *,
        owners: Collection[AuraID] = (),
        config: RoomConfig | None = None,
        ice: IceConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mesh = mesh
        """The mesh the rooms are served on."""
        self.owners = frozenset(owners) | {mesh.identity.aura_id}
        """Whose rooms this server hosts."""
        self.config = config or RoomConfig()
        """Limits of each room."""
        self.ice = ice or IceConfig()
        """ICE servers of the participants' peer connections (none by default: host candidates only)."""
        self.clock = clock
        """Wall-clock Unix seconds, which grants are checked against."""
        self._hosts: dict[RoomId, _Host] = {}
        self._keyframes: asyncio.Queue[Publication] = asyncio.Queue()
        self._tasks: asyncio.TaskGroup | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._open = False

    async def __aenter__(self) -> Self:
        aiortc_module()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._pump_task = self._tasks.create_task(self._keyframe_pump())
        self._open = True
        await self.mesh.serve(ROOM_PROTOCOL, self._serve)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        for host in list(self._hosts.values()):
            host.close()
        sessions = [(s, host) for host in self._hosts.values() for s in host.sessions.values()]
        for session, host in sessions:
            await self._close_session(session, host)
        if self._pump_task is not None:
            self._pump_task.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)

    def rooms(self) -> dict[RoomId, tuple[ParticipantInfo, ...]]:
        """The rooms served now and who is in each."""
        return {room: host.state.participants() for room, host in self._hosts.items()}

    def stats(self) -> dict[str, int]:
        """Counters of the rooms served now.

        ``frames_received`` (video frames from publishers), ``frames_forwarded`` (to video
        subscription slots), and ``audio_frames_received`` and ``audio_frames_forwarded`` (Opus
        packets, 20 ms each, likewise).
        """
        counts = dict.fromkeys(("frames_received", "frames_forwarded"), 0)
        counts |= dict.fromkeys(("audio_frames_received", "audio_frames_forwarded"), 0)
        for host in self._hosts.values():
            for (_, kind), publication in host.publications.items():
                counts[("audio_" if kind is TrackKind.AUDIO else "") + "frames_received"] += publication.frames
            for session in host.sessions.values():
                for kind, tracks in session.slots.items():
                    key = ("audio_" if kind is TrackKind.AUDIO else "") + "frames_forwarded"
                    counts[key] += sum(t.forwarded for t in tracks)
        return counts

    async def _keyframe_pump(self) -> None:
        while True:
            publication = await self._keyframes.get()
            with contextlib.suppress(ConnectionError, OSError):
                await publication.send_pli()

    async def _serve(self, stream: Stream) -> None:
        peer = stream.peer
        if not self._open or peer is None:
            stream.reset()
            return
        decoder = FrameDecoder(max_size=CODEC.max_size)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                join = await _read_message(stream, decoder)
        except (RemoteProtocolError, ConnectionError_, TimeoutError) as exc:
            logger.info("no valid join from %s: %s", peer.short(), exc)
            stream.reset()
            return
        if not isinstance(join, Join):
            stream.reset()
            return
        try:
            host, grant, (slots, audio_slots) = self._check_join(join)
            session = _Session(peer, stream)
            others = host.state.join(peer, grant, slots, self.clock(), audio_slots=audio_slots)
        except RoomError as exc:
            status = exc.status if isinstance(exc, _Refusal) else status_of(exc)
            await self._refuse(stream, status, str(exc))
            self._forget_if_empty(join.room)
            return
        host.sessions[peer] = session
        try:
            answer = await self._answer(host, session, join.sdp)
        except (ValueError, RoomError, ConnectionError_, OSError) as exc:
            logger.warning("room %s: media setup for %s failed: %s", host.state.room.short(), peer.short(), exc)
            host.state.disconnected(peer)
            host.pump()
            host.sessions.pop(peer, None)
            await self._refuse(stream, Status.BAD_REQUEST, f"media setup failed: {exc}")
            await self._close_session(session, host)
            return
        session.welcomed = True
        session.send(Welcome(answer, grant.capabilities, others))
        for message in session.backlog:
            session.send(message)
        session.backlog.clear()
        host.pump()
        try:
            async with asyncio.TaskGroup() as tasks:
                reader = tasks.create_task(self._read(host, session, decoder))
                await session.removed.wait()
                reader.cancel()
        finally:
            if host.sessions.get(peer) is session:
                host.state.disconnected(peer)
                host.pump()
                del host.sessions[peer]
            await self._close_session(session, host)
            self._forget_if_empty(host.state.room)

    def _check_join(self, join: Join) -> tuple[_Host, Grant, tuple[int, int]]:
        host = self._hosts.get(join.room)
        if host is None and join.room.owner in self.owners:
            host = self._hosts[join.room] = _Host(self, join.room)
        if host is None:
            raise _Refusal(Status.NO_SUCH_ROOM, f"this node does not serve room {join.room.short()}")
        try:
            grant = decode_grant(join.grant)
        except RemoteProtocolError as exc:
            raise _Refusal(Status.BAD_REQUEST, f"malformed grant: {exc}") from exc
        try:
            slots = _check_offer(join.sdp)
        except RoomError as exc:
            raise _Refusal(Status.BAD_REQUEST, str(exc)) from exc
        return host, grant, slots

    def _forget_if_empty(self, room: RoomId) -> None:
        host = self._hosts.get(room)
        if host is not None and not host.sessions and host.state.idle:
            host.close()
            del self._hosts[room]

    async def _read(self, host: _Host, session: _Session, decoder: FrameDecoder) -> None:
        try:
            while (message := await _read_message(session.stream, decoder)) is not None:
                host.state.receive(session.peer, message, self.clock())
                host.pump()
        except RemoteProtocolError as exc:
            logger.info("room %s: %s broke the protocol: %s", host.state.room.short(), session.peer.short(), exc)
        except ConnectionError_ as exc:
            logger.debug("room stream of %s ended: %s", session.peer.short(), exc)
        host.state.disconnected(session.peer)
        host.pump()
        session.removed.set()

    async def _refuse(self, stream: Stream, status: Status, detail: str) -> None:
        with contextlib.suppress(ConnectionError_):
            stream.write(CODEC.encode(Reply(0, status, NO_SLOT, detail)))
            stream.write_eof()

    async def _answer(self, host: _Host, session: _Session, offer: str) -> str:
        from auralink.calls.sfu import ForwardTrack, Publication  # noqa: PLC0415 - needs aiortc

        aiortc = aiortc_module()
        pc: RTCPeerConnection = aiortc.RTCPeerConnection(_configuration(self.ice))
        session.pc = pc
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(offer, "offer"))
        publish = pc.getTransceivers()[:2]
        subscriptions = pc.getTransceivers()[2:]
        for transceiver in publish:
            kind = TrackKind.of(transceiver.kind)
            publication = Publication(transceiver.receiver, asyncio.get_running_loop().time, kind.label)
            publication.bind(self._keyframes)
            session.publications[kind] = host.publications[session.peer, kind] = publication
            _one_codec(transceiver)
        for transceiver in subscriptions:
            kind = TrackKind.of(transceiver.kind)
            tracks = session.slots.setdefault(kind, [])
            track = ForwardTrack(len(tracks), kind.label)
            _one_codec(transceiver)
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(track)
            track.hook(transceiver.sender)
            tracks.append(track)
        await pc.setLocalDescription(await pc.createAnswer())
        sdp: str = pc.localDescription.sdp
        return sdp

    async def _close_session(self, session: _Session, host: _Host | None = None) -> None:
        for kind, publication in session.publications.items():
            publication.close()
            if host is not None and host.publications.get((session.peer, kind)) is publication:
                del host.publications[session.peer, kind]
        for tracks in session.slots.values():
            for track in tracks:
                track.detach()
        pc, session.pc = session.pc, None
        if pc is not None:
            await close_peer_connection(pc)
        with contextlib.suppress(ConnectionError_):
            session.stream.write_eof()


class _Refusal(RoomError):
    """A join refused before the room core saw it (no such room, a malformed grant or offer)."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _check_offer(sdp: str) -> tuple[int, int]:
    """The video and audio subscription slots in a participant's offer; RoomError unless it is a room offer.

    A room offer has a sendonly video m-line (the video publish slot), a sendonly audio m-line
    (the audio publish slot), then recvonly m-lines, the subscription slots, numbered per kind in
    the order they come. Video m-lines offer VP8 first, audio m-lines Opus first.
    """
    from aiortc.sdp import SessionDescription  # noqa: PLC0415

    try:
        media = SessionDescription.parse(sdp).media
    except (ValueError, IndexError, KeyError) as exc:
        raise RoomError(f"unreadable SDP offer: {exc}") from exc
    if [(m.kind, m.direction) for m in media[:2]] != [("video", "sendonly"), ("audio", "sendonly")]:
        raise RoomError("the offer must open with sendonly video then sendonly audio m-lines (the publish slots)")
    for m in media:
        first = m.rtp.codecs[0].mimeType.lower() if m.rtp.codecs else None
        if m.kind not in ("video", "audio") or first != _MIMES[TrackKind.of(m.kind)][0]:
            raise RoomError("every m-line of a room offer is video with VP8 first or audio with Opus first")
    if any(m.direction != "recvonly" for m in media[2:]):
        raise RoomError("subscription slots are recvonly m-lines")
    video = sum(1 for m in media[2:] if m.kind == "video")
    return video, len(media) - 2 - video


# -- participant -------------------------------------------------------------------------------


class _PublishTrack:
    """The publish slot's track: relays the app's track once the SFU accepted the publication."""

    def __init__(self) -> None:
        self.source: MediaStreamTrack | None = None
        self._ready = asyncio.Event()

    def set(self, source: MediaStreamTrack | None) -> None:
        self.source = source
        if source is None:
            self._ready.clear()
        else:
            self._ready.set()

    async def recv(self) -> Any:
        while True:
            await self._ready.wait()
            source = self.source
            if source is not None:
                return await source.recv()


def _publish_track(kind: TrackKind) -> Any:
    aiortc = aiortc_module()
    label = kind.label

    class PublishTrack(aiortc.MediaStreamTrack):  # type: ignore[misc, name-defined]
        kind = label

        def __init__(self) -> None:
            super().__init__()
            self.slot = _PublishTrack()

        async def recv(self) -> Any:
            return await self.slot.recv()

    return PublishTrack()


_QUEUE = {"video": 30, "audio": 100}  # frames an iterated subscription holds: 1.5 s of video at 20 fps, 2 s of audio


class Subscription(Generic[F]):
    """Another participant's video or audio, received on one of our subscription slots.

    Video arrives as ``av.VideoFrame`` (decoded VP8), audio as ``av.AudioFrame`` (decoded Opus:
    48 kHz, stereo, signed 16-bit, 20 ms a frame), one track per publisher: the SFU does not mix.
    """

    def __init__(
        self, publisher: AuraID, slot: int, on_frame: Callable[[F], None] | None, kind: Kind = "video"
    ) -> None:
        self.publisher = publisher
        """Whose track."""
        self.kind: Kind = kind
        """``"video"`` or ``"audio"``."""
        self.slot = slot
        """Which of our subscription slots of its kind carries it."""
        self.frames_received = 0
        """Frames delivered so far."""
        self.dropped = 0
        """Frames dropped because the iterator lagged (never with ``on_frame``)."""
        self._on_frame = on_frame
        self._queue: deque[F] = deque()
        self._limit = _QUEUE[kind]
        self._ready = asyncio.Event()
        self.ended = False
        """True once the publisher stopped, left, or we unsubscribed."""

    def _deliver(self, frame: F) -> None:
        self.frames_received += 1
        if self._on_frame is not None:
            self._on_frame(frame)
        else:
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(frame)
            self._ready.set()

    def _end(self) -> None:
        self.ended = True
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[F]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[F]:
        """Decoded frames until the subscription ends; the oldest are dropped if you lag."""
        while True:
            while not self._queue:
                if self.ended:
                    return
                self._ready.clear()
                await self._ready.wait()
            yield self._queue.popleft()


class Room:
    """One participant in a room; ``async with Room(mesh, sfu, grant) as room``."""

    def __init__(
        self,
        mesh: Mesh,
        sfu: AuraID | str,
        grant: Grant,
        *,
        slots: int = 8,
        audio_slots: int = 8,
        ice: IceConfig | None = None,
    ) -> None:
        """``slots`` and ``audio_slots``: how many video and audio tracks we can receive at once (0 to 64 each)."""
        for count in (slots, audio_slots):
            if not 0 <= count <= 64:
                raise RoomError(f"a participant has 0 to 64 subscription slots of each kind, not {count}")
        self.mesh = mesh
        """Our mesh."""
        self.sfu = sfu
        """The node that serves the room."""
        self.grant = grant
        """What we may do here."""
        self.room: RoomId = grant.room
        """The room."""
        self.participants: dict[AuraID, ParticipantInfo] = {}
        """Everybody else in the room, kept up to date from the SFU's notifications."""
        self.capabilities = Capability.NONE
        """What the SFU accepted our grant for."""
        self._slots = {TrackKind.VIDEO: slots, TrackKind.AUDIO: audio_slots}
        self._ice = ice or IceConfig()
        self._stream: Stream | None = None
        self._pc: RTCPeerConnection | None = None
        self._publish: dict[TrackKind, Any] = {}
        self._published: set[TrackKind] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._events: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self._by_slot: dict[tuple[TrackKind, int], Subscription[Any]] = {}
        self._closed: RoomClosed | None = None
        self._done = asyncio.Event()

    @property
    def me(self) -> AuraID:
        """Our AuraID."""
        return self.mesh.identity.aura_id

    @property
    def closed(self) -> RoomClosed | None:
        """Why we are out of the room, or None while we are in."""
        return self._closed

    async def __aenter__(self) -> Self:
        aiortc = aiortc_module()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        try:
            await self._join(aiortc)
        except BaseException:
            await self._shutdown(RoomClosed(f"could not join {self.room.short()}", self.room.short(), "REFUSED"))
            await self._tasks.__aexit__(None, None, None)  # no task was started yet: nothing to report
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.leave()  # cancels our workers; the app's exception, if any, propagates unwrapped
        assert self._tasks is not None
        await self._tasks.__aexit__(None, None, None)

    async def _join(self, aiortc: Any) -> None:
        pc: RTCPeerConnection = aiortc.RTCPeerConnection(_configuration(self._ice))
        self._pc = pc
        self._publish = {kind: _publish_track(kind) for kind in TrackKind}
        transceivers = [pc.addTransceiver(self._publish[kind], direction="sendonly") for kind in TrackKind]
        for kind in TrackKind:
            transceivers += [pc.addTransceiver(kind.label, direction="recvonly") for _ in range(self._slots[kind])]
        for transceiver in transceivers:
            _one_codec(transceiver)
        await pc.setLocalDescription(await pc.createOffer())
        stream = self._stream = await self.mesh.open_stream(self.sfu, ROOM_PROTOCOL)
        stream.write(CODEC.encode(Join(self.room, self.grant.encode(), pc.localDescription.sdp)))
        decoder = FrameDecoder(max_size=CODEC.max_size)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                first = await _read_message(stream, decoder)
        except RemoteProtocolError as exc:
            raise RoomProtocolError(f"the SFU broke {ROOM_PROTOCOL}: {exc}", self.room.short(), "join") from exc
        except TimeoutError as exc:
            raise RoomError(f"the SFU did not answer the join within {JOIN_TIMEOUT} s", self.room.short()) from exc
        if isinstance(first, Reply):
            raise error_for(first.status, first.detail, self.room.short(), "join")
        if not isinstance(first, Welcome):
            raise RoomProtocolError(f"expected Welcome, got {type(first).__name__}", self.room.short(), "join")
        self.capabilities = first.capabilities
        self.participants = {info.aura_id: info for info in first.participants}
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(first.sdp, "answer"))
        self._spawn(self._read(stream, decoder))
        numbered: dict[TrackKind, int] = {}
        for transceiver in transceivers[2:]:
            kind = TrackKind.of(transceiver.kind)
            slot = numbered[kind] = numbered.get(kind, -1) + 1
            self._spawn(self._receive_slot(kind, slot, transceiver.receiver.track))

    def _spawn(self, coro: Any) -> None:
        assert self._tasks is not None
        task: asyncio.Task[None] = self._tasks.create_task(coro)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    # -- app API -------------------------------------------------------------------------------
    async def publish(self, track: MediaStreamTrack) -> None:
        """Publish ``track``, video or audio (by its ``kind``): one of each at a time, a new one replaces the old.

        Raises :class:`~auralink.errors.NotPermitted` without the ``publish`` grant or while muted.
        Video is sent as VP8 and audio as Opus, encoded once here; the SFU forwards them as they are.
        """
        kind = _track_kind(track.kind)
        await self._request(Publish(next(self._ids), kind), "publish")
        self._publish[kind].slot.set(track)
        self._published.add(kind)

    async def unpublish(self, kind: Kind | None = None) -> None:
        """Stop publishing our ``kind`` track, or every track we publish."""
        kinds = [_track_kind(kind)] if kind is not None else sorted(self._published) or [TrackKind.VIDEO]
        for each in kinds:
            if each in self._publish:
                self._publish[each].slot.set(None)
            self._published.discard(each)
            await self._request(Unpublish(next(self._ids), each), "unpublish")

    @overload
    async def subscribe(
        self,
        publisher: AuraID,
        on_frame: Callable[[VideoFrame], None] | None = None,
        *,
        kind: Literal["video"] = "video",
    ) -> Subscription[VideoFrame]: ...

    @overload
    async def subscribe(
        self, publisher: AuraID, on_frame: Callable[[AudioFrame], None] | None = None, *, kind: Literal["audio"]
    ) -> Subscription[AudioFrame]: ...

    async def subscribe(
        self, publisher: AuraID, on_frame: Callable[[Any], None] | None = None, *, kind: Kind = "video"
    ) -> Subscription[Any]:
        """Receive ``publisher``'s ``kind`` track: frames go to ``on_frame``, or iterate the returned subscription.

        Subscribing twice to the same track returns the first subscription. Audio comes one track
        per publisher (the SFU forwards, it does not mix): subscribe to each speaker you want to hear.
        """
        track_kind = _track_kind(kind)
        for (held, _), subscription in self._by_slot.items():
            if held is track_kind and subscription.publisher == publisher:
                return subscription
        reply = await self._request(Subscribe(next(self._ids), publisher, track_kind), "subscribe")
        subscription = Subscription[Any](publisher, reply.slot, on_frame, track_kind.label)  # type: ignore[arg-type]
        self._by_slot[track_kind, reply.slot] = subscription
        return subscription

    async def unsubscribe(self, publisher: AuraID, kind: Kind | None = None) -> None:
        """Stop receiving ``publisher``'s ``kind`` track, or all of its tracks we receive."""
        held = {k for (k, _), s in self._by_slot.items() if s.publisher == publisher}
        kinds = [_track_kind(kind)] if kind is not None else sorted(held) or [TrackKind.VIDEO]
        for each in kinds:
            await self._request(Unsubscribe(next(self._ids), publisher, each), "unsubscribe")
            for key, subscription in list(self._by_slot.items()):
                if key[0] is each and subscription.publisher == publisher:
                    del self._by_slot[key]
                    subscription._end()

    async def send_chat(self, text: str) -> None:
        """Send a chat message to everybody else (needs ``publish_data``)."""
        await self._request(SendChat(next(self._ids), text), "chat")

    async def mute(self, target: AuraID, muted: bool = True) -> None:
        """Mute (or unmute) ``target``'s tracks, audio and video, for everybody (needs ``admin``)."""
        await self._request(Mute(next(self._ids), target, muted), "mute")

    async def kick(self, target: AuraID, detail: str = "") -> None:
        """Remove ``target`` from the room (needs ``admin``)."""
        await self._request(Kick(next(self._ids), target, detail), "kick")

    async def next_event(self) -> RoomEvent:
        """The next notification; raises :class:`~auralink.errors.RoomClosed` once out of the room and drained."""
        if self._events.empty() and self._closed is not None:
            raise self._closed
        getter = asyncio.ensure_future(self._events.get())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()
            done.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if not self._events.empty():
            return self._events.get_nowait()
        assert self._closed is not None
        raise self._closed

    async def events(self) -> AsyncIterator[RoomEvent]:
        """Notifications until we are out of the room."""
        with contextlib.suppress(RoomClosed):
            while True:
                yield await self.next_event()

    async def leave(self) -> None:
        """Leave the room (a no-op once out) and release its connection and tasks."""
        if self._closed is None and self._stream is not None:
            with contextlib.suppress(ConnectionError_):
                self._stream.write(CODEC.encode(Leave()))
                self._stream.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._done.wait()
        await self._shutdown(RoomClosed(f"left {self.room.short()}", self.room.short(), LeaveReason.LEFT.name))

    # -- internals -----------------------------------------------------------------------------
    async def _request(self, message: Any, action: str) -> Reply:
        if self._closed is not None:
            raise self._closed
        assert self._stream is not None
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[message.request_id] = future
        try:
            self._stream.write(CODEC.encode(message))
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reply = await future
        except TimeoutError as exc:
            raise RoomError(
                f"the SFU did not answer {action} in {REQUEST_TIMEOUT} s", self.room.short(), action
            ) from exc
        except ConnectionError_ as exc:
            raise RoomClosed(f"the room stream broke: {exc}", self.room.short(), "SERVER_GONE") from exc
        finally:
            self._pending.pop(message.request_id, None)
        if reply.status is not Status.OK:
            raise error_for(reply.status, reply.detail, self.room.short(), action)
        return reply

    async def _read(self, stream: Stream, decoder: FrameDecoder) -> None:
        closed = RoomClosed(f"the SFU ended {self.room.short()}", self.room.short(), "SERVER_GONE")
        try:
            while (message := await _read_message(stream, decoder)) is not None:
                removed = self._handle(message)
                if removed is not None:
                    closed = removed
        except RemoteProtocolError as exc:
            logger.info("the SFU of %s broke the protocol: %s", self.room.short(), exc)
            stream.reset()
        except ConnectionError_ as exc:
            logger.debug("room stream ended: %s", exc)
        if self._closed is None:
            self._closed = closed
        self._done.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._closed)
        for subscription in self._by_slot.values():
            subscription._end()

    def _handle(self, message: RoomMessage) -> RoomClosed | None:
        if isinstance(message, Reply):
            future = self._pending.get(message.request_id)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, ParticipantJoined | ParticipantChanged):
            if message.info.aura_id != self.me:  # our own changes (publishing, muted) are events only
                self.participants[message.info.aura_id] = message.info
            self._events.put_nowait(message)
        elif isinstance(message, ParticipantLeft):
            self.participants.pop(message.aura_id, None)
            self._events.put_nowait(message)
        elif isinstance(message, ChatReceived):
            self._events.put_nowait(message)
        elif isinstance(message, SlotChanged):
            key = (message.kind, message.slot)
            subscription = self._by_slot.get(key)
            if subscription is not None and subscription.publisher == message.publisher:
                del self._by_slot[key]
                subscription._end()
        elif isinstance(message, Removed):
            self._events.put_nowait(message)
            by = f" by {message.by.short()}" if message.by else ""
            detail = f": {message.detail}" if message.detail else ""
            return RoomClosed(
                f"removed from {self.room.short()} ({message.reason.name}){by}{detail}",
                self.room.short(),
                message.reason.name,
                str(message.by) if message.by else None,
            )
        return None

    async def _receive_slot(self, kind: TrackKind, slot: int, track: MediaStreamTrack) -> None:
        from aiortc.mediastreams import MediaStreamError  # noqa: PLC0415

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                subscription = self._by_slot.get((kind, slot))
                if subscription is not None:
                    subscription._deliver(frame)

    async def _shutdown(self, reason: RoomClosed) -> None:
        if self._closed is None:
            self._closed = reason
        self._done.set()
        for publish in self._publish.values():
            publish.slot.set(None)
        pc, self._pc = self._pc, None
        if pc is not None:
            await close_peer_connection(pc)
        if self._stream is not None:
            with contextlib.suppress(ConnectionError_):
                self._stream.write_eof()
        for task in list(self._workers):
            task.cancel()
        for subscription in self._by_slot.values():
            subscription._end()


def _track_kind(kind: str) -> TrackKind:
    try:
        return TrackKind.of(kind)
    except ValueError as exc:
        raise RoomError(str(exc)) from exc

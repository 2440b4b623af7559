"""1:1 calls over the mesh: the asyncio adapter that pumps :class:`~auralink.calls.signaling.CallSignaling`.

Theory of operation
-------------------
A :class:`CallAgent` serves ``auralink/signal/1`` on one :class:`~auralink.mesh.Mesh` and owns
every call's tasks in one ``asyncio.TaskGroup`` (``async with CallAgent(mesh) as agent``). A call
is one :class:`Call`: a :class:`~auralink.calls.signaling.CallSignaling` machine, an aiortc
``RTCPeerConnection`` built from :func:`~auralink.calls.ice.rtc_configuration` (never aiortc's
default STUN server), and the signaling stream(s) it talks on.

The adapter is a pump, as aioquic's ``asyncio/protocol.py``: whatever happens (a message read off
a stream, the peer connection's state changing, the app's ``accept``/``hangup``, the timer) is
fed to the machine with ``now``, and :meth:`Call._pump` then writes the machine's messages to
the stream of their call id, re-arms the one timer at ``get_timer()``, and queues the machine's
events for the call's worker task, which does the asynchronous aiortc work (apply an answer,
create one). After a ``Hangup`` is written, that stream's write side is ended.

Media: the caller adds one transceiver per kind it asks for, ``sendrecv`` when it has a track
to send and ``recvonly`` when it only wants to receive; the callee's :meth:`Invite.accept`
attaches its own tracks to the transceivers the offer created. Every track the peer sends is a
:class:`~auralink.calls.media.RemoteTrack`, read by a pump task in the agent's task group (see
:mod:`auralink.calls.media`). The app follows the call through :meth:`Call.events`:
:class:`~auralink.calls.signaling.CallConnected`, :class:`TrackAdded`, :class:`PathChanged` and
finally :class:`~auralink.calls.signaling.CallEnded`.

aiortc gathers every candidate before ``setLocalDescription`` returns, so our SDP already holds
them and we send no trickled candidates; candidates trickled by the peer are applied.

Glare: an incoming offer from a peer we are calling is fed to our outgoing call's machine. If
we lose, the machine answers the peer's offer (``OfferReceived(glare=True)``); the worker drops
the old peer connection, builds a new one and accepts, and the app's pending
:meth:`CallAgent.call` returns that call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from auralink.calls.ice import IceConfig, IceServer, checked_configuration, rtc_configuration
from auralink.calls.media import RemoteTrack
from auralink.calls.messages import CODEC, SIGNAL_PROTOCOL, Hangup, HangupReason, MediaKinds, Offer
from auralink.calls.rtc import aiortc_module, close_peer_connection
from auralink.calls.signaling import (
    AnswerReceived,
    CallConnected,
    CallEnded,
    CallSignaling,
    CallState,
    CandidateReceived,
    OfferReceived,
    SignalingEvent,
    SignalingTimeouts,
)
from auralink.errors import (
    AuralinkError,
    CallDeclined,
    CallError,
    CallFailed,
    CallStateError,
    ConnectionError_,
    RemoteProtocolError,
)
from auralink.identity import AuraID
from auralink.mesh import Mesh, Stream
from auralink.wire import FrameDecoder

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection

    from auralink.aic.controller import AICController

__all__ = ["Call", "CallAgent", "CallEvent", "CallPath", "CallStats", "Invite", "PathChanged", "TrackAdded"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

DATA_CHANNEL_LABEL = "auralink"
"""The label of the call's data channel."""
AIC_FEED_INTERVAL = 1.0
"""Seconds between RTCP readings handed to a call's AIC controller."""
VIDEO_CLOCK_RATE = 90_000
"""RTP clock of video: RTCP jitter is in these ticks."""
TURN_TIMEOUT = 3.0
"""Seconds a call waits for TURN credentials from the home relay before going on without."""
TURN_REFRESH_MARGIN = 120.0
"""Seconds before their expiry at which cached TURN credentials are fetched anew."""


@dataclass(frozen=True, slots=True)
class CallPath:
    """The network path the call's media takes: the ICE candidate pair in use."""

    kind: Literal["host", "srflx", "prflx", "relay"]
    """The local candidate's type: ``relay`` means through a TURN server."""
    local: str
    """Our side, ``HOST:PORT``."""
    remote: str
    """The peer's side as we send to it, ``HOST:PORT``."""
    protocol: str = "udp"
    """The candidate's transport."""


@dataclass(frozen=True, slots=True)
class TrackAdded:
    """The peer started sending a track."""

    call_id: bytes
    """The call."""
    track: RemoteTrack
    """The track; attach sinks to it."""


@dataclass(frozen=True, slots=True)
class PathChanged:
    """The media path was chosen or changed."""

    call_id: bytes
    """The call."""
    path: CallPath
    """The path now in use."""


CallEvent = CallConnected | TrackAdded | PathChanged | CallEnded
"""What :meth:`Call.events` yields; :class:`~auralink.calls.signaling.CallEnded` is always last."""


@dataclass(frozen=True, slots=True)
class CallStats:
    """Counters of one call, from aiortc's stats and our own clocks (durations in seconds)."""

    path: CallPath | None
    """The media path, once connected."""
    bytes_sent: int
    """Bytes the call's transport sent (media, data and control, after encryption)."""
    bytes_received: int
    """Bytes the call's transport received."""
    frames: dict[str, int]
    """Frames received per kind (``audio``, ``video``)."""
    resolve: float | None
    """Caller only: from :meth:`CallAgent.call` to knowing the peer's key (handle resolution)."""
    signaling: float | None
    """From placing (or accepting) the call to having the peer's answer (or sending ours)."""
    connect: float | None
    """From the answer to ICE and DTLS being up."""
    first_frame: float | None
    """From the start (``call()`` or ``accept()``) to the first received frame; None before one."""
    setup: float | None
    """From the start to connected."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        path = self.path
        return {
            "path": None if path is None else {"kind": path.kind, "local": path.local, "remote": path.remote},
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "frames": dict(self.frames),
            "resolve_s": self.resolve,
            "signaling_s": self.signaling,
            "connect_s": self.connect,
            "first_frame_s": self.first_frame,
            "setup_s": self.setup,
        }


class Call:
    """One call with one peer. Use :meth:`CallAgent.call` or :meth:`Invite.accept` to get one."""

    def __init__(self, agent: CallAgent, peer: AuraID) -> None:
        self._agent = agent
        self.peer = peer
        """The other party, as proven by the mesh connection."""
        self.signaling = CallSignaling(agent.mesh.identity.aura_id, peer, timeouts=agent.timeouts)
        """The signaling machine (read its ``state``; do not drive it)."""
        self._streams: dict[bytes, Stream] = {}
        self._ended_streams: set[bytes] = set()
        self._events: asyncio.Queue[SignalingEvent] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._channel_open = asyncio.Event()
        self._incoming: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._pending_candidates: list[Any] = []
        self._offer: OfferReceived | None = None
        self._want_data = True
        self._ready = asyncio.Event()
        self.ended: CallEnded | None = None
        """How the call ended; None while it goes on."""
        self._done = asyncio.Event()
        self.tracks: dict[str, RemoteTrack] = {}
        """What the peer sends, by kind (``audio``, ``video``)."""
        self.path: CallPath | None = None
        """The media path, once connected."""
        self._app_events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._track_added = asyncio.Event()
        self._local: dict[str, MediaStreamTrack] = {}
        self.aic: AICController | None = None
        """The AIC controller driving our video encoder, when the call was placed or accepted with ``aic=``."""
        self._t_start = self._now()
        self._t_resolved: float | None = None
        self._t_answered: float | None = None
        self._t_connected: float | None = None

    def __repr__(self) -> str:
        return f"<Call {self.signaling.call_id.hex()[:8]} with {str(self.peer)[:10]} {self.signaling.state.value}>"

    # -- app API --------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        """The call id, hex."""
        return self.signaling.call_id.hex()

    @property
    def state(self) -> CallState:
        """The signaling state."""
        return self.signaling.state

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.hangup()

    def send(self, data: bytes | str) -> None:
        """Send one message on the call's data channel."""
        if self._channel is None or self._channel.readyState != "open":
            raise CallStateError("the call has no open data channel", self.call_id, self.state.value, "send")
        self._channel.send(data)

    async def receive(self) -> bytes | str:
        """The next data-channel message; raises :class:`~auralink.errors.CallFailed` once the call ended."""
        get = asyncio.ensure_future(self._incoming.get())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({get, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (get, done):
                task.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        if not self._incoming.empty():
            return self._incoming.get_nowait()
        raise self._failure()

    async def events(self) -> AsyncIterator[CallEvent]:
        """What happens to the call, in order; ends after :class:`~auralink.calls.signaling.CallEnded`."""
        while True:
            event = await self._app_events.get()
            yield event
            if isinstance(event, CallEnded):
                return

    async def track(self, kind: Literal["audio", "video"]) -> RemoteTrack:
        """The peer's ``kind`` track, once it arrives; :class:`~auralink.errors.CallFailed` if the call ends first."""
        while kind not in self.tracks:
            added = asyncio.ensure_future(self._track_added.wait())
            done = asyncio.ensure_future(self._done.wait())
            try:
                await asyncio.wait({added, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                added.cancel()
                done.cancel()
            self._track_added.clear()
            if kind not in self.tracks and self._done.is_set():
                raise self._failure()
        return self.tracks[kind]

    async def stats(self) -> CallStats:
        """Bytes, frames, path and setup times so far."""
        pc = self._pc
        sent, received = (_transport_bytes(pc) or (0, 0)) if pc is not None else self._final_bytes
        first = [t.first_frame_at for t in self.tracks.values() if t.first_frame_at is not None]
        return CallStats(
            path=self.path,
            bytes_sent=sent,
            bytes_received=received,
            frames={kind: track.frames_received for kind, track in self.tracks.items()},
            resolve=_span(self._t_start, self._t_resolved),
            signaling=_span(self._t_resolved or self._t_start, self._t_answered),
            connect=_span(self._t_answered, self._t_connected),
            first_frame=_span(self._t_start, min(first) if first else None),
            setup=_span(self._t_start, self._t_connected),
        )

    async def hangup(self, reason: HangupReason = HangupReason.NORMAL) -> None:
        """End the call (a no-op if it has ended) and wait until its resources are released."""
        if self.signaling.state is not CallState.ENDED:
            self.signaling.hangup(self._now(), reason)
            self._pump()
        await self._done.wait()

    async def wait_ended(self) -> CallEnded:
        """Wait for the end of the call; returns how it ended."""
        await self._done.wait()
        assert self.ended is not None
        return self.ended

    # -- pump -----------------------------------------------------------------------------------
    def _now(self) -> float:
        return self._agent.clock()

    def _pump(self) -> None:
        for message in self.signaling.messages_to_send():
            stream = self._streams.get(message.call_id)
            if stream is None or message.call_id in self._ended_streams:
                continue
            try:
                stream.write(CODEC.encode(message))
                if isinstance(message, Hangup):
                    self._ended_streams.add(message.call_id)
                    stream.write_eof()
            except ConnectionError_ as exc:
                logger.debug("signaling write failed: %s", exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.signaling.get_timer()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - self._now()), self._on_timer)
        while (event := self.signaling.next_event()) is not None:
            self._events.put_nowait(event)

    def _on_timer(self) -> None:
        self._timer = None
        self.signaling.handle_timer(self._now())
        self._pump()

    async def _read(self, stream: Stream, decoder: FrameDecoder | None = None) -> None:
        """Feed one signaling stream to the machine until it ends."""
        decoder = decoder or FrameDecoder(max_size=CODEC.max_size)
        try:
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    chunk = await stream.read()
                    if not chunk:
                        decoder.feed_eof()
                        if decoder.next_frame() is None:
                            break
                        continue
                    decoder.feed(chunk)
                    continue
                message = CODEC.decode(frame)
                self.signaling.receive(message, self._now())  # type: ignore[arg-type]
                self._pump()
        except RemoteProtocolError as exc:
            self.signaling.undecodable(exc, self._now())
            self._pump()
            stream.reset()
            return
        except ConnectionError_ as exc:
            logger.debug("signaling stream broke: %s", exc)
        if self._streams.get(self.signaling.call_id) is stream:
            self.signaling.stream_closed(self._now())
            self._pump()

    # -- worker ---------------------------------------------------------------------------------
    async def _work(self) -> None:
        """Do the aiortc work the machine's events ask for, until the call ends."""
        try:
            while True:
                event = await self._events.get()
                try:
                    if await self._handle(event):
                        return
                except (CallError, ConnectionError_, ValueError, OSError) as exc:
                    logger.warning("call %s: %s", self.call_id, exc)
                    if self.signaling.state not in (CallState.ENDED, CallState.IDLE):
                        self.signaling.hangup(self._now(), HangupReason.CONNECT_FAILED, str(exc))
                        self._pump()
        finally:
            await self._release()

    async def _handle(self, event: SignalingEvent) -> bool:
        aiortc = aiortc_module()
        if isinstance(event, OfferReceived):
            self._offer = event
            if event.glare:
                await self._close_pc()
                await self._answer()
            else:
                self._agent._invites.put_nowait(Invite(self, event))
        elif isinstance(event, AnswerReceived):
            assert self._pc is not None
            self._t_answered = self._now()
            await self._pc.setRemoteDescription(aiortc.RTCSessionDescription(event.sdp, "answer"))
            await self._flush_candidates()
        elif isinstance(event, CandidateReceived):
            self._pending_candidates.append(event.candidate)
            if self._pc is not None and self._pc.remoteDescription is not None:
                await self._flush_candidates()
        elif isinstance(event, CallConnected):
            self._t_connected = self._now()
            self._app_events.put_nowait(event)
            self._note_path()
            if not self._want_data:
                self._ready.set()
        elif isinstance(event, CallEnded):
            self.ended = event
            return True
        return False

    def _note_path(self) -> None:
        path = _ice_path(self._pc) if self._pc is not None else None
        if path is not None and path != self.path:
            self.path = path
            self._app_events.put_nowait(PathChanged(self.signaling.call_id, path))

    async def _flush_candidates(self) -> None:
        from aiortc.sdp import candidate_from_sdp  # noqa: PLC0415

        assert self._pc is not None
        pending, self._pending_candidates = self._pending_candidates, []
        for message in pending:
            if message.end_of_candidates:
                continue
            candidate = candidate_from_sdp(message.candidate.removeprefix("candidate:"))
            candidate.sdpMid, candidate.sdpMLineIndex = message.sdp_mid, message.sdp_mline_index
            await self._pc.addIceCandidate(candidate)

    async def _new_pc(self) -> RTCPeerConnection:
        aiortc = aiortc_module()
        ice = await self._agent.ice_config()
        pc: RTCPeerConnection = aiortc.RTCPeerConnection(checked_configuration(rtc_configuration(ice)))

        @pc.on("connectionstatechange")
        def _state_changed() -> None:
            if pc is not self._pc:
                return
            state = self.signaling.state
            if pc.connectionState == "connected" and state is CallState.CONNECTING:
                self.signaling.media_connected(self._now())
                self._pump()
            elif pc.connectionState == "failed" and state in (CallState.CONNECTING, CallState.CONNECTED):
                self.signaling.media_failed(self._now(), "ICE or DTLS failed")
                self._pump()

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            if pc is self._pc and channel.label == DATA_CHANNEL_LABEL:
                self._attach(channel)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if pc is not self._pc or track.kind in self.tracks:
                return
            remote = RemoteTrack(track)
            self.tracks[remote.kind] = remote
            self._agent._spawn(remote._pump(self._now))
            self._app_events.put_nowait(TrackAdded(self.signaling.call_id, remote))
            self._track_added.set()

        self._pc = pc
        return pc

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channel = channel

        @channel.on("message")
        def _message(data: bytes | str) -> None:
            self._incoming.put_nowait(data)

        def _opened() -> None:
            self._channel_open.set()
            self._ready.set()

        if channel.readyState == "open":
            _opened()
        else:
            channel.on("open", _opened)

    def _add_media(self, pc: RTCPeerConnection, kind: str, media: bool | MediaStreamTrack) -> None:
        """Caller: one transceiver for ``kind``, sending ``media`` if it is a track."""
        if media is False:
            return
        if media is True:
            pc.addTransceiver(kind, direction="recvonly")
            return
        self._local[kind] = media
        transceiver = pc.addTransceiver(self._send_track(kind, media), direction="sendrecv")
        self._attach_aic(kind, transceiver.sender)

    def _use_aic(self, mode: str | None) -> None:
        if mode is None:
            return
        from auralink.aic import HintEngine, Mode  # noqa: PLC0415 - numpy loads only for AIC
        from auralink.aic.controller import AICController  # noqa: PLC0415

        try:
            engine = HintEngine(Mode(mode))
        except ValueError as exc:
            raise CallStateError(f"aic= takes conservative, adaptive or aggressive, not {mode!r}") from exc
        self.aic = AICController(engine)

    def _send_track(self, kind: str, track: MediaStreamTrack) -> MediaStreamTrack:
        """What goes to the sender: the app's track, or, for video under AIC, the controller's wrapper."""
        return self.aic.wrap(track) if self.aic is not None and kind == "video" else track

    def _attach_aic(self, kind: str, sender: Any) -> None:
        if self.aic is not None and kind == "video":
            self.aic.attach(sender)
            self._agent._spawn(self._feed_aic(self.aic, sender))

    async def _feed_aic(self, controller: AICController, sender: Any) -> None:
        """Every :data:`AIC_FEED_INTERVAL` s, hand the sender's RTCP view of the path (RTT, loss, jitter) to AIC."""
        while not self._done.is_set():
            for stat in (await sender.getStats()).values():
                if stat.type == "remote-inbound-rtp" and stat.roundTripTime is not None:
                    controller.update_path(
                        rtt_s=float(stat.roundTripTime),
                        loss=min(1.0, stat.fractionLost / 256),  # RTCP's 8-bit fixed point
                        jitter_s=stat.jitter / VIDEO_CLOCK_RATE,
                    )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(AIC_FEED_INTERVAL):
                    await self._done.wait()

    async def _offer_call(
        self,
        media: MediaKinds,
        stream_opener: Callable[[], Any],
        audio: bool | MediaStreamTrack = False,
        video: bool | MediaStreamTrack = False,
    ) -> None:
        pc = await self._new_pc()
        self._want_data = bool(media & MediaKinds.DATA)
        self._add_media(pc, "audio", audio)
        self._add_media(pc, "video", video)
        if self._want_data:
            self._attach(pc.createDataChannel(DATA_CHANNEL_LABEL))
        await pc.setLocalDescription(await pc.createOffer())
        stream: Stream = await stream_opener()
        call_id = self._agent.new_call_id()
        self._streams[call_id] = stream
        self.signaling.call(call_id, media, pc.localDescription.sdp, self._now())
        self._agent._outgoing[self.peer] = self
        self._agent._spawn(self._read(stream))
        self._pump()

    async def _answer(self) -> None:
        aiortc = aiortc_module()
        assert self._offer is not None
        pc = await self._new_pc()
        self._want_data = bool(self._offer.media & MediaKinds.DATA)
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(self._offer.sdp, "offer"))
        for transceiver in pc.getTransceivers():
            track = self._local.get(transceiver.kind)
            if track is not None:
                transceiver.sender.replaceTrack(self._send_track(transceiver.kind, track))
                transceiver.direction = "sendrecv"
                self._attach_aic(transceiver.kind, transceiver.sender)
        await pc.setLocalDescription(await pc.createAnswer())
        if self.signaling.state is not CallState.RINGING:
            raise self._failure()
        self.signaling.accept(pc.localDescription.sdp, self._now())
        self._t_answered = self._now()
        self._pump()
        await self._flush_candidates()

    async def _wait_ready(self) -> None:
        ready = asyncio.ensure_future(self._ready.wait())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({ready, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            done.cancel()
        if self._done.is_set() or self.signaling.state is CallState.ENDED:
            raise self._failure()

    _final_bytes: tuple[int, int] = (0, 0)

    def _failure(self) -> CallFailed:
        end = self.ended
        reason = end.reason if end else HangupReason.GONE
        by_peer = end.by_peer if end else False
        detail = f": {end.detail}" if end and end.detail else ""
        cls = CallDeclined if reason in (HangupReason.DECLINED, HangupReason.BUSY) else CallFailed
        side = "the peer" if by_peer else "this side"
        return cls(f"call ended by {side} ({reason.name}){detail}", self.call_id or None, reason.name, by_peer)

    async def _close_pc(self) -> None:
        pc, self._pc = self._pc, None
        self._channel = None
        if pc is not None:
            if (counted := _transport_bytes(pc)) is not None:
                self._final_bytes = counted  # stats() keeps reporting them after the call
            await close_peer_connection(pc)

    async def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._close_pc()
        for track in self._local.values():
            track.stop()  # the call owns what it was given to send: a file's reader thread ends here
        if self.ended is not None:
            self._app_events.put_nowait(self.ended)
        for call_id, stream in self._streams.items():
            if call_id not in self._ended_streams:
                self._ended_streams.add(call_id)
                with contextlib.suppress(ConnectionError_):
                    stream.write_eof()
        if self._agent._outgoing.get(self.peer) is self:
            del self._agent._outgoing[self.peer]
        self._done.set()


class Invite:
    """An incoming call, ringing: :meth:`accept` or :meth:`decline` it."""

    def __init__(self, call: Call, offer: OfferReceived) -> None:
        self.call = call
        """The call this invite rings for."""
        self.peer = call.peer
        """Who calls, as proven by the mesh connection."""
        self.media = offer.media
        """What the caller asked for."""

    @property
    def call_id(self) -> str:
        """The call id, hex."""
        return self.call.call_id

    async def accept(
        self,
        *,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        aic: str | None = None,
    ) -> Call:
        """Answer; returns the call once media (and the data channel, if offered) is up.

        ``audio`` and ``video`` are the tracks to send back, if the caller offered that kind;
        the call receives whatever the caller sends either way. The call stops them when it ends.
        ``aic`` (``conservative``, ``adaptive`` or ``aggressive``) lets AIC drive our video encoder.
        """
        self.call._use_aic(aic)
        for kind, track, offered in (("audio", audio, MediaKinds.AUDIO), ("video", video, MediaKinds.VIDEO)):
            if track is not None:
                if not self.media & offered:
                    raise CallStateError(f"the caller offered no {kind}", self.call_id, "ringing", "accept")
                self.call._local[kind] = track
        self.call._t_start = self.call._now()
        await self.call._answer()
        await self.call._wait_ready()
        return self.call

    async def decline(self, reason: HangupReason = HangupReason.DECLINED) -> None:
        """Refuse the call (``DECLINED`` or ``BUSY``)."""
        self.call.signaling.decline(self.call._now(), reason)
        self.call._pump()
        await self.call._done.wait()


class CallAgent:
    """Places and receives calls for one mesh; ``async with CallAgent(mesh) as agent``."""

    def __init__(
        self,
        mesh: Mesh,
        *,
        ice: IceConfig | None = None,
        timeouts: SignalingTimeouts | None = None,
        clock: Callable[[], float] | None = None,
        call_ids: Callable[[], bytes] | None = None,
        turn: bool = True,
    ) -> None:
        self.mesh = mesh
        """The mesh the calls run over."""
        self.ice = ice or IceConfig()
        """ICE servers for every call (none by default: host candidates only)."""
        self.turn = turn
        """Add the TURN server of our home relay to each call, unless ``ice`` names one (see :meth:`ice_config`)."""
        self._turn: IceServer | None = None
        self._turn_expires = 0.0
        self.timeouts = timeouts or SignalingTimeouts()
        """Signaling deadlines."""
        self.clock: Callable[[], float] = clock or (lambda: asyncio.get_running_loop().time())
        """Monotonic seconds, fed to the signaling machines."""
        self._call_ids = call_ids or (lambda: os.urandom(16))
        self._tasks: asyncio.TaskGroup | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._calls: set[Call] = set()
        self._invites: asyncio.Queue[Invite] = asyncio.Queue()
        self._outgoing: dict[AuraID, Call] = {}
        self._open = False

    async def ice_config(self) -> IceConfig:
        """The ICE configuration of the next call.

        ``ice`` as given, plus, when :attr:`turn` is on and ``ice`` lists no TURN server, the TURN
        server of our first ready home relay with credentials it issued to our AuraID over
        ``auralink/turn/1`` (cached until shortly before they expire). Without a home relay, or
        if the relay refuses or does not answer within :data:`TURN_TIMEOUT`, the call goes on
        with host candidates (and STUN, if configured): a LAN call needs no relay.
        """
        if not self.turn or any(server.is_turn for server in self.ice.servers):
            return self.ice
        now = time.time()
        if self._turn is None or now > self._turn_expires - TURN_REFRESH_MARGIN:
            self._turn = await self._fetch_turn()
        if self._turn is None:
            return self.ice
        return IceConfig(servers=(*self.ice.servers, self._turn), transport_policy=self.ice.transport_policy)

    async def _fetch_turn(self) -> IceServer | None:
        from auralink.calls.turn import turn_credentials  # noqa: PLC0415

        relays = [r for r in (await self.mesh.status()).get("relays", []) if r.get("home") and r.get("ready")]
        for entry in relays:
            relay, _, address = str(entry["relay"]).partition("@")
            try:
                creds = await turn_credentials(self.mesh, relay, addresses=[address], timeout=TURN_TIMEOUT)
            except (AuralinkError, TimeoutError) as exc:
                logger.info("no TURN credentials from relay %s: %s", relay[:10], exc)
                continue
            if creds.urls:
                self._turn_expires = float(creds.expires_at)
                return IceServer(creds.urls[0], username=creds.username, credential=creds.password)
        return None

    def new_call_id(self) -> bytes:
        """A fresh random call id."""
        return self._call_ids()

    async def __aenter__(self) -> Self:
        aiortc_module()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._open = True
        await self.mesh.serve(SIGNAL_PROTOCOL, self._serve)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        for call in list(self._calls):
            with contextlib.suppress(CallError):
                await asyncio.wait_for(call.hangup(HangupReason.NORMAL), 5.0)
        for task in list(self._workers):
            task.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        assert self._tasks is not None
        task: asyncio.Task[None] = self._tasks.create_task(coro)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        return task

    def _track(self, call: Call) -> None:
        self._calls.add(call)
        task = self._spawn(call._work())
        task.add_done_callback(lambda _: self._calls.discard(call))

    async def call(
        self,
        target: AuraID | str,
        *,
        audio: bool | MediaStreamTrack = False,
        video: bool | MediaStreamTrack = False,
        data: bool = True,
        aic: str | None = None,
    ) -> Call:
        """Call ``target`` (an AuraID or ``@handle``); returns once the call is connected.

        ``audio`` and ``video`` are False (none), True (receive what the callee sends) or a
        track to send (see :mod:`auralink.calls.media`), which the call stops when it ends.
        ``aic`` (``conservative``, ``adaptive`` or ``aggressive``) lets AIC drive the video
        encoder (:mod:`auralink.aic`): bitrate, size and rate follow the content and the network.
        Raises :class:`~auralink.errors.CallDeclined` if the callee declines or is busy, and
        :class:`~auralink.errors.CallFailed` if the call ends before it connects.
        """
        for kind, media_arg in (("audio", audio), ("video", video)):
            if not isinstance(media_arg, bool) and getattr(media_arg, "kind", None) != kind:
                raise CallStateError(f"{kind}= takes True, False or an aiortc {kind} track, not {media_arg!r}")
        if not (audio is not False or video is not False or data):
            raise CallStateError("a call needs at least one of audio, video or data")
        if not self._open:
            raise CallStateError("the call agent is not running; use `async with CallAgent(mesh)`")
        started = self.clock()
        peer = await self.mesh.peer_of(target)  # an AuraID, or the key a handle resolves to
        media = MediaKinds(0)
        if audio is not False:
            media |= MediaKinds.AUDIO
        if video is not False:
            media |= MediaKinds.VIDEO
        if data:
            media |= MediaKinds.DATA
        call = Call(self, peer)
        call._use_aic(aic)
        call._t_start, call._t_resolved = started, self.clock()
        self._track(call)
        try:
            await call._offer_call(
                media, lambda: self.mesh.open_stream(peer, SIGNAL_PROTOCOL), audio=audio, video=video
            )
        except BaseException:
            if call.state is CallState.IDLE:
                call.signaling.hangup(call._now())
                call._pump()
            raise
        await call._wait_ready()
        return call

    async def incoming(self) -> AsyncIterator[Invite]:
        """Incoming calls, as they ring."""
        while True:
            yield await self._invites.get()

    async def next_invite(self) -> Invite:
        """The next incoming call."""
        return await self._invites.get()

    async def _serve(self, stream: Stream) -> None:
        """Handle one incoming signaling stream; runs in the mesh's task for the stream."""
        peer = stream.peer
        if not self._open or peer is None:
            stream.reset()
            return
        decoder = FrameDecoder(max_size=CODEC.max_size)
        first = None
        try:
            while first is None:
                frame = decoder.next_frame()
                if frame is not None:
                    first = CODEC.decode(frame)
                    break
                chunk = await stream.read()
                if not chunk:
                    return
                decoder.feed(chunk)
        except RemoteProtocolError as exc:
            logger.info("bad signaling from %s: %s", str(peer)[:10], exc)
            stream.reset()
            return
        except ConnectionError_:
            return
        outgoing = self._outgoing.get(peer)
        if isinstance(first, Offer) and outgoing is not None and outgoing.state is CallState.CALLING:
            call = outgoing  # glare: the machine decides who answers whom
        else:
            call = Call(self, peer)
            self._track(call)
        call._streams[first.call_id] = stream  # type: ignore[attr-defined]
        call.signaling.receive(first, call._now())  # type: ignore[arg-type]
        call._pump()
        await call._read(stream, decoder)


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


def _dtls_transport(pc: RTCPeerConnection) -> Any:
    """The call's one (bundled) DTLS transport, or None before there is one."""
    for transceiver in pc.getTransceivers():
        if transceiver.sender.transport is not None:
            return transceiver.sender.transport
    return pc.sctp.transport if pc.sctp is not None else None


def _transport_bytes(pc: RTCPeerConnection) -> tuple[int, int] | None:
    """Bytes sent and received by the call's transport so far, or None before it has one."""
    transport = _dtls_transport(pc)
    if transport is None:
        return None
    for stat in transport._get_stats().values():  # one RTCTransportStats
        return int(stat.bytesSent), int(stat.bytesReceived)
    return None


def _ice_path(pc: RTCPeerConnection) -> CallPath | None:
    """The nominated ICE candidate pair, read from aioice (aiortc has no public API for it)."""
    transport = _dtls_transport(pc)
    connection = getattr(getattr(transport, "transport", None), "_connection", None)
    pair = getattr(connection, "_nominated", {}).get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return CallPath(
        kind=local.type,
        local=_hostport(local.host, local.port),
        remote=_hostport(remote.host, remote.port),
        protocol=local.transport.lower(),
    )


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

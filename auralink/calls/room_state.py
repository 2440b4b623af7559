"""One room's state at its SFU, as a sans-I/O core: :class:`RoomState`.

Theory of operation
-------------------
The SFU keeps one :class:`RoomState` per room it serves. It knows who is in the room, with which
grant, who publishes, who is muted, and which publisher each participant's subscription slots
carry. It is driven like aioquic's ``QuicConnection``: the adapter feeds it what happened, each
time with ``now`` (Unix seconds: grants carry wall-clock times, so this core's clock is the wall
clock, injected), then drains :meth:`~RoomState.messages_to_send` (``(participant, message)``
pairs to write on that participant's ``auralink/room/2`` stream) and
:meth:`~RoomState.next_action` (what the media layer must do), and re-arms one timer at
:meth:`~RoomState.get_timer` (the earliest grant expiry).

Inputs: :meth:`~RoomState.join` (with the decoded grant; raises the
:class:`~auralink.errors.GrantError` that refuses it), :meth:`~RoomState.receive` (any request
of a joined participant), :meth:`~RoomState.disconnected` (its stream ended) and
:meth:`~RoomState.handle_timer`.

Enforcement happens on every action, not only at the door: each request re-checks that the
participant is in the room, that its grant has not expired since (``now``), and that the grant
has the capability the request needs (:data:`NEEDS`). A refusal is a :class:`Reply` with a
:class:`~auralink.calls.room_messages.Status` to that participant only; nothing else changes. A
participant whose grant expires is removed at the timer with ``GRANT_EXPIRED``.

Media actions (:class:`MediaAction`) tell the adapter what to forward: :class:`StartForwarding`
(publisher's frames to a subscriber's slot, with a keyframe request upstream for video), :class:`StopForwarding`,
:class:`GateChanged` (a publisher's frames are forwarded only while it publishes that kind of
track and is not muted, so a participant without ``publish`` that sends RTP anyway reaches
nobody) and :class:`ParticipantRemoved` (close its peer connection after the last message).
Every track is one of two kinds (:class:`~auralink.calls.room_messages.TrackKind`): each
participant has one publish slot and its own subscription slots per kind, and the actions name
the kind. An admin's mute silences all of a participant's tracks.

Kicked participants are banned from the room until the owner issues them a grant whose
``not_before`` is later than the kick: re-presenting the old grant is refused.

This module is a pure core: no I/O, no clocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from auralink.calls.grants import Capability, Grant, RoomId, verify
from auralink.calls.room_messages import (
    MAX_PARTICIPANTS,
    ChatReceived,
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
    status_of,
)
from auralink.errors import GrantError, NotPermitted, RoomError
from auralink.identity.keys import AuraID

__all__ = [
    "NEEDS",
    "GateChanged",
    "MediaAction",
    "ParticipantRemoved",
    "RoomConfig",
    "RoomState",
    "StartForwarding",
    "StopForwarding",
]

Request = Publish | Unpublish | Subscribe | Unsubscribe | SendChat | Mute | Kick | Leave

NEEDS: dict[type, Capability] = {
    Publish: Capability.PUBLISH,
    Unpublish: Capability.JOIN,
    Subscribe: Capability.SUBSCRIBE,
    Unsubscribe: Capability.JOIN,
    SendChat: Capability.PUBLISH_DATA,
    Mute: Capability.ADMIN,
    Kick: Capability.ADMIN,
    Leave: Capability.NONE,
}
"""The capability each request needs, checked against the grant on every request."""

_ACTIONS = {
    Publish: "publish",
    Unpublish: "unpublish",
    Subscribe: "subscribe",
    Unsubscribe: "unsubscribe",
    SendChat: "chat",
    Mute: "mute",
    Kick: "kick",
    Leave: "leave",
}


@dataclass(frozen=True, slots=True)
class RoomConfig:
    """Limits of one room at its SFU."""

    max_participants: int = 16
    """Most participants at once."""
    max_slots: int = 15
    """Most video subscription slots per participant (the rest of its offer's video m-lines are left unused)."""
    max_audio_slots: int = 15
    """Most audio subscription slots per participant."""

    def slot_limit(self, kind: TrackKind) -> int:
        """Most subscription slots of ``kind`` per participant."""
        return self.max_audio_slots if kind is TrackKind.AUDIO else self.max_slots


@dataclass(frozen=True, slots=True)
class StartForwarding:
    """Forward ``publisher``'s frames to ``subscriber``'s subscription slot ``slot``, from a keyframe."""

    publisher: AuraID
    """Whose frames."""
    subscriber: AuraID
    """To whom."""
    slot: int
    """On which of the subscriber's slots of ``kind``."""
    kind: TrackKind = TrackKind.VIDEO
    """Which track of the publisher, and which kind of slot."""


@dataclass(frozen=True, slots=True)
class StopForwarding:
    """Stop forwarding anything to ``subscriber``'s slot ``slot`` of ``kind``."""

    subscriber: AuraID
    """Whose slot."""
    slot: int
    """Which slot."""
    kind: TrackKind = TrackKind.VIDEO
    """Which kind of slot."""


@dataclass(frozen=True, slots=True)
class GateChanged:
    """``publisher``'s frames of ``kind`` are now forwarded (``open``) or dropped at the SFU."""

    publisher: AuraID
    """Whose frames."""
    open: bool
    """True while it publishes that kind and is not muted."""
    kind: TrackKind = TrackKind.VIDEO
    """Which of its tracks."""


@dataclass(frozen=True, slots=True)
class ParticipantRemoved:
    """``participant`` is out of the room: close its media once its last messages are written."""

    participant: AuraID
    """Who."""
    reason: LeaveReason
    """Why."""


MediaAction = StartForwarding | StopForwarding | GateChanged | ParticipantRemoved
"""What the media layer must do."""


@dataclass(slots=True)
class _Participant:
    grant: Grant
    slots: dict[TrackKind, list[AuraID | None]]
    publishing: set[TrackKind] = field(default_factory=set)
    muted: bool = False

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(
            self.grant.subject,
            self.grant.capabilities,
            TrackKind.VIDEO in self.publishing,
            self.muted,
            TrackKind.AUDIO in self.publishing,
        )

    def forwards(self, kind: TrackKind) -> bool:
        return kind in self.publishing and not self.muted


class RoomState:
    """Who is in one room and what they may do; see the module docstring."""

    def __init__(self, room: RoomId, config: RoomConfig | None = None) -> None:
        self.room = room
        """The room this state is for."""
        self.config = config or RoomConfig()
        """Its limits."""
        self._participants: dict[AuraID, _Participant] = {}
        self._banned: dict[AuraID, float] = {}
        self._out: deque[tuple[AuraID, RoomMessage]] = deque()
        self._actions: deque[MediaAction] = deque()

    # -- queries ---------------------------------------------------------------------------------
    def participants(self) -> tuple[ParticipantInfo, ...]:
        """Everybody in the room, in the order they joined."""
        return tuple(p.info() for p in self._participants.values())

    @property
    def idle(self) -> bool:
        """True if nobody is in the room and nobody is banned from it: the SFU may forget it."""
        return not self._participants and not self._banned

    def __contains__(self, aura_id: object) -> bool:
        return aura_id in self._participants

    def slots(self, participant: AuraID, kind: TrackKind = TrackKind.VIDEO) -> tuple[AuraID | None, ...]:
        """Which publisher each of ``participant``'s subscription slots of ``kind`` carries."""
        return tuple(self._participants[participant].slots[kind])

    def forwards_from(self, publisher: AuraID, kind: TrackKind = TrackKind.VIDEO) -> bool:
        """True if ``publisher``'s frames of ``kind`` may be forwarded now (it publishes them and is not muted)."""
        p = self._participants.get(publisher)
        return p is not None and p.forwards(kind)

    def messages_to_send(self) -> list[tuple[AuraID, RoomMessage]]:
        """Messages to write, each to one participant's stream, in order."""
        out = list(self._out)
        self._out.clear()
        return out

    def next_action(self) -> MediaAction | None:
        """The next media action, or None."""
        return self._actions.popleft() if self._actions else None

    def get_timer(self) -> float | None:
        """When the earliest grant in the room expires (Unix seconds), or None if the room is empty."""
        return min((p.grant.expires_at for p in self._participants.values()), default=None)

    # -- inputs ----------------------------------------------------------------------------------
    def join(
        self, peer: AuraID, grant: Grant, slots: int, now: float, *, audio_slots: int = 0
    ) -> tuple[ParticipantInfo, ...]:
        """Admit ``peer`` (proven by its connection) with ``grant``, ``slots`` video and ``audio_slots`` audio slots.

        Returns the participants already in the room (for the :class:`Welcome`). Raises the
        :class:`~auralink.errors.GrantError` that refuses the grant, or
        :class:`~auralink.errors.RoomError` if ``peer`` is already in or the room is full.
        """
        room = self.room.short()
        verify(grant, self.room, now, subject=peer)
        grant.require(Capability.JOIN, "join")
        kicked_at = self._banned.get(peer)
        if kicked_at is not None and grant.not_before <= kicked_at:
            raise NotPermitted(
                f"{peer.short()} was kicked from {room}; only a grant issued after the kick lets it back in",
                room,
                "join",
                "join",
            )
        if peer in self._participants:
            raise RoomError(f"{peer.short()} is already in {room}", room, "join")
        if len(self._participants) >= min(self.config.max_participants, MAX_PARTICIPANTS):
            raise RoomError(f"{room} is full ({self.config.max_participants} participants)", room, "join")
        others = self.participants()
        counts = {TrackKind.VIDEO: slots, TrackKind.AUDIO: audio_slots}
        joined = _Participant(
            grant, {kind: [None] * max(0, min(n, self.config.slot_limit(kind))) for kind, n in counts.items()}
        )
        self._participants[peer] = joined
        self._broadcast(ParticipantJoined(joined.info()), but=peer)
        return others

    def receive(self, peer: AuraID, message: RoomMessage, now: float) -> None:
        """Handle a request from ``peer``; a refusal is a :class:`Reply` to ``peer`` and changes nothing."""
        participant = self._participants.get(peer)
        if participant is None:
            return  # left or removed already: late messages are ignored
        if not isinstance(message, tuple(NEEDS)):
            raise RoomError(f"{type(message).__name__} is not a request", self.room.short())
        request: Request = message  # type: ignore[assignment]
        if isinstance(request, Leave):
            self._remove(peer, LeaveReason.LEFT)
            return
        action = _ACTIONS[type(request)]
        try:
            if participant.grant.expires_at <= now:
                self._remove(peer, LeaveReason.GRANT_EXPIRED)
                return
            participant.grant.require(NEEDS[type(request)], action)
            slot = self._handle(peer, participant, request, now)
        except GrantError as exc:
            self._reply(peer, request.request_id, status_of(exc), str(exc))
            return
        except _Refused as refused:
            self._reply(peer, request.request_id, refused.status, refused.detail)
            return
        self._out.append((peer, Reply(request.request_id, Status.OK, slot)))

    def disconnected(self, peer: AuraID) -> None:
        """``peer``'s stream or connection ended."""
        if peer in self._participants:
            self._remove(peer, LeaveReason.GONE, notify=False)

    def handle_timer(self, now: float) -> None:
        """Remove every participant whose grant has expired."""
        for peer, participant in list(self._participants.items()):
            if participant.grant.expires_at <= now:
                self._remove(peer, LeaveReason.GRANT_EXPIRED)

    def close(self) -> None:
        """The SFU stops serving the room: everybody is removed with ``SERVER_CLOSED``."""
        for peer in list(self._participants):
            self._remove(peer, LeaveReason.SERVER_CLOSED)

    # -- requests --------------------------------------------------------------------------------
    def _handle(self, peer: AuraID, me: _Participant, request: Request, now: float) -> int:
        if isinstance(request, Publish):
            if me.muted:
                raise NotPermitted(
                    f"{peer.short()} is muted by an admin in {self.room.short()}", self.room.short(), "publish"
                )
            if request.kind not in me.publishing:
                me.publishing.add(request.kind)
                self._changed(peer, me, (request.kind,))
        elif isinstance(request, Unpublish):
            if request.kind in me.publishing:
                me.publishing.discard(request.kind)
                self._changed(peer, me, (request.kind,))
                self._release_slots_of(peer, request.kind)
        elif isinstance(request, Subscribe):
            return self._subscribe(peer, me, request.publisher, request.kind)
        elif isinstance(request, Unsubscribe):
            slots = me.slots[request.kind]
            for slot, publisher in enumerate(slots):
                if publisher == request.publisher:
                    slots[slot] = None
                    self._actions.append(StopForwarding(peer, slot, request.kind))
                    return slot
            raise _Refused(Status.NOT_FOUND, f"not subscribed to {request.publisher.short()}'s {request.kind.label}")
        elif isinstance(request, SendChat):
            self._broadcast(ChatReceived(peer, request.text), but=peer)
        elif isinstance(request, Mute):
            target = self._target(request.target)
            if target.muted != request.muted:
                target.muted = request.muted
                self._changed(request.target, target, tuple(target.publishing))
        elif isinstance(request, Kick):
            self._target(request.target)
            self._banned[request.target] = now
            self._remove(request.target, LeaveReason.KICKED, by=peer, detail=request.detail)
        return 0xFF

    def _subscribe(self, peer: AuraID, me: _Participant, publisher: AuraID, kind: TrackKind) -> int:
        if publisher == peer:
            raise _Refused(Status.BAD_REQUEST, "a participant cannot subscribe to itself")
        source = self._participants.get(publisher)
        if source is None:
            raise _Refused(Status.NOT_FOUND, f"{publisher.short()} is not in the room")
        if kind not in source.publishing:
            raise _Refused(Status.NOT_FOUND, f"{publisher.short()} does not publish {kind.label}")
        slots = me.slots[kind]
        if publisher in slots:
            return slots.index(publisher)
        if None not in slots:
            raise _Refused(
                Status.FULL, f"all {len(slots)} {kind.label} subscription slots are taken; unsubscribe first"
            )
        slot = slots.index(None)
        slots[slot] = publisher
        self._actions.append(StartForwarding(publisher, peer, slot, kind))
        return slot

    def _target(self, target: AuraID) -> _Participant:
        participant = self._participants.get(target)
        if participant is None:
            raise _Refused(Status.NOT_FOUND, f"{target.short()} is not in the room")
        return participant

    # -- effects ---------------------------------------------------------------------------------
    def _reply(self, peer: AuraID, request_id: int, status: Status, detail: str) -> None:
        self._out.append((peer, Reply(request_id, status, detail=detail)))

    def _broadcast(self, message: RoomMessage, *, but: AuraID | None = None) -> None:
        for peer in self._participants:
            if peer != but:
                self._out.append((peer, message))

    def _changed(self, peer: AuraID, participant: _Participant, kinds: tuple[TrackKind, ...]) -> None:
        self._broadcast(ParticipantChanged(participant.info()))
        for kind in sorted(kinds):
            self._actions.append(GateChanged(peer, participant.forwards(kind), kind))

    def _release_slots_of(self, publisher: AuraID, kind: TrackKind | None = None) -> None:
        for peer, participant in self._participants.items():
            for slot_kind, slots in participant.slots.items():
                if kind is not None and slot_kind is not kind:
                    continue
                for slot, source in enumerate(slots):
                    if source == publisher:
                        slots[slot] = None
                        self._actions.append(StopForwarding(peer, slot, slot_kind))
                        self._out.append((peer, SlotChanged(slot, publisher, slot_kind)))

    def _remove(
        self, peer: AuraID, reason: LeaveReason, *, by: AuraID | None = None, detail: str = "", notify: bool = True
    ) -> None:
        participant = self._participants.get(peer)
        if participant is None:
            return
        if reason is not LeaveReason.LEFT and notify:
            self._out.append((peer, Removed(reason, by, detail)))
        for kind in sorted(participant.publishing):
            self._actions.append(GateChanged(peer, False, kind))
        del self._participants[peer]
        for kind, slots in participant.slots.items():
            for slot, source in enumerate(slots):
                if source is not None:
                    self._actions.append(StopForwarding(peer, slot, kind))
        self._release_slots_of(peer)
        self._broadcast(ParticipantLeft(peer, reason))
        self._actions.append(ParticipantRemoved(peer, reason))


class _Refused(RoomError):  # internal control flow: it never leaves the core
    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

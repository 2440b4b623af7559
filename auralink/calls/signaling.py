"""The signaling of one call as a sans-I/O state machine: :class:`CallSignaling`.

Theory of operation
-------------------
One :class:`CallSignaling` follows one call between this node (``local``) and one peer
(``remote``), in the manner of aioquic's ``QuicConnection``: the adapter feeds it what happened
(a message decoded from the signaling stream, an app's ``accept``, media connecting, the clock)
with an explicit ``now`` in monotonic seconds, then drains :meth:`~CallSignaling.messages_to_send`
(to write to the stream) and :meth:`~CallSignaling.next_event` (to act on), and re-arms one timer
at :meth:`~CallSignaling.get_timer`. It never touches a socket or a clock.

Who the peer is comes from the mesh connection (``stream.peer``): the machine is built for one
``remote`` AuraID and messages carry no identity of their own.

States, the same for both sides (the caller's path on the left, the callee's on the right)::

    IDLE ──call()──▶ CALLING ──Answer──▶ CONNECTING ──media_connected()──▶ CONNECTED
    IDLE ──Offer───▶ RINGING ──accept()─▶ CONNECTING
    any state but IDLE ──hangup() / Hangup / timeout / violation──▶ ENDED (final)

Every transition triggered by a peer message is in the table :data:`_RECEIVE`, keyed by
``(state, message class)``; anything not in the table is a protocol violation. A message for
another call id is not looked up there: a foreign :class:`~auralink.calls.messages.Hangup` is
ignored (it is the leftover of a glare), a foreign ``Offer`` is either glare (while ``CALLING``)
or answered with ``Hangup(BUSY)``, and anything else foreign is a violation. Messages that
arrive after the call ended are ignored: crossing hang-ups are normal.

Errors follow :mod:`auralink.errors`. An app that asks for an action its state forbids
(``accept`` while calling, anything after the end) gets
:class:`~auralink.errors.CallStateError` and nothing changes. A peer that breaks the protocol
never raises into the app: the machine answers ``Hangup(PROTOCOL_ERROR)`` and ends with a
:class:`CallEnded` whose ``error`` is a :class:`~auralink.errors.SignalingProtocolError`.

Glare. If both sides call each other at once, each is ``CALLING`` when the other's ``Offer``
arrives, on a second stream. The side whose AuraID public key sorts higher wins: its offer
stands, and it answers the other offer with ``Hangup(GLARE)``. The loser drops its own offer
(``Hangup(GLARE)`` on its own call id), adopts the winner's call id, and goes to ``RINGING`` with
an :class:`OfferReceived` marked ``glare=True``, which the adapter accepts at once: the loser's
user wanted this call. Both sides compute the same winner, so exactly one call survives.

Timeouts (:class:`SignalingTimeouts`): a caller gives up after ``answer`` seconds in ``CALLING``,
a callee after ``ring`` seconds in ``RINGING`` (both end with ``NO_ANSWER``), and either side
after ``connect`` seconds in ``CONNECTING`` (``CONNECT_FAILED``). ``CONNECTED`` has no deadline;
the stream's end (:meth:`~CallSignaling.stream_closed`) ends the call with ``GONE``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from auralink.calls.messages import (
    CALL_ID_SIZE,
    Answer,
    Hangup,
    HangupReason,
    IceCandidate,
    MediaKinds,
    Offer,
    Ringing,
    SignalMessage,
)
from auralink.errors import CallStateError, RemoteProtocolError, SignalingProtocolError
from auralink.identity import AuraID

__all__ = [
    "AnswerReceived",
    "CallConnected",
    "CallEnded",
    "CallSignaling",
    "CallState",
    "CandidateReceived",
    "GlareResolved",
    "OfferReceived",
    "Role",
    "RingingReceived",
    "SignalingEvent",
    "SignalingTimeouts",
]


class CallState(enum.Enum):
    """Where a call's signaling stands."""

    IDLE = "idle"
    CALLING = "calling"
    RINGING = "ringing"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ENDED = "ended"


class Role(enum.Enum):
    """Which side of the call this machine plays."""

    CALLER = "caller"
    CALLEE = "callee"


@dataclass(frozen=True, slots=True)
class SignalingTimeouts:
    """Deadlines, in seconds, for the states that wait on someone."""

    answer: float = 45.0
    """Caller: from the offer to the answer."""
    ring: float = 30.0
    """Callee: from the offer to the user's accept or decline."""
    connect: float = 15.0
    """Either side: from the answer to media connected."""


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferReceived:
    """The peer offered a call; accept or decline it."""

    call_id: bytes
    """The offered call."""
    media: MediaKinds
    """What the caller asked for."""
    sdp: str
    """The caller's SDP offer."""
    glare: bool = False
    """True if our own offer to this peer lost a glare: accept at once."""


@dataclass(frozen=True, slots=True)
class RingingReceived:
    """The callee is alerting its user."""

    call_id: bytes
    """The call that rings."""


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """The callee accepted; apply its SDP answer."""

    call_id: bytes
    """The answered call."""
    sdp: str
    """The callee's SDP answer."""


@dataclass(frozen=True, slots=True)
class CandidateReceived:
    """The peer trickled an ICE candidate (or the end of its candidates)."""

    candidate: IceCandidate
    """The candidate message as received."""


@dataclass(frozen=True, slots=True)
class GlareResolved:
    """Both sides called each other at once; the tie-break has been applied."""

    won: bool
    """True if our offer stands, False if we dropped it and now answer the peer's."""
    dropped_call_id: bytes
    """The call id whose offer was dropped."""


@dataclass(frozen=True, slots=True)
class CallConnected:
    """Media connected: the call is up."""

    call_id: bytes
    """The connected call."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over; no more events follow."""

    call_id: bytes
    """The call that ended (empty if it never got an id)."""
    reason: HangupReason
    """Why."""
    by_peer: bool
    """True if the peer ended it (its Hangup, or its stream went away)."""
    connected: bool
    """True if the call had connected before it ended."""
    detail: str = ""
    """Free text for logs."""
    error: SignalingProtocolError | None = None
    """Set when the peer broke the protocol."""


SignalingEvent = (
    OfferReceived | RingingReceived | AnswerReceived | CandidateReceived | GlareResolved | CallConnected | CallEnded
)
"""Anything :meth:`CallSignaling.next_event` returns."""


# -- the machine --------------------------------------------------------------------------------

_Handler = Callable[["CallSignaling", SignalMessage, float], None]


class CallSignaling:
    """The signaling state of one call with one peer."""

    def __init__(self, local: AuraID, remote: AuraID, *, timeouts: SignalingTimeouts | None = None) -> None:
        if local == remote:
            raise CallStateError("a node cannot call itself", action="init")
        self.local = local
        """This node."""
        self.remote = remote
        """The peer, as proven by the mesh connection."""
        self.timeouts = timeouts or SignalingTimeouts()
        """The deadlines in force."""
        self._state = CallState.IDLE
        self._role: Role | None = None
        self._call_id = b""
        self._media = MediaKinds.NONE
        self._deadline: float | None = None
        self._was_connected = False
        self._rang = False
        self._outbox: list[SignalMessage] = []
        self._events: deque[SignalingEvent] = deque()

    # -- inspection -----------------------------------------------------------------------------
    @property
    def state(self) -> CallState:
        """The current state."""
        return self._state

    @property
    def role(self) -> Role | None:
        """Caller or callee; None until the call starts (it can change once, by losing a glare)."""
        return self._role

    @property
    def call_id(self) -> bytes:
        """The current call id; empty while idle."""
        return self._call_id

    @property
    def media(self) -> MediaKinds:
        """What the call carries, as offered."""
        return self._media

    @property
    def wins_glare(self) -> bool:
        """True if our offer stands when both sides call at once (our public key sorts higher)."""
        return self.local.public_key > self.remote.public_key

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        return self._deadline

    def messages_to_send(self) -> list[SignalMessage]:
        """Messages for the peer, in order; each names the call (stream) it belongs to."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> SignalingEvent | None:
        """The next event for the adapter, or None."""
        return self._events.popleft() if self._events else None

    # -- local actions --------------------------------------------------------------------------
    def call(self, call_id: bytes, media: MediaKinds, sdp: str, now: float) -> None:
        """Offer a call (``sdp`` is our SDP offer) with a fresh random ``call_id``."""
        self._require("call", CallState.IDLE)
        if len(call_id) != CALL_ID_SIZE:
            raise CallStateError(f"a call id is {CALL_ID_SIZE} bytes", state=self._state.value, action="call")
        self._role, self._call_id, self._media = Role.CALLER, call_id, media
        self._send(Offer(call_id, media, sdp))
        self._enter(CallState.CALLING, now + self.timeouts.answer)

    def accept(self, sdp: str, now: float) -> None:
        """Accept the offered call with our SDP answer."""
        self._require("accept", CallState.RINGING)
        self._send(Answer(self._call_id, sdp))
        self._enter(CallState.CONNECTING, now + self.timeouts.connect)

    def decline(self, now: float, reason: HangupReason = HangupReason.DECLINED, detail: str = "") -> None:
        """Refuse the offered call (``DECLINED`` or ``BUSY``)."""
        self._require("decline", CallState.RINGING)
        self._end(now, reason, by_peer=False, detail=detail, notify=True)

    def hangup(self, now: float, reason: HangupReason = HangupReason.NORMAL, detail: str = "") -> None:
        """End the call, whatever its state but ``ENDED``; a call that never started just ends."""
        if self._state is CallState.ENDED:
            raise CallStateError("the call has already ended", self._hex(), self._state.value, "hangup")
        self._end(now, reason, by_peer=False, detail=detail, notify=self._state is not CallState.IDLE)

    def add_candidate(self, sdp_mid: str, sdp_mline_index: int, candidate: str, now: float) -> None:
        """Trickle one of our ICE candidates (empty ``candidate``: end of candidates)."""
        self._require("add_candidate", CallState.CALLING, CallState.CONNECTING, CallState.CONNECTED)
        self._send(IceCandidate(self._call_id, sdp_mid, sdp_mline_index, candidate))

    def media_connected(self, now: float) -> None:
        """ICE and DTLS are up: the call is connected."""
        self._require("media_connected", CallState.CONNECTING)
        self._was_connected = True
        self._enter(CallState.CONNECTED, None)
        self._events.append(CallConnected(self._call_id))

    def media_failed(self, now: float, detail: str = "") -> None:
        """Media failed for good (ICE failed, DTLS failed): end the call with ``CONNECT_FAILED``."""
        self._require("media_failed", CallState.CONNECTING, CallState.CONNECTED)
        self._end(now, HangupReason.CONNECT_FAILED, by_peer=False, detail=detail, notify=True)

    def undecodable(self, error: RemoteProtocolError, now: float) -> None:
        """The signaling stream carried bytes that do not decode: end the call with ``PROTOCOL_ERROR``."""
        if self._state is CallState.ENDED:
            return
        wrapped = SignalingProtocolError(f"undecodable signaling: {error}", self._hex(), self._state.value, "")
        self._end(now, HangupReason.PROTOCOL_ERROR, False, str(error), notify=True, error=wrapped)

    def stream_closed(self, now: float) -> None:
        """The signaling stream ended or broke without a Hangup; a no-op once the call ended."""
        if self._state is CallState.ENDED:
            return
        self._end(now, HangupReason.GONE, by_peer=True, detail="signaling stream ended", notify=False)

    def handle_timer(self, now: float) -> None:
        """Apply the deadline of the current state if it has passed."""
        if self._deadline is None or now < self._deadline:
            return
        if self._state is CallState.CONNECTING:
            self._end(now, HangupReason.CONNECT_FAILED, False, "media did not connect in time", notify=True)
        else:
            self._end(now, HangupReason.NO_ANSWER, False, f"no answer while {self._state.value}", notify=True)

    # -- peer messages ---------------------------------------------------------------------------
    def receive(self, message: SignalMessage, now: float) -> None:
        """Apply a message decoded from the signaling stream; never raises for the peer's mistakes."""
        if self._state is CallState.ENDED:
            return  # crossing hang-ups and late candidates are normal
        if self._state is not CallState.IDLE and message.call_id != self._call_id:
            self._receive_foreign(message, now)
            return
        handler = _RECEIVE.get((self._state, type(message)))
        if handler is None:
            self._violation(message, now, f"{type(message).__name__} is not allowed while {self._state.value}")
            return
        handler(self, message, now)

    def _receive_foreign(self, message: SignalMessage, now: float) -> None:
        if isinstance(message, Hangup):
            return  # the leftover of a glare: the dropped offer's hang-up
        if isinstance(message, Offer):
            if self._state is CallState.CALLING:
                self._glare(message, now)
            else:
                self._send(Hangup(message.call_id, HangupReason.BUSY, "already in a call with you"))
            return
        self._violation(message, now, f"{type(message).__name__} for another call")

    def _on_offer(self, message: SignalMessage, now: float) -> None:
        assert isinstance(message, Offer)
        self._role, self._call_id, self._media = Role.CALLEE, message.call_id, message.media
        self._send(Ringing(message.call_id))
        self._enter(CallState.RINGING, now + self.timeouts.ring)
        self._events.append(OfferReceived(message.call_id, message.media, message.sdp))

    def _on_ringing(self, message: SignalMessage, now: float) -> None:
        if self._rang:
            self._violation(message, now, "a second Ringing")
            return
        self._rang = True
        self._events.append(RingingReceived(self._call_id))

    def _on_answer(self, message: SignalMessage, now: float) -> None:
        assert isinstance(message, Answer)
        self._enter(CallState.CONNECTING, now + self.timeouts.connect)
        self._events.append(AnswerReceived(self._call_id, message.sdp))

    def _on_candidate(self, message: SignalMessage, now: float) -> None:
        assert isinstance(message, IceCandidate)
        self._events.append(CandidateReceived(message))

    def _on_hangup(self, message: SignalMessage, now: float) -> None:
        assert isinstance(message, Hangup)
        self._end(now, message.reason, by_peer=True, detail=message.detail, notify=False)

    def _glare(self, offer: Offer, now: float) -> None:
        if self.wins_glare:
            self._send(Hangup(offer.call_id, HangupReason.GLARE, "glare: our offer stands"))
            self._events.append(GlareResolved(won=True, dropped_call_id=offer.call_id))
            return
        dropped = self._call_id
        self._send(Hangup(dropped, HangupReason.GLARE, "glare: answering your offer instead"))
        self._role, self._call_id, self._media, self._rang = Role.CALLEE, offer.call_id, offer.media, False
        self._enter(CallState.RINGING, now + self.timeouts.ring)
        self._events.append(GlareResolved(won=False, dropped_call_id=dropped))
        self._events.append(OfferReceived(offer.call_id, offer.media, offer.sdp, glare=True))

    # -- helpers ----------------------------------------------------------------------------------
    def _hex(self) -> str | None:
        return self._call_id.hex() if self._call_id else None

    def _require(self, action: str, *states: CallState) -> None:
        if self._state not in states:
            allowed = ", ".join(s.value for s in states)
            raise CallStateError(
                f"cannot {action} while the call is {self._state.value} (only while {allowed})",
                self._hex(),
                self._state.value,
                action,
            )

    def _send(self, message: SignalMessage) -> None:
        self._outbox.append(message)

    def _enter(self, state: CallState, deadline: float | None) -> None:
        self._state = state
        self._deadline = deadline

    def _violation(self, message: SignalMessage, now: float, why: str) -> None:
        call_id = self._call_id or message.call_id
        error = SignalingProtocolError(
            f"peer broke {type(self).__name__}: {why}", call_id.hex(), self._state.value, type(message).__name__
        )
        if not self._call_id:
            self._call_id = call_id
        self._end(now, HangupReason.PROTOCOL_ERROR, by_peer=False, detail=why, notify=True, error=error)

    def _end(
        self,
        now: float,
        reason: HangupReason,
        by_peer: bool,
        detail: str = "",
        *,
        notify: bool,
        error: SignalingProtocolError | None = None,
    ) -> None:
        if notify and self._call_id:
            self._send(Hangup(self._call_id, reason, detail.encode()[:256].decode(errors="ignore")))
        self._enter(CallState.ENDED, None)
        self._events.append(CallEnded(self._call_id, reason, by_peer, self._was_connected, detail, error))


_RECEIVE: dict[tuple[CallState, type], _Handler] = {
    (CallState.IDLE, Offer): CallSignaling._on_offer,
    (CallState.CALLING, Ringing): CallSignaling._on_ringing,
    (CallState.CALLING, Answer): CallSignaling._on_answer,
    (CallState.CALLING, Hangup): CallSignaling._on_hangup,
    (CallState.RINGING, IceCandidate): CallSignaling._on_candidate,
    (CallState.RINGING, Hangup): CallSignaling._on_hangup,
    (CallState.CONNECTING, IceCandidate): CallSignaling._on_candidate,
    (CallState.CONNECTING, Hangup): CallSignaling._on_hangup,
    (CallState.CONNECTED, IceCandidate): CallSignaling._on_candidate,
    (CallState.CONNECTED, Hangup): CallSignaling._on_hangup,
}
"""Every transition a peer message may cause: ``(state, message class) -> handler``."""

"""The room core (auralink.calls.room_state) with explicit time, and the auralink/room/1 codec."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.calls.grants import Capability, Grant, RoomId
from auralink.calls.room_messages import (
    CODEC,
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
    SendChat,
    SlotChanged,
    Status,
    Subscribe,
    TrackKind,
    Unpublish,
    Unsubscribe,
    Welcome,
    error_for,
)
from auralink.calls.room_state import (
    GateChanged,
    ParticipantRemoved,
    RoomConfig,
    RoomState,
    StartForwarding,
    StopForwarding,
)
from auralink.errors import GrantExpired, GrantForged, GrantMismatch, NotPermitted, RemoteProtocolError, RoomError
from auralink.wire import FrameDecoder
from tests.strategies import IDENTITIES, decode_or_protocol_error, round_trip

OWNER, A, B, C = IDENTITIES
ROOM = RoomId(OWNER.aura_id, "standup")
T0 = 1_700_000_000.0
ALL = Capability.participant()


def grant_for(who: int, caps: Capability = ALL, *, nb: float = T0 - 10, exp: float = T0 + 3600) -> Grant:
    return Grant.create(OWNER, ROOM, IDENTITIES[who].aura_id, caps, not_before=int(nb), expires_at=int(exp))


def drain(state: RoomState) -> tuple[list[tuple[Any, Any]], list[Any]]:
    actions: list[Any] = []
    while (action := state.next_action()) is not None:
        actions.append(action)
    return state.messages_to_send(), actions


def to(messages: list[tuple[object, object]], who: object) -> list[object]:
    return [m for peer, m in messages if peer == who]


# -- codec -----------------------------------------------------------------------------------------

aura_ids = st.sampled_from([i.aura_id for i in IDENTITIES])
infos = st.builds(
    ParticipantInfo, aura_ids, st.integers(0, 255).map(Capability), st.booleans(), st.booleans(), st.booleans()
)
kinds = st.sampled_from(list(TrackKind))
request_ids = st.integers(min_value=1, max_value=(1 << 62) - 1)
texts = st.text(max_size=64)
messages = st.one_of(
    st.builds(Join, st.just(ROOM), st.binary(max_size=211), texts),
    st.builds(Publish, request_ids, kinds),
    st.builds(Unpublish, request_ids, kinds),
    st.builds(Subscribe, request_ids, aura_ids, kinds),
    st.builds(Unsubscribe, request_ids, aura_ids, kinds),
    st.builds(SendChat, request_ids, texts),
    st.builds(Mute, request_ids, aura_ids, st.booleans()),
    st.builds(Kick, request_ids, aura_ids, texts),
    st.just(Leave()),
    st.builds(Welcome, texts, st.integers(0, 255).map(Capability), st.lists(infos, max_size=5).map(tuple)),
    st.builds(Reply, st.integers(0, 1 << 30), st.sampled_from(list(Status)), st.integers(0, 255), texts),
    st.builds(ParticipantJoined, infos),
    st.builds(ParticipantLeft, aura_ids, st.sampled_from(list(LeaveReason))),
    st.builds(ParticipantChanged, infos),
    st.builds(ChatReceived, aura_ids, texts),
    st.builds(SlotChanged, st.integers(0, 255), aura_ids, kinds),
    st.builds(Removed, st.sampled_from(list(LeaveReason)), st.one_of(st.none(), aura_ids), texts),
)


@given(messages)
def test_room_messages_round_trip(message: object) -> None:
    assert round_trip(CODEC, message) == message  # type: ignore[arg-type]


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_a_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(CODEC, data)


@given(messages, st.binary(min_size=1, max_size=8))
def test_a_message_with_bytes_appended_to_its_payload_is_refused(message: object, extra: bytes) -> None:
    frame = bytearray(CODEC.encode(message))  # type: ignore[arg-type]
    decode_or_protocol_error(CODEC, bytes(frame) + extra)


def decode_one(data: bytes) -> object:
    decoder = FrameDecoder(max_size=CODEC.max_size)
    decoder.feed(data)
    frame = decoder.next_frame()
    assert frame is not None
    return CODEC.decode(frame)


def test_unknown_codes_decode_as_unknown_and_request_id_zero_is_reserved() -> None:
    frame = CODEC.encode(Reply(3, Status.OK, 0, ""))
    status_at = len(frame) - 3  # ... request id | status | slot | detail length (0)
    assert decode_one(frame[:status_at] + bytes([200]) + frame[status_at + 1 :]) == Reply(3, Status.UNKNOWN, 0, "")
    frame = CODEC.encode(Removed(LeaveReason.KICKED))
    assert decode_one(bytes([*frame[:3], 77, *frame[4:]])) == Removed(LeaveReason.UNKNOWN)
    with pytest.raises(RemoteProtocolError, match="reserved for the join"):
        decode_one(bytes([1, Publish.TYPE, 2, 0, 0]))
    with pytest.raises(RemoteProtocolError, match="must be 0 or 1"):
        decode_one(bytes([1, Mute.TYPE, 34, 1, *A.aura_id.public_key, 2]))


def test_track_kinds_have_golden_bytes_and_unknown_kinds_are_refused() -> None:
    # frame version | type | payload length | request id | kind
    assert CODEC.encode(Publish(1)) == bytes([1, Publish.TYPE, 2, 1, 0])
    assert CODEC.encode(Publish(1, TrackKind.AUDIO)) == bytes([1, Publish.TYPE, 2, 1, 1])
    assert decode_one(bytes([1, Unpublish.TYPE, 2, 5, 1])) == Unpublish(5, TrackKind.AUDIO)
    with pytest.raises(RemoteProtocolError, match="unknown track kind 2"):
        decode_one(bytes([1, Publish.TYPE, 2, 1, 2]))
    with pytest.raises(RemoteProtocolError, match="unknown track kind 9"):
        decode_one(bytes([1, SlotChanged.TYPE, 34, 0, *A.aura_id.public_key, 9]))
    info = ParticipantInfo(A.aura_id, ALL, publishing=False, muted=False, publishing_audio=True)
    assert CODEC.encode(ParticipantChanged(info))[-1] == 0b100
    with pytest.raises(RemoteProtocolError, match="unknown participant flags 0x8"):
        decode_one(bytes([1, ParticipantChanged.TYPE, 34, *A.aura_id.public_key, int(ALL), 8]))
    assert info.publishes(TrackKind.AUDIO) and not info.publishes(TrackKind.VIDEO)
    assert TrackKind.of("audio") is TrackKind.AUDIO and TrackKind.AUDIO.label == "audio"
    with pytest.raises(ValueError, match="'audio' or 'video'"):
        TrackKind.of("data")


def test_refusal_codes_map_back_to_the_grant_errors() -> None:
    assert isinstance(error_for(Status.FORGED, "x", "r", "join"), GrantForged)
    assert isinstance(error_for(Status.EXPIRED, "x", "r", "join"), GrantExpired)
    assert isinstance(error_for(Status.MISMATCH, "x", "r", "join"), GrantMismatch)
    refused = error_for(Status.NOT_PERMITTED, "x", "r", "publish")
    assert isinstance(refused, NotPermitted) and refused.action == "publish"
    assert type(error_for(Status.FULL, "x", "r", "subscribe")) is RoomError


# -- core ------------------------------------------------------------------------------------------


def room_with(*who: int, caps: dict[int, Capability] | None = None) -> RoomState:
    state = RoomState(ROOM, RoomConfig(max_participants=4, max_slots=2, max_audio_slots=2))
    for w in who:
        state.join(IDENTITIES[w].aura_id, grant_for(w, (caps or {}).get(w, ALL)), 2, T0, audio_slots=3)
    drain(state)
    return state


def test_join_checks_the_grant_against_the_proven_identity() -> None:
    state = RoomState(ROOM)
    with pytest.raises(GrantMismatch):  # B presents A's grant
        state.join(B.aura_id, grant_for(1), 2, T0)
    with pytest.raises(GrantExpired):
        state.join(A.aura_id, grant_for(1, exp=T0 - 1, nb=T0 - 100), 2, T0)
    with pytest.raises(NotPermitted, match="lacks 'join'"):
        state.join(A.aura_id, grant_for(1, Capability.PUBLISH), 2, T0)
    assert state.participants() == ()
    others = state.join(A.aura_id, grant_for(1), 2, T0)
    assert others == ()
    assert state.join(B.aura_id, grant_for(2), 2, T0) == (ParticipantInfo(A.aura_id, ALL),)
    messages, _ = drain(state)
    assert to(messages, A.aura_id) == [ParticipantJoined(ParticipantInfo(B.aura_id, ALL))]
    with pytest.raises(RoomError, match="already in"):
        state.join(B.aura_id, grant_for(2), 2, T0)


def test_a_full_room_refuses_the_next_participant() -> None:
    state = room_with(1, 2, 3)
    state.config = RoomConfig(max_participants=3)
    with pytest.raises(RoomError, match="full"):
        state.join(OWNER.aura_id, grant_for(0), 2, T0)


def test_publish_without_the_grant_is_refused_and_opens_no_gate() -> None:
    state = room_with(1, 2, caps={1: Capability.JOIN | Capability.SUBSCRIBE})
    state.receive(A.aura_id, Publish(7), T0)
    messages, actions = drain(state)
    (reply,) = to(messages, A.aura_id)
    assert isinstance(reply, Reply) and (reply.request_id, reply.status) == (7, Status.NOT_PERMITTED)
    assert "publish" in reply.detail
    assert actions == [] and not state.forwards_from(A.aura_id)
    assert to(messages, B.aura_id) == []


def test_publish_subscribe_unsubscribe_drive_forwarding() -> None:
    state = room_with(1, 2)
    state.receive(B.aura_id, Subscribe(1, A.aura_id), T0)
    messages, _ = drain(state)
    assert to(messages, B.aura_id)[0].status is Status.NOT_FOUND  # type: ignore[attr-defined]
    state.receive(A.aura_id, Publish(1), T0)
    messages, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, True)]
    assert ParticipantChanged(ParticipantInfo(A.aura_id, ALL, publishing=True)) in to(messages, B.aura_id)
    state.receive(B.aura_id, Subscribe(2, A.aura_id), T0)
    messages, actions = drain(state)
    assert to(messages, B.aura_id) == [Reply(2, Status.OK, 0)]
    assert actions == [StartForwarding(A.aura_id, B.aura_id, 0)]
    state.receive(B.aura_id, Subscribe(3, A.aura_id), T0)  # again: the same slot
    assert drain(state) == ([(B.aura_id, Reply(3, Status.OK, 0))], [])
    state.receive(B.aura_id, Subscribe(4, B.aura_id), T0)
    assert drain(state)[0][0][1].status is Status.BAD_REQUEST
    state.receive(B.aura_id, Unsubscribe(5, A.aura_id), T0)
    messages, actions = drain(state)
    assert actions == [StopForwarding(B.aura_id, 0)]
    assert state.slots(B.aura_id) == (None, None)


def test_subscription_slots_run_out() -> None:
    state = room_with(1, 2, 3, 0)
    for who in (A, B, C):
        state.receive(who.aura_id, Publish(1), T0)
    for n, who in enumerate((A, B, C)):
        state.receive(OWNER.aura_id, Subscribe(n + 1, who.aura_id), T0)
    messages, _ = drain(state)
    replies = [m for m in to(messages, OWNER.aura_id) if isinstance(m, Reply)]
    assert [r.status for r in replies] == [Status.OK, Status.OK, Status.FULL]


def test_a_subscription_without_the_grant_is_refused() -> None:
    state = room_with(1, 2, caps={2: Capability.JOIN})
    state.receive(A.aura_id, Publish(1), T0)
    state.receive(B.aura_id, Subscribe(1, A.aura_id), T0)
    messages, actions = drain(state)
    assert to(messages, B.aura_id)[-1].status is Status.NOT_PERMITTED  # type: ignore[attr-defined]
    assert not any(isinstance(a, StartForwarding) for a in actions)


def test_chat_reaches_the_others_and_needs_publish_data() -> None:
    state = room_with(1, 2, 3, caps={3: Capability.JOIN})
    state.receive(A.aura_id, SendChat(1, "hello"), T0)
    messages, _ = drain(state)
    assert to(messages, B.aura_id) == [ChatReceived(A.aura_id, "hello")]
    assert to(messages, C.aura_id) == [ChatReceived(A.aura_id, "hello")]
    assert to(messages, A.aura_id) == [Reply(1, Status.OK)]
    state.receive(C.aura_id, SendChat(1, "spam"), T0)
    messages, _ = drain(state)
    assert [peer for peer, _ in messages] == [C.aura_id]


def test_admin_mute_closes_the_gate_and_blocks_republishing() -> None:
    state = room_with(0, 1, caps={0: ALL | Capability.ADMIN})
    state.receive(A.aura_id, Mute(1, OWNER.aura_id, True), T0)  # not an admin
    assert drain(state)[0][0][1].status is Status.NOT_PERMITTED
    state.receive(A.aura_id, Publish(2), T0)
    drain(state)
    state.receive(OWNER.aura_id, Mute(1, A.aura_id, True), T0)
    messages, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, False)]
    muted = ParticipantChanged(ParticipantInfo(A.aura_id, ALL, publishing=True, muted=True))
    assert muted in to(messages, A.aura_id)
    assert not state.forwards_from(A.aura_id)
    state.receive(A.aura_id, Unpublish(3), T0)
    state.receive(A.aura_id, Publish(4), T0)
    messages, _ = drain(state)
    assert to(messages, A.aura_id)[-1].status is Status.NOT_PERMITTED  # type: ignore[attr-defined]
    state.receive(OWNER.aura_id, Mute(2, A.aura_id, False), T0)
    state.receive(A.aura_id, Publish(5), T0)
    drain(state)
    assert state.forwards_from(A.aura_id)


def test_kick_removes_frees_slots_and_bans_the_old_grant() -> None:
    state = room_with(0, 1, 2, caps={0: ALL | Capability.ADMIN})
    state.receive(A.aura_id, Publish(1), T0)
    state.receive(B.aura_id, Subscribe(1, A.aura_id), T0)
    drain(state)
    state.receive(OWNER.aura_id, Kick(9, A.aura_id, "be nice"), T0 + 5)
    messages, actions = drain(state)
    assert to(messages, A.aura_id) == [Removed(LeaveReason.KICKED, OWNER.aura_id, "be nice")]
    assert SlotChanged(0, A.aura_id) in to(messages, B.aura_id)
    assert ParticipantLeft(A.aura_id, LeaveReason.KICKED) in to(messages, B.aura_id)
    assert StopForwarding(B.aura_id, 0) in actions and ParticipantRemoved(A.aura_id, LeaveReason.KICKED) in actions
    assert A.aura_id not in state
    with pytest.raises(NotPermitted, match="kicked"):
        state.join(A.aura_id, grant_for(1), 2, T0 + 6)
    state.join(A.aura_id, grant_for(1, nb=T0 + 6), 2, T0 + 7)  # a grant issued after the kick


def test_an_expiring_grant_removes_its_holder_at_the_timer() -> None:
    state = RoomState(ROOM)
    state.join(A.aura_id, grant_for(1, exp=T0 + 60), 1, T0)
    state.join(B.aura_id, grant_for(2), 1, T0)
    drain(state)
    assert state.get_timer() == T0 + 60
    state.handle_timer(T0 + 59)
    assert A.aura_id in state
    state.receive(A.aura_id, SendChat(1, "late"), T0 + 61)  # an action after expiry, before the timer
    messages, actions = drain(state)
    assert actions[-1] == ParticipantRemoved(A.aura_id, LeaveReason.GRANT_EXPIRED)
    assert to(messages, A.aura_id) == [Removed(LeaveReason.GRANT_EXPIRED)]
    assert to(messages, B.aura_id) == [ParticipantLeft(A.aura_id, LeaveReason.GRANT_EXPIRED)]
    assert state.get_timer() == T0 + 3600


def test_leave_and_disconnect_tell_the_others() -> None:
    state = room_with(1, 2, 3)
    state.receive(A.aura_id, Leave(), T0)
    state.disconnected(B.aura_id)
    messages, actions = drain(state)
    assert [a for a in actions if isinstance(a, ParticipantRemoved)] == [
        ParticipantRemoved(A.aura_id, LeaveReason.LEFT),
        ParticipantRemoved(B.aura_id, LeaveReason.GONE),
    ]
    assert to(messages, C.aura_id) == [
        ParticipantLeft(A.aura_id, LeaveReason.LEFT),
        ParticipantLeft(B.aura_id, LeaveReason.GONE),
    ]
    assert to(messages, A.aura_id) == []
    assert to(messages, B.aura_id) == [ParticipantLeft(A.aura_id, LeaveReason.LEFT)]  # B was still in then
    assert [p.aura_id for p in state.participants()] == [C.aura_id]
    state.receive(A.aura_id, SendChat(2, "ghost"), T0)  # late: ignored
    assert drain(state) == ([], [])


def test_room_cores_import_no_io_or_clocks() -> None:
    root = Path(__file__).resolve().parent.parent
    for relative in ("auralink/calls/room_state.py", "auralink/calls/room_messages.py"):
        tree = ast.parse((root / relative).read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        assert not names & {"asyncio", "socket", "time", "threading"}, relative


def test_audio_has_its_own_publish_gate_and_subscription_slots() -> None:
    state = room_with(1, 2)
    state.receive(A.aura_id, Publish(1, TrackKind.AUDIO), T0)
    messages, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, True, TrackKind.AUDIO)]
    heard = ParticipantInfo(A.aura_id, ALL, publishing=False, publishing_audio=True)
    assert ParticipantChanged(heard) in to(messages, B.aura_id)
    assert state.forwards_from(A.aura_id, TrackKind.AUDIO) and not state.forwards_from(A.aura_id)
    state.receive(B.aura_id, Subscribe(2, A.aura_id), T0)  # video: A publishes none
    assert drain(state)[0][0][1].status is Status.NOT_FOUND  # type: ignore[attr-defined]
    state.receive(B.aura_id, Subscribe(3, A.aura_id, TrackKind.AUDIO), T0)
    messages, actions = drain(state)
    assert to(messages, B.aura_id) == [Reply(3, Status.OK, 0)]
    assert actions == [StartForwarding(A.aura_id, B.aura_id, 0, TrackKind.AUDIO)]
    assert state.slots(B.aura_id, TrackKind.AUDIO) == (A.aura_id, None)  # 3 offered, 2 allowed
    assert state.slots(B.aura_id) == (None, None)
    state.receive(A.aura_id, Publish(4), T0)  # now video too: its own slot, numbered from 0
    state.receive(B.aura_id, Subscribe(5, A.aura_id), T0)
    messages, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, True), StartForwarding(A.aura_id, B.aura_id, 0)]
    # Unpublishing audio frees only the audio slot, and says which kind of slot.
    state.receive(A.aura_id, Unpublish(6, TrackKind.AUDIO), T0)
    messages, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, False, TrackKind.AUDIO), StopForwarding(B.aura_id, 0, TrackKind.AUDIO)]
    assert SlotChanged(0, A.aura_id, TrackKind.AUDIO) in to(messages, B.aura_id)
    assert state.slots(B.aura_id) == (A.aura_id, None)
    state.receive(B.aura_id, Unsubscribe(7, A.aura_id, TrackKind.AUDIO), T0)
    assert to(drain(state)[0], B.aura_id)[0].status is Status.NOT_FOUND  # type: ignore[attr-defined]


def test_audio_slots_are_limited_by_the_room_config() -> None:
    state = RoomState(ROOM, RoomConfig(max_audio_slots=1))
    state.join(A.aura_id, grant_for(1), 2, T0, audio_slots=4)
    state.join(B.aura_id, grant_for(2), 2, T0)
    state.join(C.aura_id, grant_for(3), 2, T0)
    for who in (B, C):
        state.receive(who.aura_id, Publish(1, TrackKind.AUDIO), T0)
    state.receive(A.aura_id, Subscribe(1, B.aura_id, TrackKind.AUDIO), T0)
    state.receive(A.aura_id, Subscribe(2, C.aura_id, TrackKind.AUDIO), T0)
    replies = [m for m in to(drain(state)[0], A.aura_id) if isinstance(m, Reply)]
    assert [r.status for r in replies] == [Status.OK, Status.FULL]
    assert "audio subscription slots" in replies[1].detail


def test_publishing_audio_needs_the_publish_grant() -> None:
    state = room_with(1, 2, caps={1: Capability.JOIN | Capability.SUBSCRIBE})
    state.receive(A.aura_id, Publish(1, TrackKind.AUDIO), T0)
    messages, actions = drain(state)
    assert to(messages, A.aura_id)[0].status is Status.NOT_PERMITTED  # type: ignore[attr-defined]
    assert actions == [] and not state.forwards_from(A.aura_id, TrackKind.AUDIO)


def test_mute_and_leave_close_every_track_of_a_publisher() -> None:
    state = room_with(0, 1, 2, caps={0: ALL | Capability.ADMIN})
    state.receive(A.aura_id, Publish(1), T0)
    state.receive(A.aura_id, Publish(2, TrackKind.AUDIO), T0)
    state.receive(B.aura_id, Subscribe(1, A.aura_id), T0)
    state.receive(B.aura_id, Subscribe(2, A.aura_id, TrackKind.AUDIO), T0)
    drain(state)
    state.receive(OWNER.aura_id, Mute(1, A.aura_id, True), T0)
    _, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, False), GateChanged(A.aura_id, False, TrackKind.AUDIO)]
    state.receive(OWNER.aura_id, Mute(2, A.aura_id, False), T0)
    _, actions = drain(state)
    assert actions == [GateChanged(A.aura_id, True), GateChanged(A.aura_id, True, TrackKind.AUDIO)]
    state.receive(A.aura_id, Leave(), T0)
    messages, actions = drain(state)
    assert actions[:2] == [GateChanged(A.aura_id, False), GateChanged(A.aura_id, False, TrackKind.AUDIO)]
    assert StopForwarding(B.aura_id, 0) in actions
    assert StopForwarding(B.aura_id, 0, TrackKind.AUDIO) in actions
    assert {m for m in to(messages, B.aura_id) if isinstance(m, SlotChanged)} == {
        SlotChanged(0, A.aura_id),
        SlotChanged(0, A.aura_id, TrackKind.AUDIO),
    }
    assert state.slots(B.aura_id) == (None, None) and state.slots(B.aura_id, TrackKind.AUDIO) == (None, None)

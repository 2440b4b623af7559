"""The ``auralink/signal/1`` codec and the :class:`CallSignaling` state machine, with explicit time and no loop."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.calls.messages import (
    CALL_ID_SIZE,
    CODEC,
    Answer,
    Hangup,
    HangupReason,
    IceCandidate,
    MediaKinds,
    Offer,
    Ringing,
    SignalMessage,
)
from auralink.calls.signaling import (
    AnswerReceived,
    CallConnected,
    CallEnded,
    CallSignaling,
    CallState,
    CandidateReceived,
    GlareResolved,
    OfferReceived,
    RingingReceived,
    Role,
    SignalingEvent,
    SignalingTimeouts,
)
from auralink.errors import CallStateError, LocalProtocolError, RemoteProtocolError, SignalingProtocolError
from auralink.identity import AuraID
from auralink.wire import Buffer, FrameDecoder, pull_frame

LOW = AuraID(bytes([1]) * 32)
HIGH = AuraID(bytes([2]) * 32)  # sorts higher: wins glare
ID_A = bytes([0xA]) * CALL_ID_SIZE
ID_B = bytes([0xB]) * CALL_ID_SIZE
TIMEOUTS = SignalingTimeouts(answer=45.0, ring=30.0, connect=15.0)
ROOT = Path(__file__).resolve().parent.parent


def drain(machine: CallSignaling) -> list[SignalingEvent]:
    events = []
    while (event := machine.next_event()) is not None:
        events.append(event)
    return events


def deliver(sender: CallSignaling, receiver: CallSignaling, now: float) -> list[SignalMessage]:
    """Move every pending message from ``sender`` to ``receiver`` through the codec (bytes on the wire)."""
    sent = sender.messages_to_send()
    for message in sent:
        decoded = CODEC.decode(pull_frame(Buffer(CODEC.encode(message)), CODEC.max_size))
        receiver.receive(decoded, now)  # type: ignore[arg-type]
    return sent


def pair() -> tuple[CallSignaling, CallSignaling]:
    return CallSignaling(LOW, HIGH, timeouts=TIMEOUTS), CallSignaling(HIGH, LOW, timeouts=TIMEOUTS)


# -- codec ------------------------------------------------------------------------------------

call_ids = st.binary(min_size=CALL_ID_SIZE, max_size=CALL_ID_SIZE)
sdps = st.text(max_size=300)
messages = st.one_of(
    st.builds(Offer, call_ids, st.integers(0, 7).map(MediaKinds), sdps),
    st.builds(Answer, call_ids, sdps),
    st.builds(IceCandidate, call_ids, st.text(max_size=10), st.integers(0, 0xFFFF), st.text(max_size=100)),
    st.builds(Ringing, call_ids),
    st.builds(Hangup, call_ids, st.sampled_from(list(HangupReason)), st.text(max_size=60)),
)


@given(messages)
def test_every_message_round_trips(message: SignalMessage) -> None:
    assert CODEC.decode(pull_frame(Buffer(CODEC.encode(message)), CODEC.max_size)) == message


def test_offer_golden_vector() -> None:
    frame = CODEC.encode(Offer(ID_A, MediaKinds.AUDIO | MediaKinds.DATA, "v=0"))
    # version 1, type 1, length 21: call id, media bits 0b101, "v=0" length-prefixed
    assert frame == bytes([1, 1, 21]) + ID_A + bytes([5, 3]) + b"v=0"


def test_unknown_hangup_reason_decodes_as_unknown() -> None:
    frame = CODEC.encode(Hangup(ID_A, HangupReason.NORMAL))
    patched = frame[: 3 + CALL_ID_SIZE] + bytes([99]) + frame[4 + CALL_ID_SIZE :]
    message = CODEC.decode(pull_frame(Buffer(patched), CODEC.max_size))
    assert message == Hangup(ID_A, HangupReason.UNKNOWN)


def test_bad_utf8_sdp_is_the_peers_fault() -> None:
    payload = ID_A + bytes([4, 2]) + b"\xff\xfe"
    with pytest.raises(RemoteProtocolError):
        CODEC.decode(pull_frame(Buffer(bytes([1, 1, len(payload)]) + payload), CODEC.max_size))


def test_a_short_call_id_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError):
        Ringing(b"short")


def decode_all(data: bytes, chunk: int) -> tuple[list[object], type[BaseException] | None]:
    decoder = FrameDecoder(max_size=CODEC.max_size)
    out: list[object] = []
    try:
        for i in range(0, len(data), chunk):
            decoder.feed(data[i : i + chunk])
            while (frame := decoder.next_frame()) is not None:
                out.append(CODEC.decode(frame))
        decoder.feed_eof()
        while (frame := decoder.next_frame()) is not None:
            out.append(CODEC.decode(frame))
    except RemoteProtocolError as exc:
        return out, type(exc)
    return out, None


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_remote_protocol_error_whole_or_bytewise(data: bytes) -> None:
    # h11's invariant: any input parses or raises RemoteProtocolError, the same however it is chunked.
    assert decode_all(data, max(1, len(data))) == decode_all(data, 1)


@given(st.lists(messages, max_size=4), st.binary(max_size=40))
def test_valid_messages_followed_by_garbage_keep_their_prefix(prefix: list[SignalMessage], junk: bytes) -> None:
    data = b"".join(CODEC.encode(m) for m in prefix)
    decoded, _ = decode_all(data + junk, 1)
    assert decoded[: len(prefix)] == prefix


# -- the machine: happy paths -----------------------------------------------------------------


def test_a_call_rings_is_answered_and_connects() -> None:
    caller, callee = pair()
    now = 0.0
    caller.call(ID_A, MediaKinds.DATA, "offer-sdp", now)
    assert (caller.state, caller.role, caller.get_timer()) == (CallState.CALLING, Role.CALLER, 45.0)
    deliver(caller, callee, now)
    assert callee.state is CallState.RINGING and callee.role is Role.CALLEE
    assert drain(callee) == [OfferReceived(ID_A, MediaKinds.DATA, "offer-sdp")]
    assert deliver(callee, caller, now) == [Ringing(ID_A)]
    assert drain(caller) == [RingingReceived(ID_A)]
    now += 2.0
    callee.accept("answer-sdp", now)
    assert callee.state is CallState.CONNECTING and callee.get_timer() == now + 15.0
    deliver(callee, caller, now)
    assert caller.state is CallState.CONNECTING
    assert drain(caller) == [AnswerReceived(ID_A, "answer-sdp")]
    caller.add_candidate("0", 0, "candidate:1 1 udp 1 10.0.0.1 9 typ host", now)
    deliver(caller, callee, now)
    assert isinstance(drain(callee)[0], CandidateReceived)
    caller.media_connected(now)
    callee.media_connected(now)
    assert caller.state is callee.state is CallState.CONNECTED
    assert caller.get_timer() is None and drain(caller) == [CallConnected(ID_A)]
    caller.hangup(now)
    deliver(caller, callee, now)
    assert caller.state is callee.state is CallState.ENDED
    assert drain(callee)[-1] == CallEnded(ID_A, HangupReason.NORMAL, by_peer=True, connected=True)
    assert drain(caller) == [CallEnded(ID_A, HangupReason.NORMAL, by_peer=False, connected=True)]


def test_decline_reaches_the_caller_with_its_reason() -> None:
    caller, callee = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 0.0)
    deliver(caller, callee, 0.0)
    callee.decline(1.0, HangupReason.BUSY)
    deliver(callee, caller, 1.0)
    ended = drain(caller)[-1]
    assert isinstance(ended, CallEnded) and (ended.reason, ended.by_peer) == (HangupReason.BUSY, True)


def test_messages_after_the_end_are_ignored() -> None:
    caller, _ = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 0.0)
    caller.hangup(0.0)
    drain(caller)
    caller.receive(Answer(ID_A, "late"), 1.0)
    caller.receive(Ringing(ID_B), 1.0)
    assert caller.state is CallState.ENDED and drain(caller) == [] and caller.messages_to_send()[-1].call_id == ID_A


# -- timeouts ---------------------------------------------------------------------------------


def test_unanswered_call_ends_at_the_answer_timeout_not_before() -> None:
    caller, _ = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 10.0)
    caller.messages_to_send()
    caller.handle_timer(54.9)
    assert caller.state is CallState.CALLING
    caller.handle_timer(55.0)
    assert caller.state is CallState.ENDED
    assert caller.messages_to_send() == [Hangup(ID_A, HangupReason.NO_ANSWER, "no answer while calling")]
    assert drain(caller)[-1].reason is HangupReason.NO_ANSWER  # type: ignore[union-attr]


def test_a_ringing_call_nobody_picks_up_ends_at_the_ring_timeout() -> None:
    caller, callee = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 0.0)
    deliver(caller, callee, 0.0)
    assert callee.get_timer() == 30.0
    callee.handle_timer(30.0)
    deliver(callee, caller, 30.0)
    assert caller.state is callee.state is CallState.ENDED
    assert drain(caller)[-1] == CallEnded(ID_A, HangupReason.NO_ANSWER, True, False, "no answer while ringing")


def test_media_that_never_connects_ends_with_connect_failed() -> None:
    caller, callee = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 0.0)
    deliver(caller, callee, 0.0)
    callee.accept("a", 1.0)
    deliver(callee, caller, 1.0)
    caller.handle_timer(16.0)
    assert caller.state is CallState.ENDED
    assert drain(caller)[-1].reason is HangupReason.CONNECT_FAILED  # type: ignore[union-attr]


# -- glare ------------------------------------------------------------------------------------


@pytest.mark.parametrize("high_first", [True, False])
def test_glare_keeps_the_higher_keys_offer_on_both_sides(high_first: bool) -> None:
    low, high = pair()
    low.call(ID_A, MediaKinds.DATA, "low-offer", 0.0)
    high.call(ID_B, MediaKinds.DATA, "high-offer", 0.0)
    low_out, high_out = low.messages_to_send(), high.messages_to_send()
    order = [(high_out, low), (low_out, high)] if high_first else [(low_out, high), (high_out, low)]
    for sent, receiver in order:
        for message in sent:
            receiver.receive(message, 0.5)
    # the high side's offer stands; the low side dropped its own and rings for the high one
    assert (high.state, high.call_id, high.role) == (CallState.CALLING, ID_B, Role.CALLER)
    assert (low.state, low.call_id, low.role) == (CallState.RINGING, ID_B, Role.CALLEE)
    assert drain(high) == [GlareResolved(won=True, dropped_call_id=ID_A)]
    assert drain(low) == [
        GlareResolved(won=False, dropped_call_id=ID_A),
        OfferReceived(ID_B, MediaKinds.DATA, "high-offer", glare=True),
    ]
    assert high.messages_to_send() == [Hangup(ID_A, HangupReason.GLARE, "glare: our offer stands")]
    assert low.messages_to_send() == [Hangup(ID_A, HangupReason.GLARE, "glare: answering your offer instead")]
    # each side's hang-up of the dropped offer is a harmless leftover for the other
    low.receive(Hangup(ID_A, HangupReason.GLARE), 0.6)
    high.receive(Hangup(ID_A, HangupReason.GLARE), 0.6)
    low.accept("low-answer", 0.7)
    deliver(low, high, 0.7)
    assert high.state is low.state is CallState.CONNECTING
    assert drain(high) == [AnswerReceived(ID_B, "low-answer")]


def test_an_offer_for_another_call_while_connected_is_answered_busy() -> None:
    caller, callee = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 0.0)
    deliver(caller, callee, 0.0)
    callee.accept("a", 0.0)
    deliver(callee, caller, 0.0)
    caller.receive(Offer(ID_B, MediaKinds.DATA, "second"), 1.0)
    assert caller.state is CallState.CONNECTING
    assert caller.messages_to_send() == [Hangup(ID_B, HangupReason.BUSY, "already in a call with you")]


# -- errors -----------------------------------------------------------------------------------


def test_local_misuse_raises_and_changes_nothing() -> None:
    caller, _ = pair()
    caller.call(ID_A, MediaKinds.DATA, "o", 0.0)
    caller.messages_to_send()
    with pytest.raises(CallStateError) as info:
        caller.accept("a", 0.0)
    assert (info.value.state, info.value.action, info.value.call_id) == ("calling", "accept", ID_A.hex())
    assert isinstance(info.value, LocalProtocolError)
    assert caller.state is CallState.CALLING and caller.messages_to_send() == []
    caller.hangup(0.0)
    with pytest.raises(CallStateError):
        caller.hangup(0.0)
    with pytest.raises(CallStateError):
        CallSignaling(LOW, LOW)


def test_a_peer_that_breaks_the_protocol_ends_the_call_with_an_event_not_an_exception() -> None:
    _, callee = pair()
    callee.receive(Offer(ID_A, MediaKinds.DATA, "o"), 0.0)
    callee.messages_to_send()
    callee.receive(Answer(ID_A, "an answer, to the callee?"), 1.0)
    assert callee.state is CallState.ENDED
    assert callee.messages_to_send() == [
        Hangup(ID_A, HangupReason.PROTOCOL_ERROR, "Answer is not allowed while ringing")
    ]
    ended = drain(callee)[-1]
    assert isinstance(ended, CallEnded) and isinstance(ended.error, SignalingProtocolError)
    assert isinstance(ended.error, RemoteProtocolError)
    assert (ended.error.state, ended.error.message_type) == ("ringing", "Answer")


def test_the_first_message_must_be_an_offer() -> None:
    machine = CallSignaling(HIGH, LOW)
    machine.receive(Ringing(ID_A), 0.0)
    assert machine.state is CallState.ENDED
    assert machine.messages_to_send()[0].reason is HangupReason.PROTOCOL_ERROR  # type: ignore[union-attr]


# -- properties -------------------------------------------------------------------------------

local_actions = st.sampled_from(
    ["call", "accept", "decline", "hangup", "candidate", "connected", "failed", "closed", "undecodable"]
)
steps = st.one_of(
    st.tuples(st.just("local"), local_actions),
    st.tuples(st.just("remote"), messages),
    st.tuples(st.just("remote-own"), messages),  # a message re-addressed to the machine's own call id
    st.tuples(st.just("time"), st.floats(min_value=0.0, max_value=40.0)),
)


def apply_local(machine: CallSignaling, action: str, now: float) -> None:
    if action == "call":
        machine.call(ID_A, MediaKinds.DATA, "o", now)
    elif action == "accept":
        machine.accept("a", now)
    elif action == "decline":
        machine.decline(now)
    elif action == "hangup":
        machine.hangup(now)
    elif action == "candidate":
        machine.add_candidate("0", 0, "", now)
    elif action == "connected":
        machine.media_connected(now)
    elif action == "failed":
        machine.media_failed(now)
    elif action == "closed":
        machine.stream_closed(now)
    else:
        machine.undecodable(RemoteProtocolError("junk"), now)


def readdress(message: SignalMessage, call_id: bytes) -> SignalMessage:
    return dataclasses.replace(message, call_id=call_id or ID_B)


@given(st.sampled_from([LOW, HIGH]), st.lists(steps, max_size=30))
def test_random_event_sequences_never_crash_and_end_in_a_valid_state(
    local: AuraID, sequence: list[tuple[str, object]]
) -> None:
    machine = CallSignaling(local, HIGH if local == LOW else LOW, timeouts=TIMEOUTS)
    now = 0.0
    events: list[SignalingEvent] = []
    for kind, value in sequence:
        before = machine.state
        if kind == "time":
            now += value  # type: ignore[operator]
            machine.handle_timer(now)
        elif kind == "local":
            try:
                apply_local(machine, value, now)  # type: ignore[arg-type]
            except CallStateError:
                assert machine.state is before  # refused actions change nothing
        else:
            message: SignalMessage = value  # type: ignore[assignment]
            if kind == "remote-own":
                message = readdress(message, machine.call_id)
            machine.receive(message, now)  # the peer's mistakes never raise
        assert machine.state in CallState
        if before is CallState.ENDED:
            assert machine.state is CallState.ENDED  # final
        timer = machine.get_timer()
        assert (timer is None) == (machine.state in (CallState.IDLE, CallState.CONNECTED, CallState.ENDED))
        for message in machine.messages_to_send():
            CODEC.encode(message)  # everything the machine sends is encodable
        events.extend(drain(machine))
    ends = [e for e in events if isinstance(e, CallEnded)]
    assert len(ends) == (1 if machine.state is CallState.ENDED else 0)
    if ends:
        assert events[-1] is ends[0]  # nothing after the end
    assert sum(isinstance(e, CallConnected) for e in events) <= 1


@given(
    st.lists(st.sampled_from(["a-hangup", "b-hangup", "a-tick", "b-tick", "accept", "connect"]), max_size=12),
    st.booleans(),
)
def test_two_machines_always_agree_on_the_end(script: list[str], glare: bool) -> None:
    a, b = pair()
    now = 0.0
    a.call(ID_A, MediaKinds.DATA, "o", now)
    if glare:
        b.call(ID_B, MediaKinds.DATA, "o2", now)
    for step in [*script, "a-hangup-final"]:
        deliver(a, b, now)
        deliver(b, a, now)
        for m in (a, b):
            event = m.next_event()
            while event is not None:
                if isinstance(event, OfferReceived) and step == "accept":
                    m.accept("ans", now)
                event = m.next_event()
        if step == "accept" and b.state is CallState.RINGING:
            b.accept("ans", now)
        elif step == "connect":
            for m in (a, b):
                if m.state is CallState.CONNECTING:
                    m.media_connected(now)
        elif step.endswith("tick"):
            now += 20.0
            (a if step[0] == "a" else b).handle_timer(now)
        elif step.endswith("hangup") or step == "a-hangup-final":
            m = a if step[0] == "a" else b
            if m.state is not CallState.ENDED:
                m.hangup(now)
        deliver(a, b, now)
        deliver(b, a, now)
    assert a.state is b.state is CallState.ENDED
    assert a.call_id == b.call_id


def test_cores_import_no_io_or_clocks() -> None:
    for relative in ("auralink/calls/messages.py", "auralink/calls/signaling.py"):
        tree = ast.parse((ROOT / relative).read_text())
        names = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
        assert not names & {"asyncio", "socket", "time", "selectors", "threading", "random", "aiortc"}, relative

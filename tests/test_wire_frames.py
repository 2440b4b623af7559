"""Frames and typed messages: golden vectors, round trips, limits and the h11 invariant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.errors import (
    FrameTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
    UnknownFrameType,
    UnsupportedVersion,
)
from auralink.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    WIRE_VERSION,
    Buffer,
    BufferReadError,
    Frame,
    FrameDecoder,
    Message,
    MessageCodec,
    pull_frame,
    push_frame,
)
from auralink.wire.buffer import VARINT_MAX


# -- example protocol --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ping:
    """Asks the peer to echo a nonce."""

    TYPE: ClassVar[int] = 0x01
    nonce: int
    """Echoed back in the Pong."""

    @classmethod
    def pull(cls, buf: Buffer) -> Ping:
        return cls(nonce=buf.pull_uint64())

    def push(self, buf: Buffer) -> None:
        buf.push_uint64(self.nonce)


@dataclass(frozen=True, slots=True)
class Pong:
    """Answers a Ping."""

    TYPE: ClassVar[int] = 0x02
    nonce: int
    """The nonce of the Ping being answered."""
    note: str
    """Free text, at most 64 bytes of UTF-8."""

    @classmethod
    def pull(cls, buf: Buffer) -> Pong:
        return cls(nonce=buf.pull_uint64(), note=buf.pull_str(64, "note"))

    def push(self, buf: Buffer) -> None:
        buf.push_uint64(self.nonce)
        buf.push_str(self.note, 64, "note")


@dataclass(frozen=True, slots=True)
class Window:
    """Announces a receive window; validates itself on construction."""

    TYPE: ClassVar[int] = 0x40  # the smallest two-byte varint tag
    size: int
    """Bytes the sender may send; must be positive."""

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise LocalProtocolError(f"window size must be positive, not {self.size}")

    @classmethod
    def pull(cls, buf: Buffer) -> Window:
        return cls(size=buf.pull_varint())

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.size)


PROTOCOL = "auralink/test-ping/1"
CODEC = MessageCodec(PROTOCOL, [Ping, Pong, Window])


# -- helpers -----------------------------------------------------------------------------------
def encode_frame(frame: Frame, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    buf = Buffer()
    push_frame(buf, frame, max_size)
    return buf.data()


def run_decoder(
    chunks: Iterable[bytes], max_size: int = DEFAULT_MAX_FRAME_SIZE
) -> tuple[list[Frame], type[RemoteProtocolError] | None]:
    """Feed ``chunks`` then EOF, draining after each; return the frames and the error class, if any.

    Any exception other than RemoteProtocolError escapes and fails the test: that is the invariant.
    """
    decoder = FrameDecoder(max_size)
    frames: list[Frame] = []

    def drain() -> None:
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)

    try:
        for chunk in chunks:
            decoder.feed(chunk)
            drain()
        decoder.feed_eof()
        drain()
    except RemoteProtocolError as exc:
        # The stream is dead: the same kind of error again, whatever is fed after it.
        decoder_error = type(exc)
        with pytest.raises(decoder_error):
            decoder.next_frame()
        return frames, decoder_error
    assert decoder.finished
    assert decoder.next_frame() is None
    return frames, None


def run_pull_frame(data: bytes, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> tuple[list[Frame], type[Exception] | None]:
    buf = Buffer(data)
    frames: list[Frame] = []
    try:
        while not buf.eof():
            frames.append(pull_frame(buf, max_size))
    except RemoteProtocolError as exc:
        return frames, type(exc)
    return frames, None


frames_strategy = st.builds(
    Frame,
    type=st.one_of(st.integers(0, 70), st.integers(0, VARINT_MAX)),
    payload=st.binary(max_size=80),
)

# Mostly well-formed streams with noise spliced in, so that the decoder gets past the version
# byte often (plain random bytes almost always stop at it), and so that every error occurs:
# cut frames (truncated), non-minimal varints, huge lengths and wrong versions.
encoded_frames = frames_strategy.map(encode_frame)
stream_piece = st.one_of(
    encoded_frames,
    encoded_frames.flatmap(lambda data: st.integers(0, len(data)).map(lambda n: data[:n])),
    st.sampled_from([b"\x01\x40\x05", b"\x01\x05\x40\x01x", b"\x01\x00\x80\x10\x00\x01", b"\x02"]),
    st.binary(max_size=6),
)
stream_strategy = st.one_of(
    st.binary(max_size=200),
    st.lists(stream_piece, max_size=6).map(b"".join),
)


# -- golden vectors ----------------------------------------------------------------------------
def test_frame_golden_vector() -> None:
    frame = Frame(type=0x40, payload=b"hi")
    assert encode_frame(frame).hex() == "01" + "4040" + "02" + "6869"


def test_empty_frame_golden_vector() -> None:
    assert encode_frame(Frame(type=0, payload=b"")) == b"\x01\x00\x00"
    assert pull_frame(Buffer(b"\x01\x00\x00")) == Frame(type=0, payload=b"")


def test_message_golden_vector() -> None:
    assert CODEC.encode(Ping(nonce=0x0102030405060708)).hex() == "01" + "01" + "08" + "0102030405060708"
    assert CODEC.encode(Window(size=37)).hex() == "01" + "4040" + "01" + "25"


def test_wire_version_and_default_limit() -> None:
    assert WIRE_VERSION == 1
    assert DEFAULT_MAX_FRAME_SIZE == 1 << 20


# -- pull_frame / push_frame -------------------------------------------------------------------
@given(st.lists(frames_strategy, max_size=5))
def test_frames_round_trip(frames: list[Frame]) -> None:
    buf = Buffer()
    for frame in frames:
        push_frame(buf, frame)
    out = Buffer(buf.data())
    assert [pull_frame(out) for _ in frames] == frames
    assert out.eof()


def test_pull_frame_rejects_oversized_length_before_reading_payload() -> None:
    header = b"\x01\x01" + b"\x80\x10\x00\x01"  # length 1 MiB + 1, no payload at all
    with pytest.raises(FrameTooLarge) as info:
        pull_frame(Buffer(header))
    assert (info.value.length, info.value.limit) == (DEFAULT_MAX_FRAME_SIZE + 1, DEFAULT_MAX_FRAME_SIZE)


def test_pull_frame_accepts_payload_of_exactly_max_size() -> None:
    data = encode_frame(Frame(type=3, payload=b"x" * 16), max_size=16)
    assert pull_frame(Buffer(data), max_size=16).payload == b"x" * 16
    with pytest.raises(FrameTooLarge):
        pull_frame(Buffer(data), max_size=15)


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_pull_frame_rejects_unknown_version(version: int) -> None:
    with pytest.raises(UnsupportedVersion) as info:
        pull_frame(Buffer(bytes([version, 0, 0])))
    assert (info.value.version, info.value.supported) == (version, WIRE_VERSION)


def test_pull_frame_on_truncated_input_raises_buffer_read_error() -> None:
    data = encode_frame(Frame(type=1, payload=b"hello"))
    for cut in range(len(data)):
        with pytest.raises(BufferReadError):
            pull_frame(Buffer(data[:cut]))


@given(st.binary(max_size=64), st.sampled_from([0, 8, DEFAULT_MAX_FRAME_SIZE]))
def test_pull_frame_on_arbitrary_bytes_parses_or_raises_remote_protocol_error(data: bytes, max_size: int) -> None:
    buf = Buffer(data)
    try:
        frame = pull_frame(buf, max_size)
    except RemoteProtocolError:
        return
    assert len(frame.payload) <= max_size
    assert encode_frame(frame) == data[: buf.position]


def test_push_frame_rejects_oversized_payload() -> None:
    buf = Buffer()
    with pytest.raises(LocalProtocolError):
        push_frame(buf, Frame(type=1, payload=b"x" * 9), max_size=8)
    assert buf.data() == b""


@pytest.mark.parametrize("frame_type", [-1, VARINT_MAX + 1])
def test_push_frame_rejects_type_outside_varint_range(frame_type: int) -> None:
    buf = Buffer()
    with pytest.raises(LocalProtocolError):
        push_frame(buf, Frame(type=frame_type, payload=b""))
    assert buf.data() == b""


@pytest.mark.parametrize("max_size", [-1, VARINT_MAX + 1])
def test_bad_max_size_is_a_local_error(max_size: int) -> None:
    with pytest.raises(LocalProtocolError):
        FrameDecoder(max_size)
    with pytest.raises(LocalProtocolError):
        pull_frame(Buffer(b"\x01\x00\x00"), max_size)


# -- FrameDecoder ------------------------------------------------------------------------------
@given(st.lists(frames_strategy, max_size=5), st.data())
def test_decoder_round_trips_frames_under_any_chunking(frames: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(frame) for frame in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert run_decoder(chunks) == (frames, None)


@given(stream_strategy, st.sampled_from([0, 8, DEFAULT_MAX_FRAME_SIZE]))
def test_decoder_h11_invariant_whole_vs_byte_at_a_time(data: bytes, max_size: int) -> None:
    """Any input yields frames or raises RemoteProtocolError, and chunking changes nothing."""
    whole = run_decoder([data], max_size)
    byte_at_a_time = run_decoder([data[i : i + 1] for i in range(len(data))], max_size)
    assert whole == byte_at_a_time

    # The one-shot codec agrees, except that it reports a truncated stream as a short buffer.
    frames, error = whole
    pulled_frames, pulled_error = run_pull_frame(data, max_size)
    assert pulled_frames == frames
    if error is RemoteProtocolError:
        assert pulled_error is BufferReadError
    else:
        assert pulled_error is error


def test_decoder_rejects_oversized_length_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_size=1000)
    decoder.feed(b"\x01\x07")
    assert decoder.next_frame() is None
    decoder.feed(b"\x43")  # first byte of a two-byte length
    assert decoder.next_frame() is None
    decoder.feed(b"\xe9")  # length 1001: known now, and no payload byte has arrived
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_frame()
    assert (info.value.length, info.value.limit) == (1001, 1000)
    assert decoder.buffered == 0  # nothing kept for the frame


def test_decoder_waits_for_payload_of_allowed_size() -> None:
    decoder = FrameDecoder(max_size=1000)
    decoder.feed(b"\x01\x07\x43\xe8")  # length 1000: allowed
    assert decoder.next_frame() is None
    decoder.feed(b"a" * 999)
    assert decoder.next_frame() is None
    decoder.feed(b"a" + b"\x01")  # the payload's last byte and the start of the next frame
    assert decoder.next_frame() == Frame(type=7, payload=b"a" * 1000)
    assert decoder.next_frame() is None
    assert decoder.buffered == 1


def test_decoder_rejects_unknown_version_on_first_byte() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x02")
    with pytest.raises(UnsupportedVersion):
        decoder.next_frame()


def test_decoder_rejects_non_minimal_type_before_length_arrives() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x01\x40\x05")
    with pytest.raises(BufferReadError, match="non-minimal"):
        decoder.next_frame()


def test_decoder_stream_is_dead_after_an_error() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x09")
    with pytest.raises(UnsupportedVersion):
        decoder.next_frame()
    decoder.feed(encode_frame(Frame(type=1, payload=b"ok")))  # discarded
    with pytest.raises(UnsupportedVersion):
        decoder.next_frame()
    assert decoder.buffered == 0


def test_decoder_truncated_at_eof() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(Frame(type=1, payload=b"hello"))[:-1])
    assert decoder.next_frame() is None
    decoder.feed_eof()
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decoder.next_frame()
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decoder.next_frame()


def test_decoder_clean_eof() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(Frame(type=1, payload=b"hello")))
    decoder.feed_eof()
    assert not decoder.finished
    assert decoder.next_frame() == Frame(type=1, payload=b"hello")
    assert decoder.next_frame() is None
    assert decoder.finished
    assert decoder.eof_received


def test_feed_after_eof_is_a_local_error() -> None:
    decoder = FrameDecoder()
    decoder.feed_eof()
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"\x01")


def test_decoder_handles_many_frames_in_one_chunk() -> None:
    frames = [Frame(type=i % 100, payload=bytes([i % 256]) * (i % 37)) for i in range(20_000)]
    stream = b"".join(encode_frame(frame) for frame in frames)
    decoder = FrameDecoder()
    decoder.feed(stream)
    out: list[Frame] = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    assert out == frames
    assert decoder.buffered == 0


def test_decoder_handles_a_large_frame_fed_one_byte_at_a_time() -> None:
    frame = Frame(type=5, payload=bytes(range(256)) * 256)  # 64 KiB
    data = encode_frame(frame) + b"\x01"
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        if (out := decoder.next_frame()) is not None:
            got.append(out)
    assert got == [frame]
    assert decoder.buffered == 1


# -- MessageCodec ------------------------------------------------------------------------------
messages_strategy = st.one_of(
    st.builds(Ping, nonce=st.integers(0, 2**64 - 1)),
    st.builds(
        Pong,
        nonce=st.integers(0, 2**64 - 1),
        note=st.text(max_size=16),
    ),
    st.builds(Window, size=st.integers(1, VARINT_MAX)),
)


@given(messages_strategy)
def test_message_round_trip(message: Message) -> None:
    encoded = CODEC.encode(message)
    frame = pull_frame(Buffer(encoded))
    assert frame.type == message.TYPE
    assert CODEC.decode(frame) == message


def test_codec_describes_its_protocol() -> None:
    assert CODEC.protocol == PROTOCOL
    assert CODEC.max_size == DEFAULT_MAX_FRAME_SIZE
    assert CODEC.message_types == {0x01: Ping, 0x02: Pong, 0x40: Window}


def test_decode_unknown_type() -> None:
    with pytest.raises(UnknownFrameType) as info:
        CODEC.decode(Frame(type=0x99, payload=b""))
    assert (info.value.frame_type, info.value.protocol) == (0x99, PROTOCOL)


def test_decode_rejects_trailing_bytes() -> None:
    payload = bytes(8) + b"\x00"
    with pytest.raises(RemoteProtocolError, match="trailing bytes"):
        CODEC.decode(Frame(type=Ping.TYPE, payload=payload))


def test_decode_truncated_payload_is_a_remote_error() -> None:
    with pytest.raises(BufferReadError):
        CODEC.decode(Frame(type=Ping.TYPE, payload=bytes(7)))


def test_decode_value_refused_by_message_validation_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError, match="invalid Window") as info:
        CODEC.decode(Frame(type=Window.TYPE, payload=b"\x00"))
    assert not isinstance(info.value, LocalProtocolError)
    assert isinstance(info.value.__cause__, LocalProtocolError)


def test_decode_payload_over_codec_limit() -> None:
    codec = MessageCodec(PROTOCOL, [Ping], max_size=8)
    with pytest.raises(FrameTooLarge):
        codec.decode(Frame(type=Ping.TYPE, payload=bytes(9)))


def test_duplicate_type_tags_are_rejected() -> None:
    @dataclass(frozen=True, slots=True)
    class OtherPing:
        """Clashes with Ping's tag."""

        TYPE: ClassVar[int] = Ping.TYPE

        @classmethod
        def pull(cls, buf: Buffer) -> OtherPing:
            return cls()

        def push(self, buf: Buffer) -> None:
            pass

    with pytest.raises(LocalProtocolError, match="Ping"):
        MessageCodec(PROTOCOL, [Ping, OtherPing])


def test_encode_unregistered_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        MessageCodec(PROTOCOL, [Ping]).encode(Pong(nonce=1, note=""))


def test_encode_oversized_message_is_a_local_error() -> None:
    codec = MessageCodec(PROTOCOL, [Pong], max_size=12)
    assert codec.encode(Pong(nonce=1, note="abc"))  # 8 + 1 + 3 bytes fit
    with pytest.raises(LocalProtocolError):
        codec.encode(Pong(nonce=1, note="abcd"))


@given(st.sampled_from([Ping.TYPE, Pong.TYPE, Window.TYPE, 0x77]), st.binary(max_size=40))
def test_decode_arbitrary_payload_parses_or_raises_remote_protocol_error(frame_type: int, payload: bytes) -> None:
    try:
        message = CODEC.decode(Frame(type=frame_type, payload=payload))
    except RemoteProtocolError:
        return
    assert CODEC.encode(message) == encode_frame(Frame(type=frame_type, payload=payload))


# -- public API --------------------------------------------------------------------------------


def test_take_buffered_hands_over_what_follows_a_header_frame() -> None:
    buf = Buffer()
    push_frame(buf, Frame(1, b"proto"))
    decoder = FrameDecoder()
    decoder.feed(buf.data() + b"raw tail")
    assert decoder.next_frame() == Frame(1, b"proto")
    assert decoder.take_buffered() == b"raw tail"
    assert decoder.buffered == 0
    assert decoder.next_frame() is None

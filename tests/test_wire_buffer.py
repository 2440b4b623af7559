"""Buffer codecs: RFC 9000 golden vectors, canonical varints, round trips and the h11 invariant."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.errors import LocalProtocolError, RemoteProtocolError
from auralink.wire import Buffer, BufferReadError
from auralink.wire.buffer import VARINT_MAX, varint_size

# RFC 9000 appendix A.1 ("Sample Variable-Length Integer Decoding") and section 16.
RFC9000_VARINTS = [
    ("c2197c5eff14e88c", 151288809941952652),
    ("9d7f3e7d", 494878333),
    ("7bbd", 15293),
    ("25", 37),
]


@pytest.mark.parametrize(("hex_bytes", "value"), RFC9000_VARINTS)
def test_varint_decodes_rfc9000_samples(hex_bytes: str, value: int) -> None:
    buf = Buffer(bytes.fromhex(hex_bytes))
    assert buf.pull_varint() == value
    assert buf.eof()


@pytest.mark.parametrize(("hex_bytes", "value"), RFC9000_VARINTS)
def test_varint_encodes_rfc9000_samples(hex_bytes: str, value: int) -> None:
    buf = Buffer()
    buf.push_varint(value)
    assert buf.data().hex() == hex_bytes


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8), (VARINT_MAX, 8)],
)
def test_varint_size_boundaries(value: int, size: int) -> None:
    assert varint_size(value) == size
    buf = Buffer()
    buf.push_varint(value)
    assert len(buf.data()) == size


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "4025",  # RFC 9000 A.1: 37 in two bytes; valid QUIC, but AuraLink requires the shortest form
        "4000",
        "8000003f",
        "80003fff",
        "c000000000000025",
        "c00000003fffffff",
    ],
)
def test_non_minimal_varint_is_rejected(hex_bytes: str) -> None:
    with pytest.raises(BufferReadError, match="non-minimal"):
        Buffer(bytes.fromhex(hex_bytes)).pull_varint()


@pytest.mark.parametrize("value", [-1, VARINT_MAX + 1, 2**64])
def test_push_varint_out_of_range_is_a_local_error(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        Buffer().push_varint(value)


@pytest.mark.parametrize(
    ("push", "value"),
    [
        (Buffer.push_uint8, -1),
        (Buffer.push_uint8, 0x100),
        (Buffer.push_uint16, 0x1_0000),
        (Buffer.push_uint32, 0x1_0000_0000),
        (Buffer.push_uint64, 2**64),
        (Buffer.push_uint64, -1),
    ],
)
def test_push_fixed_width_out_of_range_is_a_local_error(push: Callable[[Buffer, int], None], value: int) -> None:
    with pytest.raises(LocalProtocolError):
        push(Buffer(), value)


def test_push_length_prefixed_over_limit_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Buffer().push_length_prefixed(b"abcd", limit=3)
    with pytest.raises(LocalProtocolError):
        Buffer().push_str("abcd", limit=3)


def test_fixed_width_integers_are_big_endian() -> None:
    buf = Buffer()
    buf.push_uint8(0x01)
    buf.push_uint16(0x0203)
    buf.push_uint32(0x04050607)
    buf.push_uint64(0x08090A0B0C0D0E0F)
    assert buf.data() == bytes(range(1, 16))


# -- round trips -------------------------------------------------------------------------------
@given(st.integers(0, VARINT_MAX))
def test_varint_round_trip(value: int) -> None:
    buf = Buffer()
    buf.push_varint(value)
    assert len(buf.data()) == varint_size(value)
    out = Buffer(buf.data())
    assert out.pull_varint() == value
    assert out.eof()


@given(
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(0, 0xFFFF_FFFF_FFFF_FFFF),
    st.binary(max_size=64),
)
def test_fixed_width_and_bytes_round_trip(u8: int, u16: int, u32: int, u64: int, raw: bytes) -> None:
    buf = Buffer()
    buf.push_uint8(u8)
    buf.push_uint16(u16)
    buf.push_uint32(u32)
    buf.push_uint64(u64)
    buf.push_bytes(raw)
    out = Buffer(buf.data())
    assert out.pull_uint8() == u8
    assert out.pull_uint16() == u16
    assert out.pull_uint32() == u32
    assert out.pull_uint64() == u64
    assert out.pull_bytes(len(raw)) == raw
    assert out.eof()


@given(st.binary(max_size=300), st.text(max_size=100))
def test_length_prefixed_and_str_round_trip(raw: bytes, text: str) -> None:
    buf = Buffer()
    buf.push_length_prefixed(raw, limit=300)
    buf.push_str(text, limit=400)
    out = Buffer(buf.data())
    assert out.pull_length_prefixed(limit=300) == raw
    assert out.pull_str(limit=400) == text
    assert out.eof()


def test_pull_length_prefixed_checks_limit_before_reading() -> None:
    buf = Buffer()
    buf.push_varint(1_000_000)  # announces far more than follows
    with pytest.raises(BufferReadError, match="exceeds the limit"):
        Buffer(buf.data()).pull_length_prefixed(limit=1000)


def test_pull_str_rejects_invalid_utf8() -> None:
    with pytest.raises(BufferReadError, match="UTF-8"):
        Buffer(b"\x02\xc3\x28").pull_str(limit=10)


def test_data_slice_returns_exactly_the_decoded_bytes() -> None:
    buf = Buffer(b"\x01\x40\x40rest")
    start = buf.position
    buf.pull_uint8()
    buf.pull_varint()
    assert buf.data_slice(start, buf.position) == b"\x01\x40\x40"
    assert buf.remaining == 4


# -- truncation and the h11 invariant ----------------------------------------------------------
PULLS: list[Callable[[Buffer], object]] = [
    Buffer.pull_uint8,
    Buffer.pull_uint16,
    Buffer.pull_uint32,
    Buffer.pull_uint64,
    Buffer.pull_varint,
    lambda buf: buf.pull_bytes(3),
    lambda buf: buf.pull_length_prefixed(limit=100),
    lambda buf: buf.pull_str(limit=100),
]


@pytest.mark.parametrize("pull", PULLS)
def test_truncated_input_raises_buffer_read_error(pull: Callable[[Buffer], object]) -> None:
    with pytest.raises(BufferReadError):
        pull(Buffer(b""))


@pytest.mark.parametrize("hex_bytes", ["40", "80ffff", "c0000000000000"])
def test_truncated_varint_raises_buffer_read_error(hex_bytes: str) -> None:
    with pytest.raises(BufferReadError, match="input ended"):
        Buffer(bytes.fromhex(hex_bytes)).pull_varint()


def test_truncated_length_prefixed_field_raises_buffer_read_error() -> None:
    with pytest.raises(BufferReadError, match="input ended"):
        Buffer(b"\x05hell").pull_length_prefixed(limit=100)


def test_buffer_read_error_is_a_remote_protocol_error() -> None:
    assert issubclass(BufferReadError, RemoteProtocolError)


@given(st.binary(max_size=40), st.lists(st.sampled_from(range(len(PULLS))), max_size=12))
def test_arbitrary_bytes_either_parse_or_raise_buffer_read_error(data: bytes, ops: list[int]) -> None:
    buf = Buffer(data)
    for op in ops:
        before = buf.position
        try:
            PULLS[op](buf)
        except BufferReadError:
            return
        assert buf.position >= before
    assert buf.position <= len(data)

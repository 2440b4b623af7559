"""Remote hints (``auralink/aic/1``): the codec, the service, the client's deadline fallback, and the mesh."""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import auralink
from auralink.aic import AnalyticRateModel, FrameStats, HintEngine, Mode, NetworkStats
from auralink.aic.remote import (
    AIC_PROTOCOL,
    CODEC,
    HintRefusal,
    HintReply,
    HintRequest,
    HintService,
    RemoteHintClient,
)
from auralink.errors import LocalProtocolError, RemoteProtocolError
from auralink.identity import AuraID
from auralink.wire import Buffer, Frame
from tests.daemons import cli
from tests.strategies import decode_or_protocol_error, round_trip

f32 = st.floats(width=32, min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)
positive = st.floats(width=32, min_value=0.0009765625, max_value=1000.0)
unit = st.floats(width=32, min_value=0.0, max_value=1.0)

frames = st.builds(
    FrameStats,
    width=st.integers(1, 65_535),
    height=st.integers(1, 65_535),
    fps=positive,
    spatial_information=f32,
    temporal_information=f32,
    motion=f32,
    scene_change=st.booleans(),
)
networks = st.builds(NetworkStats, rtt_s=f32, loss=unit, jitter_s=f32, bandwidth_bps=f32)
requests = st.builds(HintRequest, st.integers(0, 2**62 - 1), st.sampled_from(Mode), frames, networks)
replies = st.builds(
    HintReply,
    st.integers(0, 2**62 - 1),
    st.integers(0, 2**62 - 1),
    st.sampled_from(Mode),
    st.integers(0, 2**62 - 1),
    st.floats(width=32, min_value=0.0009765625, max_value=1.0),
    positive,
    st.floats(width=32, min_value=0.0, max_value=100.0),
    unit,
)
refusals = st.builds(HintRefusal, st.integers(0, 2**62 - 1), st.text(max_size=50))

TALKING_HEAD = FrameStats(width=640, height=480, fps=30.0, spatial_information=40.0, temporal_information=5.0)
NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.004, bandwidth_bps=2_000_000.0)


# --- codec ------------------------------------------------------------------------------------------------------


@given(st.one_of(requests, replies, refusals))
def test_messages_round_trip(message: HintRequest | HintReply | HintRefusal) -> None:
    assert round_trip(CODEC, message) == message


@given(st.binary(max_size=300))
def test_any_input_decodes_or_raises_remote_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(CODEC, data)


def request_payload(**changes: float) -> bytes:
    buf = Buffer()
    HintRequest(7, Mode.ADAPTIVE, TALKING_HEAD, NETWORK).push(buf)
    payload = bytearray(buf.data())
    # Offsets after varint(7), mode, width, height: fps, SI, TI, motion, flags, rtt, loss, jitter, bandwidth.
    offsets = {"fps": 6, "si": 10, "loss": 27}
    for name, value in changes.items():
        payload[offsets[name] : offsets[name] + 4] = struct.pack("!f", value)
    return bytes(payload)


def test_golden_request_bytes() -> None:
    assert request_payload().hex() == ("0701028001e041f000004220000040a0000000000000003d4ccccd000000003b83126f49f42400")


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"fps": 0.0}, "fps"), ({"si": math.nan}, "spatial_information"), ({"loss": 1.5}, "loss")],
)
def test_out_of_range_statistics_are_the_peers_fault(changes: dict[str, float], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        CODEC.decode(Frame(type=HintRequest.TYPE, payload=request_payload(**changes)))


def test_unknown_mode_is_refused() -> None:
    payload = bytearray(request_payload())
    payload[1] = 9
    with pytest.raises(RemoteProtocolError, match="mode"):
        CODEC.decode(Frame(type=HintRequest.TYPE, payload=bytes(payload)))


def test_values_that_do_not_fit_the_wire_are_refused_locally() -> None:
    huge = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=1e300)
    with pytest.raises(LocalProtocolError, match="binary32"):
        CODEC.encode(HintRequest(0, Mode.ADAPTIVE, TALKING_HEAD, huge))
    with pytest.raises(LocalProtocolError, match="frame sides"):
        HintRequest(0, Mode.ADAPTIVE, FrameStats(70_000, 10, 30.0, 1.0, 1.0), NETWORK)


# --- service and client over an in-memory stream -------------------------------------------------------------------


class MemoryStream:
    """One end of an in-memory byte stream pair, with the parts of ``auralink.mesh.Stream`` used here."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.other: MemoryStream | None = None
        self.peer: AuraID | None = None
        self.was_reset = False

    async def read(self, n: int = 65536) -> bytes:
        return await self.inbox.get()

    def write(self, data: bytes) -> None:
        assert self.other is not None
        self.other.inbox.put_nowait(data)

    async def drain(self) -> None:
        return None

    def write_eof(self) -> None:
        self.write(b"")

    def reset(self, error_code: int = 0) -> None:
        self.was_reset = True

    async def aclose(self) -> None:
        return None


def pipe() -> tuple[MemoryStream, MemoryStream]:
    a, b = MemoryStream(), MemoryStream()
    a.other, b.other = b, a
    return a, b


def engine() -> HintEngine:
    return HintEngine(Mode.ADAPTIVE, model=AnalyticRateModel())


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def test_remote_hint_matches_the_nodes_engine_and_carries_the_clients_deadline() -> None:
    client_end, server_end = pipe()
    service = HintService(engine)
    clock = Clock()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(service(server_end))  # type: ignore[arg-type]
        async with RemoteHintClient(client_end, engine(), deadline=5.0, clock=clock) as client:  # type: ignore[arg-type]
            for mode in Mode:
                hint = await client.hint(TALKING_HEAD, NETWORK, mode)
                expected = HintEngine(mode, model=AnalyticRateModel()).hint(TALKING_HEAD, NETWORK, 0.0)
                assert (hint.mode, hint.target_bitrate_bps, hint.resolution_scale) == (
                    mode,
                    expected.target_bitrate_bps,
                    expected.resolution_scale,
                )
                assert hint.issued_at == clock.now
                assert hint.deadline == clock.now + 5.0
            assert (client.remote_hints, client.fallbacks, service.answered) == (3, 0, 3)
    assert hint.hint_id == 2  # numbered by the node's engine


async def test_a_late_node_falls_back_locally_and_its_late_answer_is_dropped() -> None:
    client_end, server_end = pipe()
    release = asyncio.Event()

    async def slow_node() -> None:
        """Answers the first request only after ``release``, then every request at once."""
        node = engine()
        first = True
        while chunk := await server_end.read():
            if first:
                await release.wait()
                first = False
            frame = Frame(type=chunk[1], payload=chunk[3:])  # version, type, varint length (< 64), payload
            request = CODEC.decode(frame)
            assert isinstance(request, HintRequest)
            server_end.write(CODEC.encode(HintReply.of(request.request_id, node.hint(request.frame, NETWORK, 0.0))))

    local = HintEngine(Mode.AGGRESSIVE, model=AnalyticRateModel())
    async with asyncio.TaskGroup() as tasks:
        node_task = tasks.create_task(slow_node())
        client = RemoteHintClient(client_end, local, deadline=0.05)  # type: ignore[arg-type]
        fallback = await client.hint(TALKING_HEAD, NETWORK)  # the node holds it: the local engine answers
        assert (client.fallbacks, client.remote_hints) == (1, 0)
        assert fallback.mode is Mode.AGGRESSIVE
        assert fallback.hint_id == 0  # numbered by the local engine
        release.set()
        answered = await client.hint(TALKING_HEAD, NETWORK, Mode.CONSERVATIVE)
        assert (client.fallbacks, client.remote_hints) == (1, 1)
        assert answered.mode is Mode.ADAPTIVE  # the node's engine here ignores the mode; request 1 was answered
        node_task.cancel()


async def test_a_broken_stream_makes_hints_local_for_good() -> None:
    client_end, _ = pipe()
    client = RemoteHintClient(client_end, engine(), deadline=1.0)  # type: ignore[arg-type]
    client_end.inbox.put_nowait(b"")  # the node ended the stream
    hint = await client.hint(TALKING_HEAD, NETWORK)
    assert client.fallbacks == 1
    assert not client.connected
    assert client_end.was_reset
    assert hint.target_bitrate_bps > 0


async def test_a_malformed_request_ends_the_services_stream() -> None:
    client_end, server_end = pipe()
    client_end.write(b"\x01\x01\x02\xff\xff")  # version 1, a HintRequest of two bytes that cannot decode
    client_end.write_eof()
    await HintService(engine)(server_end)  # type: ignore[arg-type]
    assert server_end.was_reset


@pytest.mark.parametrize("deadline", [0.0, -1.0, math.inf, math.nan])
def test_bad_deadline_raises_a_clear_error(deadline: float) -> None:
    with pytest.raises(LocalProtocolError, match="deadline"):
        RemoteHintClient(pipe()[0], engine(), deadline=deadline)  # type: ignore[arg-type]


# --- over two embedded meshes on loopback ------------------------------------------------------------------------


async def test_hints_over_the_mesh(tmp_path: Path) -> None:
    homes = [tmp_path / "weak", tmp_path / "strong"]
    for home in homes:
        assert cli(home, "init").returncode == 0
    async with (
        auralink.connect(homes[0], backend="embedded", listen=["127.0.0.1:0"]) as weak,
        auralink.connect(homes[1], backend="embedded", listen=["127.0.0.1:0"]) as strong,
    ):
        await strong.serve(AIC_PROTOCOL, HintService(engine))
        address = str((await strong.status())["listen"][0])
        await weak.dial(strong.identity.aura_id, [address])
        async with await RemoteHintClient.open(weak, strong.identity.aura_id, engine(), deadline=5.0) as client:
            hints = [await client.hint(TALKING_HEAD, NETWORK) for _ in range(5)]
        assert client.remote_hints == 5
        assert [h.hint_id for h in hints] == [0, 1, 2, 3, 4]

"""AIC's RTP header extension: the element's codec, aiortc's maps extended per sender, and a real call."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from auralink.aic import AnalyticRateModel, HintEngine, Mode
from auralink.aic.controller import AICController
from auralink.aic.rtp import (
    DEFAULT_EXTENSION_ID,
    HintMark,
    MarkingExtensionsMap,
    MarkReadingExtensionsMap,
    attach_receiver,
    attach_sender,
    pack_mark,
    unpack_mark,
)
from auralink.errors import LocalProtocolError, RemoteProtocolError
from tests.test_aic_controller import TextureTrack, loopback_ice  # noqa: F401 - the fixture

marks = st.builds(HintMark, st.integers(0, 2**22 - 1), st.sampled_from(Mode))
MID = RTCRtpParameters(
    headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")]
)


@given(marks)
def test_marks_round_trip(mark: HintMark) -> None:
    assert unpack_mark(pack_mark(mark)) == mark


@given(st.binary(max_size=5))
def test_any_element_parses_or_raises_remote_protocol_error(data: bytes) -> None:
    try:
        mark = unpack_mark(data)
    except RemoteProtocolError:
        return
    assert pack_mark(mark) == data


def test_golden_element() -> None:
    assert pack_mark(HintMark(5, Mode.ADAPTIVE)).hex() == "400005"
    assert pack_mark(HintMark(2**22 - 1, Mode.AGGRESSIVE)).hex() == "bfffff"
    with pytest.raises(RemoteProtocolError, match="mode"):
        unpack_mark(bytes.fromhex("c00000"))  # mode 3 does not exist
    assert unpack_mark(bytes.fromhex("800000")) == HintMark(0, Mode.AGGRESSIVE)


@pytest.mark.parametrize("bad", [{"hint_id": -1}, {"hint_id": 2**22}, {"mode": "adaptive"}])
def test_bad_marks_raise_a_clear_error(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"hint_id": 1, "mode": Mode.ADAPTIVE} | bad
    with pytest.raises(LocalProtocolError, match="HintMark"):
        HintMark(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("extension_id", [0, 15, True])
def test_bad_extension_ids_raise_a_clear_error(extension_id: int) -> None:
    with pytest.raises(LocalProtocolError, match="extension id"):
        MarkingExtensionsMap(extension_id)


def packet(map_: HeaderExtensionsMap, mid: str = "0") -> bytes:
    rtp = RtpPacket(payload_type=96, sequence_number=1, timestamp=3000)
    rtp.extensions.mid = mid
    rtp.payload = b"\x10\x00vp8"
    return rtp.serialize(map_)


def test_marked_packets_keep_aiortcs_extensions_and_carry_the_mark() -> None:
    sending = MarkingExtensionsMap()
    sending.configure(MID)
    heard: list[HintMark] = []
    reading = MarkReadingExtensionsMap(heard.append)
    reading.configure(MID)
    plain = HeaderExtensionsMap()
    plain.configure(MID)
    unmarked = packet(sending)
    sending.mark = HintMark(42, Mode.CONSERVATIVE)
    marked = packet(sending)
    assert len(marked) == len(unmarked) + 4  # one-byte header plus three data bytes
    assert RtpPacket.parse(marked, plain).extensions.mid == "0"  # a plain aiortc receiver ignores the mark
    parsed = RtpPacket.parse(marked, reading)
    RtpPacket.parse(marked, reading)
    assert parsed.extensions.mid == "0"
    assert heard == [HintMark(42, Mode.CONSERVATIVE)]  # reported once per change
    sending.mark = HintMark(43, Mode.CONSERVATIVE)
    RtpPacket.parse(packet(sending), reading)
    assert heard[-1] == HintMark(43, Mode.CONSERVATIVE)


def test_a_clashing_id_is_refused() -> None:
    sending = MarkingExtensionsMap(extension_id=1)
    sending.configure(MID)  # aiortc already sends mid as id 1
    sending.mark = HintMark(1, Mode.ADAPTIVE)
    with pytest.raises(LocalProtocolError, match="already used"):
        packet(sending)


def test_a_malformed_mark_is_counted_and_dropped() -> None:
    heard: list[HintMark] = []
    reading = MarkReadingExtensionsMap(heard.append)
    reading.get(0xBEDE, bytes([DEFAULT_EXTENSION_ID << 4 | 1, 0x40, 0x00, 0x00]))  # two data bytes, not three
    assert (heard, reading.malformed) == ([], 1)


def test_attach_needs_an_aiortc_map() -> None:
    with pytest.raises(LocalProtocolError, match="header extension map"):
        attach_sender(object())


@pytest.mark.usefixtures("loopback_ice")
async def test_real_call_carries_hint_marks_to_the_receiver() -> None:
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    controller = AICController(HintEngine(Mode.AGGRESSIVE, model=AnalyticRateModel()))
    sender = caller.addTrack(controller.wrap(TextureTrack(count=90)))
    controller.attach(sender, rtp_extension_id=DEFAULT_EXTENSION_ID)
    heard: list[HintMark] = []
    enough = asyncio.Event()
    tasks: list[asyncio.Future[None]] = []

    def on_mark(mark: HintMark) -> None:
        heard.append(mark)
        if len(heard) >= 10:
            enough.set()

    @callee.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def drain() -> None:
            while True:
                await track.recv()

        tasks.append(asyncio.ensure_future(drain()))

    try:
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        attach_receiver(callee.getReceivers()[0].transport, on_mark)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)
        async with asyncio.timeout(20):
            await enough.wait()
    finally:
        for task in tasks:
            task.cancel()
        await caller.close()
        await callee.close()
    assert {mark.mode for mark in heard} == {Mode.AGGRESSIVE}
    ids = [mark.hint_id for mark in heard]
    assert ids == sorted(ids)  # one hint per frame, in order
    assert ids[-1] <= controller.metrics().hints

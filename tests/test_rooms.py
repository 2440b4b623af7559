"""Rooms end to end: one SFU and up to four participants, each an embedded mesh on this host.

Media goes over aiortc with host candidates only (the host's non-loopback address: aioice
never offers 127.0.0.1, so the module skips where there is none). The video is synthetic: 320x240
frames at 20 fps, each with its frame counter drawn as 16 black-or-white blocks, so a sink can tell
real distinct frames from repeats after VP8 coding and forwarding. The audio is sine tones
(``auralink.calls.media.tone``), recognised on the far side by the peak of their spectrum after
Opus coding and forwarding.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiortc")

import numpy as np
from aiortc import MediaStreamTrack, RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from av import AudioFrame, VideoFrame

from auralink.calls.grants import Capability, Grant, RoomId
from auralink.calls.media import tone
from auralink.calls.room import Room, RoomServer
from auralink.calls.room_messages import (
    ChatReceived,
    LeaveReason,
    ParticipantChanged,
    ParticipantJoined,
    ParticipantLeft,
    Removed,
    TrackKind,
)
from auralink.calls.rtc import _connect_tasks, close_peer_connection
from auralink.errors import GrantExpired, GrantForged, NotPermitted, RoomClosed, RoomError
from auralink.identity import Identity
from auralink.mesh import Mesh
from tests.calls_kit import call_threads, embedded_mesh, needs_candidates, settled

pytestmark = needs_candidates

OWNER = Identity.from_seed(b"\x42" * 32)
ROOM = RoomId(OWNER.aura_id, "standup")
ALL = Capability.participant()
VIDEO_CLOCK = 90000
FPS = 20


class CounterTrack(MediaStreamTrack):
    """A camera stand-in: ``FPS`` frames a second, paced on the loop clock, pts = capture time at 90 kHz."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.count = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self.count / FPS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # a source's frame pacing, as aiortc's VideoStreamTrack does
        captured = loop.time()
        y = np.full((self.height, self.width), 64, np.uint8)
        y[40:, :] = (np.arange(self.width)[None, :] + self.count * 4) % 256  # motion, so frames differ
        for bit in range(16):
            if self.count >> bit & 1:
                y[0:20, bit * 20 : bit * 20 + 20] = 235
        planes = np.concatenate([y, np.full((self.height // 2, self.width), 128, np.uint8)])
        frame = VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = round((captured - self._start) * VIDEO_CLOCK)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self.count += 1
        return frame


def counter_of(frame: VideoFrame) -> int:
    """The frame counter drawn by :class:`CounterTrack`, read back from the decoded picture."""
    y = frame.to_ndarray(format="gray")
    return sum(1 << bit for bit in range(16) if y[5:15, bit * 20 + 5 : bit * 20 + 15].mean() > 150)


@dataclass
class Sink:
    """Records (counter, pts, arrival) of each frame; ``done`` is set once ``span`` seconds of pts are in."""

    clock: Callable[[], float]
    span: float = 10.0
    warmup: float = 1.0
    frames: list[tuple[int, int, float]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, frame: VideoFrame) -> None:
        assert frame.pts is not None
        self.frames.append((counter_of(frame), frame.pts, self.clock()))
        if frame.pts - self.frames[0][1] >= (self.warmup + self.span) * VIDEO_CLOCK:
            self.done.set()

    def window(self) -> list[tuple[int, int, float]]:
        start = self.frames[0][1] + self.warmup * VIDEO_CLOCK
        return [f for f in self.frames if start <= f[1] < start + self.span * VIDEO_CLOCK]


def grant(mesh: Mesh, caps: Capability = ALL, *, ttl: int = 600, not_before: int | None = None) -> Grant:
    now = int(time.time())
    start = now - 5 if not_before is None else not_before
    return Grant.create(OWNER, ROOM, mesh.identity.aura_id, caps, not_before=start, expires_at=now + ttl)


@dataclass
class Lab:
    sfu: Mesh
    people: list[Mesh]
    server: RoomServer

    def room(self, who: int, g: Grant | None = None, *, slots: int = 3) -> Room:
        mesh = self.people[who]
        return Room(mesh, self.sfu.identity.aura_id, g or grant(mesh), slots=slots)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    names = ["sfu", "ann", "ben", "cat", "dan"]
    generators = [embedded_mesh(tmp_path, name) for name in names]
    meshes = [await anext(g) for g in generators]
    sfu, people = meshes[0], meshes[1:]
    address = str((await sfu.status())["listen"][0])
    for mesh in people:
        await mesh.dial(sfu.identity.aura_id, [address])
    try:
        async with RoomServer(sfu, owners=[OWNER.aura_id]) as server:
            yield Lab(sfu, people, server)
    finally:
        for g in reversed(generators):
            with pytest.raises(StopAsyncIteration):
                await anext(g)


def _threads() -> int:
    """Threads other than the loop's executor workers (which idle on after encoding, by design)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


async def test_four_participants_each_receive_the_other_three_at_15_fps_for_10_s(lab: Lab) -> None:
    """Each of 4 participants publishes 320x240 at 20 fps and subscribes to the 3 others through the SFU.

    The rate is measured on the frames' pts, not on arrival times: pts is the publisher's capture
    time (loop clock, 90 kHz), carried through VP8, the SFU's forwarding and the subscriber's
    decoder. A sink counts the distinct frame counters it decoded whose pts fall in a 10 s window
    (after 1 s of warm-up), so a frame dropped anywhere (not captured in time on a loaded machine,
    lost, or not decodable) lowers the rate, while a scheduler stall that only delays delivery
    does not. Arrival times (monotonic) are kept for the failure message.
    """
    tasks_before = set(asyncio.all_tasks())
    threads_before = _threads()
    rooms = [lab.room(i) for i in range(4)]
    for room in rooms:
        await room.__aenter__()
    sinks: dict[tuple[int, int], Sink] = {}
    try:
        for room in rooms:
            await room.publish(CounterTrack())
        for i, room in enumerate(rooms):
            for j, other in enumerate(lab.people):
                if i != j:
                    sink = sinks[i, j] = Sink(time.monotonic)
                    await room.subscribe(other.identity.aura_id, sink)
        assert {len(r.participants) for r in rooms} == {3}
        async with asyncio.timeout(60):
            await asyncio.gather(*(sink.done.wait() for sink in sinks.values()))
        stats = lab.server.stats()
    finally:
        for room in rooms:
            await room.__aexit__(None, None, None)
    report = {}
    for (i, j), sink in sinks.items():
        window = sink.window()
        counters = [c for c, _, _ in window]
        assert counters == sorted(set(counters)), f"{i}<-{j}: frames repeated or out of order"
        pts_fps = len(counters) / sink.span
        wall = window[-1][2] - window[0][2]
        report[i, j] = (pts_fps, (len(counters) - 1) / wall if wall > 0 else 0.0)
    print("fps per track (pts, arrival):", {k: (round(a, 1), round(b, 1)) for k, (a, b) in report.items()})
    assert all(pts >= 15.0 for pts, _ in report.values()), report
    assert stats["frames_forwarded"] >= 12 * 15 * 10
    # Nothing of the four participants is left: no tasks, no decoder threads.
    async with asyncio.timeout(10):
        while leftover := [t for t in asyncio.all_tasks() - tasks_before if t is not asyncio.current_task()]:
            await asyncio.wait(leftover, timeout=5)
    async with asyncio.timeout(10):
        while _threads() > threads_before:
            await asyncio.to_thread(threading.enumerate)
    assert lab.server.rooms() == {}


async def test_a_forged_grant_is_refused_at_the_door(lab: Lab) -> None:
    mallory = Identity.from_seed(b"\x66" * 32)
    genuine = grant(lab.people[0])
    forged = Grant(
        genuine.room,
        genuine.subject,
        genuine.capabilities | Capability.ADMIN,
        genuine.not_before,
        genuine.expires_at,
        mallory.sign("room/grant", genuine.to_be_signed()),
    )
    with pytest.raises(GrantForged, match="not signed by the room owner"):
        async with lab.room(0, forged):
            pass
    assert lab.server.rooms() == {}


async def test_an_expired_grant_is_refused_at_the_door(lab: Lab) -> None:
    now = int(time.time())
    expired = Grant.create(OWNER, ROOM, lab.people[0].identity.aura_id, ALL, not_before=now - 600, expires_at=now - 60)
    with pytest.raises(GrantExpired, match="expired"):
        async with lab.room(0, expired):
            pass


async def test_publishing_without_the_grant_is_refused_and_nothing_is_forwarded(lab: Lab) -> None:
    viewer = grant(lab.people[0], Capability.JOIN | Capability.SUBSCRIBE)
    async with lab.room(0, viewer) as ann, lab.room(1) as ben:
        with pytest.raises(NotPermitted, match="publish") as info:
            await ann.publish(CounterTrack())
        assert info.value.action == "publish"
        assert not ben.participants[ann.me].publishing
        with pytest.raises(RoomError, match="does not publish"):
            await ben.subscribe(ann.me)
        # RTP sent on the publish slot regardless (bypassing Room.publish) reaches nobody: the gate stays shut.
        ann._publish[TrackKind.VIDEO].slot.set(CounterTrack())
        await ben.publish(CounterTrack())
        publication = lab.server._hosts[ROOM].publications[ann.me, TrackKind.VIDEO]
        from_ben = await ann.subscribe(ben.me)
        async with asyncio.timeout(30):
            async for _ in from_ben:  # ben's frames pace the wait until ann's RTP has reached the SFU
                if publication.frames >= 10:
                    break
        assert publication.frames >= 10
        assert not publication.open and not publication.sinks
        ben_session = lab.server._hosts[ROOM].sessions[ben.me]
        assert sum(track.forwarded for track in ben_session.slots[TrackKind.VIDEO]) == 0


async def test_chat_participants_list_mute_and_kick(lab: Lab) -> None:
    admin = grant(lab.people[0], ALL | Capability.ADMIN)
    async with lab.room(0, admin) as ann, lab.room(1) as ben:
        joined = await ann.next_event()
        assert isinstance(joined, ParticipantJoined) and joined.info.aura_id == ben.me
        assert set(ben.participants) == {ann.me} and ben.participants[ann.me].capabilities == admin.capabilities
        await ben.send_chat("hello room")
        chat = await ann.next_event()
        assert chat == ChatReceived(ben.me, "hello room")
        with pytest.raises(NotPermitted, match="admin"):
            await ben.mute(ann.me)
        await ben.publish(CounterTrack())
        changed = await ann.next_event()
        assert isinstance(changed, ParticipantChanged) and changed.info.publishing
        await ann.mute(ben.me)
        async with asyncio.timeout(10):  # ben hears of its own publishing first, then of the mute
            while not isinstance(muted := await ben.next_event(), ParticipantChanged) or not muted.info.muted:
                pass
        assert muted.info.aura_id == ben.me and muted.info.publishing
        with pytest.raises(NotPermitted, match="muted"):
            await ben.publish(CounterTrack())
        await ann.kick(ben.me, "testing kicks")
        async with asyncio.timeout(10):
            while not isinstance(removed := await ben.next_event(), Removed):
                pass
        assert (removed.reason, removed.by, removed.detail) == (LeaveReason.KICKED, ann.me, "testing kicks")
        with pytest.raises(RoomClosed) as info:
            await ben.send_chat("still here?")
        assert (info.value.reason, info.value.by) == ("KICKED", str(ann.me))
        async with asyncio.timeout(10):
            while ben.me in ann.participants:
                await ann.next_event()
    # The kicked participant's old grant no longer opens the door.
    with pytest.raises(NotPermitted, match="kicked"):
        async with lab.room(1):
            pass


# -- audio, unsubscribe, leaving -------------------------------------------------------------------


def dominant_frequency(frames: list[AudioFrame]) -> tuple[float, float]:
    """The strongest frequency (Hz) of the frames' left channel, and the share of energy within 20 Hz of it."""
    assert {(f.sample_rate, f.format.name, f.layout.name) for f in frames} == {(48000, "s16", "stereo")}
    left = np.concatenate([f.to_ndarray()[0, ::2] for f in frames]).astype(np.float64)
    power = np.abs(np.fft.rfft(left * np.hanning(len(left)))) ** 2
    hz = np.fft.rfftfreq(len(left), 1 / 48000)
    peak = float(hz[int(np.argmax(power))])
    return peak, float(power[np.abs(hz - peak) <= 20].sum() / power.sum())


async def collect(subscription: AsyncIterator[AudioFrame], count: int) -> list[AudioFrame]:
    frames = []
    async with asyncio.timeout(30):
        async for frame in subscription:
            frames.append(frame)
            if len(frames) >= count:
                break
    return frames


async def test_audio_is_forwarded_per_publisher_and_decodes_to_each_ones_tone(lab: Lab) -> None:
    """Ann sends 440 Hz and Cat 660 Hz; Ben hears each on its own audio subscription, unmixed.

    50 frames (1 s) after the first 10 are analysed: the peak of each spectrum must sit on the
    publisher's tone, with most of the energy around it. A mixing SFU would put both tones in
    both; a broken forward (wrong clock, garbled packets) would not decode to a clean tone.
    """
    tasks_before = set(asyncio.all_tasks())
    threads_before = call_threads()
    async with lab.room(0) as ann, lab.room(1) as ben, lab.room(2) as cat:
        await ann.publish(tone(440.0))
        await cat.publish(tone(660.0))
        assert ben.participants[ann.me].publishing_audio and not ben.participants[ann.me].publishing
        from_ann = await ben.subscribe(ann.me, kind="audio")
        from_cat = await ben.subscribe(cat.me, kind="audio")
        assert (from_ann.kind, from_cat.kind) == ("audio", "audio") and from_ann.slot != from_cat.slot
        heard_ann, heard_cat = await asyncio.gather(collect(from_ann, 60), collect(from_cat, 60))
        with pytest.raises(RoomError, match="does not publish video"):
            await ben.subscribe(ann.me)
        stats = lab.server.stats()
    assert all(isinstance(f, AudioFrame) and f.samples == 960 for f in heard_ann + heard_cat)
    peak_ann, share_ann = dominant_frequency(heard_ann[10:])
    peak_cat, share_cat = dominant_frequency(heard_cat[10:])
    print(f"ann: {peak_ann:.1f} Hz ({share_ann:.2f}), cat: {peak_cat:.1f} Hz ({share_cat:.2f})")
    assert abs(peak_ann - 440.0) <= 3 and share_ann > 0.8
    assert abs(peak_cat - 660.0) <= 3 and share_cat > 0.8
    assert stats["audio_frames_forwarded"] >= 120 and stats["frames_forwarded"] == 0
    assert await settled(tasks_before, threads_before) == ([], set())
    assert lab.server.rooms() == {}


async def test_unsubscribe_stops_one_track_and_leaves_the_other_flowing(lab: Lab) -> None:
    async with lab.room(0) as ann, lab.room(1) as ben:
        await ann.publish(CounterTrack())
        await ann.publish(tone(440.0))
        video = await ben.subscribe(ann.me)
        audio = await ben.subscribe(ann.me, kind="audio")
        await collect(audio, 10)
        async with asyncio.timeout(30):
            async for _ in video:
                break
        session = lab.server._hosts[ROOM].sessions[ben.me]
        audio_slot = session.slots[TrackKind.AUDIO][audio.slot]
        assert audio_slot.source is not None
        await ben.unsubscribe(ann.me, kind="audio")
        assert audio.ended and not video.ended
        assert audio_slot.source is None  # the SFU detached the slot before it replied
        forwarded = audio_slot.forwarded
        received = audio.frames_received
        count = 0
        async with asyncio.timeout(30):
            async for _ in video:  # 20 more video frames pace the check that audio stays stopped
                count += 1
                if count >= 20:
                    break
        assert audio_slot.forwarded == forwarded and audio.frames_received == received
        async with asyncio.timeout(10):
            assert len([f async for f in audio]) <= 100  # the iterator yields what it held, then ends
        again = await ben.subscribe(ann.me, kind="audio")  # a fresh subscription resumes the track
        assert again is not audio and len(await collect(again, 10)) == 10
        with pytest.raises(RoomError, match="not subscribed"):
            await ben.unsubscribe(lab.people[2].identity.aura_id, kind="audio")


async def test_a_publisher_leaving_ends_its_subscriptions_and_leaks_nothing(lab: Lab) -> None:
    tasks_before = set(asyncio.all_tasks())
    threads_before = call_threads()
    async with lab.room(1) as ben:
        async with lab.room(0) as ann:
            await ann.publish(CounterTrack())
            await ann.publish(tone(330.0))
            video = await ben.subscribe(ann.me)
            audio = await ben.subscribe(ann.me, kind="audio")
            await collect(audio, 5)
            async with asyncio.timeout(30):
                async for _ in video:
                    break
        async with asyncio.timeout(10):
            while not isinstance(left := await ben.next_event(), ParticipantLeft):
                pass
        assert left == ParticipantLeft(ann.me, LeaveReason.LEFT)
        assert ann.me not in ben.participants
        async with asyncio.timeout(10):  # both iterators end once their frames are drained
            assert len([f async for f in video]) <= 30 and len([f async for f in audio]) <= 100
        assert video.ended and audio.ended and not ben._by_slot
        host = lab.server._hosts[ROOM]
        assert set(host.sessions) == {ben.me} and host.publications.keys() == {
            (ben.me, TrackKind.VIDEO),
            (ben.me, TrackKind.AUDIO),
        }
        assert all(slot.source is None for slots in host.sessions[ben.me].slots.values() for slot in slots)
    assert await settled(tasks_before, threads_before) == ([], set())
    assert lab.server.rooms() == {}


async def test_closing_a_peer_connection_mid_connect_leaves_no_unretrieved_task_exception(lab: Lab) -> None:
    """aiortc's connect task raises "RTCIceTransport is closed" if the close lands between two transceivers.

    aiortc's ``__connect`` starts ICE, DTLS and RTP transceiver by transceiver; when the close
    stops the (bundled) ICE transport after the first transceiver started and before the task
    reaches the next, the next ``iceTransport.start`` raises. The interleaving is pinned, not
    left to chance: the second ``start`` call waits until the close under test has marked the
    transport closed, then runs on. A plain ``pc.close()`` leaves that exception unretrieved
    (asyncio reports it when the task is collected), which the first half checks so this test
    can fail; :func:`close_peer_connection` retrieves it.
    """

    async def plain_close(pc: RTCPeerConnection) -> None:
        connecting = _connect_tasks(pc)
        await pc.close()
        await asyncio.wait(connecting)  # done, but nobody retrieves the exception

    async def run(close: Callable[[RTCPeerConnection], Awaitable[None]]) -> list[str]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("exception"))))
        try:
            offerer, answerer = (
                RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
                for _ in range(2)
            )
            for kind in ("video", "audio"):
                offerer.addTransceiver(kind, direction="sendrecv")
            await offerer.setLocalDescription(await offerer.createOffer())
            await answerer.setRemoteDescription(offerer.localDescription)
            (ice,) = {t.receiver.transport.transport for t in answerer.getTransceivers()}  # bundled: one transport
            between, closed = asyncio.Event(), asyncio.Event()
            ice.on("statechange", lambda: closed.set() if ice.state == "closed" else None)
            start, starts = ice.start, itertools.count(1)

            async def held_start(parameters: Any) -> None:
                if next(starts) == 2:  # the connect task reached the second transceiver
                    between.set()
                    await closed.wait()
                await start(parameters)

            ice.start = held_start
            await answerer.setLocalDescription(await answerer.createAnswer())
            await offerer.setRemoteDescription(answerer.localDescription)
            async with asyncio.timeout(30):
                await between.wait()
                await close(answerer)
            await offerer.close()
            gc.collect()  # a task whose exception nobody retrieved reports it when collected
        finally:
            loop.set_exception_handler(None)
        return reported

    assert await run(plain_close) == ["RTCIceTransport is closed"]
    assert await run(close_peer_connection) == []

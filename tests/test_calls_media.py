"""Audio and video calls between two embedded meshes on this host: tracks, sinks, events, stats, no leaks."""

from __future__ import annotations

import asyncio
import os
import threading
import wave
from pathlib import Path

import pytest

pytest.importorskip("aiortc")

import av
import numpy as np

from auralink.calls import CallAgent, CallConnected, CallEnded, HangupReason, PathChanged, TrackAdded
from auralink.calls.media import DeviceSource, FileSource, numpy_audio, read_stamp, stamped_video, tone
from auralink.errors import CallStateError, ConfigError
from auralink.mesh import Mesh
from tests.calls_kit import alice, bob, call_threads, needs_candidates, open_sockets, settled

pytestmark = needs_candidates
__all__ = ["alice", "bob"]  # fixtures


async def test_video_audio_and_data_flow_both_ways_and_nothing_leaks(alice: Mesh, bob: Mesh) -> None:
    tasks_before = set(asyncio.all_tasks())
    threads_before = call_threads()
    sockets_before = open_sockets()
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call("@bob.aura", audio=tone(440), video=stamped_video(), data=True))
        invite = await asyncio.wait_for(b.next_invite(), 10)
        callee = await asyncio.wait_for(invite.accept(audio=tone(660), video=stamped_video(160, 120)), 15)
        caller = await asyncio.wait_for(placing, 15)

        seen: dict[str, list[object]] = {"alice": [], "bob": []}
        for name, call in (("alice", caller), ("bob", callee)):
            async with asyncio.timeout(10):
                async for event in call.events():  # tracks are added when the description arrives
                    seen[name].append(event)
                    kinds = [type(e) for e in seen[name]]
                    if kinds.count(TrackAdded) == 2 and PathChanged in kinds:
                        break
            kinds = [type(e) for e in seen[name]]
            assert kinds.index(CallConnected) < kinds.index(PathChanged)
            path = next(e.path for e in seen[name] if isinstance(e, PathChanged))
            assert path.kind == "host" and path == call.path
            assert set(call.tracks) == {"audio", "video"}

        stamps = []
        async with asyncio.timeout(15):
            async for frame in callee.tracks["video"].frames():
                stamp = read_stamp(frame)
                if stamp is not None:
                    stamps.append(stamp)
                if len(stamps) >= 10:
                    break
        assert (frame.width, frame.height) == (320, 240)
        sequences = [s.sequence for s in stamps]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)  # real, distinct frames
        async with asyncio.timeout(10):
            async for frame in caller.tracks["video"].frames():
                if read_stamp(frame) is not None:
                    break
        assert (frame.width, frame.height) == (160, 120)
        async with asyncio.timeout(10):
            async for sound in callee.tracks["audio"].frames():
                samples = sound.to_ndarray()
                if np.abs(samples).max() > 1000:  # the tone, not the jitter buffer's first silence
                    break

        caller.send(b"ping")
        assert await asyncio.wait_for(callee.receive(), 5) == b"ping"
        callee.send("pong")
        assert await asyncio.wait_for(caller.receive(), 5) == "pong"

        stats = await caller.stats()
        assert stats.bytes_sent > 0 and stats.bytes_received > 0
        assert stats.frames["video"] > 0 and stats.frames["audio"] > 0
        assert stats.setup is not None and stats.first_frame is not None and stats.path is not None

        await caller.hangup()
        ended = await asyncio.wait_for(callee.wait_ended(), 5)
        assert (ended.reason, ended.by_peer) == (HangupReason.NORMAL, True)
        tail = [e async for e in callee.events()]
        assert isinstance(tail[-1], CallEnded)
        assert callee.tracks["video"].ended and caller.tracks["audio"].ended
        after = await caller.stats()
        assert after.bytes_sent >= stats.bytes_sent  # counters survive the end of the call
    leftover, threads = await settled(tasks_before, threads_before)
    assert not leftover, leftover
    assert not threads, threads  # decoder threads, media readers: all gone (see call_threads)
    executor = [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
    assert len(executor) <= min(32, (os.cpu_count() or 1) + 4)  # the loop's bounded pool, not one per call
    assert open_sockets() == sockets_before  # every ICE socket of both calls is closed


async def test_receive_only_video_and_a_frame_callback(alice: Mesh, bob: Mesh) -> None:
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call(bob.identity.aura_id, video=True, data=False))
        invite = await asyncio.wait_for(b.next_invite(), 10)
        with pytest.raises(CallStateError):
            await invite.accept(audio=tone())  # audio was not offered
        callee = await asyncio.wait_for(invite.accept(video=stamped_video()), 15)
        caller = await asyncio.wait_for(placing, 15)
        got: asyncio.Queue[object] = asyncio.Queue()
        async with asyncio.timeout(10):
            async for event in caller.events():
                if isinstance(event, TrackAdded):
                    event.track.on_frame(got.put_nowait)
                    break
        await asyncio.wait_for(got.get(), 10)
        assert "video" not in callee.tracks  # the caller sends nothing
        seen: list[object] = []
        remove = caller.tracks["video"].on_frame(seen.append)
        async with asyncio.timeout(10):
            while not seen:
                await got.get()  # frames keep coming to the first callback
        remove()
        count = len(seen)
        for _ in range(3):
            await asyncio.wait_for(got.get(), 10)
        assert len(seen) == count  # removed: it heard nothing more
        await callee.hangup()
        await asyncio.wait_for(caller.tracks["video"].wait_ended(), 5)


async def test_a_wav_file_plays_as_the_call_audio(alice: Mesh, bob: Mesh, tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        t = np.arange(16_000 * 2) / 16_000
        out.writeframes((8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16).tobytes())
    source = FileSource(path)
    assert source.video is None and source.audio is not None
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call(bob.identity.aura_id, audio=source.audio, data=False))
        callee = await asyncio.wait_for((await asyncio.wait_for(b.next_invite(), 10)).accept(), 15)
        await asyncio.wait_for(placing, 15)
        loud = 0
        async with asyncio.timeout(10):
            async for sound in (await callee.track("audio")).frames():
                loud += int(np.abs(sound.to_ndarray()).max() > 1000)
                if loud >= 5:
                    break
        await callee.hangup()


def test_bad_media_arguments_are_refused_with_our_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        FileSource(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not media")
    with pytest.raises(ConfigError):
        FileSource(tmp_path / "junk.mp4")
    with pytest.raises(ConfigError):
        stamped_video(63, 48)
    with pytest.raises(ConfigError):
        numpy_audio(lambda n: np.zeros(10, np.int16), frame_ms=0)


async def test_call_refuses_a_track_of_the_wrong_kind(alice: Mesh) -> None:
    async with CallAgent(alice) as a:
        with pytest.raises(CallStateError):
            await a.call(alice.identity.aura_id, audio=stamped_video())


async def test_a_recorder_sink_writes_the_received_video_to_a_file(alice: Mesh, bob: Mesh, tmp_path: Path) -> None:
    out = tmp_path / "received.mp4"
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call(bob.identity.aura_id, video=stamped_video(), data=False))
        callee = await asyncio.wait_for((await asyncio.wait_for(b.next_invite(), 10)).accept(), 15)
        caller = await asyncio.wait_for(placing, 15)
        video = await callee.track("video")
        await video.record(out)
        got = asyncio.Event()
        video.on_frame(lambda _frame: got.set() if video.frames_received > 20 else None)
        await asyncio.wait_for(got.wait(), 15)
        await caller.hangup()
        await asyncio.wait_for(callee.wait_ended(), 5)
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 5


async def test_aic_drives_the_video_encoder_of_a_call_and_hears_rtcp(alice: Mesh, bob: Mesh) -> None:
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        with pytest.raises(CallStateError):
            await a.call(bob.identity.aura_id, video=stamped_video(), aic="fastest")
        placing = asyncio.create_task(a.call(bob.identity.aura_id, video=stamped_video(), aic="conservative"))
        callee = await asyncio.wait_for((await asyncio.wait_for(b.next_invite(), 10)).accept(), 15)
        caller = await asyncio.wait_for(placing, 15)
        assert caller.aic is not None and callee.aic is None
        video = await callee.track("video")
        stamps: list[int] = []
        done = asyncio.Event()

        def seen(frame: av.VideoFrame) -> None:
            if (stamp := read_stamp(frame)) is not None:
                stamps.append(stamp.sequence)
            assert caller.aic is not None
            if len(stamps) >= 30 and caller.aic.network.rtt_s != 0.05:  # a receiver report came back
                done.set()

        video.on_frame(seen)
        await asyncio.wait_for(done.wait(), 20)
        metrics = caller.aic.metrics()
        assert metrics.frames_in > 0 and metrics.hints > 0 and not metrics.unsupported_encoder
        assert metrics.target_bitrate_bps is not None  # the controller adopted aiortc's encoder
        await caller.hangup()


async def test_a_device_source_feeds_a_call(alice: Mesh, bob: Mesh) -> None:
    """FFmpeg's lavfi test source stands in for a camera: the same ``MediaPlayer(device, format=...)`` path as v4l2."""
    camera = DeviceSource("testsrc=size=320x240:rate=15", format="lavfi")
    assert camera.video is not None
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call(bob.identity.aura_id, video=camera.video, data=False))
        callee = await asyncio.wait_for((await asyncio.wait_for(b.next_invite(), 10)).accept(), 15)
        await asyncio.wait_for(placing, 15)
        async with asyncio.timeout(15):
            async for frame in (await callee.track("video")).frames():
                assert (frame.width, frame.height) == (320, 240)
                break
        await callee.hangup()
    with pytest.raises(ConfigError):
        DeviceSource("/dev/no-such-camera", format="v4l2")

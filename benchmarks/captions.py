"""Live captions: how far the co-host's final captions trail the end of speech, with their word error rate.

Prints one JSON object on stdout and nothing else. The transcripts and word error rates are the
same on every run of a mode (pocketsphinx decodes deterministically); the latencies and RTF vary.

Data
====
Debian's ``pocketsphinx-testdata`` LibriVox clips 0870, 0890, 0920 and 0930 (16 kHz read speech,
21.7 s in all). **Clip 0880 is reserved for independent checks** and is never read here.

What is played
==============
One session per repeat, as a call would deliver it: 0.5 s of silence, then each clip followed by
1.5 s of silence, in 20 ms frames paced in real time (``--speed`` > 1 plays faster, for a smoke
test only). The :class:`~auralink.agents.Agent` runs with its defaults (the endpointer's hangover,
the streaming pocketsphinx recogniser decoding 0.2 s pieces in a worker thread). No LLM, no
memory: this is the caption path. Two modes:

* in process (default): the frames go straight to the agent, paced by the event loop's clock;
* ``--call``: two embedded meshes on this host; the caller plays the session as a WAV through
  ``FileSource(path).audio`` (aiortc's ``MediaPlayer``, Opus at 96 kbps), and the agent answers
  with :func:`auralink.agents.incall.serve_calls` and hears the call's remote audio track.

What is measured
================
* ``latency_s.behind_end_of_speech``: each final caption's ``latency`` field: from the arrival
  of the last voiced frame (the endpointer's end of speech) to the caption, p50/p95/max over every
  utterance of every repeat. It includes the hangover, by design. Frames are stamped when they
  arrive (in process: when due; in a call: when aiortc delivers them), not when the busy agent
  gets to them, which would understate it.
* ``latency_s.behind_end_of_clip``: the ground truth, against audio rather than our detector:
  from the moment the clip's *last sample* was due (in process: its frame's scheduled time; through
  a call: when the caller's track handed that frame to aiortc's encoder) to the caption. The clips
  end within a few frames of the speech. Through a call this includes Opus, the network and
  aiortc's jitter buffer.
* ``wer``: the corpus word error rate of the final captions of the first repeat against the
  references (errors over reference words, after :func:`auralink.agents.speech.normalize`).
* ``rtf`` (in process): seconds the recogniser spent (in its worker thread, wall clock) over
  seconds of audio.
* ``load_average``: the machine's 1-minute load average before and after (other jobs share it).

Run: ``python benchmarks/captions.py`` (about 90 s for 3 repeats), ``--quick`` (one repeat),
``--call`` (through a call between two embedded meshes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from auralink.agents import Agent, AgentConfig
from auralink.agents.captions import PcmFrame, SphinxStreamingRecognizer
from auralink.agents.events import CaptionFinalised
from auralink.agents.speech import Recognition, WordErrors, read_wav, word_errors

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIPS = ("0870", "0890", "0920", "0930")  # never 0880: reserved for independent checks
CLIP_FILE = "sense_and_sensibility_01_austen_64kb-{}.wav"
RATE = 16000
FRAME = 320
LEAD, TAIL = 0.5, 1.5


def references() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = re.fullmatch(r"\s*(.*?)\s*\((\S+)-(\d{4})\)\s*", line)
        if match and match[3] in CLIPS:
            found[match[3]] = match[1]
    return found


class TimedRecognizer:
    """The real recogniser, with the time spent in it added up."""

    def __init__(self) -> None:
        self.inner = SphinxStreamingRecognizer()
        self.busy = 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    async def start(self, sample_rate: int) -> None:
        await self.inner.start(sample_rate)

    async def feed(self, samples: bytes) -> str:
        began = time.perf_counter()
        try:
            return await self.inner.feed(samples)
        finally:
            self.busy += time.perf_counter() - began

    async def finish(self) -> Recognition:
        began = time.perf_counter()
        try:
            return await self.inner.finish()
        finally:
            self.busy += time.perf_counter() - began


def quantiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": pick(0.95),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def session_audio(clips: dict[str, bytes]) -> tuple[bytes, list[int]]:
    """The session's PCM (silence, each clip, silence) and the byte offsets where each clip ends."""
    audio = bytearray(b"\0" * int(LEAD * RATE) * 2)
    marks: list[int] = []
    for samples in clips.values():
        audio += samples
        marks.append(len(audio))
        audio += b"\0" * int(TAIL * RATE) * 2
    return bytes(audio), marks


async def session(clips: dict[str, bytes], speed: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    recognizer = TimedRecognizer()
    await recognizer.inner.warm_up(RATE)
    agent = Agent(AgentConfig(session_id="bench", summarise_at_end=False), recognizer=recognizer, clock=loop.time)
    finals: list[CaptionFinalised] = []
    agent.add_listener(lambda e: finals.append(e) if isinstance(e, CaptionFinalised) else None)
    clip_ends: list[float] = []
    audio, marks = session_audio(clips)

    async def frames() -> AsyncIterator[PcmFrame]:
        step = FRAME * 2
        start = loop.time()
        pending = list(marks)
        for index, offset in enumerate(range(0, len(audio), step)):
            due = start + index * FRAME / RATE / speed
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            piece = bytes(audio[offset : offset + step])
            if pending and offset + step >= pending[0]:
                clip_ends.append(due)  # the clip's last sample is in this frame, due now (a live source)
                pending.pop(0)
            yield PcmFrame(piece, RATE, arrived=due)  # timed when due, even if the agent reads it late

    began = time.perf_counter()
    await agent.run(frames())
    wall = time.perf_counter() - began
    seconds = len(audio) / 2 / RATE
    behind_clip = []
    for final in finals:  # match each caption to the clip it ends in
        index = min(range(len(marks)), key=lambda i: abs(marks[i] / 2 / RATE - final.end))
        behind_clip.append(final.at - clip_ends[index])
    return {
        "finals": finals,
        "behind_speech": [f.latency for f in finals],
        "behind_clip": behind_clip,
        "recognizer_busy_s": recognizer.busy,
        "audio_s": seconds,
        "wall_s": wall,
    }


def nearest(times: list[float], at: float) -> float:
    """The time in ``times`` closest to ``at`` (the end of the clip a caption belongs to)."""
    return min(times, key=lambda end: abs(at - end))


def clip_timer(inner: Any, marks: list[float], sent: list[float]) -> Any:
    """``inner`` (an aiortc audio track) that notes when the frame holding each mark (source seconds) is sent."""
    from aiortc import MediaStreamTrack  # noqa: PLC0415 - aiortc only for --call

    loop = asyncio.get_running_loop()

    class ClipTimer(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.position = 0.0

        async def recv(self) -> Any:
            frame = await inner.recv()
            self.position += frame.samples / frame.sample_rate
            while len(sent) < len(marks) and self.position >= marks[len(sent)]:
                sent.append(loop.time())  # handed to the encoder now: the clip's end left the caller
            return frame

        def stop(self) -> None:
            super().stop()
            inner.stop()

    return ClipTimer()


async def call_sessions(clips: dict[str, bytes], repeats: int) -> list[dict[str, Any]]:
    """Each repeat is one call between two embedded meshes: the caller plays the session's WAV."""
    import auralink  # noqa: PLC0415 - the calls stack only for --call
    from auralink.agents.incall import serve_calls  # noqa: PLC0415
    from auralink.agents.speech import PcmAudio, write_wav  # noqa: PLC0415
    from auralink.calls import Call  # noqa: PLC0415
    from auralink.calls.media import FileSource  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    audio, marks = session_audio(clips)
    seconds = len(audio) / 2 / RATE
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "session.wav").write_bytes(write_wav(PcmAudio(audio, RATE)))
        for name in ("caller", "cohost"):
            subprocess.run(
                ["auralink-node", "--home", str(root / name), "init", "--handle", name], check=True, capture_output=True
            )
        async with (
            auralink.connect(root / "caller", backend="embedded", listen=["127.0.0.1:0"]) as caller,
            auralink.connect(root / "cohost", backend="embedded", listen=["127.0.0.1:0"]) as cohost,
        ):
            await caller.dial(cohost.identity.aura_id, [str((await cohost.status())["listen"][0])])
            for _ in range(repeats):
                finals: list[CaptionFinalised] = []
                done = asyncio.Event()
                recognizer = TimedRecognizer()
                await recognizer.inner.warm_up(RATE)

                def heard(event: object, finals: list[CaptionFinalised] = finals, done: asyncio.Event = done) -> None:
                    if isinstance(event, CaptionFinalised):
                        finals.append(event)
                        if len(finals) >= len(CLIPS):
                            done.set()

                def agent_for(call: Call, recognizer: TimedRecognizer = recognizer, heard: Any = heard) -> Agent:
                    config = AgentConfig(session_id=call.call_id, summarise_at_end=False)
                    agent = Agent(config, recognizer=recognizer, clock=loop.time)
                    agent.add_listener(heard)
                    return agent

                serving = asyncio.create_task(serve_calls(cohost, agent_for, calls=1))
                source = FileSource(root / "session.wav")
                sent: list[float] = []
                track = clip_timer(source.audio, [m / 2 / RATE for m in marks], sent)
                began = time.perf_counter()
                async with asyncio.timeout(30):
                    call = await caller.call(cohost.identity.aura_id, audio=track, data=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds + 20):  # bounded: a missed caption ends the wait
                        await done.wait()
                await call.hangup()
                async with asyncio.timeout(30):
                    await serving
                source.close()
                behind_clip = [f.at - nearest(sent, f.at) for f in finals] if sent else []
                runs.append(
                    {
                        "finals": finals,
                        "behind_speech": [f.latency for f in finals],
                        "behind_clip": behind_clip,
                        "recognizer_busy_s": recognizer.busy,
                        "audio_s": seconds,
                        "wall_s": time.perf_counter() - began,
                    }
                )
    return runs


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    refs = references()
    clips = {c: read_wav((LIBRIVOX / CLIP_FILE.format(c)).read_bytes()).samples for c in CLIPS}
    load_before = os.getloadavg()[0]
    repeats = 1 if args.quick else args.repeats
    if args.call:
        runs = await call_sessions(clips, repeats)
    else:
        runs = [await session(clips, args.speed) for _ in range(repeats)]
    first = runs[0]["finals"]
    per_clip = []
    total = WordErrors(0, 0, 0, 0)
    texts = [f.text for f in first]
    if len(first) == len(CLIPS):
        for clip, final in zip(CLIPS, first, strict=True):
            errors = word_errors(refs[clip], final.text)
            total = total + errors
            per_clip.append(
                {"clip": clip, "wer": round(errors.wer, 4), "text": final.text,
                 "latency_s": round(final.latency, 3), "start": final.start, "end": final.end}
            )  # fmt: skip
    else:
        total = word_errors(" ".join(refs[c] for c in CLIPS), " ".join(texts))
    audio = sum(r["audio_s"] for r in runs)
    return {
        "benchmark": "captions",
        "mode": "call" if args.call else "in-process",
        "clips": list(CLIPS),
        "repeats": len(runs),
        "speed": args.speed,
        "hangover_s": AgentConfig().vad.hangover_seconds,
        "partial_seconds": AgentConfig().partial_seconds,
        "tail_seconds": AgentConfig().tail_seconds,
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "captions_per_run": [len(r["finals"]) for r in runs],
        "latency_s": {
            "behind_end_of_speech": quantiles([x for r in runs for x in r["behind_speech"]]),
            "behind_end_of_clip": quantiles([x for r in runs for x in r["behind_clip"]]),
        },
        "goal_latency_s": 1.0,
        "wer": round(total.wer, 4),
        "word_errors": {
            "substitutions": total.substitutions,
            "deletions": total.deletions,
            "insertions": total.insertions,
            "reference_words": total.reference_words,
        },
        "per_clip": per_clip,
        "rtf": round(sum(r["recognizer_busy_s"] for r in runs) / audio, 3),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speed", type=float, default=1.0, help="play faster than real time (smoke tests only)")
    parser.add_argument("--call", action="store_true", help="through a call between two embedded meshes")
    args = parser.parse_args()
    if not all((LIBRIVOX / CLIP_FILE.format(c)).is_file() for c in CLIPS):
        print(json.dumps({"error": f"install pocketsphinx-testdata ({LIBRIVOX})"}))
        return 1
    print(json.dumps(asyncio.run(main_async(args)), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

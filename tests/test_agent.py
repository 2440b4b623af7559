"""The co-host agent: endpointing on synthetic audio, captions on real speech, moderation, answers, summaries, memory.

Captions are measured on Debian's ``pocketsphinx-testdata`` LibriVox clips 0870, 0890, 0920 and
0930 only; clip 0880 is reserved for independent checks and is never read here. The LLM is
always a real OpenAI-compatible HTTP server on loopback (``tests/provider_servers.py``) reached
through the real provider router.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import json
import math
import re
import shutil
from collections.abc import AsyncIterator, Iterable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import auralink.agents
from auralink.agents import Agent, AgentConfig
from auralink.agents.captions import FrameConverter, PcmFrame
from auralink.agents.events import (
    AgentEvent,
    CaptionDrafted,
    CaptionFinalised,
    Degraded,
    Flagged,
    Remembered,
    Spoke,
    Summarised,
    event_to_json,
)
from auralink.agents.extractive import Segment, find_action_items, find_decisions, find_preferences, rank_segments
from auralink.agents.memory import MemoryStore
from auralink.agents.moderation import ModerationRule, RuleModerator, parse_judgement
from auralink.agents.providers import Chains, KeySealer, OpenAIChatConfig, ProviderRouter, TenantConfig
from auralink.agents.qa import EXTRACTIVE_PREFIX, NOT_FOUND
from auralink.agents.speech import EspeakTTS, Recognition, read_wav, word_errors
from auralink.agents.speech.wer import WordErrors
from auralink.agents.summary import EXTRACTIVE_LABEL
from auralink.agents.vad import Endpointer, SpeechEnded, SpeechExtended, SpeechStarted, VadConfig, frame_features
from auralink.errors import ConfigError, ProviderNotInstalled, UnsupportedAudio
from auralink.identity import Identity
from auralink.testing.clock import FakeClock
from tests.provider_servers import LoopbackServer, OpenAIApp, openai_server_error

ROOT = Path(__file__).resolve().parent.parent
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIPS = ("0870", "0890", "0920", "0930")  # never 0880: it is reserved for independent checks
CLIP_FILE = "sense_and_sensibility_01_austen_64kb-{}.wav"

# Measured with pocketsphinx 5.1.1 streaming through the agent, the four clips in one session
# (benchmarks/captions.py): 16 errors in 63 words, WER 0.254 (per clip 0.273, 0.357, 0.211,
# 0.125), as good as the whole-clip batch decode of tests/test_speech.py. Decoding is
# deterministic; the margins (about 6 more errors over the four clips, or 2 in the worst clip)
# only absorb other builds of pocketsphinx or of its model and the endpoint moving by a frame.
CORPUS_WER_LIMIT = 0.35
CLIP_WER_LIMIT = 0.45
# A fresh decoder's first utterance is worse (its cepstral mean is a guess until one utterance
# has ended; see captions.CMN_INIT): clip 0930 alone measured 0.5.
COLD_CLIP_WER_LIMIT = 0.65

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
OWNER = str(Identity.from_seed(b"\x07" * 32).aura_id)
WALL = 1_800_000_000.0

HAS_POCKETSPHINX = importlib.util.find_spec("pocketsphinx") is not None
HAS_AV = importlib.util.find_spec("av") is not None
needs_pocketsphinx = pytest.mark.skipif(not HAS_POCKETSPHINX, reason="pip install 'auralink[agents]'")
needs_testdata = pytest.mark.skipif(
    not all((LIBRIVOX / CLIP_FILE.format(c)).is_file() for c in CLIPS) or not (LIBRIVOX / "transcription").is_file(),
    reason=f"Debian's pocketsphinx-testdata is not installed ({LIBRIVOX})",
)


# ---------------------------------------------------------------------------------------------
# Synthetic audio


def noise(seconds: float, dbfs: float, seed: int) -> np.ndarray:
    """White noise at ``dbfs`` RMS (high zero-crossing rate)."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(int(seconds * RATE)) * (32768 * 10 ** (dbfs / 20))
    return np.clip(values, -32768, 32767)


def vowel(seconds: float, dbfs: float) -> np.ndarray:
    """A voiced-speech-like tone: 150 Hz and its harmonics (low zero-crossing rate)."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * math.pi * 150 * k * t) / k for k in (1, 2, 3))
    wave = wave / np.sqrt(np.mean(wave**2))
    scaled: np.ndarray = wave * (32768 * 10 ** (dbfs / 20))
    return scaled


def pcm(*parts: np.ndarray) -> bytes:
    return np.concatenate(parts).astype("<i2").tobytes()


def feed_all(endpointer: Endpointer, samples: bytes, chunk: int = FRAME, t0: float = 100.0) -> list[object]:
    """Feed ``samples`` in chunks as if in real time; ``now`` is the arrival of each chunk's last sample."""
    events: list[object] = []
    fed = 0
    for i in range(0, len(samples), chunk * 2):
        piece = samples[i : i + chunk * 2]
        fed += len(piece) // 2
        events += endpointer.feed(piece, RATE, t0 + fed / RATE)
    events += endpointer.flush(t0 + fed / RATE)
    return events


def bounds(events: Iterable[object]) -> list[tuple[float, float, str]]:
    return [(e.start, e.end, e.reason) for e in events if isinstance(e, SpeechEnded)]


QUIET = -70.0  # the line's background
LOUD = -20.0


# ---------------------------------------------------------------------------------------------
# VAD and endpointing: the pure core, explicit time


def test_features_tell_silence_tone_and_noise_apart() -> None:
    assert frame_features(b"\0" * 640).dbfs == -120.0
    tone = frame_features(pcm(vowel(0.02, -20.0)))
    hiss = frame_features(pcm(noise(0.02, -20.0, seed=1)))
    assert tone.dbfs == pytest.approx(-20.0, abs=0.5) and hiss.dbfs == pytest.approx(-20.0, abs=1.0)
    assert tone.zcr < 0.1
    assert hiss.zcr > 0.4


def test_one_utterance_is_cut_at_its_edges_and_the_end_is_timed_on_the_callers_clock() -> None:
    config = VadConfig()
    audio = pcm(noise(1.0, QUIET, 1), vowel(1.0, LOUD), noise(1.0, QUIET, 2))
    events = feed_all(Endpointer(config), audio)
    started = [e for e in events if isinstance(e, SpeechStarted)]
    (ended,) = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(started) == 1 and started[0].start == pytest.approx(1.0, abs=0.021)
    assert started[0].audio_start == pytest.approx(1.0 - config.pre_roll_seconds, abs=0.021)
    assert (ended.start, ended.reason) == (started[0].start, "silence")
    assert ended.end == pytest.approx(2.0, abs=0.021)
    assert ended.speech_ended_at == pytest.approx(100.0 + 2.0, abs=0.021)  # the clock when speech stopped
    assert ended.at - ended.speech_ended_at == pytest.approx(config.hangover_seconds, abs=0.021)
    # the utterance's audio, pre-roll included, runs from audio_start to the end of the hangover
    audio_bytes = sum(len(e.samples) for e in events if isinstance(e, SpeechExtended))
    assert audio_bytes / 2 / RATE == pytest.approx(2.0 + config.hangover_seconds - started[0].audio_start, abs=0.021)


def test_pauses_shorter_than_the_hangover_do_not_split_but_longer_ones_do() -> None:
    hangover = VadConfig().hangover_seconds
    pause = hangover - 0.1
    short = pcm(noise(0.5, QUIET, 1), vowel(0.5, LOUD), noise(pause, QUIET, 2), vowel(0.5, LOUD), noise(1, QUIET, 3))
    assert [r for *_, r in bounds(feed_all(Endpointer(), short))] == ["silence"]
    long = pcm(noise(0.5, QUIET, 1), vowel(0.5, LOUD), noise(0.6, QUIET, 2), vowel(0.5, LOUD), noise(1, QUIET, 3))
    cut = bounds(feed_all(Endpointer(), long))
    assert [(round(s, 2), round(e, 2)) for s, e, _ in cut] == [(0.5, 1.0), (1.6, 2.1)]


def test_a_click_shorter_than_the_start_time_is_not_speech() -> None:
    audio = pcm(noise(0.5, QUIET, 1), vowel(0.04, LOUD), noise(1.0, QUIET, 2))
    assert bounds(feed_all(Endpointer(), audio)) == []


def test_steady_loud_noise_becomes_the_floor_and_is_not_speech() -> None:
    audio = pcm(noise(5.0, -30.0, 4))
    assert bounds(feed_all(Endpointer(), audio)) == []


def test_a_quiet_fricative_counts_where_a_tone_as_quiet_does_not() -> None:
    # the floor is a -70 dBFS hum; 8 dB above it is under the 12 dB margin but over the fricative one
    config = VadConfig(min_dbfs=-80.0)
    hiss = pcm(vowel(0.5, -70.0), noise(0.5, -62.0, 2), vowel(1.0, -70.0))
    tone = pcm(vowel(0.5, -70.0), vowel(0.5, -62.0), vowel(1.0, -70.0))
    assert len(bounds(feed_all(Endpointer(config), hiss))) == 1
    assert bounds(feed_all(Endpointer(config), tone)) == []


@pytest.mark.parametrize("chunk", [1, 7, 160, 320, 999, 48000])
def test_chunk_sizes_do_not_change_the_cuts(chunk: int) -> None:
    audio = pcm(noise(0.5, QUIET, 1), vowel(0.7, LOUD), noise(0.6, QUIET, 2), vowel(0.4, LOUD), noise(1, QUIET, 3))
    reference = bounds(feed_all(Endpointer(), audio, FRAME))
    assert bounds(feed_all(Endpointer(), audio, chunk)) == reference
    audio_in = [e for e in feed_all(Endpointer(), audio, chunk) if isinstance(e, SpeechExtended)]
    assert b"".join(e.samples for e in audio_in) == b"".join(
        e.samples for e in feed_all(Endpointer(), audio, FRAME) if isinstance(e, SpeechExtended)
    )


def test_a_long_utterance_is_cut_at_the_cap_and_flush_ends_an_open_one() -> None:
    config = VadConfig(max_utterance_seconds=2.0, noise_window_seconds=10.0)  # a steady tone is not yet noise
    events = feed_all(Endpointer(config), pcm(noise(0.5, QUIET, 1), vowel(5.0, LOUD)))
    cuts = bounds(events)
    assert [r for *_, r in cuts] == ["max_length", "max_length", "flush"]
    assert cuts[0][1] - cuts[0][0] <= 2.0 + 1e-9 and cuts[-1][1] == pytest.approx(5.5, abs=0.021)


def test_bad_audio_and_bad_tuning_raise_our_errors() -> None:
    endpointer = Endpointer()
    endpointer.feed(b"\0" * 640, RATE, 0.0)
    with pytest.raises(UnsupportedAudio, match="changed"):
        endpointer.feed(b"\0" * 640, 48000, 0.1)
    with pytest.raises(UnsupportedAudio, match="even"):
        endpointer.feed(b"\0" * 3, RATE, 0.1)
    with pytest.raises(ConfigError):
        VadConfig(hangover_seconds=0)
    with pytest.raises(ConfigError):
        VadConfig(max_utterance_seconds=0.1)
    with pytest.raises(UnsupportedAudio):
        FrameConverter().convert(b"raw bytes")
    with pytest.raises(UnsupportedAudio, match="16000 Hz or more"):
        FrameConverter().convert(PcmFrame(b"\0\0", 8000))


async def test_bad_input_raises_from_run_as_itself() -> None:
    async def narrowband() -> AsyncIterator[PcmFrame]:
        yield PcmFrame(b"\0" * 320, 8000)

    with pytest.raises(UnsupportedAudio, match="16000 Hz or more"):
        await Agent(recognizer=ScriptedRecognizer([])).run(narrowband())


# ---------------------------------------------------------------------------------------------
# Captions of real speech (pocketsphinx, streaming)


@cache
def references() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = re.fullmatch(r"\s*(.*?)\s*\((\S+)-(\d{4})\)\s*", line)
        if match and match[3] in CLIPS:
            found[match[3]] = match[1]
    assert sorted(found) == sorted(CLIPS)
    return found


def clip_samples(number: str) -> bytes:
    assert number in CLIPS, "clip 0880 is reserved for independent checks"
    return read_wav((LIBRIVOX / CLIP_FILE.format(number)).read_bytes()).samples


class FrameClock:
    """A clock that frames advance: each 20 ms frame is 'received' 20 ms after the previous one."""

    def __init__(self) -> None:
        self.clock = FakeClock(1000.0)

    async def frames(self, samples: bytes, speaker: str | None = None) -> AsyncIterator[PcmFrame]:
        for i in range(0, len(samples), FRAME * 2):
            piece = samples[i : i + FRAME * 2]
            self.clock.advance(len(piece) / 2 / RATE)
            yield PcmFrame(piece, RATE, speaker)


SILENCE = b"\0" * (RATE // 2 * 2)  # half a second


async def caption_clips(agent: Agent, timeline: FrameClock, clips: Iterable[str]) -> list[AgentEvent]:
    audio = b"".join(SILENCE + clip_samples(c) + SILENCE * 2 for c in clips)
    events: list[AgentEvent] = []
    agent.add_listener(events.append)
    await agent.run(timeline.frames(audio, speaker="narrator"))
    return events


@needs_pocketsphinx
@needs_testdata
async def test_captions_of_real_speech_stay_under_the_measured_word_error_rate() -> None:
    timeline = FrameClock()
    agent = Agent(AgentConfig(session_id="librivox"), clock=timeline.clock)
    events = await caption_clips(agent, timeline, CLIPS)
    finals = [e for e in events if isinstance(e, CaptionFinalised)]
    drafts = [e for e in events if isinstance(e, CaptionDrafted)]
    assert len(finals) == len(CLIPS), [f.text for f in finals]  # one utterance per clip, no split
    total = WordErrors(0, 0, 0, 0)
    for number, final in zip(CLIPS, finals, strict=True):
        errors = word_errors(references()[number], final.text)
        assert errors.wer < CLIP_WER_LIMIT, (number, final.text)
        total = total + errors
        assert final.speaker == "narrator" and final.recognizer == "pocketsphinx"
        assert final.start < final.end and final.latency >= 0
        assert all(final.start - 0.3 <= w.start < w.end <= final.end + 0.5 for w in final.words)
        assert any(d.utterance == final.utterance for d in drafts)  # partial captions came first
    assert total.wer < CORPUS_WER_LIMIT, total
    ends = [f.end for f in finals]
    assert ends == sorted(ends) and isinstance(events[-1], Summarised)
    assert [s.text for s in agent.transcript] == [f.text for f in finals]


@needs_pocketsphinx
@needs_testdata
@pytest.mark.skipif(not HAS_AV, reason="PyAV is not installed (pip install 'auralink[calls]')")
async def test_a_calls_48_khz_stereo_frames_are_resampled_and_captioned() -> None:
    import av  # noqa: PLC0415

    samples = np.frombuffer(SILENCE + clip_samples("0930") + SILENCE * 2, dtype="<i2")
    upsampled = np.repeat(samples, 3)  # 48 kHz (a crude but band-limited-enough upsampling)
    stereo = np.repeat(upsampled, 2).reshape(1, -1)
    clock = FakeClock(0.0)
    per = 960  # 20 ms at 48 kHz

    async def frames() -> AsyncIterator[object]:
        for i in range(0, upsampled.size, per):
            chunk = stereo[:, 2 * i : 2 * (i + per)]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16", layout="stereo")
            frame.sample_rate = 48000
            clock.advance(0.02)
            yield frame

    agent = Agent(AgentConfig(summarise_at_end=False), clock=clock)
    finals: list[CaptionFinalised] = []
    agent.add_listener(lambda e: finals.append(e) if isinstance(e, CaptionFinalised) else None)
    await agent.run(frames())
    assert len(finals) == 1
    assert word_errors(references()["0930"], finals[0].text).wer < COLD_CLIP_WER_LIMIT


class ScriptedRecognizer:
    """A recogniser for testing the agent's logic: utterance n 'says' script[n]. Real recognition is tested above."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.fed = 0

    @property
    def name(self) -> str:
        return "scripted"

    async def start(self, sample_rate: int) -> None:
        self.fed = 0

    async def feed(self, samples: bytes) -> str:
        self.fed += len(samples) // 2
        words = self.script[0].split()
        return " ".join(words[: max(1, len(words) * self.fed // (RATE * 2))])

    async def finish(self) -> Recognition:
        return Recognition(self.script.pop(0), (), self.fed / RATE, 0.9)


def spoken(count: int) -> bytes:
    """``count`` synthetic utterances of 0.6 s, each followed by 0.8 s of quiet."""
    parts = [noise(0.5, QUIET, 0)]
    for i in range(count):
        parts += [vowel(0.6, LOUD), noise(0.8, QUIET, i + 1)]
    return pcm(*parts)


MEETING = [
    "we decided to ship the falcon release on friday",
    "i prefer the blue dashboard theme",
    "i'll send the budget report by thursday",
    "the database migration failed twice last week",
    "you are an idiot",
]


async def hear(agent: Agent, timeline: FrameClock, lines: list[str]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    agent.add_listener(events.append)
    await agent.run(timeline.frames(spoken(len(lines)), speaker="@alice"))
    return events


async def test_final_captions_report_their_latency_behind_the_end_of_speech() -> None:
    timeline = FrameClock()
    agent = Agent(AgentConfig(summarise_at_end=False), recognizer=ScriptedRecognizer(MEETING[:2]), clock=timeline.clock)
    events = await hear(agent, timeline, MEETING[:2])
    finals = [e for e in events if isinstance(e, CaptionFinalised)]
    assert [f.text for f in finals] == MEETING[:2]
    # the scripted recogniser takes no time, so the latency is the hangover, on the injected clock
    hangover = AgentConfig().vad.hangover_seconds
    assert [f.latency for f in finals] == pytest.approx([hangover, hangover], abs=0.021)
    assert [round(f.start, 2) for f in finals] == [0.5, 1.9]
    drafts = [e for e in events if isinstance(e, CaptionDrafted)]
    assert drafts and all(d.utterance in (0, 1) for d in drafts)


# ---------------------------------------------------------------------------------------------
# Moderation


def test_default_rules_flag_threats_insults_and_personal_data_with_reasons() -> None:
    moderator = RuleModerator()
    assert [m.rule for m in moderator.check("i'll kill you if it fails")] == ["threat"]
    assert [m.rule for m in moderator.check("honestly you are an idiot")] == ["insult"]
    (match,) = moderator.check("mail me at bob.smith@example.com")
    assert (match.rule, match.matched) == ("personal-data", "bob.smith@example.com")
    assert "personal data" in match.reason
    assert moderator.check("we decided to kill the legacy feature") == []  # no target person: not a threat


def test_word_list_rules_match_whole_words_case_insensitively() -> None:
    rule = ModerationRule.words("codename", ["Project Falcon", "nightjar"], "an internal code name on an external call")
    moderator = RuleModerator([rule])
    assert [m.matched for m in moderator.check("the PROJECT FALCON launch")] == ["PROJECT FALCON"]
    assert moderator.check("nightjars are birds") == []
    with pytest.raises(ConfigError):
        ModerationRule("bad", "(unclosed", "x")
    with pytest.raises(ConfigError):
        ModerationRule.words("empty", [" "], "x")


def test_a_models_verdict_is_read_strictly() -> None:
    verdict = parse_judgement('Sure! {"flag": true, "category": "harassment", "reason": "Mocks a colleague."}')
    assert verdict is not None and (verdict.flag, verdict.category) == (True, "harassment")
    assert parse_judgement('{"flag": false, "category": "none", "reason": ""}') is not None
    for reply in ("yes, flag it", '{"flag": "yes"}', '{"flag": true, "reason": 3}', "{broken"):
        assert parse_judgement(reply) is None, reply


async def test_rules_flag_captions_as_they_are_finalised() -> None:
    timeline = FrameClock()
    agent = Agent(AgentConfig(summarise_at_end=False), recognizer=ScriptedRecognizer(MEETING[3:]), clock=timeline.clock)
    events = await hear(agent, timeline, MEETING[3:])
    (flag,) = [e for e in events if isinstance(e, Flagged)]
    assert (flag.utterance, flag.speaker, flag.rules, flag.source) == (1, "@alice", ("insult",), "rules")
    assert flag.text == "you are an idiot"
    final = next(e for e in events if isinstance(e, CaptionFinalised) and e.utterance == 1)
    assert events.index(final) < events.index(flag)


# ---------------------------------------------------------------------------------------------
# Extractive answers and summaries (no LLM)


SEGMENTS = [Segment(text, speaker, 10.0 * i, 10.0 * i + 5) for i, (text, speaker) in enumerate(
    [
        ("good morning everyone let's start with the release", "alice"),
        ("we decided to ship the falcon release on friday", "alice"),
        ("the database migration failed twice last week", "bob"),
        ("i'll fix the migration script by tomorrow", "bob"),
        ("can you review the pull request carol", "alice"),
        ("i prefer the blue dashboard theme", "carol"),
        ("should we decide on the logo today", "carol"),
    ]
)]  # fmt: skip


def test_retrieval_finds_what_was_said_by_content_words() -> None:
    (best, *_) = rank_segments("When does the Falcon release ship?", SEGMENTS)
    assert best.segment.text == "we decided to ship the falcon release on friday"
    assert {"falcon", "ship"} <= set(best.matched)
    assert rank_segments("what about the weather", SEGMENTS) == []


def test_cue_phrases_find_decisions_action_items_and_preferences() -> None:
    assert [s.text for s in find_decisions(SEGMENTS)] == ["we decided to ship the falcon release on friday"]
    items = find_action_items(SEGMENTS)
    assert [(i.owner, i.due) for i in items] == [("bob", "tomorrow"), (None, None)]
    assert [s.speaker for s in find_preferences(SEGMENTS)] == ["carol"]


async def test_without_an_llm_answers_and_summaries_are_extractive_and_say_so() -> None:
    agent = Agent(AgentConfig(session_id="standup"), recognizer=ScriptedRecognizer([]))
    for segment in SEGMENTS:
        await agent.note(segment.text, segment.speaker, start=segment.start)
    answer = await agent.ask("When do we ship the Falcon release?", asker="dave")
    assert (answer.method, answer.provider, answer.found) == ("extractive", "", True)
    assert answer.answer.startswith(EXTRACTIVE_PREFIX)
    assert '"we decided to ship the falcon release on friday" (alice at 00:10)' in answer.answer
    assert answer.sources[0].kind == "transcript" and answer.sources[0].start == 10.0
    nothing = await agent.ask("What is the weather like?")
    assert (nothing.answer, nothing.found, nothing.sources) == (NOT_FOUND, False, ())
    summary = await agent.summarise()
    assert (summary.method, summary.provider) == ("extractive", "")
    assert summary.text.startswith(EXTRACTIVE_LABEL)
    assert summary.decisions == ("we decided to ship the falcon release on friday",)
    assert summary.action_items[0].text == "i'll fix the migration script by tomorrow"
    assert all(h in {s.text for s in SEGMENTS} for h in summary.highlights)  # quoted, never made up
    assert 1 <= len(summary.highlights) <= 3
    empty = await Agent(recognizer=ScriptedRecognizer([])).summarise()
    assert empty.highlights == () and "nothing was said" in empty.text


# ---------------------------------------------------------------------------------------------
# Memory, with provenance


async def test_memories_are_written_with_session_speaker_and_time(tmp_path: Path) -> None:
    timeline = FrameClock()
    wall = FakeClock(WALL)
    with MemoryStore.open(tmp_path / "memory.db") as store:
        agent = Agent(
            AgentConfig(session_id="standup-42", owner=OWNER),
            recognizer=ScriptedRecognizer(MEETING[:3]),
            memory=store,
            clock=timeline.clock,
            wall_clock=wall,
        )
        events = await hear(agent, timeline, MEETING[:3])
        remembered = [e for e in events if isinstance(e, Remembered)]
        kinds = {(e.kind, e.text) for e in remembered}
        assert ("decision", MEETING[0]) in kinds and ("preference", MEETING[1]) in kinds
        assert any(kind == "action-item" and text.startswith(MEETING[2]) for kind, text in kinds)
        assert any(kind == "highlight" for kind, _ in kinds)
        for event in remembered:
            memory = store.get(OWNER, event.memory_id)
            assert (memory.kind, memory.text) == (event.kind, event.text)
            assert memory.provenance.session_id == "standup-42"
            assert memory.provenance.speaker == "@alice"
            assert memory.provenance.at == pytest.approx(event.said_at)
        decision = next(e for e in remembered if e.kind == "decision")
        hangover = AgentConfig().vad.hangover_seconds
        assert decision.said_at == pytest.approx(WALL - hangover, abs=0.021)  # when it was said, not when written
        # a later session answers from memory, and says where the memory came from
        later = Agent(AgentConfig(session_id="retro", owner=OWNER), recognizer=ScriptedRecognizer([]), memory=store)
        answer = await later.ask("Which dashboard theme does alice prefer?")
        assert answer.found and answer.sources[0].kind == "memory"
        assert answer.sources[0].session_id == "standup-42"
        assert "blue dashboard theme" in answer.answer


def test_memory_without_an_owner_or_a_router_without_a_tenant_is_a_config_error(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "m.db") as store, pytest.raises(ConfigError, match="owner"):
        Agent(memory=store, recognizer=ScriptedRecognizer([]))
    with pytest.raises(ConfigError, match="tenant"):
        Agent(router=ProviderRouter(sealer=KeySealer.generate()), recognizer=ScriptedRecognizer([]))


# ---------------------------------------------------------------------------------------------
# With an LLM: a real OpenAI-compatible server on loopback, through the real router


class ScriptedModel(OpenAIApp):
    """The OpenAI-compatible app, answering by what the system prompt asks for."""

    def __init__(self) -> None:
        super().__init__(None, model_name="llama3.2")
        self.verdict = {"flag": False, "category": "none", "reason": ""}
        self.answer = "The Falcon release ships on Friday."
        self.summary: object = {
            "summary": "The team agreed to ship Falcon on Friday.",
            "decisions": ["Ship Falcon on Friday"],
            "action_items": [{"text": "Send the budget report", "owner": "@alice", "due": "Thursday"}],
        }

    async def __call__(self, request):  # type: ignore[no-untyped-def]
        if request.path.endswith("/chat/completions"):
            system = request.json()["messages"][0]["content"]
            if "moderate" in system:
                self.reply_text = json.dumps(self.verdict)
            elif "summarise" in system:
                self.reply_text = self.summary if isinstance(self.summary, str) else json.dumps(self.summary)
            else:
                self.reply_text = self.answer
        return await super().__call__(request)


@contextlib.asynccontextmanager
async def llm_agent(
    timeline: FrameClock, script: list[str], **config: object
) -> AsyncIterator[tuple[Agent, LoopbackServer[ScriptedModel]]]:
    async with (
        LoopbackServer(ScriptedModel()) as server,
        ProviderRouter(sealer=KeySealer.generate()) as router,
    ):
        router.set_tenant(
            TenantConfig(
                tenant_id="acme",
                providers=(OpenAIChatConfig(name="ollama", model="llama3.2", base_url=f"{server.url}/v1"),),
                chains=Chains(chat=("ollama",)),
            )
        )
        agent = Agent(
            AgentConfig(tenant_id="acme", **config),  # type: ignore[arg-type]
            recognizer=ScriptedRecognizer(script),
            router=router,
            clock=timeline.clock,
        )
        yield agent, server
    assert server.app.violations == []


async def test_the_llm_flags_answers_and_summarises_through_the_router() -> None:
    timeline = FrameClock()
    async with llm_agent(timeline, MEETING[:3]) as (agent, server):
        server.app.verdict = {"flag": True, "category": "harassment", "reason": "Belittles a colleague."}
        events = await hear(agent, timeline, MEETING[:3])
        flags = [e for e in events if isinstance(e, Flagged)]
        assert len(flags) == 3 and {(f.source, f.provider, f.rules) for f in flags} == {
            ("llm", "ollama", ("harassment",))
        }
        assert flags[0].reasons == ("Belittles a colleague.",)
        (summary,) = [e for e in events if isinstance(e, Summarised)]
        assert (summary.method, summary.provider) == ("llm", "ollama")
        assert summary.text == "The team agreed to ship Falcon on Friday."
        assert summary.decisions == ("Ship Falcon on Friday",)
        assert [(i.owner, i.due) for i in summary.action_items] == [("@alice", "Thursday")]
        answer = await agent.ask("When does Falcon ship?", asker="@bob")
        assert (answer.method, answer.provider, answer.answer) == (
            "llm",
            "ollama",
            "The Falcon release ships on Friday.",
        )
        sent = server.requests[-1].json()["messages"]
        assert "When does Falcon ship?" in sent[1]["content"]
        assert MEETING[0] in sent[1]["content"]  # the retrieved passage went to the model
        judged = [r.json()["messages"][1]["content"] for r in server.requests[:3]]
        assert sorted(judged) == sorted(f"@alice: {line}" for line in MEETING[:3])


async def test_a_failing_or_confused_model_degrades_to_the_extractive_way() -> None:
    timeline = FrameClock()
    async with llm_agent(timeline, MEETING[:1], summarise_at_end=False) as (agent, server):
        await hear(agent, timeline, MEETING[:1])
        events: list[AgentEvent] = []
        agent.add_listener(events.append)
        server.fail_next(openai_server_error(503))
        answer = await agent.ask("When do we ship falcon?")
        assert answer.method == "extractive" and answer.found
        server.app.summary = "Here is your summary: it went well."
        summary = await agent.summarise()
        assert summary.method == "extractive" and summary.decisions == (MEETING[0],)
        degraded = [e for e in events if isinstance(e, Degraded)]
        assert [d.feature for d in degraded] == ["answer", "summary"]
        assert "ollama" in degraded[1].reason and "JSON" in degraded[1].reason


async def test_a_tenant_without_a_chat_provider_is_reported_once_and_captions_go_on() -> None:
    timeline = FrameClock()
    async with ProviderRouter(sealer=KeySealer.generate()) as router:
        router.set_tenant(TenantConfig(tenant_id="keyless"))
        agent = Agent(
            AgentConfig(tenant_id="keyless"),
            recognizer=ScriptedRecognizer(MEETING[:3]),
            router=router,
            clock=timeline.clock,
        )
        events = await hear(agent, timeline, MEETING[:3])
        answer = await agent.ask("who sends the budget report?")
    assert len([e for e in events if isinstance(e, CaptionFinalised)]) == 3
    degraded = [e for e in events if isinstance(e, Degraded)]
    assert len(degraded) == 1 and degraded[0].feature == "moderation"
    assert [e.method for e in events if isinstance(e, Summarised)] == ["extractive"]
    assert answer.method == "extractive" and not agent.llm_configured


async def test_a_missing_recogniser_degrades_captions_once_and_the_agent_still_summarises() -> None:
    class Missing(ScriptedRecognizer):
        async def start(self, sample_rate: int) -> None:
            raise ProviderNotInstalled("pip install 'auralink[agents]'", "pocketsphinx", "pocketsphinx")

    timeline = FrameClock()
    agent = Agent(recognizer=Missing([]), clock=timeline.clock)
    events = await hear(agent, timeline, MEETING[:3])
    assert [type(e).__name__ for e in events] == ["Degraded", "Summarised"]
    assert events[0].feature == "captions" and "auralink[agents]" in events[0].reason  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Spoken replies, the event stream, the public surface


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_answers_can_be_spoken_with_the_local_voice() -> None:
    agent = Agent(AgentConfig(speak_answers=True), recognizer=ScriptedRecognizer([]), tts=EspeakTTS())
    await agent.note(MEETING[0], "alice")
    events: list[AgentEvent] = []
    agent.add_listener(events.append)
    await agent.ask("when do we ship falcon?")
    assert [type(e).__name__ for e in events] == ["Answered", "Spoke"]
    spoke = events[1]
    assert isinstance(spoke, Spoke) and spoke.text == events[0].answer  # type: ignore[union-attr]
    assert spoke.duration is not None and spoke.duration > 1.0
    assert read_wav(spoke.audio.audio).frames > 0
    assert event_to_json(spoke)["type"] == "Spoke" and "audio" not in event_to_json(spoke)


async def test_stream_yields_the_events_in_order_and_they_are_json_ready() -> None:
    timeline = FrameClock()
    agent = Agent(recognizer=ScriptedRecognizer(MEETING[:2]), clock=timeline.clock)
    async with contextlib.aclosing(agent.stream(timeline.frames(spoken(2)))) as stream:
        events = [event async for event in stream]
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "Summarised" and kinds.count("CaptionFinalised") == 2
    for event in events:
        document = json.loads(json.dumps(event_to_json(event)))
        assert document["type"] == type(event).__name__


async def test_a_consumer_that_stops_early_stops_the_pump() -> None:
    timeline = FrameClock()
    agent = Agent(recognizer=ScriptedRecognizer(MEETING), clock=timeline.clock)

    async def live() -> AsyncIterator[PcmFrame]:  # a live source suspends between frames, as a track's recv() does
        samples = spoken(5)
        for i in range(0, len(samples), FRAME * 2):
            await asyncio.sleep(0)
            timeline.clock.advance(FRAME / RATE)
            yield PcmFrame(samples[i : i + FRAME * 2], RATE)

    async with contextlib.aclosing(agent.stream(live())) as stream:
        async for event in stream:
            if isinstance(event, CaptionFinalised):
                break
    assert len(agent.transcript) == 1
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_the_public_api_is_small_and_loads_lazily() -> None:
    assert auralink.agents.__all__ == ["Agent", "AgentConfig"]
    assert auralink.agents.Agent is Agent


PURE = ["vad.py", "extractive.py", "moderation.py", "summary.py", "qa.py", "events.py"]


@pytest.mark.parametrize("name", PURE)
def test_the_agents_cores_do_no_io_and_read_no_clock(name: str) -> None:
    tree = ast.parse((ROOT / "auralink" / "agents" / name).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"asyncio", "socket", "time", "threading", "selectors", "random"}

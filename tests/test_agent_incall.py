"""The co-host in a call: two embedded meshes, real LibriVox speech played as the call's audio, the agent answering.

The speech is Debian's ``pocketsphinx-testdata`` clips 0920 and 0930 (never 0880, which is
reserved for independent checks), played by the caller through ``FileSource(...).audio``: the
agent hears it after Opus coding, the network and aiortc's jitter buffer, and answers on the data
channel and with its voice. The request decoder of the data channel gets a property test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("aiortc")

import av

from auralink.agents import Agent, AgentConfig
from auralink.agents.events import AgentEvent, CaptionFinalised, Summarised
from auralink.agents.incall import (
    MAX_TEXT_CHARS,
    SPEECH_FRAME_SAMPLES,
    SPEECH_RATE,
    CallAgentSession,
    ChatNote,
    Question,
    SessionConfig,
    SummaryRequest,
    parse_request,
    serve_calls,
    speech_frames,
)
from auralink.agents.providers.types import SpeechAudio, Usage
from auralink.agents.speech import EspeakTTS, PcmAudio, word_errors, write_wav
from auralink.calls import Call
from auralink.calls.media import FileSource
from auralink.errors import ConfigError, RemoteProtocolError, UnsupportedAudio
from auralink.mesh import Mesh
from tests.calls_kit import alice, bob, needs_candidates

__all__ = ["alice", "bob"]  # fixtures

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIPS = ("0920", "0930")  # never 0880: it is reserved for independent checks
CLIP_FILE = "sense_and_sensibility_01_austen_64kb-{}.wav"
RATE = 16000
LEAD, GAP = 0.5, 1.5
# Through a call (Opus at 96 kbps in aiortc's "voip" mode, resampled 16 -> 48 -> 16 kHz), the two
# clips in one fresh session measured 10 errors in 27 words, WER 0.370; the same audio fed to the
# agent without the call measured 0.333 (the codec costs one word, in clip 0930). The first clip is
# a cold decoder's first utterance (see captions.CMN_INIT), hence more than tests/test_agent.py's
# corpus limit. The margin (2 words) absorbs the endpoint moving by a frame with network timing.
CALL_WER_LIMIT = 0.45

HAS_POCKETSPHINX = importlib.util.find_spec("pocketsphinx") is not None
needs_pocketsphinx = pytest.mark.skipif(not HAS_POCKETSPHINX, reason="pip install 'auralink[agents]'")
needs_testdata = pytest.mark.skipif(
    not all((LIBRIVOX / CLIP_FILE.format(c)).is_file() for c in CLIPS),
    reason=f"Debian's pocketsphinx-testdata is not installed ({LIBRIVOX})",
)


def references() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = re.fullmatch(r"\s*<s>\s*(.*?)\s*</s>\s*\((\S+)-(\d{4})\)\s*", line)
        if match and match[3] in CLIPS:
            found[match[3]] = match[1]
    return found


def speech_wav(path: Path) -> Path:
    """The clips, each after some silence, as one 16 kHz WAV: what the caller says."""
    silence = np.zeros(int(LEAD * RATE), np.int16).tobytes()
    parts = [silence]
    for clip in CLIPS:
        with wave.open(str(LIBRIVOX / CLIP_FILE.format(clip)), "rb") as source:
            assert (source.getframerate(), source.getnchannels(), source.getsampwidth()) == (RATE, 1, 2)
            parts.append(source.readframes(source.getnframes()))
        parts.append(np.zeros(int(GAP * RATE), np.int16).tobytes())
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(parts))
    return path


class Inbox:
    """The caller's side of the data channel: every message the agent posted, read in order."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.seen: list[dict[str, Any]] = []

    async def next(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next message of type ``kind`` (those before it are kept in ``seen``)."""
        async with asyncio.timeout(timeout):
            while True:
                message: dict[str, Any] = json.loads(await self.call.receive())
                self.seen.append(message)
                if message["type"] == kind:
                    return message


# ---------------------------------------------------------------------------------------------
# The acceptance: the agent joins a call, captions, answers, speaks and summarises


@needs_candidates
@needs_pocketsphinx
@needs_testdata
async def test_the_agent_answers_a_call_captions_its_speech_answers_and_summarises(
    alice: Mesh, bob: Mesh, tmp_path: Path, record_property: Any
) -> None:
    loop = asyncio.get_running_loop()
    events: list[AgentEvent] = []

    def agent_for(call: Call) -> Agent:
        agent = Agent(AgentConfig(session_id=call.call_id, name="co-host"), clock=loop.time)
        agent.add_listener(events.append)
        return agent

    serving = asyncio.create_task(serve_calls(bob, agent_for, calls=1))
    source = FileSource(speech_wav(tmp_path / "caller.wav"))
    assert source.audio is not None
    async with asyncio.timeout(20):
        call = await alice.call(bob.identity.aura_id, audio=source.audio, data=True)
    heard = {"loud": 0}

    def listen(frame: Any) -> None:
        heard["loud"] += int(np.abs(frame.to_ndarray()).max() > 1000)

    (await call.track("audio")).on_frame(listen)  # the agent's voice
    inbox = Inbox(call)

    joined = await inbox.next("AgentJoined")
    assert joined["agent"] == str(bob.identity.aura_id) and joined["speaks"] is True
    assert joined["accepts"] == ["ask", "chat", "summarise"] and joined["llm"] is False

    duration = LEAD + sum((LIBRIVOX / CLIP_FILE.format(c)).stat().st_size / 2 / RATE + GAP for c in CLIPS)
    finals = [await inbox.next("CaptionFinalised", timeout=duration + 30) for _ in CLIPS]
    assert any(m["type"] == "CaptionDrafted" for m in inbox.seen)  # live: drafts while the words are spoken
    refs = references()
    total = word_errors(" ".join(refs[c] for c in CLIPS), " ".join(f["text"] for f in finals))
    assert total.wer < CALL_WER_LIMIT, [f["text"] for f in finals]
    for final, clip in zip(finals, CLIPS, strict=True):
        assert final["speaker"] == str(alice.identity.aura_id) and final["recognizer"] == "pocketsphinx"
        assert final["latency"] > 0 and final["end"] > final["start"]
        record_property(f"caption_latency_s_{clip}", round(final["latency"], 3))  # recorded, never asserted

    call.send(json.dumps({"type": "ask", "text": "what might he have been made"}))
    answered = await inbox.next("Answered")
    assert (answered["method"], answered["found"], answered["asker"]) == (
        "extractive",
        True,
        str(alice.identity.aura_id),
    )
    assert answered["sources"][0]["text"] == finals[1]["text"]  # the second clip says what he might have been made
    spoke = await inbox.next("Spoke")
    assert spoke["text"] == answered["answer"] and spoke["duration"] > 1.0
    async with asyncio.timeout(spoke["duration"] + 15):
        while heard["loud"] < 25:  # half a second of the agent's speech, through Opus, at the caller
            await asyncio.sleep(0.05)  # bounded polling of a counter fed by the media pump

    call.send("Action item: I'll send the dashwood notes by Friday.")  # a plain-text chat note
    call.send(json.dumps({"type": "think"}))
    rejected = await inbox.next("Rejected")
    assert "unknown request type 'think'" in rejected["reason"]
    call.send(json.dumps({"type": "summarise"}))
    posted = await inbox.next("Summarised")
    assert posted["method"] == "extractive" and posted["action_items"], posted
    assert posted["action_items"][0]["speaker"] == str(alice.identity.aura_id)

    await call.hangup()
    async with asyncio.timeout(20):
        (summary,) = await serving
    assert isinstance(summary, Summarised) and summary.session_id == call.call_id
    assert summary.highlights and set(summary.highlights) <= {f["text"] for f in finals} | {
        "Action item: I'll send the dashwood notes by Friday."
    }
    assert isinstance(events[-1], Summarised) and events[-1] is summary  # produced at hang-up
    captions = [e for e in events if isinstance(e, CaptionFinalised)]
    assert [c.text for c in captions] == [f["text"] for f in finals]


@needs_candidates
async def test_a_data_only_call_gets_answers_from_its_chat_and_a_summary_at_hang_up(alice: Mesh, bob: Mesh) -> None:
    sessions: list[CallAgentSession] = []

    async def serve() -> Summarised | None:
        async with asyncio.timeout(20):
            invite = await anext(aiter(bob.incoming_calls()))
            callee = await invite.accept()
        session = CallAgentSession(callee, Agent(AgentConfig(session_id="chat")), config=SessionConfig(speaker="ann"))
        sessions.append(session)
        return await session.run()

    serving = asyncio.create_task(serve())
    async with asyncio.timeout(20):
        call = await alice.call(bob.identity.aura_id, data=True)
    inbox = Inbox(call)
    joined = await inbox.next("AgentJoined")
    assert joined["speaks"] is False and joined["session_id"] == "chat"
    call.send(json.dumps({"type": "chat", "text": "We decided to ship the beta on Tuesday."}))
    call.send(b"\xff\xfe")  # not UTF-8
    assert "UTF-8" in (await inbox.next("Rejected"))["reason"]
    call.send(json.dumps({"type": "ask", "text": "When do we ship the beta?"}))
    answered = await inbox.next("Answered")
    assert answered["found"] and "Tuesday" in answered["answer"] and answered["asker"] == "ann"
    assert not any(m["type"] == "Spoke" for m in inbox.seen)  # no audio in this call: the agent stays silent
    await call.hangup()
    async with asyncio.timeout(20):
        summary = await serving
    assert summary is not None and summary.decisions == ("We decided to ship the beta on Tuesday.",)
    assert sessions[0].rejected == 1 and sessions[0].posted >= 3


# ---------------------------------------------------------------------------------------------
# The data channel's requests: a pure decoder


def test_requests_are_parsed_from_json_or_plain_text() -> None:
    assert parse_request('{"type": "ask", "text": "  When? "}') == Question("When?")
    assert parse_request(b'{"type": "chat", "text": "hi"}') == ChatNote("hi")
    assert parse_request('{"type": "summarize"}') == SummaryRequest()
    assert parse_request("  plain words  ") == ChatNote("plain words")
    assert parse_request("42") == ChatNote("42")  # only a '{' makes a JSON request
    assert parse_request("/ask  when do we ship? ") == Question("when do we ship?")
    assert parse_request("/summary") == SummaryRequest()
    assert parse_request("/summary please") == ChatNote("/summary please")
    assert parse_request("/shrug") == ChatNote("/shrug")


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("{", "JSON object"),
        ('{"type": "ask"}', "string 'text'"),
        ('{"type": "ask", "text": 3}', "string 'text'"),
        ('{"type": "ask", "text": "  "}', "non-empty"),
        ('{"text": "why"}', "unknown request type None"),
        ("{}" + " " * 20000, "over the limit"),
        ("x" * (MAX_TEXT_CHARS + 1), "characters, over the limit"),
        (b"\xc3", "UTF-8"),
        ('{"type": ["ask"]}', "unknown request type"),
        ("/ask   ", "non-empty"),
        ("{" * 5000, "JSON object"),
    ],
)
def test_bad_requests_are_the_peers_fault(message: str | bytes, says: str) -> None:
    with pytest.raises(RemoteProtocolError, match=re.escape(says)):
        parse_request(message)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(["ask", "chat", "summarise"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["type", "text", "x"]), inner),
    max_leaves=8,
)


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), JSON_VALUES.map(json.dumps)))
def test_any_message_is_a_request_or_a_remote_protocol_error(message: bytes | str) -> None:
    try:
        request = parse_request(message)
    except RemoteProtocolError:
        return
    assert isinstance(request, Question | ChatNote | SummaryRequest)
    if not isinstance(request, SummaryRequest):
        assert request.text == request.text.strip() and 0 < len(request.text) <= MAX_TEXT_CHARS


# ---------------------------------------------------------------------------------------------
# Speech into the call


def test_speech_becomes_20_ms_frames_at_48_khz() -> None:
    audio = PcmAudio((np.sin(np.arange(22050) / 5) * 8000).astype("<i2").tobytes(), 22050)  # 1 s at Piper's rate
    frames = speech_frames(SpeechAudio(write_wav(audio), "audio/wav", Usage(characters=1), "piper"))
    assert all(f.samples == SPEECH_FRAME_SAMPLES and f.sample_rate == SPEECH_RATE for f in frames)
    assert len(frames) == pytest.approx(50, abs=1)
    loud = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert np.abs(loud).max() > 6000  # the sound survived the resampler


def test_speech_in_another_format_is_decoded_and_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reply.flac"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16) + 3000, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    frames = speech_frames(SpeechAudio(path.read_bytes(), "audio/flac", Usage(characters=1), "cloud"))
    assert len(frames) == pytest.approx(50, abs=2)
    with pytest.raises(UnsupportedAudio):
        speech_frames(SpeechAudio(b"not audio at all", "audio/mpeg", Usage(characters=1), "cloud"))


async def test_the_espeak_voice_is_played_as_paced_frames() -> None:
    voice = EspeakTTS()
    if not voice.available():
        pytest.skip("espeak-ng is not installed")
    audio = await voice.synthesize("Hello from the co-host.")
    frames = speech_frames(audio)
    assert 0.5 < len(frames) * SPEECH_FRAME_SAMPLES / SPEECH_RATE < 5


def test_session_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        SessionConfig(audio_queue=0)

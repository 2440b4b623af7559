"""``auralink-node caption`` and ``auralink-node agent run``: real commands, real audio; calls and rooms on loopback.

The speech is Debian's ``pocketsphinx-testdata`` clip 0930 (never 0880, which is reserved for
independent checks); the LLM, where one is used, is an OpenAI-compatible server on loopback.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auralink.agents.speech import PcmAudio, read_wav, word_errors, write_wav
from auralink.calls.grants import Capability
from auralink.calls.media import FileSource
from auralink.calls.room_messages import ChatReceived
from auralink.identity import AuraID, Identity
from auralink_node.cli import main
from tests.calls_kit import embedded, needs_candidates
from tests.daemons import cli
from tests.provider_servers import LoopbackServer, OpenAIApp

CLIP = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
REFERENCE = "he might even have been made amiable himself"
CLIP_WER_LIMIT = 0.65  # tests/test_agent.py's COLD_CLIP_WER_LIMIT: one clip, a fresh decoder (measured 0.5)
needs_calls = pytest.mark.skipif(importlib.util.find_spec("aiortc") is None, reason="pip install 'auralink[calls]'")
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None, reason="pip install 'auralink[agents]'"),
    pytest.mark.skipif(not CLIP.is_file(), reason="Debian's pocketsphinx-testdata is not installed"),
]


@pytest.fixture(autouse=True)
def _no_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AURALINK_HOME", str(tmp_path / "env-home"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_caption_json_lists_captions_with_times_and_overall_stats(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "caption", str(CLIP), "--json")
    assert code == 0, err
    result = json.loads(out)
    (item,) = result["captions"]
    assert set(item) == {"start", "end", "text", "speaker", "confidence"}
    assert 0 <= item["start"] < item["end"] <= 3.3 + 0.01
    assert word_errors(REFERENCE, item["text"]).wer < CLIP_WER_LIMIT
    stats = result["stats"]
    assert (stats["captions"], stats["sample_rate"], stats["recognizer"]) == (1, 16000, "pocketsphinx")
    assert stats["audio_seconds"] == pytest.approx(3.29, abs=0.01)
    assert stats["words"] == len(item["text"].split()) and stats["rtf"] > 0
    assert not (Path(os.environ["AURALINK_HOME"])).exists()  # no daemon, no home: nothing written


def test_caption_prints_one_line_per_caption(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "caption", str(CLIP))
    assert code == 0
    (line,) = out.splitlines()
    assert line.startswith("[00:00.") and "] he might" in line


def test_a_missing_or_unsupported_file_is_one_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "caption", str(tmp_path / "nope.wav"), "--json")
    assert code == 1 and json.loads(out)["error"]["type"] == "ConfigError"
    assert err == f"error: {tmp_path / 'nope.wav'}: no such file (give a WAV file, or - for stdin)\n"
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    code, out, err = run(capsys, "caption", str(text), "--json")
    assert code == 1 and json.loads(out)["error"]["type"] == "UnsupportedAudio"
    assert "not a RIFF/WAVE file" in err and err.count("\n") == 1
    low = tmp_path / "phone.wav"
    low.write_bytes(CLIP.read_bytes()[:24] + (8000).to_bytes(4, "little") + CLIP.read_bytes()[28:])
    code, _, err = run(capsys, "caption", str(low))
    assert code == 1 and "16000 Hz or more" in err


def test_agent_run_over_stdin_prints_events_as_json_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auralink_node.cli", "agent", "run", "--input", "-", "--speaker", "narrator",
         "--ask", "what might he have been made"],
        input=CLIP.read_bytes(), capture_output=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["Answered", "Summarised"] and "CaptionDrafted" in kinds
    (final,) = [e for e in events if e["type"] == "CaptionFinalised"]
    assert final["speaker"] == "narrator" and word_errors(REFERENCE, final["text"]).wer < CLIP_WER_LIMIT
    answered, summarised = events[-2:]
    assert (answered["method"], answered["found"]) == ("extractive", True)
    assert summarised["method"] == "extractive" and summarised["highlights"] == [final["text"]]


def test_agent_run_with_an_llm_and_memory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    owner = str(Identity.from_seed(b"\x09" * 32).aura_id)

    async def serve() -> tuple[int, str, str, list[str]]:
        async with LoopbackServer(OpenAIApp(None, reply_text="He might have been made amiable.")) as server:
            code, out, err = await asyncio.to_thread(
                run, capsys, "agent", "run", "-i", str(CLIP), "--llm-url", f"{server.url}/v1",
                "--ask", "what might he have been made", "--memory", str(tmp_path / "m.db"), "--owner", owner,
            )  # fmt: skip
            return code, out, err, server.app.violations

    code, out, err, violations = asyncio.run(serve())
    assert code == 0, err
    assert violations == []
    answered = next(json.loads(line) for line in out.splitlines() if '"Answered"' in line)
    assert (answered["method"], answered["provider"], answered["answer"]) == (
        "llm",
        "llm",
        "He might have been made amiable.",
    )
    assert any('"Remembered"' in line for line in out.splitlines())


def test_agent_run_needs_one_mode_and_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "agent", "run")
    assert code == 1 and "needs audio" in err and "--answer" in err
    code, _, err = run(capsys, "agent", "run", "--room", "standup")
    assert code == 1 and "--room needs --sfu" in err
    code, _, err = run(capsys, "agent", "run", "--answer", "--input", str(CLIP))
    assert code == 1 and "one of --input, --answer or --room" in err
    code, _, err = run(capsys, "agent", "run", "--input", str(CLIP), "--count", "2")
    assert code == 1 and "--count goes with --answer" in err
    code, _, err = run(capsys, "agent", "run", "--answer", "--ask", "why")
    assert code == 1 and "ask on the data channel" in err
    code, _, err = run(capsys, "agent", "run", "--room", "r", "--sfu", "x", "--grant", "zz")
    assert code == 1 and "--grant: not a grant in hex" in err
    code, _, err = run(capsys, "agent", "run", "--input", str(CLIP), "--max-speakers", "2")
    assert code == 1 and "--max-speakers go with --room" in err
    code, _, err = run(capsys, "agent", "run", "--room", "r", "--sfu", "x", "--grant", "00", "--speaker", "ann")
    assert code == 1 and "--speaker goes with --input or --answer" in err


def speech_wav(path: Path) -> Path:
    """Clip 0930 between silences, as a caller would say it."""
    silence = b"\0" * 16000  # 0.5 s
    audio = read_wav(CLIP.read_bytes())
    path.write_bytes(write_wav(PcmAudio(silence + audio.samples + silence * 3, audio.sample_rate)))
    return path


async def read_json_line(stream: asyncio.StreamReader, timeout: float = 60.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        line = await stream.readline()
    assert line, "the agent process ended early"
    message: dict[str, Any] = json.loads(line)
    return message


@needs_calls
@needs_candidates
async def test_agent_run_answer_captions_a_call_and_answers_on_its_data_channel(tmp_path: Path) -> None:
    home = tmp_path / "cohost"
    assert cli(home, "init", "--handle", "cohost").returncode == 0
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "auralink_node.cli", "--home", str(home),
        "agent", "run", "--answer", "--count", "1", "--listen", "127.0.0.1:0", "--speaker", "ann",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )  # fmt: skip
    assert agent.stdout is not None and agent.stderr is not None
    try:
        ready = await read_json_line(agent.stdout)
        assert ready["type"] == "AgentReady" and ready["listen"]
        async with embedded(tmp_path, "alice") as alice:
            await alice.dial(ready["agent"], ready["listen"])
            source = FileSource(speech_wav(tmp_path / "said.wav"))
            assert source.audio is not None
            async with asyncio.timeout(30):
                call = await alice.call(ready["agent"], audio=source.audio, data=True)
            said: list[dict[str, Any]] = []
            async with asyncio.timeout(40):
                while not said or said[-1]["type"] != "CaptionFinalised":
                    said.append(json.loads(await call.receive()))
            call.send("/ask what might he have been made")
            async with asyncio.timeout(30):
                while said[-1]["type"] != "Answered":
                    said.append(json.loads(await call.receive()))
            await call.hangup()
        async with asyncio.timeout(60):
            out, err = await agent.communicate()
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    assert agent.returncode == 0, err.decode()
    assert b"served 1 call(s)" in err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0]["type"] == "CallAnswered" and lines[0]["peer"] == str(alice.identity.aura_id)
    call_id = lines[0]["call"]
    assert all(line["call"] == call_id for line in lines)
    (final,) = [line for line in lines if line["type"] == "CaptionFinalised"]
    assert final["speaker"] == "ann" and word_errors(REFERENCE, final["text"]).wer < CLIP_WER_LIMIT
    answered = next(line for line in lines if line["type"] == "Answered")
    assert answered["found"] and answered["sources"][0]["text"] == final["text"]
    assert lines[-1]["type"] == "Summarised" and lines[-1]["highlights"] == [final["text"]]  # at hang-up
    assert said[0]["type"] == "AgentJoined"


@needs_calls
@needs_candidates
async def test_agent_run_room_captions_a_speaker_and_answers_questions_in_the_rooms_chat(tmp_path: Path) -> None:
    home = tmp_path / "cohost"
    done = cli(home, "init", "--handle", "cohost", "--json")
    assert done.returncode == 0, done.stderr
    cohost = json.loads(done.stdout)["aura_id"]
    async with embedded(tmp_path, "owner") as owner, embedded(tmp_path, "bob") as bob:
        address = str((await owner.status())["listen"][0])
        await bob.dial(owner.identity.aura_id, [address])
        room = await owner.create_room("standup")
        agent_grant = await owner.grant(room, cohost, ttl=120)
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "auralink_node.cli", "--home", str(home),
            "agent", "run", "--room", "standup", "--sfu", str(owner.identity.aura_id),
            "--grant", agent_grant.encode().hex(), "--addr", address, "--listen", "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )  # fmt: skip
        assert agent.stdout is not None
        source = FileSource(speech_wav(tmp_path / "said.wav"))
        try:
            ready = await read_json_line(agent.stdout)
            assert (ready["type"], ready["agent"], ready["captions"], ready["max_speakers"]) == (
                "AgentReady",
                cohost,
                True,
                4,
            )
            bob_grant = await owner.grant(room, bob.identity.aura_id, Capability.participant() | Capability.ADMIN)
            async with bob.join_room(owner.identity.aura_id, bob_grant) as joined:

                async def from_agent(kind: str) -> dict[str, Any]:
                    async with asyncio.timeout(40):
                        while True:
                            event = await joined.next_event()
                            if isinstance(event, ChatReceived) and str(event.sender) == cohost:
                                message: dict[str, Any] = json.loads(event.text)
                                if message["type"] == kind:
                                    return message

                assert source.audio is not None
                await joined.publish(source.audio)
                await joined.send_chat("We decided to ship the beta on Tuesday.")
                caption = await from_agent("CaptionFinalised")
                await joined.send_chat("/ask when do we ship the beta?")
                answer = await from_agent("Answered")
                assert "Tuesday" in answer["answer"]
                await joined.kick(AuraID.parse(cohost), "meeting over")
            async with asyncio.timeout(60):
                out, err = await agent.communicate()
        finally:
            source.close()
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
    assert agent.returncode == 0, err.decode()
    assert b"captioning up to 4 speakers" in err and b"left room standup: 2 lines heard" in err
    bob_id = str(bob.identity.aura_id)
    assert caption["speaker"] in (bob_id, "@bob.aura") and word_errors(REFERENCE, caption["text"]).wer < CLIP_WER_LIMIT
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert all(line["room"] == "standup" for line in lines)
    (final,) = [line for line in lines if line["type"] == "CaptionFinalised"]
    assert final["text"] == caption["text"]
    answered = next(line for line in lines if line["type"] == "Answered")
    assert answered["asker"] == caption["speaker"] and answered["found"]
    summary = lines[-1]
    assert summary["type"] == "Summarised" and summary["decisions"] == ["We decided to ship the beta on Tuesday."]
    assert caption["text"] in summary["highlights"]

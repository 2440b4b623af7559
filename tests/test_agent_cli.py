"""``auralink-node caption`` and ``auralink-node agent run``: real commands, real audio, no daemon.

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

import pytest

from auralink.agents.speech import word_errors
from auralink.identity import Identity
from auralink_node.cli import main
from tests.provider_servers import LoopbackServer, OpenAIApp

CLIP = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
REFERENCE = "he might even have been made amiable himself"
CLIP_WER_LIMIT = 0.65  # tests/test_agent.py's COLD_CLIP_WER_LIMIT: one clip, a fresh decoder (measured 0.5)

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


def test_agent_run_refuses_a_room_until_rooms_land_and_needs_audio(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "agent", "run", "--room", "standup")
    assert code == 1 and "cannot join rooms yet" in err and "--input" in err
    code, _, err = run(capsys, "agent", "run")
    assert code == 1 and "needs audio" in err

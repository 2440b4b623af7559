"""``auralink-node caption`` and ``auralink-node agent run``: the co-host agent from the command line.

Theory of operation
-------------------
Both commands run :class:`auralink.agents.Agent` in this process over a WAV file (or WAV on
stdin); neither needs a running daemon. ``caption`` prints the final captions (``--json``: one
object with the captions and overall stats); ``agent run`` prints every event of the agent as
one JSON object per line (JSON Lines), then the answers to ``--ask`` questions and the summary.

Audio is fed as 20 ms frames. By default as fast as the recogniser goes (a file is not a live
call, so the caption latency of a run is not measured here: ``benchmarks/captions.py`` plays
audio in real time for that); ``agent run --realtime`` paces the frames by the clock, as a call
would deliver them. Progress goes to stderr for files over a minute.

An LLM is optional: ``--llm-url`` names an OpenAI-compatible server (Ollama, vLLM, llama.cpp, or
OpenAI itself with ``AURALINK_LLM_API_KEY`` set), reached through the provider router; without
one, answers and summaries are extractive and say so. ``--room`` is accepted but refused with a
clear error until rooms (``auralink.calls``) can host the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auralink.errors import ConfigError

if TYPE_CHECKING:
    from auralink.agents import Agent
    from auralink.agents.captions import PcmFrame
    from auralink.agents.providers import ProviderRouter
    from auralink.agents.speech import PcmAudio

__all__ = ["agent_app", "caption", "register"]

LLM_KEY_ENV = "AURALINK_LLM_API_KEY"
"""The environment variable that holds the API key of ``--llm-url``, if it needs one."""

_FRAME_SECONDS = 0.02
_PROGRESS_FROM = 60.0  # seconds of audio above which progress is printed to stderr
_PROGRESS_EVERY = 15.0

agent_app = typer.Typer(help="Run the co-host agent (captions, moderation, answers, summary).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``caption`` and the ``agent`` group to the ``auralink-node`` app."""
    app.command("caption")(caption)
    app.add_typer(agent_app, name="agent")


def _read_audio(path: Path) -> PcmAudio:
    from auralink.agents.speech import read_wav  # noqa: PLC0415 - keeps `auralink-node --help` light
    from auralink.errors import UnsupportedAudio  # noqa: PLC0415

    if str(path) == "-":
        data = sys.stdin.buffer.read()
        name = "stdin"
    else:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file (give a WAV file, or - for stdin)", "input")
        data = path.read_bytes()
        name = str(path)
    try:
        return read_wav(data)
    except UnsupportedAudio as exc:
        raise UnsupportedAudio(f"{name}: {exc} (give a WAV file: 16-bit PCM or 32-bit float)") from exc


async def _frames(audio: PcmAudio, speaker: str | None, realtime: bool, progress: bool) -> AsyncIterator[PcmFrame]:
    from auralink.agents.captions import PcmFrame  # noqa: PLC0415

    step = max(2, round(audio.sample_rate * _FRAME_SECONDS) * 2)
    started = time.monotonic()
    shown = 0.0
    for index, offset in enumerate(range(0, len(audio.samples), step)):
        if realtime:
            delay = started + index * _FRAME_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing, as a call delivers audio
        else:
            await asyncio.sleep(0)
        heard = offset / 2 / audio.sample_rate
        if progress and heard - shown >= _PROGRESS_EVERY:
            shown = heard
            typer.echo(f"... {heard:.0f} of {audio.duration:.0f} s", err=True)
        yield PcmFrame(audio.samples[offset : offset + step], audio.sample_rate, speaker)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def caption(
    file: Annotated[Path, typer.Argument(help="A WAV file (16-bit PCM or 32-bit float, 16 kHz or more).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    speaker: Annotated[str, typer.Option("--speaker", help="Label the speech with this speaker.")] = "unknown",
) -> None:
    """Caption a WAV file offline (pocketsphinx): start, end and text of each utterance."""
    from auralink.agents import Agent, AgentConfig  # noqa: PLC0415
    from auralink.agents.events import CaptionFinalised  # noqa: PLC0415

    audio = _read_audio(file)
    agent = Agent(AgentConfig(session_id=file.name, speaker=speaker, summarise_at_end=False, remember=False))
    finals: list[CaptionFinalised] = []
    agent.add_listener(lambda e: finals.append(e) if isinstance(e, CaptionFinalised) else None)
    started = time.perf_counter()
    asyncio.run(agent.run(_frames(audio, None, False, audio.duration > _PROGRESS_FROM)))
    elapsed = time.perf_counter() - started
    captions = [
        {"start": round(f.start, 3), "end": round(f.end, 3), "text": f.text, "speaker": f.speaker,
         "confidence": None if f.confidence is None else round(f.confidence, 3)}
        for f in finals
    ]  # fmt: skip
    stats = {
        "captions": len(captions),
        "words": sum(len(f.text.split()) for f in finals),
        "audio_seconds": round(audio.duration, 3),
        "sample_rate": audio.sample_rate,
        "processing_seconds": round(elapsed, 3),
        "rtf": round(elapsed / audio.duration, 3) if audio.duration else None,
        "recognizer": agent.recognizer.name,
    }
    if as_json:
        typer.echo(json.dumps({"file": str(file), "captions": captions, "stats": stats}, sort_keys=True))
        return
    for final in finals:
        typer.echo(f"[{_clock(final.start)} - {_clock(final.end)}] {final.text}")
    typer.echo(f"{len(captions)} captions, {audio.duration:.1f} s of audio in {elapsed:.1f} s", err=True)


async def _router(llm_url: str, llm_model: str) -> ProviderRouter:
    from auralink.agents.providers import (  # noqa: PLC0415
        Chains,
        KeySealer,
        OpenAIChatConfig,
        ProviderRouter,
        TenantConfig,
    )

    sealer = KeySealer.generate()  # this run only: the key is sealed in memory and never written
    key = os.environ.get(LLM_KEY_ENV)
    router = ProviderRouter(sealer=sealer)
    try:
        chat = OpenAIChatConfig(
            name="llm", model=llm_model, base_url=llm_url, api_key=sealer.seal(key) if key else None
        )
        router.set_tenant(TenantConfig(tenant_id="cli", providers=(chat,), chains=Chains(chat=("llm",))))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        await router.aclose()
        raise ConfigError(f"--llm-url/--llm-model: {exc}", "llm_url") from exc
    return router


async def _run_agent(
    audio: PcmAudio,
    agent_of: Any,
    *,
    questions: list[str],
    speaker: str | None,
    realtime: bool,
    progress: bool,
) -> None:
    from auralink.agents.events import event_to_json  # noqa: PLC0415

    def emit(event: Any) -> None:
        typer.echo(json.dumps(event_to_json(event), sort_keys=True))

    async with contextlib.AsyncExitStack() as stack:
        agent: Agent = await agent_of(stack)
        agent.add_listener(emit)
        await agent.run(_frames(audio, speaker, realtime, progress))
        for question in questions:
            await agent.ask(question, asker="cli")
        await agent.summarise()


@agent_app.command("run")
def agent_run(  # noqa: PLR0917 - typer maps each option to a parameter
    input_: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="A WAV file (16-bit PCM or 32-bit float, 16 kHz or more), or - for stdin."),
    ] = None,
    room: Annotated[str | None, typer.Option("--room", help="Join this room (not available yet).")] = None,
    session: Annotated[str, typer.Option("--session", help="The session id for memory and the summary.")] = "cli",
    speaker: Annotated[str | None, typer.Option("--speaker", help="Label the speech with this speaker.")] = None,
    ask: Annotated[list[str] | None, typer.Option("--ask", help="A question to answer after the audio.")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Pace the audio as a live call would.")] = False,
    llm_url: Annotated[
        str | None, typer.Option("--llm-url", help="An OpenAI-compatible base URL (http://127.0.0.1:11434/v1).")
    ] = None,
    llm_model: Annotated[str, typer.Option("--llm-model", help="The model --llm-url serves.")] = "llama3.2",
    memory: Annotated[Path | None, typer.Option("--memory", help="A memory database to read and write.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="The AuraID whose memory --memory holds.")] = None,
) -> None:
    """Run the co-host over audio and print its events as JSON lines (captions, flags, answers, summary)."""
    if room is not None:
        raise ConfigError(
            f"--room {room}: the agent cannot join rooms yet (rooms are being added to auralink.calls); "
            "run it over audio with --input FILE.wav, or --input - for WAV on stdin",
            "room",
        )
    if input_ is None:
        raise ConfigError("agent run needs audio: --input FILE.wav, or --input - for WAV on stdin", "input")
    if (memory is None) != (owner is None):
        raise ConfigError("--memory and --owner go together (the AuraID whose memory it is)", "memory")
    audio = _read_audio(input_)

    async def make(stack: contextlib.AsyncExitStack) -> Agent:
        from auralink.agents import Agent, AgentConfig  # noqa: PLC0415

        router = await _router(llm_url, llm_model) if llm_url else None
        if router is not None:
            stack.push_async_callback(router.aclose)
        store = None
        if memory is not None:
            from auralink.agents.memory import MemoryStore  # noqa: PLC0415

            store = stack.enter_context(MemoryStore.open(memory))
        config = AgentConfig(
            session_id=session,
            owner=owner,
            tenant_id="cli" if router is not None else None,
            summarise_at_end=False,
        )
        return Agent(config, router=router, memory=store)

    progress = audio.duration > _PROGRESS_FROM
    asyncio.run(
        _run_agent(audio, make, questions=list(ask or []), speaker=speaker, realtime=realtime, progress=progress)
    )

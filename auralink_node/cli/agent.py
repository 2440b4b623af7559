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
one, answers and summaries are extractive and say so.

``agent run --answer`` and ``--room`` put the agent on the mesh, as this home's identity (the
daemon's if one runs, else an embedded node): ``--answer`` answers calls with
:func:`auralink.agents.incall.serve_calls` (each line carries the ``call`` id), ``--room`` joins a
room with :class:`auralink.agents.incall.RoomAgentSession`: it captions each publisher's audio
(up to ``--max-speakers`` at once, one recogniser each), posts its events in the room's chat as
JSON, and answers ``/ask`` questions there (each line carries the ``room``). The first line is
``{"type": "AgentReady", "agent": AURAID, ...}``, so a script knows whom to call or grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auralink.errors import ConfigError

if TYPE_CHECKING:
    from auralink.agents import Agent
    from auralink.agents.captions import PcmFrame
    from auralink.agents.providers import ProviderRouter
    from auralink.agents.speech import PcmAudio
    from auralink.calls import Call

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
    ctx: typer.Context,
    input_: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="A WAV file (16-bit PCM or 32-bit float, 16 kHz or more), or - for stdin."),
    ] = None,
    answer: Annotated[bool, typer.Option("--answer", help="Answer calls to this node as the co-host.")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, help="With --answer: stop after N calls.")] = None,
    room: Annotated[str | None, typer.Option("--room", help="Join this room (its name) as a participant.")] = None,
    sfu: Annotated[str | None, typer.Option("--sfu", help="With --room: the AuraID of the node serving it.")] = None,
    grant: Annotated[str | None, typer.Option("--grant", help="With --room: our grant, in hex.")] = None,
    max_speakers: Annotated[
        int | None,
        typer.Option("--max-speakers", min=1, max=64, help="With --room: speakers captioned at once [default: 4]."),
    ] = None,
    addr: Annotated[
        list[str] | None,
        typer.Option("--addr", help="With --room: an address of the SFU node (repeatable).", metavar="HOST:PORT"),
    ] = None,
    listen: Annotated[
        list[str] | None,
        typer.Option("--listen", help="UDP HOST:PORT for the embedded node (no daemon running).", metavar="HOST:PORT"),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option("--session", help="Session id for memory and summary [default: cli, the call id, the room]."),
    ] = None,
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
    """Run the co-host over audio, in calls or in a room; print its events as JSON lines.

    With --input it hears a WAV file. With --answer it answers calls to this node (its own
    AuraID): it captions the caller's audio, takes questions and chat on the data channel,
    speaks its answers and summarises each call at hang-up. With --room it joins a room,
    captions each speaker's audio and answers questions in its chat.
    """
    modes = [name for name, on in (("--input", input_ is not None), ("--answer", answer), ("--room", room)) if on]
    if len(modes) > 1:
        raise ConfigError(f"agent run takes one of --input, --answer or --room, not {' and '.join(modes)}", "mode")
    if not modes:
        raise ConfigError(
            "agent run needs audio: --input FILE.wav (or - for stdin), --answer to answer calls, "
            "or --room ROOM --sfu AURAID --grant HEX",
            "input",
        )
    if count is not None and not answer:
        raise ConfigError("--count goes with --answer", "count")
    if room is not None and (sfu is None or grant is None):
        raise ConfigError("--room needs --sfu (the AuraID of the node serving it) and --grant (hex)", "room")
    if (sfu is not None or grant is not None or addr or max_speakers is not None) and room is None:
        raise ConfigError("--sfu, --grant, --addr and --max-speakers go with --room", "room")
    if speaker is not None and room is not None:
        raise ConfigError("--speaker goes with --input or --answer (in a room, each participant speaks)", "speaker")
    if (memory is None) != (owner is None):
        raise ConfigError("--memory and --owner go together (the AuraID whose memory it is)", "memory")
    if (answer or room is not None) and (ask or realtime):
        raise ConfigError("--ask and --realtime go with --input (in a call, ask on the data channel)", "ask")

    async def make(stack: contextlib.AsyncExitStack) -> Callable[[str, bool], Agent]:
        from auralink.agents import Agent, AgentConfig  # noqa: PLC0415

        router = await _router(llm_url, llm_model) if llm_url else None
        if router is not None:
            stack.push_async_callback(router.aclose)
        store = None
        if memory is not None:
            from auralink.agents.memory import MemoryStore  # noqa: PLC0415

            store = stack.enter_context(MemoryStore.open(memory))

        def agent(session_id: str, summarise_at_end: bool) -> Agent:
            config = AgentConfig(
                session_id=session_id,
                owner=owner,
                tenant_id="cli" if router is not None else None,
                summarise_at_end=summarise_at_end,
            )
            return Agent(config, router=router, memory=store)

        return agent

    if answer:
        home = ctx.find_root().obj.root
        asyncio.run(_answer_calls(home, listen, make, session=session, speaker=speaker, count=count))
        return
    if room is not None:
        assert sfu is not None and grant is not None
        home = ctx.find_root().obj.root
        asyncio.run(
            _join_room(
                home,
                listen,
                make,
                room=room,
                sfu=sfu,
                grant_hex=grant,
                addresses=addr or [],
                session=session,
                max_speakers=max_speakers or 4,
            )
        )
        return
    assert input_ is not None
    audio = _read_audio(input_)

    async def make_one(stack: contextlib.AsyncExitStack) -> Agent:
        return (await make(stack))(session or "cli", False)

    progress = audio.duration > _PROGRESS_FROM
    asyncio.run(
        _run_agent(audio, make_one, questions=list(ask or []), speaker=speaker, realtime=realtime, progress=progress)
    )


def _line(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, sort_keys=True))


async def _answer_calls(
    home: Path,
    listen: list[str] | None,
    make: Any,
    *,
    session: str | None,
    speaker: str | None,
    count: int | None,
) -> None:
    import auralink  # noqa: PLC0415
    from auralink.agents.events import event_to_json  # noqa: PLC0415
    from auralink.agents.incall import SessionConfig, serve_calls  # noqa: PLC0415

    async with auralink.connect(home, listen=listen) as mesh, contextlib.AsyncExitStack() as stack:
        new_agent = await make(stack)

        def agent_for(call: Call) -> Agent:
            agent: Agent = new_agent(session or call.call_id, True)
            agent.add_listener(lambda event: _line({"call": call.call_id, **event_to_json(event)}))
            _line({"type": "CallAnswered", "call": call.call_id, "peer": str(call.peer)})
            return agent

        status = await mesh.status()
        _line({"type": "AgentReady", "agent": str(mesh.identity.aura_id), "listen": status.get("listen", [])})
        typer.echo(f"answering calls for {mesh.identity.aura_id} as the co-host (Ctrl-C to stop)", err=True)
        summaries = await serve_calls(mesh, agent_for, calls=count, config=SessionConfig(speaker=speaker))
        typer.echo(f"served {len(summaries)} call(s)", err=True)


async def _join_room(
    home: Path,
    listen: list[str] | None,
    make: Any,
    *,
    room: str,
    sfu: str,
    grant_hex: str,
    addresses: list[str],
    session: str | None,
    max_speakers: int,
) -> None:
    import auralink  # noqa: PLC0415
    from auralink.agents.events import event_to_json  # noqa: PLC0415
    from auralink.agents.incall import RoomAgentSession, RoomSessionConfig, speaking_track  # noqa: PLC0415
    from auralink.calls.grants import Capability, decode_grant  # noqa: PLC0415
    from auralink.errors import RemoteProtocolError  # noqa: PLC0415
    from auralink.identity import AuraID  # noqa: PLC0415

    try:
        grant = decode_grant(bytes.fromhex(grant_hex))
    except (ValueError, RemoteProtocolError) as exc:
        raise ConfigError(f"--grant: not a grant in hex: {exc}", "grant") from exc
    if grant.room.name != room:
        raise ConfigError(f"--grant is for room {grant.room.name!r}, not {room!r}", "grant")
    sfu_id = AuraID.parse(sfu)
    async with auralink.connect(home, listen=listen) as mesh, contextlib.AsyncExitStack() as stack:
        if addresses:
            await mesh.dial(sfu_id, addresses)
        agent: Agent = (await make(stack))(session or room, False)
        agent.add_listener(lambda event: _line({"room": room, **event_to_json(event)}))
        config = RoomSessionConfig(max_speakers=max_speakers)
        async with mesh.join_room(sfu_id, grant) as joined:
            voice = None
            if grant.capabilities & Capability.PUBLISH:  # the agent may speak: its answers are heard too
                track, voice = speaking_track()
                await joined.publish(track)
            session_ = RoomAgentSession(joined, agent, config=config, voice=voice)
            _line(
                {
                    "type": "AgentReady",
                    "agent": str(mesh.identity.aura_id),
                    "room": room,
                    "captions": True,
                    "speaks": voice is not None,
                    "max_speakers": max_speakers,
                }
            )
            typer.echo(
                f"joined room {room} as {mesh.identity.aura_id}: captioning up to {max_speakers} speakers at once "
                "(others wait for a free recogniser) and answering /ask questions in its chat",
                err=True,
            )
            await session_.run()  # its summary is the last line
        typer.echo(
            f"left room {room}: {len(agent.transcript)} lines heard, {session_.posted} messages posted"
            + (f", {session_.dropped} audio frames dropped" if session_.dropped else ""),
            err=True,
        )

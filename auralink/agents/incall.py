"""The co-host in a call: the thin adapter between a connected :class:`~auralink.calls.Call` and an Agent.

Theory of operation
===================

The agent is a participant with its own AuraID: the mesh it runs on. It answers (or places) a
call like any app, and a :class:`CallAgentSession` then connects the call's three channels to
the agent, which knows nothing of calls::

    async with auralink.connect() as mesh:
        await serve_calls(mesh, lambda call: Agent(AgentConfig(session_id=call.call_id)))

**Audio in.** The peer's audio track (``await call.track("audio")``: 48 kHz ``av.AudioFrame``
after aiortc's Opus decoder) is the agent's input. A frame callback stamps each frame with the
agent's clock as the call delivers it (:class:`~auralink.agents.captions.ArrivedFrame`), so the
caption latency counts the time audio waited while the agent decoded, and a queue of
:attr:`SessionConfig.audio_queue` frames lets a recogniser fall behind for a moment and lose
nothing. The audio "ends" when the call ends (and the requests already received are served), not
when the peer goes quiet: the agent then flushes the open utterance and, with
:attr:`~auralink.agents.AgentConfig.summarise_at_end` (the default), summarises the call. That
summary is the return value of :meth:`CallAgentSession.run`; the data channel is closed by then,
so a peer that wants the summary asks for it before hanging up (``{"type": "summarise"}``).

**Data out.** Each event of the agent whose type is in :attr:`SessionConfig.post` is posted on the
call's data channel as one JSON text message, :func:`~auralink.agents.events.event_to_json`'s
object (captions, drafts, flags, answers, summaries, ``Spoke`` without its audio, ``Degraded``).
Two messages belong to the session itself: ``AgentJoined`` first (who the agent is and what it
accepts) and ``Rejected`` for a request it could not take. A message over
:data:`MAX_MESSAGE_BYTES` (aiortc's default SCTP limit) is posted without its ``words`` and
``sources``.

**Data in.** Every data-channel message is a request, parsed by :func:`parse_request` (pure, with
a property test): a text that starts with ``{`` is a JSON object, ``{"type": "ask", "text": ...}``
(a :class:`Question`), ``{"type": "chat", "text": ...}`` (a :class:`ChatNote`) or
``{"type": "summarise"}`` (a :class:`SummaryRequest`); for people typing, ``/ask TEXT`` and
``/summary`` do the same; any other text is a chat note. Chat notes go
to :meth:`Agent.note <auralink.agents.agent.Agent.note>` (moderated, remembered, and part of the
transcript that answers and summaries use). A malformed request is the peer's fault: it is
answered with ``Rejected`` and never raised into the app. Requests are served one at a time, in
order.

**Speech out.** :func:`speaking_track` makes the outgoing audio track at accept time
(:func:`~auralink.calls.media.pushed_track`). Every :class:`~auralink.agents.events.Spoke` the
agent emits (answers to questions asked on the data channel, with
:attr:`SessionConfig.speak_answers`, or anything the app has it :meth:`~auralink.agents.Agent.speak`)
is decoded (:func:`speech_frames`: WAV directly, any other format through PyAV), resampled to
48 kHz mono and pushed as 20 ms frames paced by the event loop's clock, one reply after another.
Between replies nothing is pushed and aiortc sends nothing (no comfort noise).

Every task belongs to the :class:`asyncio.TaskGroup` of :meth:`CallAgentSession.run` (one per
call) or of :func:`serve_calls` (one per session).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import io
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from auralink.agents.agent import Agent
from auralink.agents.captions import AGENT_SAMPLE_RATE, ArrivedFrame
from auralink.agents.events import AgentEvent, Degraded, Spoke, Summarised, event_to_json
from auralink.agents.providers.types import SpeechAudio
from auralink.agents.speech.audio import WAV_CONTENT_TYPES, read_wav
from auralink.errors import AuralinkError, CallError, ConfigError, RemoteProtocolError, UnsupportedAudio

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack
    from av import AudioFrame

    from auralink.calls import Call
    from auralink.mesh import Mesh

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_TEXT_CHARS",
    "SPEECH_FRAME_SAMPLES",
    "SPEECH_RATE",
    "CallAgentSession",
    "ChatNote",
    "Question",
    "Request",
    "RoomAgentSession",
    "SessionConfig",
    "SummaryRequest",
    "parse_request",
    "serve_calls",
    "speaking_track",
    "speech_frames",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

MAX_REQUEST_BYTES = 16 * 1024
"""The largest data-channel request the agent reads (UTF-8 bytes)."""
MAX_TEXT_CHARS = 4000
"""The longest question or chat note."""
MAX_MESSAGE_BYTES = 65536
"""The largest message the agent posts: aiortc's default SCTP limit for a peer that states none."""
SPEECH_RATE = 48_000
"""The sample rate of the agent's outgoing speech (Opus's)."""
SPEECH_FRAME_SAMPLES = 960
"""Samples per pushed speech frame: 20 ms at :data:`SPEECH_RATE`."""

DEFAULT_POSTED = frozenset(
    {"CaptionDrafted", "CaptionFinalised", "Flagged", "Answered", "Summarised", "Spoke", "Degraded"}
)
"""The agent events posted on the data channel by default (``Remembered`` stays with the agent's owner)."""


# -- requests: the data channel's input, decoded without I/O ------------------------------------
@dataclass(frozen=True, slots=True)
class Question:
    """A question for the agent (``{"type": "ask", "text": ...}``)."""

    text: str
    """The question."""


@dataclass(frozen=True, slots=True)
class ChatNote:
    """A chat line for the transcript (``{"type": "chat", "text": ...}``, or any text not starting with ``{``)."""

    text: str
    """What was written."""


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    """A request to summarise the call so far and post it (``{"type": "summarise"}``)."""


Request = Question | ChatNote | SummaryRequest
"""What :func:`parse_request` returns."""


def _text(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise RemoteProtocolError(f"an {kind!r} request needs a string 'text'")
    text = value.strip()
    if not text:
        raise RemoteProtocolError(f"an {kind!r} request needs a non-empty 'text'")
    if len(text) > MAX_TEXT_CHARS:
        raise RemoteProtocolError(f"'text' is {len(text)} characters, over the limit of {MAX_TEXT_CHARS}")
    return text


def parse_request(message: bytes | str) -> Request:
    """Decode one data-channel message; :class:`~auralink.errors.RemoteProtocolError` if it is not a request.

    Bytes must be UTF-8. A text starting with ``{`` must be a JSON object with a known
    ``type`` (``ask``, ``chat``, ``summarise``/``summarize``); for people typing, ``/ask TEXT``
    is a question and ``/summary`` a summary request; any other non-empty text is a
    :class:`ChatNote`. Texts are stripped and at most :data:`MAX_TEXT_CHARS` long.
    """
    if isinstance(message, bytes | bytearray | memoryview):
        raw = bytes(message)
        if len(raw) > MAX_REQUEST_BYTES:
            raise RemoteProtocolError(f"request of {len(raw)} bytes, over the limit of {MAX_REQUEST_BYTES}")
        try:
            message = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"a request is UTF-8 text: {exc}") from exc
    elif not isinstance(message, str):
        raise RemoteProtocolError(f"a request is text, not {type(message).__name__}")
    if len(message.encode("utf-8", "surrogatepass")) > MAX_REQUEST_BYTES:
        raise RemoteProtocolError(f"request over the limit of {MAX_REQUEST_BYTES} bytes")
    stripped = message.strip()
    if stripped.startswith("/"):
        command, _, rest = stripped.partition(" ")
        if command == "/ask":
            return Question(_text(rest, "ask"))
        if command in ("/summary", "/summarise", "/summarize") and not rest.strip():
            return SummaryRequest()
    if not stripped.startswith("{"):
        return ChatNote(_text(stripped, "chat"))
    try:
        obj = json.loads(stripped)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"a request starting with '{{' must be a JSON object: {exc}") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError("a JSON request must be an object")
    kind = obj.get("type")
    if kind == "ask":
        return Question(_text(obj.get("text"), "ask"))
    if kind == "chat":
        return ChatNote(_text(obj.get("text"), "chat"))
    if kind in ("summarise", "summarize"):
        return SummaryRequest()
    raise RemoteProtocolError(f"unknown request type {kind!r}: ask, chat or summarise")


# -- speech: a reply's audio as call frames ------------------------------------------------------
def speech_frames(audio: SpeechAudio) -> list[AudioFrame]:
    """``audio`` as 20 ms ``av.AudioFrame`` at 48 kHz mono ``s16`` (pts left for the player to set).

    WAV goes through :func:`~auralink.agents.speech.read_wav`; any other format (``audio/mpeg``
    from a cloud voice...) is decoded by PyAV. :class:`~auralink.errors.UnsupportedAudio` if it
    cannot be decoded.
    """
    import av  # noqa: PLC0415 - calls extra
    import numpy as np  # noqa: PLC0415

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SPEECH_RATE)
    chunks: list[Any] = []
    if audio.content_type.split(";")[0].strip().lower() in WAV_CONTENT_TYPES:
        pcm = read_wav(audio.audio)
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm.samples, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = pcm.sample_rate
        chunks.extend(resampler.resample(frame))
    else:
        try:
            with av.open(io.BytesIO(audio.audio), mode="r") as container:
                for decoded in container.decode(audio=0):
                    decoded.pts = None
                    chunks.extend(resampler.resample(decoded))
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            raise UnsupportedAudio(f"cannot decode the {audio.content_type} speech: {exc}") from exc
    chunks.extend(resampler.resample(None))
    samples = np.concatenate([c.to_ndarray().reshape(-1) for c in chunks]) if chunks else np.zeros(0, np.int16)
    pad = (-len(samples)) % SPEECH_FRAME_SAMPLES
    samples = np.concatenate([samples, np.zeros(pad, np.int16)]).astype(np.int16)
    frames: list[AudioFrame] = []
    for offset in range(0, len(samples), SPEECH_FRAME_SAMPLES):
        piece = av.AudioFrame.from_ndarray(
            samples[offset : offset + SPEECH_FRAME_SAMPLES].reshape(1, -1), format="s16", layout="mono"
        )
        piece.sample_rate = SPEECH_RATE
        piece.time_base = fractions.Fraction(1, SPEECH_RATE)
        frames.append(piece)
    return frames


def speaking_track() -> tuple[MediaStreamTrack, Callable[[Any], None]]:
    """The agent's outgoing audio track and its ``push``: give the track to ``Invite.accept(audio=...)``
    (or ``mesh.call(audio=...)``) and the push to :class:`CallAgentSession`."""
    from auralink.calls.media import pushed_track  # noqa: PLC0415

    return pushed_track("audio", queue=50)


# -- the session ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How the agent behaves in one call."""

    post: frozenset[str] = DEFAULT_POSTED
    """The event type names posted on the data channel."""
    speak_answers: bool = True
    """Speak the answer to each data-channel question (when the call carries the agent's audio)."""
    audio_queue: int = 500
    """Received 20 ms audio frames that may wait for the agent before the oldest is dropped."""
    speaker: str | None = None
    """The label of the peer's speech and chat (default: the peer's AuraID)."""

    def __post_init__(self) -> None:
        if not 1 <= self.audio_queue <= 30_000:
            raise ConfigError("SessionConfig.audio_queue must be from 1 to 30000 frames", "audio_queue")


class CallAgentSession:
    """An :class:`~auralink.agents.Agent` in one connected call; see the module docstring."""

    def __init__(
        self,
        call: Call,
        agent: Agent,
        *,
        voice: Callable[[Any], None] | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        """Join ``agent`` to ``call``; ``voice`` is the push of :func:`speaking_track` (None: the agent is silent)."""
        self.call = call
        """The call."""
        self.agent = agent
        """The agent."""
        self.config = config or SessionConfig()
        """How it behaves."""
        self.speaker = self.config.speaker or str(call.peer)
        """Who the peer's speech and chat are attributed to."""
        self.posted = 0
        """Messages posted on the data channel so far."""
        self.rejected = 0
        """Requests refused so far."""
        self.dropped = 0
        """Received audio frames dropped because the agent fell :attr:`SessionConfig.audio_queue` behind."""
        self._voice = voice
        self._speech: asyncio.Queue[Spoke] = asyncio.Queue()
        self._served = asyncio.Event()
        self._pts = 0

    def __repr__(self) -> str:
        return f"<CallAgentSession call={self.call.call_id[:8]} agent={self.agent!r}>"

    @property
    def agent_id(self) -> str:
        """The agent's own AuraID: the mesh it answers on."""
        return str(self.call.signaling.local)

    async def run(self) -> Summarised | None:
        """Serve the call until it ends; the agent's end-of-call summary (None if it does not summarise)."""
        remove = self.agent.add_listener(self._on_event)
        self._post(
            {
                "type": "AgentJoined",
                "agent": self.agent_id,
                "name": self.agent.config.name,
                "session_id": self.agent.config.session_id,
                "accepts": ["ask", "chat", "summarise"],
                "speaks": self._voice is not None,
                "llm": self.agent.llm_configured,
            }
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._warm_up())
                player = tasks.create_task(self._play()) if self._voice is not None else None
                requests = tasks.create_task(self._serve_requests())
                summary = await self.agent.run(self._audio(), speaker=self.speaker)
                await requests
                if player is not None:
                    player.cancel()
        finally:
            remove()
        return summary

    # -- audio in --------------------------------------------------------------------------------
    async def _warm_up(self) -> None:
        """Load the recogniser's model while the first words arrive, not after them (if it can warm up)."""
        warm_up = getattr(self.agent.recognizer, "warm_up", None)
        if warm_up is not None:
            with contextlib.suppress(AuralinkError):  # a missing engine degrades in the agent itself
                await warm_up(AGENT_SAMPLE_RATE)

    async def _audio(self) -> AsyncIterator[ArrivedFrame]:
        """The peer's audio frames, stamped as the call delivers them; ends when the call ends.

        A frame callback (not :meth:`~auralink.calls.media.RemoteTrack.frames`) stamps each frame
        with the agent's clock on arrival, so a frame that waits while the agent decodes is
        still timed when it was heard. At most :attr:`SessionConfig.audio_queue` wait; older
        ones are dropped (counted in :attr:`dropped`).
        """
        try:
            track = await self.call.track("audio")
        except CallError:  # the call ended before (or without) the peer sending audio
            await self._served.wait()
            return
        clock = self.agent.clock
        pending: asyncio.Queue[ArrivedFrame] = asyncio.Queue(maxsize=self.config.audio_queue)
        listening = True

        def arrived(frame: Any) -> None:
            if not listening:
                return
            if pending.full():
                pending.get_nowait()
                self.dropped += 1
            pending.put_nowait(ArrivedFrame(frame, clock()))

        track.on_frame(arrived)
        ended = asyncio.ensure_future(self.call.wait_ended())
        try:
            while True:
                if pending.empty():
                    if ended.done():
                        await self._served.wait()  # the summary covers every request the peer made
                        return
                    getter = asyncio.ensure_future(pending.get())
                    try:
                        await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        getter.cancel()
                    if not getter.done() or getter.cancelled():
                        continue
                    yield getter.result()
                else:
                    yield pending.get_nowait()
        finally:
            listening = False
            ended.cancel()

    # -- data out --------------------------------------------------------------------------------
    def _on_event(self, event: AgentEvent) -> None:
        if isinstance(event, Spoke) and self._voice is not None:
            self._speech.put_nowait(event)
        if type(event).__name__ in self.config.post:
            self._post(event_to_json(event))

    def _post(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, ensure_ascii=False)
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            message = {**message, "truncated": True}
            for key in ("words", "sources"):
                if key in message:
                    message[key] = []
            text = json.dumps(message, ensure_ascii=False)
            if len(text.encode()) > MAX_MESSAGE_BYTES:
                logger.warning("call %s: a %s message is too large to post", self.call.call_id[:8], message["type"])
                return
        try:
            self.call.send(text)
        except CallError:  # no data channel, or the call ended: the event still reached the listeners
            return
        self.posted += 1

    # -- data in ---------------------------------------------------------------------------------
    async def _serve_requests(self) -> None:
        try:
            await self._serve_all()
        finally:
            self._served.set()

    async def _serve_all(self) -> None:
        while True:
            try:
                message = await self.call.receive()
            except CallError:  # the call ended
                return
            try:
                request = parse_request(message)
            except RemoteProtocolError as exc:
                self._reject(str(exc))
                continue
            try:
                await self._serve(request)
            except AuralinkError as exc:
                self._reject(f"{type(exc).__name__}: {exc}")

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        logger.info("call %s: request rejected: %s", self.call.call_id[:8], reason)
        self._post({"type": "Rejected", "reason": reason})

    async def _serve(self, request: Request) -> None:
        if isinstance(request, Question):
            answered = await self.agent.ask(request.text, asker=self.speaker)
            speak = self.config.speak_answers and not self.agent.config.speak_answers
            if speak and self._voice is not None and self.call.ended is None:
                await self.agent.speak(answered.answer)
        elif isinstance(request, ChatNote):
            await self.agent.note(request.text, self.speaker)
        else:
            await self.agent.summarise()

    # -- speech out ------------------------------------------------------------------------------
    async def _play(self) -> None:
        """Push each reply's frames into the outgoing track, paced in real time, one reply after another."""
        assert self._voice is not None
        loop = asyncio.get_running_loop()
        while True:
            spoke = await self._speech.get()
            try:
                frames = await asyncio.to_thread(speech_frames, spoke.audio)
            except UnsupportedAudio as exc:
                self._post(event_to_json(Degraded("speech", f"{type(exc).__name__}: {exc}", loop.time())))
                continue
            start = loop.time()
            for index, frame in enumerate(frames):
                delay = start + index * SPEECH_FRAME_SAMPLES / SPEECH_RATE - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing a media clock, not synchronisation
                frame.pts = self._pts
                self._pts += SPEECH_FRAME_SAMPLES
                self._voice(frame)


# -- rooms ----------------------------------------------------------------------------------------
class RoomAgentSession:
    """An :class:`~auralink.agents.Agent` as a participant of a room (``mesh.join_room``): chat questions and notes.

    Every chat message from another participant is a request (:func:`parse_request`): a
    question (``/ask ...`` or the JSON form) is answered in the room's chat, ``/summary`` posts
    the summary so far, and anything else is a chat note for the transcript. The agent only
    reads and writes chat here: a room forwards each publisher's audio as a track of its own,
    and the agent's pump hears one stream, so captions of a room's audio are not wired yet.
    """

    def __init__(self, room: Any, agent: Agent) -> None:
        """Join ``agent`` to ``room`` (a :class:`~auralink.calls.Room` the caller has entered)."""
        self.room = room
        """The room."""
        self.agent = agent
        """The agent."""
        self.rejected = 0
        """Chat requests refused so far."""

    async def run(self) -> Summarised:
        """Serve the room's chat until we are out of the room; the summary of what was said."""
        from auralink.calls.room_messages import ChatReceived  # noqa: PLC0415
        from auralink.errors import RoomClosed  # noqa: PLC0415

        while True:
            try:
                event = await self.room.next_event()
            except RoomClosed:
                break
            if not isinstance(event, ChatReceived):
                continue
            sender = str(event.sender)
            try:
                request = parse_request(event.text)
                if isinstance(request, Question):
                    answered = await self.agent.ask(request.text, asker=sender)
                    await self._say(answered.answer)
                elif isinstance(request, ChatNote):
                    await self.agent.note(request.text, sender)
                else:
                    await self._say((await self.agent.summarise()).text)
            except RoomClosed:
                break
            except AuralinkError as exc:  # a bad request, or a chat we may not send: never raised into the app
                self.rejected += 1
                logger.info("room %s: request from %s not served: %s", self.room.room, sender[:10], exc)
        return await self.agent.summarise()

    async def _say(self, text: str) -> None:
        from auralink.calls.room_messages import MAX_CHAT  # noqa: PLC0415

        encoded = text.encode()
        if len(encoded) > MAX_CHAT:
            text = encoded[: MAX_CHAT - 3].decode(errors="ignore") + "..."
        await self.room.send_chat(text)


async def serve_calls(
    mesh: Mesh,
    agent_factory: Callable[[Call], Agent],
    *,
    calls: int | None = None,
    config: SessionConfig | None = None,
) -> list[Summarised | None]:
    """Answer incoming calls on ``mesh`` as the agent, one :class:`CallAgentSession` (and agent) per call.

    ``agent_factory(call)`` makes the agent of each connected call (add listeners there). Calls
    that offer audio are answered with :func:`speaking_track`, so the agent can speak. Stops after
    ``calls`` calls have ended (None: serves until cancelled) and returns their summaries, in the
    order the calls came in (None where a session failed or did not summarise).
    """
    from auralink.calls.messages import MediaKinds  # noqa: PLC0415

    results: list[Summarised | None] = []

    async def serve_one(invite: Any, slot: int) -> None:
        voice: Callable[[Any], None] | None = None
        try:
            if invite.media & MediaKinds.AUDIO:
                track, voice = speaking_track()
                call = await invite.accept(audio=track)
            else:
                call = await invite.accept()
        except CallError as exc:
            logger.info("call from %s ended while being answered: %s", str(invite.peer)[:10], exc)
            return
        try:
            results[slot] = await CallAgentSession(call, agent_factory(call), voice=voice, config=config).run()
        except AuralinkError as exc:
            logger.warning("agent session of call %s failed: %s", call.call_id[:8], exc)
            await call.hangup()

    invites = cast("AsyncGenerator[Any, None]", mesh.incoming_calls())
    try:
        async with asyncio.TaskGroup() as tasks:
            async for invite in invites:
                results.append(None)
                tasks.create_task(serve_one(invite, len(results) - 1))
                if calls is not None and len(results) >= calls:
                    break
    finally:
        await invites.aclose()
    return results

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

**Rooms.** A :class:`RoomAgentSession` makes the agent a participant of a room
(``mesh.join_room``). The SFU forwards each publisher's audio as a track of its own and never
mixes, so the session hears each speaker separately and the captions carry the right speaker:

* *Who is heard.* A pure core, :class:`SpeakerSeats`, follows the room's participant events
  (a speaker publishes unmuted audio, or stops, is muted, leaves) and hands out
  :attr:`RoomSessionConfig.max_speakers` seats, first come first seated; a speaker who finds
  every seat taken waits in line (a ``Degraded("captions", ...)`` notice says so) and takes the
  next seat that frees. A seat is a recogniser (pocketsphinx: a decoder of its own, about 90 MB,
  and CPU while the speaker talks), so the seats bound the agent's memory and CPU.
* *Hearing a speaker.* A seated speaker's audio is subscribed to
  (``room.subscribe(publisher, kind="audio")``), each frame stamped with the agent's clock as it
  is delivered, and heard by :meth:`Agent.listen <auralink.agents.agent.Agent.listen>` with its
  own endpointer and recogniser, labelled with the participant's name
  (:attr:`RoomSessionConfig.names`), else its handle if the mesh resolves one within
  :attr:`RoomSessionConfig.resolve_timeout`, else its AuraID. All speakers feed the one
  transcript, moderation and memory. A speaker whose frames stop dead (a microphone cut, a file
  that ended) is heard as silent after :attr:`RoomSessionConfig.silence_after`, so their last
  utterance is captioned. When they stop publishing or leave, the SFU ends the subscription; the
  open utterance is flushed and the seat frees.
* *Chat.* Each event whose type is in :attr:`RoomSessionConfig.post` (final captions, flags,
  answers, summaries, notices; no drafts by default, since people read that chat too) is sent to
  the room's chat as one JSON message (:func:`fit_chat` makes it fit the room's 4096-byte chat
  limit), after an ``AgentJoined``. Every chat line from others is a request
  (:func:`parse_request`): ``/ask`` is answered, ``/summary`` posts the summary so far, anything
  else is a note for the transcript. A malformed request is counted, not answered: in a room, a
  ``Rejected`` reply to another agent's JSON would start two agents rejecting each other forever.

:meth:`RoomAgentSession.run` serves until the agent is out of the room (it left, was kicked, or
the SFU went away), lets each speaker's last utterance be captioned, and returns the summary.

Every task belongs to the :class:`asyncio.TaskGroup` of :meth:`CallAgentSession.run` (one per
call), of :meth:`RoomAgentSession.run` (one per room) or of :func:`serve_calls` (one per session).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import io
import itertools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from auralink.agents.agent import Agent
from auralink.agents.captions import AGENT_SAMPLE_RATE, ArrivedFrame, PcmFrame, StreamingRecognizer
from auralink.agents.events import AgentEvent, Degraded, Spoke, Summarised, event_to_json
from auralink.agents.providers.types import SpeechAudio
from auralink.agents.speech.audio import WAV_CONTENT_TYPES, read_wav
from auralink.calls.room_messages import (
    MAX_CHAT,
    ChatReceived,
    ParticipantChanged,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    TrackKind,
)
from auralink.errors import (
    AuralinkError,
    CallError,
    ConfigError,
    RemoteProtocolError,
    RoomClosed,
    RoomError,
    UnsupportedAudio,
)

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
    "ROOM_POSTED",
    "Request",
    "RoomAgentSession",
    "RoomSessionConfig",
    "SeatAction",
    "Seated",
    "SessionConfig",
    "SpeakerSeats",
    "SummaryRequest",
    "Unseated",
    "Waitlisted",
    "fit_chat",
    "parse_request",
    "serve_calls",
    "speaking_track",
    "Voice",
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


class Voice:
    """The agent's speech out: each :class:`Spoke` reply decoded and pushed as 20 ms frames, paced in real time.

    ``push`` is the push of :func:`speaking_track`; replies are played one after another by
    :meth:`play`, which a session runs in its task group. A reply whose audio cannot be decoded
    is reported to ``degraded`` and skipped.
    """

    def __init__(self, push: Callable[[Any], None], degraded: Callable[[Degraded], None]) -> None:
        self._push = push
        self._degraded = degraded
        self._replies: asyncio.Queue[Spoke] = asyncio.Queue()
        self._pts = 0

    def say(self, spoke: Spoke) -> None:
        """Queue a reply to be played."""
        self._replies.put_nowait(spoke)

    async def play(self) -> None:
        """Play queued replies until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            spoke = await self._replies.get()
            try:
                frames = await asyncio.to_thread(speech_frames, spoke.audio)
            except UnsupportedAudio as exc:
                self._degraded(Degraded("speech", f"{type(exc).__name__}: {exc}", loop.time()))
                continue
            start = loop.time()
            for index, frame in enumerate(frames):
                delay = start + index * SPEECH_FRAME_SAMPLES / SPEECH_RATE - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing a media clock, not synchronisation
                frame.pts = self._pts
                self._pts += SPEECH_FRAME_SAMPLES
                self._push(frame)


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
        self._voice = Voice(voice, lambda event: self._post(event_to_json(event))) if voice is not None else None
        self._served = asyncio.Event()

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
                player = tasks.create_task(self._voice.play()) if self._voice is not None else None
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
            self._voice.say(event)
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


# -- rooms: who gets a recogniser (a pure core) ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class Seated:
    """A speaker got one of the recognisers: subscribe to their audio and caption it."""

    speaker: str
    """The participant (its AuraID, as text)."""


@dataclass(frozen=True, slots=True)
class Unseated:
    """A seated speaker stopped publishing audio, was muted or left: stop hearing them (the seat frees when done)."""

    speaker: str
    """The participant."""


@dataclass(frozen=True, slots=True)
class Waitlisted:
    """A speaker publishes audio but every recogniser is taken: not captioned until one frees up."""

    speaker: str
    """The participant."""
    position: int
    """Their place in the line, 1 for the next to be seated."""


SeatAction = Seated | Unseated | Waitlisted
"""What :class:`SpeakerSeats` asks its adapter to do."""


class SpeakerSeats:
    """Which of a room's audio publishers get one of ``limit`` recognisers: a pure core, no I/O and no clock.

    The policy is first come, first seated: speakers are seated in the order they started
    publishing audio (unmuted); when every seat is taken, later ones wait in line (one
    :class:`Waitlisted` each) and the longest waiting takes the next seat that frees. A seat is
    held until its adapter reports the speaker's stream :meth:`finished` (the final utterance
    flushed), so no more than ``limit`` recognisers ever run. A speaker whose stream failed
    (the SFU refused the subscription...) is not seated again until its state changes.
    """

    def __init__(self, limit: int) -> None:
        """``limit`` seats (1 to 64)."""
        if not 1 <= limit <= 64:
            raise ConfigError(f"a room agent hears 1 to 64 speakers at once, not {limit}", "max_speakers")
        self.limit = limit
        """How many speakers are captioned at once."""
        self._order: dict[str, int] = {}
        self._arrivals = itertools.count()
        self._seated: set[str] = set()
        self._ending: set[str] = set()
        self._refused: set[str] = set()
        self._told: set[str] = set()

    @property
    def seated(self) -> frozenset[str]:
        """The speakers holding a seat (including those whose stream is ending)."""
        return frozenset(self._seated)

    @property
    def waiting(self) -> tuple[str, ...]:
        """The speakers in line for a seat, next first."""
        return tuple(s for s in self._wanting() if s not in self._seated)

    def update(self, speaker: str, speaking: bool) -> list[SeatAction]:
        """``speaker`` now publishes unmuted audio (``speaking``), or not (stopped, muted, left)."""
        if speaking:
            if speaker not in self._order:
                self._order[speaker] = next(self._arrivals)
            self._refused.discard(speaker)
            return self._fill()
        self._order.pop(speaker, None)
        self._refused.discard(speaker)
        self._told.discard(speaker)
        if speaker in self._seated and speaker not in self._ending:
            self._ending.add(speaker)
            return [Unseated(speaker)]
        return []

    def close(self) -> list[SeatAction]:
        """The room ended for us: nobody wants a seat any more; seats free as their streams finish."""
        actions: list[SeatAction] = []
        for speaker in list(self._order):
            actions += self.update(speaker, False)
        return actions

    def finished(self, speaker: str, *, failed: bool = False) -> list[SeatAction]:
        """``speaker``'s stream ended (``failed``: it could not be heard); its seat is free."""
        self._seated.discard(speaker)
        self._ending.discard(speaker)
        if failed and speaker in self._order:
            self._refused.add(speaker)
        return self._fill()

    def _wanting(self) -> list[str]:
        return [s for s in sorted(self._order, key=self._order.__getitem__) if s not in self._refused]

    def _fill(self) -> list[SeatAction]:
        actions: list[SeatAction] = []
        waiting = 0
        for speaker in self._wanting():
            if speaker in self._seated:
                continue
            if len(self._seated) < self.limit:
                self._seated.add(speaker)
                self._told.discard(speaker)
                actions.append(Seated(speaker))
                continue
            waiting += 1
            if speaker not in self._told:
                self._told.add(speaker)
                actions.append(Waitlisted(speaker, waiting))
        return actions


# -- rooms: the session ---------------------------------------------------------------------------
ROOM_POSTED = frozenset({"CaptionFinalised", "Flagged", "Answered", "Summarised", "Degraded"})
"""The agent events posted in a room's chat by default: no drafts (people read that chat too)."""


@dataclass(frozen=True, slots=True)
class RoomSessionConfig:
    """How the agent behaves in one room."""

    max_speakers: int = 4
    """Speakers captioned at once, one recogniser each (pocketsphinx: 90 MB, 0.13 of a core while one talks)."""
    post: frozenset[str] = ROOM_POSTED
    """The event type names posted in the room's chat."""
    audio_queue: int = 500
    """Received 20 ms frames of one speaker that may wait for the agent before the oldest is dropped."""
    silence_after: float = 0.5
    """Seconds without a frame from a speaker after which the stream counts as silent (ends an utterance)."""
    names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Labels for participants (AuraID text to name); others are labelled by handle, if resolved, or AuraID."""
    resolve_timeout: float = 1.0
    """Seconds to look up a participant's handle (``mesh.resolve``) for its label; 0 turns the lookup off."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_speakers <= 64:
            raise ConfigError("RoomSessionConfig.max_speakers must be from 1 to 64", "max_speakers")
        if not 1 <= self.audio_queue <= 30_000:
            raise ConfigError("RoomSessionConfig.audio_queue must be from 1 to 30000 frames", "audio_queue")
        if not 0.1 <= self.silence_after <= 10:
            raise ConfigError("RoomSessionConfig.silence_after must be from 0.1 to 10 seconds", "silence_after")
        if not 0 <= self.resolve_timeout <= 30:
            raise ConfigError("RoomSessionConfig.resolve_timeout must be from 0 to 30 seconds", "resolve_timeout")


def fit_chat(message: dict[str, Any], limit: int) -> str | None:
    """``message`` as JSON of at most ``limit`` UTF-8 bytes, or None if it cannot be made to fit.

    A message that is too long loses its lists (``words``, ``sources``, ``highlights``...),
    then has its longest texts cut (ending in ``...``), and says ``"truncated": true``.
    """
    text = json.dumps(message, ensure_ascii=False)
    if len(text.encode()) <= limit:
        return text
    message = {key: [] if isinstance(value, list | tuple) else value for key, value in message.items()}
    message["truncated"] = True
    for _ in range(8):
        text = json.dumps(message, ensure_ascii=False)
        over = len(text.encode()) - limit
        if over <= 0:
            return text
        strings = [key for key, value in message.items() if isinstance(value, str) and key != "type"]
        if not strings:
            return None
        longest = max(strings, key=lambda key: len(message[key].encode()))
        raw = message[longest].encode()
        keep = len(raw) - over - 16  # escapes may make the JSON longer than the text: cut a little more
        if keep <= 0:
            message[longest] = ""
            continue
        message[longest] = raw[:keep].decode(errors="ignore") + "..."
    return None


@dataclass(eq=False)
class _Hearing:
    """One seated speaker: the subscription to their audio, once made."""

    speaker: str
    subscription: Any = None
    stopping: bool = False


class RoomAgentSession:
    """An :class:`~auralink.agents.Agent` as a participant of a room (``mesh.join_room``): captions per speaker, chat.

    See the module docstring ("Rooms"). :meth:`run` serves until we are out of the room.
    ``recognizers`` makes a recogniser for each further speaker (the agent's own hears the
    first); by default the agent's recogniser's ``fresh()`` (pocketsphinx and router
    recognisers have one).
    """

    def __init__(
        self,
        room: Any,
        agent: Agent,
        *,
        config: RoomSessionConfig | None = None,
        recognizers: Callable[[], StreamingRecognizer] | None = None,
        voice: Callable[[Any], None] | None = None,
    ) -> None:
        """Join ``agent`` to ``room`` (a :class:`~auralink.calls.Room` the caller has entered).

        ``voice`` is the push of :func:`speaking_track`, whose track the caller has published in
        the room (``await room.publish(track)``; needs the ``publish`` grant): answers to ``/ask``
        are then spoken there too. None: the agent only writes.
        """
        self.room = room
        """The room."""
        self.agent = agent
        """The agent."""
        self.config = config or RoomSessionConfig()
        """How it behaves."""
        factory = recognizers or getattr(agent.recognizer, "fresh", None)
        if factory is None and self.config.max_speakers > 1:
            raise ConfigError(
                f"{type(agent.recognizer).__name__} has no fresh(): give recognizers=... (one per speaker) "
                "or RoomSessionConfig(max_speakers=1)",
                "recognizers",
            )
        self.seats = SpeakerSeats(self.config.max_speakers)
        """Who is captioned and who waits."""
        self.posted = 0
        """Messages posted in the room's chat so far."""
        self.unposted = 0
        """Events that could not be posted (out of the room, no ``publish_data``, too large, too many waiting)."""
        self.rejected = 0
        """Chat requests refused so far."""
        self.dropped = 0
        """Received audio frames dropped because the agent fell :attr:`RoomSessionConfig.audio_queue` behind."""
        self._factory: Callable[[], StreamingRecognizer] | None = factory
        self._pool: list[StreamingRecognizer] = [agent.recognizer]
        self._warm: set[int] = set()
        self._hearing: dict[str, _Hearing] = {}
        self._pumps: set[asyncio.Task[None]] = set()
        self._labels: dict[str, str] = dict(self.config.names)
        self._tasks: asyncio.TaskGroup | None = None
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._requests: asyncio.Queue[tuple[Any, str] | None] = asyncio.Queue()
        self._closing = False
        self._voice = Voice(voice, lambda event: self._post(event_to_json(event))) if voice is not None else None

    def __repr__(self) -> str:
        return f"<RoomAgentSession room={self.room.room!r} seated={len(self.seats.seated)} agent={self.agent!r}>"

    async def run(self) -> Summarised:
        """Serve the room until we are out of it; the summary of what was said and written."""
        remove = self.agent.add_listener(self._on_event)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                poster = tasks.create_task(self._post_all())
                requests = tasks.create_task(self._serve_requests())
                player = tasks.create_task(self._voice.play()) if self._voice is not None else None
                self._post(
                    {
                        "type": "AgentJoined",
                        "agent": str(self.room.me),
                        "name": self.agent.config.name,
                        "session_id": self.agent.config.session_id,
                        "accepts": ["ask", "chat", "summarise"],
                        "speaks": self._voice is not None,
                        "llm": self.agent.llm_configured,
                        "max_speakers": self.seats.limit,
                    }
                )
                for info in list(self.room.participants.values()):
                    self._seen(info)
                await self._follow()
                self._closing = True  # out of the room: no more seats, every subscription has ended
                self._apply(self.seats.close())
                self._requests.put_nowait(None)
                await requests
                while self._pumps:  # each speaker's open utterance is flushed into the transcript
                    await asyncio.wait(set(self._pumps))
                summary = await self.agent.summarise()
                self._outbox.put_nowait(None)
                await poster
                if player is not None:
                    player.cancel()
        finally:
            self._tasks = None
            remove()
        return summary

    # -- room events -----------------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                event = await self.room.next_event()
            except RoomClosed:
                return
            if isinstance(event, ParticipantJoined | ParticipantChanged):
                self._seen(event.info)
            elif isinstance(event, ParticipantLeft):
                self._apply(self.seats.update(str(event.aura_id), False))
            elif isinstance(event, ChatReceived):
                self._requests.put_nowait((event.sender, event.text))

    def _seen(self, info: ParticipantInfo) -> None:
        if info.aura_id == self.room.me:  # our own changes come as events too
            return
        speaking = info.publishes(TrackKind.AUDIO) and not info.muted
        self._apply(self.seats.update(str(info.aura_id), speaking))

    def _apply(self, actions: list[SeatAction]) -> None:
        assert self._tasks is not None
        for action in actions:
            if isinstance(action, Seated):
                if self._closing:
                    continue
                hearing = self._hearing[action.speaker] = _Hearing(action.speaker)
                recognizer = self._pool.pop() if self._pool else self._new_recognizer()
                pump = self._tasks.create_task(self._hear(hearing, recognizer))
                self._pumps.add(pump)
                pump.add_done_callback(self._pumps.discard)
            elif isinstance(action, Unseated):
                unseated = self._hearing.get(action.speaker)
                if unseated is not None:
                    unseated.stopping = True
                    if unseated.subscription is not None:
                        self._tasks.create_task(self._unsubscribe(unseated.speaker))
            else:
                label = self._labels.get(action.speaker, action.speaker)
                self.agent.report_degraded(
                    "captions",
                    f"{label} is not captioned: all {self.seats.limit} recognisers are taken "
                    f"(number {action.position} in line for the next free one)",
                )

    def _new_recognizer(self) -> StreamingRecognizer:
        assert self._factory is not None  # max_speakers > 1, checked at construction
        return self._factory()

    # -- audio in: one stream per seated speaker --------------------------------------------------
    async def _hear(self, hearing: _Hearing, recognizer: StreamingRecognizer) -> None:
        """Subscribe to one speaker's audio and caption it until it ends; then free the seat."""
        from auralink.identity import AuraID  # noqa: PLC0415

        failed = False
        try:
            publisher = AuraID.parse(hearing.speaker)
            try:
                hearing.subscription = await self.room.subscribe(publisher, kind="audio")
            except RoomClosed:
                return
            except RoomError as exc:  # refused (no subscribe grant, slots full, stopped publishing meanwhile)
                failed = True
                self.agent.report_degraded("captions", f"cannot hear {hearing.speaker[:12]}: {exc}")
                return
            if hearing.stopping:  # unseated while subscribing
                await self._unsubscribe(hearing.speaker)
            queue: asyncio.Queue[ArrivedFrame | None] = asyncio.Queue()
            assert self._tasks is not None
            self._tasks.create_task(self._receive(hearing.subscription, queue))
            label = await self._label(publisher)
            await self._warm_up(recognizer)
            try:
                await self.agent.listen(self._speech(queue), speaker=label, recognizer=recognizer)
            except AuralinkError as exc:  # this speaker's audio cannot be heard: never raised into the room
                failed = True
                self.agent.report_degraded("captions", f"stopped hearing {label}: {type(exc).__name__}: {exc}")
                await self._unsubscribe(hearing.speaker)
        finally:
            self._pool.append(recognizer)
            self._hearing.pop(hearing.speaker, None)
            self._apply(self.seats.finished(hearing.speaker, failed=failed))

    async def _receive(self, subscription: Any, queue: asyncio.Queue[ArrivedFrame | None]) -> None:
        """Stamp each frame with the agent's clock as it is delivered; None when the subscription ends."""
        clock = self.agent.clock
        try:
            async for frame in subscription:
                if queue.qsize() >= self.config.audio_queue:
                    queue.get_nowait()
                    self.dropped += 1
                queue.put_nowait(ArrivedFrame(frame, clock()))
        finally:
            queue.put_nowait(None)

    async def _speech(self, queue: asyncio.Queue[ArrivedFrame | None]) -> AsyncIterator[object]:
        """The speaker's frames; a stream that stops dead (muted, a file that ended) is followed by silence.

        An endpointer ends an utterance on silence it hears, so when no frame has come for
        :attr:`RoomSessionConfig.silence_after` seconds, the hangover's worth of silence (and a
        frame more) is fed once, which ends the open utterance; then it waits for the next frame.
        """
        clock = self.agent.clock
        gap = self.config.silence_after
        silence = bytes(2 * round((self.agent.config.vad.hangover_seconds + 0.1) * AGENT_SAMPLE_RATE))
        filled = True  # nothing to end before the first frame
        while True:
            try:
                async with asyncio.timeout(None if filled else gap):
                    item = await queue.get()
            except TimeoutError:
                filled = True
                yield ArrivedFrame(PcmFrame(silence, AGENT_SAMPLE_RATE), clock())
                continue
            if item is None:
                return
            filled = False
            yield item

    async def _warm_up(self, recognizer: StreamingRecognizer) -> None:
        if id(recognizer) in self._warm:
            return
        self._warm.add(id(recognizer))
        warm_up = getattr(recognizer, "warm_up", None)
        if warm_up is not None:
            with contextlib.suppress(AuralinkError):  # a missing engine degrades in the agent itself
                await warm_up(AGENT_SAMPLE_RATE)

    async def _unsubscribe(self, speaker: str) -> None:
        from auralink.identity import AuraID  # noqa: PLC0415

        with contextlib.suppress(RoomError):  # already ended by the SFU, or we are out of the room
            await self.room.unsubscribe(AuraID.parse(speaker), "audio")

    async def _label(self, participant: Any) -> str:
        """A participant's label: a configured name, else its handle if resolved in time, else its AuraID."""
        key = str(participant)
        known = self._labels.get(key)
        if known is not None:
            return known
        label = key
        if self.config.resolve_timeout > 0:
            try:
                async with asyncio.timeout(self.config.resolve_timeout):
                    resolution = await self.room.mesh.resolve(participant)
            except (AuralinkError, TimeoutError, OSError) as exc:
                logger.debug("room %s: no handle for %s: %s", self.room.room, key[:10], exc)
            else:
                if resolution.handle and resolution.aura_id == participant:
                    label = resolution.handle
        return self._labels.setdefault(key, label)

    # -- chat out ---------------------------------------------------------------------------------
    def _on_event(self, event: AgentEvent) -> None:
        if isinstance(event, Spoke) and self._voice is not None:
            self._voice.say(event)
        if type(event).__name__ in self.config.post:
            self._post(event_to_json(event))

    def _post(self, message: dict[str, Any]) -> None:
        text = fit_chat(message, MAX_CHAT)
        if text is None or self._outbox.qsize() >= _OUTBOX:
            self.unposted += 1
            logger.info("room %s: a %s message was not posted", self.room.room, message.get("type"))
            return
        self._outbox.put_nowait(text)

    async def _post_all(self) -> None:
        """Send the outbox in order (each chat waits for the SFU's reply)."""
        while (text := await self._outbox.get()) is not None:
            try:
                await self.room.send_chat(text)
            except RoomError as exc:  # out of the room, or no publish_data: the listeners still had it
                self.unposted += 1
                logger.debug("room %s: chat not sent: %s", self.room.room, exc)
                continue
            self.posted += 1

    # -- chat in ----------------------------------------------------------------------------------
    async def _serve_requests(self) -> None:
        """Serve chat requests one at a time, in order: questions, notes, summaries."""
        while (item := await self._requests.get()) is not None:
            sender, text = item
            label = await self._label(sender)
            try:
                request = parse_request(text)
                if isinstance(request, Question):
                    answered = await self.agent.ask(request.text, asker=label)
                    if self._voice is not None and not self.agent.config.speak_answers:
                        await self.agent.speak(answered.answer)  # heard by whoever subscribes to our audio
                elif isinstance(request, ChatNote):
                    await self.agent.note(request.text, label)
                else:
                    await self.agent.summarise()
            except AuralinkError as exc:  # a bad request (or another agent's output): never raised into the app
                self.rejected += 1
                logger.info("room %s: request from %s not served: %s", self.room.room, label[:12], exc)


_OUTBOX = 256
"""Chat messages that may wait to be sent before new ones are dropped."""


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

"""The co-host agent: captions, moderation, answers, summaries, spoken replies and memory, from a call's audio.

Theory of operation
===================

An :class:`Agent` hears one session (a call or a room) as an async iterator of audio frames and
reports what it does as :mod:`~auralink.agents.events`::

    agent = Agent(AgentConfig(session_id="standup-42"))          # offline: no router, no memory
    async with contextlib.aclosing(agent.stream(frames)) as events:
        async for event in events:                               # CaptionDrafted, CaptionFinalised,
            print(event)                                         # Flagged, Remembered, Summarised...
    answer = await agent.ask("When do we ship?")                 # Answered (extractive here)

**The pump** (:meth:`Agent.run`). Each frame is converted to mono PCM
(:class:`~auralink.agents.captions.FrameConverter`), stamped with the injected ``clock`` and fed
to the :class:`~auralink.agents.vad.Endpointer`. Its events drive the recogniser: an utterance's
audio is decoded in pieces of :attr:`AgentConfig.partial_seconds` while it is spoken (each piece
gives a :class:`~auralink.agents.events.CaptionDrafted`), and the endpoint closes it
(:class:`~auralink.agents.events.CaptionFinalised`, whose ``latency`` is the clock between the
last voiced frame's arrival and the caption). Then, for each final caption:

* moderation rules run at once (:class:`~auralink.agents.events.Flagged`, ``source="rules"``);
  the LLM's judgement, when a chat provider is configured, runs as a task of the pump's
  :class:`asyncio.TaskGroup`, so a slow model never delays the next caption;
* preferences and decisions (cue phrases) are written to memory with provenance: session,
  speaker, and the wall-clock time they were said (:class:`~auralink.agents.events.Remembered`).

When the audio ends, the open utterance is flushed, the moderation tasks finish, and (by default)
the session is summarised: highlights and action items go to memory too.

**Several speakers** (:meth:`Agent.listen`). :meth:`Agent.run` is :meth:`Agent.listen` over one
stream, then the summary. A room forwards each speaker's audio as a stream of its own, so the
room adapter runs one :meth:`~Agent.listen` per speaker at once, each with its own endpointer and
its own recogniser (a recogniser decodes one utterance at a time, so two streams never share
one), all feeding the one transcript, moderation and memory. Utterances are numbered per session,
in the order they start, whatever stream they come from; each stream's times are shifted onto the
session's timeline (stream seconds since the first sample the agent heard from any stream), by
when its first frame arrived.

**Questions and replies.** :meth:`Agent.ask` can be called at any time, also while the pump runs
(the in-call adapter calls it for each question on the data channel). It retrieves from the
transcript (BM25) and from memory (the store's recall), then answers with the chat model if one is
configured, else extractively. :meth:`Agent.speak` synthesises a reply through the tenant's tts
chain or the local voice; with :attr:`AgentConfig.speak_answers` every answer is spoken.

**Graceful degradation.** The LLM is an option, never a dependency. Without a router, or when the
tenant's chat chain fails (:class:`~auralink.errors.ProviderError`: no provider, all failed,
timeouts), the agent does the extractive thing and raises a
:class:`~auralink.agents.events.Degraded` event that says why; a tenant with no chat provider at
all is reported once per session, not per caption. A missing recogniser (pocketsphinx not
installed) or voice degrades the same way. Bad *input*, on the other hand, is the caller's bug
and raises: a frame that is not audio, a sample rate that changes mid-stream
(:class:`~auralink.errors.UnsupportedAudio`).

**Clocks.** ``clock`` (monotonic seconds) times everything the agent measures: endpointing
stamps, latencies, the ``at`` of events. ``wall_clock`` (epoch seconds) is only for the
provenance of memories, which outlive the process. Both are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import typing
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from auralink.agents.captions import FrameConverter, SphinxStreamingRecognizer, StreamingRecognizer
from auralink.agents.events import (
    AgentEvent,
    Answered,
    CaptionDrafted,
    CaptionFinalised,
    Degraded,
    Flagged,
    Remembered,
    Source,
    Spoke,
    Summarised,
)
from auralink.agents.extractive import Segment, find_decisions, find_preferences, rank_segments
from auralink.agents.moderation import (
    DEFAULT_RULES,
    ModerationRule,
    RuleModerator,
    judgement_messages,
    parse_judgement,
)
from auralink.agents.providers.router import ProviderRouter
from auralink.agents.providers.types import ChatMessage, SpeechAudio, TextToSpeech
from auralink.agents.qa import answer_messages, extractive_answer
from auralink.agents.speech.audio import WAV_CONTENT_TYPES, read_wav
from auralink.agents.speech.sphinx import RecognizedWord
from auralink.agents.summary import Draft, extractive_summary, parse_summary, summary_messages
from auralink.agents.vad import Endpointer, SpeechEnded, SpeechExtended, SpeechStarted, VadConfig, VadEvent
from auralink.errors import AgentMemoryError, AuralinkError, ConfigError, ProviderError, ProviderNotConfigured

if TYPE_CHECKING:  # the memory package needs numpy; imported when memory is used
    from auralink.agents.memory import MemoryStore

__all__ = ["Agent", "AgentConfig"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What an agent does in one session."""

    session_id: str = "session"
    """The call or room id: memories' provenance, and the summary's subject."""
    owner: str | None = None
    """The AuraID whose memory the agent reads and writes (required with a memory store)."""
    tenant_id: str | None = None
    """The tenant whose providers the router uses (required with a router)."""
    speaker: str = "unknown"
    """The speaker of audio that comes without a label."""
    name: str = "co-host"
    """The agent's own name: the speaker of what it writes to memory itself."""
    vad: VadConfig = field(default_factory=VadConfig)
    """Voice activity detection and endpointing."""
    partial_seconds: float = 0.2
    """Audio decoded per step while an utterance is spoken (one draft caption each)."""
    tail_seconds: float = 0.1
    """Unvoiced audio after the last voiced frame decoded with an utterance; the rest of the hangover is not."""
    rules: tuple[ModerationRule, ...] = DEFAULT_RULES
    """Moderation rules."""
    llm_moderation: bool = True
    """Ask the chat model to judge each final caption too (when one is configured)."""
    remember: bool = True
    """Write preferences, decisions, highlights and action items to memory (when a store is given)."""
    summarise_at_end: bool = True
    """Summarise when the audio ends."""
    speak_answers: bool = False
    """Synthesise every answer (a :class:`~auralink.agents.events.Spoke` follows each Answered)."""
    llm_timeout: float = 30.0
    """Seconds a chat call may take before the agent falls back."""
    recall_limit: int = 3
    """Memories recalled per question."""

    def __post_init__(self) -> None:
        if not self.session_id or not self.speaker or not self.name:
            raise ConfigError("AgentConfig: session_id, speaker and name must not be empty", "agent")
        if not 0 < self.partial_seconds <= 5:
            raise ConfigError("AgentConfig.partial_seconds must be in (0, 5]", "partial_seconds")
        if not 0 <= self.tail_seconds <= 1:
            raise ConfigError("AgentConfig.tail_seconds must be in [0, 1]", "tail_seconds")
        if not self.llm_timeout > 0:
            raise ConfigError("AgentConfig.llm_timeout must be positive", "llm_timeout")
        if not 1 <= self.recall_limit <= 50:
            raise ConfigError("AgentConfig.recall_limit must be from 1 to 50", "recall_limit")


@dataclass
class _Utterance:
    """The utterance being spoken."""

    number: int
    local: int
    speaker: str
    start: float
    audio_start: float
    rate: int
    pending: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    draft: str = ""
    broken: bool = False


@dataclass
class _Channel:
    """One stream being heard (:meth:`Agent.listen`): its recogniser, moderation tasks and open utterance."""

    recognizer: StreamingRecognizer
    tasks: asyncio.TaskGroup
    offset: float | None = None
    utterance: _Utterance | None = None


_FEATURES = frozenset(typing.get_args(typing.get_type_hints(Degraded)["feature"]))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Agent:
    """The co-host of one session; see the module docstring."""

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        recognizer: StreamingRecognizer | None = None,
        router: ProviderRouter | None = None,
        memory: MemoryStore | None = None,
        tts: TextToSpeech | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Construct; loads nothing and opens nothing.

        ``recognizer`` defaults to offline pocketsphinx; ``router`` (with ``config.tenant_id``)
        enables the LLM features and the tenant's voice; ``memory`` (with ``config.owner``) is
        read for answers and written with what was said; ``tts`` is the voice when there is no
        router (default: the best local voice, found on first use).
        """
        self.config = config or AgentConfig()
        """What the agent does."""
        if router is not None and self.config.tenant_id is None:
            raise ConfigError("an agent with a router needs AgentConfig.tenant_id", "tenant_id")
        if memory is not None and self.config.owner is None:
            raise ConfigError("an agent with a memory store needs AgentConfig.owner (an AuraID)", "owner")
        self.recognizer: StreamingRecognizer = recognizer or SphinxStreamingRecognizer()
        """The speech recogniser for captions."""
        self._router = router
        self._memory = memory
        self._tts = tts
        self._clock = clock
        self._wall_clock = wall_clock
        self._moderator = RuleModerator(self.config.rules)
        self._listeners: list[Callable[[AgentEvent], object]] = []
        self._segments: list[Segment] = []
        self._chat_missing = False
        self._captions_off = False
        self._channels: list[_Channel] = []
        self._numbers = itertools.count()
        self._origin: float | None = None

    def __repr__(self) -> str:
        return f"Agent(session={self.config.session_id!r}, llm={self.llm_configured}, heard={len(self._segments)})"

    # -- what it knows -------------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        """The agent's monotonic clock (stamp :class:`~auralink.agents.captions.ArrivedFrame` with it)."""
        return self._clock

    @property
    def llm_configured(self) -> bool:
        """True if a router and tenant are set and the tenant's chat chain has not proved empty."""
        return self._router is not None and not self._chat_missing

    @property
    def transcript(self) -> tuple[Segment, ...]:
        """The final captions so far, in order."""
        return tuple(self._segments)

    def add_listener(self, callback: Callable[[AgentEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event from now on (on the event loop: keep it quick).

        Returns a function that removes it.
        """
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _emit(self, event: AgentEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def report_degraded(self, feature: str, reason: str) -> None:
        """Report that ``feature`` degraded outside the agent (an adapter's limit): a Degraded event to the listeners.

        ``feature`` is one of :class:`~auralink.agents.events.Degraded`'s (``captions``,
        ``moderation``, ``answer``, ``summary``, ``speech``, ``memory``).
        """
        if feature not in _FEATURES:
            raise ConfigError(f"unknown feature {feature!r}: one of {', '.join(sorted(_FEATURES))}", "feature")
        self._degraded(feature, reason)

    def _degraded(self, feature: str, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else _why(exc)
        logger.info("agent %s: %s degraded: %s", self.config.session_id, feature, reason)
        self._emit(Degraded(feature, reason, self._clock()))  # type: ignore[arg-type]

    # -- the pump ------------------------------------------------------------------------------

    async def run(self, audio: AsyncIterable[object], *, speaker: str | None = None) -> Summarised | None:
        """Hear ``audio`` to its end; the end-of-session summary (None if ``summarise_at_end`` is off).

        Items are :class:`~auralink.agents.captions.PcmFrame` or ``av.AudioFrame``, either
        optionally wrapped in an :class:`~auralink.agents.captions.ArrivedFrame` (timed by its
        arrival, else when read); a PcmFrame's own speaker wins over ``speaker``, which wins
        over ``config.speaker``.
        """
        await self.listen(audio, speaker=speaker)
        if self.config.summarise_at_end:
            return await self.summarise()
        return None

    async def listen(
        self,
        audio: AsyncIterable[object],
        *,
        speaker: str | None = None,
        recognizer: StreamingRecognizer | None = None,
    ) -> None:
        """Hear one stream of ``audio`` to its end (as :meth:`run` does), without summarising.

        Several streams may be heard at once (one per speaker of a room), each with its own
        endpointer and ``recognizer`` (default :attr:`recognizer`), all feeding this agent's
        transcript, moderation and memory. A recogniser hears one stream at a time:
        :class:`~auralink.errors.ConfigError` if ``recognizer`` is busy with another.
        """
        chosen = recognizer or self.recognizer
        if any(channel.recognizer is chosen for channel in self._channels):
            raise ConfigError("this recogniser is already hearing another stream: give each its own", "recognizer")
        converter = FrameConverter()
        endpointer = Endpointer(self.config.vad)
        default = speaker or self.config.speaker
        frames = aiter(audio)
        failure: AuralinkError | None = None
        async with asyncio.TaskGroup() as tasks:
            channel = _Channel(chosen, tasks)
            self._channels.append(channel)
            try:
                async for item in frames:
                    for frame in converter.convert(item):
                        arrived = self._clock() if frame.arrived is None else frame.arrived
                        if channel.offset is None:  # this stream's place on the session's timeline
                            if self._origin is None:
                                self._origin = arrived
                            channel.offset = max(0.0, arrived - self._origin)
                        events = endpointer.feed(frame.samples, frame.sample_rate, arrived)
                        for event in events:
                            await self._on_vad(channel, event, frame.speaker or default, frame.sample_rate)
                for event in endpointer.flush(self._clock()):
                    await self._on_vad(channel, event, default, endpointer.sample_rate)
            except AuralinkError as exc:  # bad input: raised as itself once the moderation tasks are done
                failure = exc
            finally:
                self._channels.remove(channel)
                channel.utterance = None
                close = getattr(frames, "aclose", None)
                if close is not None:  # an abandoned async generator would be closed by a stray task
                    await close()
        if failure is not None:
            raise failure

    async def stream(
        self, audio: AsyncIterable[object], *, speaker: str | None = None
    ) -> AsyncGenerator[AgentEvent, None]:
        """:meth:`run` as an async iterator of its events (close it with ``contextlib.aclosing``)."""
        queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        remove = self.add_listener(queue.put_nowait)

        async def pump() -> None:
            try:
                await self.run(audio, speaker=speaker)
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(pump())  # owned here: awaited below, cancelled if the consumer stops
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task
        finally:
            remove()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _on_vad(self, channel: _Channel, event: VadEvent, speaker: str, rate: int) -> None:
        if self._captions_off:
            return
        offset = channel.offset or 0.0
        if isinstance(event, SpeechStarted):
            number = next(self._numbers)
            channel.utterance = _Utterance(
                number, event.utterance, speaker, event.start + offset, event.audio_start + offset, rate
            )
            try:
                await channel.recognizer.start(rate)
            except AuralinkError as exc:
                self._captions_off = True
                self._degraded("captions", exc)
            return
        utterance = channel.utterance
        if utterance is None or utterance.local != event.utterance:
            return
        if isinstance(event, SpeechExtended):
            if event.voiced:
                utterance.pending += utterance.tail  # a pause between words: decoded with them
                utterance.tail.clear()
                utterance.pending += event.samples
                if len(utterance.pending) >= self.config.partial_seconds * utterance.rate * 2:
                    await self._decode(channel, utterance)
                return
            paused = not utterance.tail
            utterance.tail += event.samples  # held until speech resumes; only its start is decoded if it ends
            if paused and utterance.pending:  # the speaker paused, maybe stopped: decode what was said, now
                await self._decode(channel, utterance)
            return
        await self._finish(channel, utterance, event)

    async def _decode(self, channel: _Channel, utterance: _Utterance) -> None:
        samples = bytes(utterance.pending)
        utterance.pending.clear()
        try:
            draft = await channel.recognizer.feed(samples)
        except AuralinkError as exc:
            utterance.broken = True
            self._degraded("captions", exc)
            return
        if draft and draft != utterance.draft:
            utterance.draft = draft
            self._emit(CaptionDrafted(utterance.number, utterance.speaker, draft, utterance.start, self._clock()))

    async def _finish(self, channel: _Channel, utterance: _Utterance, ended: SpeechEnded) -> None:
        channel.utterance = None
        if utterance.broken:
            return
        utterance.pending += utterance.tail[: round(self.config.tail_seconds * utterance.rate) * 2]
        utterance.tail.clear()
        try:
            if utterance.pending:
                await channel.recognizer.feed(bytes(utterance.pending))
            recognition = await channel.recognizer.finish()
        except AuralinkError as exc:
            self._degraded("captions", exc)
            return
        if not recognition.text:
            return
        now = self._clock()
        shift = utterance.audio_start
        offset = channel.offset or 0.0
        words = tuple(RecognizedWord(w.word, w.start + shift, w.end + shift, w.probability) for w in recognition.words)
        caption = CaptionFinalised(
            utterance.number,
            utterance.speaker,
            recognition.text,
            ended.start + offset,
            ended.end + offset,
            now - ended.speech_ended_at,
            recognition.confidence,
            words,
            channel.recognizer.name,
            now,
        )
        self._emit(caption)
        segment = Segment(caption.text, caption.speaker, caption.start, caption.end)
        self._heard(segment, caption.utterance, self._wall_clock() - caption.latency, channel.tasks)

    def _heard(self, segment: Segment, utterance: int, said_at: float, tasks: asyncio.TaskGroup | None) -> None:
        """A final line of transcript: keep it, moderate it (the LLM's judgement a task of ``tasks``), remember it."""
        self._segments.append(segment)
        self._moderate(segment, utterance, tasks)
        if self.config.remember:
            for preference in find_preferences([segment]):
                self._remember(preference.text, "preference", preference.speaker, said_at, 0.6)
            for decision in find_decisions([segment]):
                self._remember(decision.text, "decision", decision.speaker, said_at, 0.8)

    async def note(self, text: str, speaker: str = "unknown", *, start: float | None = None) -> None:
        """Add a line to the transcript that did not come from the audio (a chat message, another caption source).

        It is moderated (rules at once; the LLM's judgement awaited here when the pump is not
        running), remembered like a caption, and used by :meth:`ask` and :meth:`summarise`.
        ``start`` is its stream time (default: the end of the transcript so far).
        """
        text = text.strip()
        if not text:
            return
        if start is None:
            start = self._segments[-1].end if self._segments else 0.0
        tasks = self._channels[-1].tasks if self._channels else None
        pending = tasks is None and self.config.llm_moderation and self.llm_configured
        self._heard(Segment(text, speaker, start, start), -1, self._wall_clock(), tasks)
        if pending:
            await self._judge(self._segments[-1], -1)

    # -- moderation ----------------------------------------------------------------------------

    def _moderate(self, segment: Segment, utterance: int, tasks: asyncio.TaskGroup | None) -> None:
        matches = self._moderator.check(segment.text)
        if matches:
            self._emit(
                Flagged(
                    utterance,
                    segment.speaker,
                    segment.text,
                    tuple(m.reason for m in matches),
                    tuple(m.rule for m in matches),
                    "rules",
                    "",
                    self._clock(),
                )
            )
        if self.config.llm_moderation and self.llm_configured and tasks is not None:
            tasks.create_task(self._judge(segment, utterance))

    async def moderate(self, text: str, speaker: str = "unknown") -> list[Flagged]:
        """Moderate text that did not come from the audio (a chat message): rules, then the LLM if configured."""
        segment = Segment(text, speaker, 0.0, 0.0)
        flags: list[Flagged] = []
        remove = self.add_listener(lambda e: flags.append(e) if isinstance(e, Flagged) else None)
        try:
            matches = self._moderator.check(text)
            if matches:
                self._emit(
                    Flagged(
                        -1,
                        speaker,
                        text,
                        tuple(m.reason for m in matches),
                        tuple(m.rule for m in matches),
                        "rules",
                        "",
                        self._clock(),
                    )
                )
            if self.config.llm_moderation and self.llm_configured:
                await self._judge(segment, -1)
        finally:
            remove()
        return flags

    async def _judge(self, segment: Segment, utterance: int) -> None:
        reply = await self._chat("moderation", judgement_messages(segment.text, segment.speaker))
        if reply is None:
            return
        text, provider = reply
        judgement = parse_judgement(text)
        if judgement is None:
            self._degraded("moderation", f"{provider} did not answer with the JSON verdict asked for")
            return
        if judgement.flag:
            reason = judgement.reason or f"the model flagged it as {judgement.category}"
            self._emit(
                Flagged(
                    utterance,
                    segment.speaker,
                    segment.text,
                    (reason,),
                    (judgement.category,),
                    "llm",
                    provider,
                    self._clock(),
                )
            )

    async def _chat(self, feature: str, messages: Sequence[ChatMessage]) -> tuple[str, str] | None:
        """The chat model's reply and provider; None (with a Degraded event) if it cannot answer."""
        router, tenant = self._router, self.config.tenant_id
        if router is None or tenant is None or self._chat_missing:
            return None
        try:
            async with asyncio.timeout(self.config.llm_timeout):
                result = await router.chat(tenant, messages, temperature=0.0)
        except ProviderNotConfigured as exc:
            self._chat_missing = True
            self._degraded(feature, exc)
            return None
        except (ProviderError, ConfigError) as exc:
            self._degraded(feature, exc)
            return None
        except TimeoutError:
            self._degraded(feature, f"no answer within {self.config.llm_timeout} s")
            return None
        return result.text.strip(), result.provider

    # -- memory --------------------------------------------------------------------------------

    def _remember(self, text: str, kind: str, speaker: str, said_at: float, importance: float) -> None:
        memory, owner = self._memory, self.config.owner
        if memory is None or owner is None:
            return
        from auralink.agents.memory import Provenance  # noqa: PLC0415 - numpy only when memory is used

        try:
            stored = memory.remember(
                owner,
                text,
                Provenance(self.config.session_id, speaker, said_at),
                kind=kind,
                importance=importance,
            )
        except AgentMemoryError as exc:
            self._degraded("memory", exc)
            return
        self._emit(Remembered(stored.id, kind, text, speaker, said_at, self._clock()))

    def _recall(self, question: str) -> list[Source]:
        memory, owner = self._memory, self.config.owner
        if memory is None or owner is None:
            return []
        try:
            hits = memory.recall(owner, question, self._wall_clock(), limit=self.config.recall_limit)
        except AgentMemoryError as exc:
            self._degraded("memory", exc)
            return []
        return [
            Source("memory", hit.memory.text, hit.memory.provenance.speaker, None, hit.memory.provenance.session_id)
            for hit in hits
        ]

    # -- questions, summaries, speech ----------------------------------------------------------

    async def ask(self, question: str, asker: str = "unknown") -> Answered:
        """Answer ``question`` from this session's transcript and memory (LLM if configured, else extractive)."""
        question = question.strip()
        if not question:
            raise ConfigError("ask() needs a question", "question")
        ranked = rank_segments(question, self._segments, limit=3)
        sources = [
            Source("transcript", r.segment.text, r.segment.speaker, r.segment.start, self.config.session_id)
            for r in ranked
        ]
        seen = {s.text for s in sources}
        sources += [s for s in self._recall(question) if s.text not in seen]
        reply = await self._chat("answer", answer_messages(question, sources)) if self.llm_configured else None
        if reply is not None and reply[0]:
            text, provider = reply
            answered = Answered(question, asker, text, "llm", provider, bool(sources), tuple(sources), self._clock())
        else:
            text, found = extractive_answer(sources)
            answered = Answered(question, asker, text, "extractive", "", found, tuple(sources), self._clock())
        self._emit(answered)
        if self.config.speak_answers:
            await self.speak(answered.answer)
        return answered

    async def summarise(self) -> Summarised:
        """Summarise the session so far, write its highlights and action items to memory, and report it."""
        segments = list(self._segments)
        draft: Draft | None = None
        provider = ""
        if segments and self.llm_configured:
            reply = await self._chat("summary", summary_messages(segments))
            if reply is not None:
                draft = parse_summary(reply[0], segments)
                provider = reply[1]
                if draft is None:
                    self._degraded("summary", f"{provider} did not answer with the JSON summary asked for")
        method = "llm" if draft is not None else "extractive"
        if draft is None:
            draft, provider = extractive_summary(segments), ""
        if self.config.remember and segments:
            now = self._wall_clock()
            for point in draft.highlights:
                spoken = next((s for s in segments if s.text == point), None)
                self._remember(point, "highlight", spoken.speaker if spoken else self.config.name, now, 0.5)
            if method == "llm":  # extractive decisions were remembered as they were said
                for decision in draft.decisions:
                    self._remember(decision, "decision", self.config.name, now, 0.8)
            for item in draft.action_items:
                text = item.text if item.owner is None else f"{item.text} (owner: {item.owner})"
                self._remember(text, "action-item", item.speaker or self.config.name, now, 0.7)
        summary = Summarised(
            self.config.session_id,
            draft.text,
            draft.decisions,
            draft.action_items,
            draft.highlights,
            method,  # type: ignore[arg-type]
            provider,
            self._clock(),
        )
        self._emit(summary)
        return summary

    def _voice(self) -> TextToSpeech:
        if self._tts is None:
            from auralink.agents.speech import local_voice  # noqa: PLC0415 - found on first use

            self._tts = local_voice()
        return self._tts

    async def speak(self, text: str) -> Spoke | None:
        """Synthesise ``text`` (the tenant's tts chain, else the local voice); None (and Degraded) if none can."""
        try:
            if self._router is not None and self.config.tenant_id is not None:
                audio: SpeechAudio = await self._router.synthesize(self.config.tenant_id, text)
            else:
                audio = await self._voice().synthesize(text)
        except (ProviderError, ConfigError) as exc:
            self._degraded("speech", exc)
            return None
        duration = None
        if audio.content_type.split(";")[0].strip().lower() in WAV_CONTENT_TYPES:
            with contextlib.suppress(AuralinkError):
                duration = read_wav(audio.audio).duration
        spoke = Spoke(text, audio, duration, self._clock())
        self._emit(spoke)
        return spoke

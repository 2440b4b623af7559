"""What the co-host agent reports: frozen, slotted events named in the past tense, and their JSON form.

Theory of operation
===================

Everything the :class:`~auralink.agents.agent.Agent` does comes out as one of these events, in
order, through its async iterator and its callbacks. An integration (the in-call adapter, the
CLI, an app) only maps events to its medium: a caption to a data-channel message, a
:class:`Spoke` to audio played into the call.

Times: ``start`` and ``end`` are *stream* seconds (since the first sample the agent heard);
``at`` is the agent's monotonic clock when the event was raised; ``latency`` is on that clock
too. :func:`event_to_json` gives the JSON object each event travels as (``{"type": ...}`` plus its
fields; the audio of :class:`Spoke` is left out, its duration kept).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from auralink.agents.extractive import ActionItem
from auralink.agents.providers.types import SpeechAudio
from auralink.agents.speech.sphinx import RecognizedWord

__all__ = [
    "AgentEvent",
    "Answered",
    "CaptionDrafted",
    "CaptionFinalised",
    "Degraded",
    "Flagged",
    "Method",
    "Remembered",
    "Source",
    "Spoke",
    "Summarised",
    "event_to_json",
]

Method = Literal["extractive", "llm"]
"""How an answer or summary was made: quoted from what was said, or written by a language model."""


@dataclass(frozen=True, slots=True)
class CaptionDrafted:
    """A partial caption of an utterance still being spoken; later drafts and the final one replace it."""

    utterance: int
    """The utterance's number in this session, from 0."""
    speaker: str
    """Who is speaking (``unknown`` if nobody said)."""
    text: str
    """The words recognised so far."""
    start: float
    """Stream seconds where the utterance started."""
    at: float
    """The agent's clock when drafted."""


@dataclass(frozen=True, slots=True)
class CaptionFinalised:
    """The final caption of an utterance."""

    utterance: int
    """The utterance's number in this session, from 0."""
    speaker: str
    """Who spoke."""
    text: str
    """The words recognised."""
    start: float
    """Stream seconds of the first voiced frame."""
    end: float
    """Stream seconds of the end of speech."""
    latency: float
    """Seconds between the end of speech arriving and this caption (the agent's clock)."""
    confidence: float | None
    """The recogniser's confidence, 0 to 1 (pocketsphinx: mean word posterior; not calibrated)."""
    words: tuple[RecognizedWord, ...]
    """Each word with its stream-time start and end, when the recogniser gives them."""
    recognizer: str
    """The recogniser that made it (``pocketsphinx``, ``router:<tenant>``)."""
    at: float
    """The agent's clock when finalised."""


@dataclass(frozen=True, slots=True)
class Flagged:
    """Moderation flagged an utterance."""

    utterance: int
    """The utterance's number (-1 for text that did not come from speech)."""
    speaker: str
    """Who said it."""
    text: str
    """What was said."""
    reasons: tuple[str, ...]
    """Why, in words."""
    rules: tuple[str, ...]
    """The rules that fired (``threat``...), or the LLM's category."""
    source: Literal["rules", "llm"]
    """Which layer flagged it."""
    provider: str
    """The chat provider that judged (empty for rules)."""
    at: float
    """The agent's clock when flagged."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where part of an answer came from."""

    kind: Literal["transcript", "memory"]
    """This call's transcript, or long-term memory."""
    text: str
    """The passage."""
    speaker: str
    """Who said it."""
    start: float | None
    """Stream seconds in this call (transcript), or None (memory)."""
    session_id: str
    """The session it was said in."""


@dataclass(frozen=True, slots=True)
class Answered:
    """The agent answered a question."""

    question: str
    """The question."""
    asker: str
    """Who asked."""
    answer: str
    """The answer (extractive answers quote what was said and say so)."""
    method: Method
    """``extractive`` (no language model) or ``llm``."""
    provider: str
    """The chat provider that answered (empty when extractive)."""
    found: bool
    """False when nothing relevant was found (the answer then says so)."""
    sources: tuple[Source, ...]
    """The passages the answer rests on, best first."""
    at: float
    """The agent's clock when answered."""


@dataclass(frozen=True, slots=True)
class Summarised:
    """The summary of the session so far (at the end of a call, of the whole call)."""

    session_id: str
    """The session."""
    text: str
    """The summary."""
    decisions: tuple[str, ...]
    """The decisions taken."""
    action_items: tuple[ActionItem, ...]
    """Who will do what, by when."""
    highlights: tuple[str, ...]
    """The most central things said (extractive), or the model's key points."""
    method: Method
    """``extractive`` or ``llm``."""
    provider: str
    """The chat provider that wrote it (empty when extractive)."""
    at: float
    """The agent's clock when summarised."""


@dataclass(frozen=True, slots=True)
class Remembered:
    """The agent wrote a memory."""

    memory_id: int
    """Its id in the memory store."""
    kind: str
    """``highlight``, ``preference``, ``decision``, ``action-item``..."""
    text: str
    """What was remembered."""
    speaker: str
    """Who said it (provenance)."""
    said_at: float
    """Wall-clock seconds when it was said (provenance)."""
    at: float
    """The agent's clock when written."""


@dataclass(frozen=True, slots=True)
class Spoke:
    """The agent synthesised speech for a reply; play ``audio`` into the call."""

    text: str
    """What it says."""
    audio: SpeechAudio
    """The speech (``audio/wav`` from the local voices; see ``audio.content_type``)."""
    duration: float | None
    """Seconds of speech, when the format tells."""
    at: float
    """The agent's clock when synthesised."""


@dataclass(frozen=True, slots=True)
class Degraded:
    """A feature fell back to a lesser way (or was skipped) because a provider or engine failed or is missing."""

    feature: Literal["captions", "moderation", "answer", "summary", "speech", "memory"]
    """What degraded."""
    reason: str
    """Why, in words (the error's class and message; never a key)."""
    at: float
    """The agent's clock."""


AgentEvent = CaptionDrafted | CaptionFinalised | Flagged | Answered | Summarised | Remembered | Spoke | Degraded
"""Any event of the agent."""


def event_to_json(event: AgentEvent) -> dict[str, Any]:
    """The JSON object of an event: ``type`` and its fields (a :class:`Spoke`'s audio bytes left out)."""
    if isinstance(event, Spoke):
        return {
            "type": "Spoke",
            "text": event.text,
            "content_type": event.audio.content_type,
            "provider": event.audio.provider,
            "duration": event.duration,
            "at": event.at,
        }
    return {"type": type(event).__name__, **dataclasses.asdict(event)}

"""End-of-call summaries: extractive (no model, labelled so) or written by an LLM, with decisions and action items.

Theory of operation
===================

:func:`extractive_summary` builds a :class:`Draft` from the transcript alone with the cue phrases
and centrality ranking of :mod:`~auralink.agents.extractive`: its text is the most central
things said, quoted, under a label that says the summary is extractive. :func:`summary_messages`
asks a chat model for the same document as JSON (``summary``, ``decisions``, ``action_items``)
and :func:`parse_summary` reads the reply strictly: anything else is ``None``, and the agent
falls back to the extractive draft and says so. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from auralink.agents.extractive import (
    ActionItem,
    Segment,
    find_action_items,
    find_decisions,
    highlights,
)
from auralink.agents.providers.types import ChatMessage

__all__ = ["EXTRACTIVE_LABEL", "Draft", "extractive_summary", "parse_summary", "summary_messages", "transcript_text"]

EXTRACTIVE_LABEL = "Extractive summary (sentences quoted from the transcript; no language model):"
"""How an extractive summary's text begins."""

_MAX_TRANSCRIPT_CHARS = 24_000


@dataclass(frozen=True, slots=True)
class Draft:
    """A summary before it becomes an event."""

    text: str
    """The summary."""
    decisions: tuple[str, ...]
    """Decisions taken."""
    action_items: tuple[ActionItem, ...]
    """Commitments, with owner and due date where known."""
    highlights: tuple[str, ...]
    """Key points."""


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


def transcript_text(segments: Sequence[Segment], limit: int = _MAX_TRANSCRIPT_CHARS) -> str:
    """The transcript as ``[mm:ss] speaker: text`` lines, keeping the most recent ``limit`` characters."""
    lines = [f"[{_clock(s.start)}] {s.speaker}: {s.text}" for s in segments]
    text = "\n".join(lines)
    return text if len(text) <= limit else text[-limit:].split("\n", 1)[-1]


def extractive_summary(segments: Sequence[Segment], *, limit: int = 3) -> Draft:
    """A summary quoted from the transcript: the ``limit`` most central segments, decisions and action items."""
    points = highlights(segments, limit=limit)
    decisions = tuple(s.text for s in find_decisions(segments))
    items = tuple(find_action_items(segments))
    if points:
        body = " ".join(f'{s.speaker} said: "{s.text}".' for s in points)
        text = f"{EXTRACTIVE_LABEL} {body}"
    else:
        text = f"{EXTRACTIVE_LABEL} nothing was said that could be summarised."
    return Draft(text, decisions, items, tuple(s.text for s in points))


_SYSTEM = (
    "You summarise a voice call from its transcript, made by speech recognition (words may be wrong). "
    "Reply with exactly one JSON object and nothing else: "
    '{"summary": "three sentences at most", "decisions": ["..."], '
    '"action_items": [{"text": "...", "owner": "who or null", "due": "when or null"}]}. '
    "Use only what the transcript says; empty lists if there are none."
)


def summary_messages(segments: Sequence[Segment]) -> list[ChatMessage]:
    """The chat messages that ask a model to summarise the transcript."""
    return [ChatMessage("system", _SYSTEM), ChatMessage("user", transcript_text(segments) or "(nothing was said)")]


def _optional(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() and value.strip() != "null" else None


def parse_summary(reply: str, segments: Sequence[Segment]) -> Draft | None:
    """The summary in a model's reply, or None if it is not the JSON object asked for."""
    start, end = reply.find("{"), reply.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        document = json.loads(reply[start : end + 1])
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("summary"), str):
        return None
    decisions = document.get("decisions", [])
    items = document.get("action_items", [])
    if not isinstance(decisions, list) or not isinstance(items, list):
        return None
    actions = []
    for listed in items:
        item = {"text": listed} if isinstance(listed, str) else listed
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            return None
        owner, due = _optional(item.get("owner")), _optional(item.get("due"))
        actions.append(ActionItem(item["text"].strip(), owner, due, "", 0.0))
    summary = document["summary"].strip()
    return Draft(
        summary,
        tuple(d.strip() for d in decisions if isinstance(d, str) and d.strip()),
        tuple(actions),
        tuple(s.text for s in highlights(segments)),
    )

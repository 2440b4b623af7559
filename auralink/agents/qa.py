"""Questions about the call: an extractive answer from the transcript and memory, or an LLM's answer over them.

Theory of operation
===================

Both ways start with retrieval: the transcript's segments ranked by BM25
(:func:`~auralink.agents.extractive.rank_segments`) and, when the agent has a memory store, the
memories it recalls for the question (passed in here as :class:`~auralink.agents.events.Source`).

* :func:`extractive_answer` quotes the best passage and who said it, under a label that says the
  answer is quoted, not understood; with nothing relevant it says that it found nothing.
* :func:`answer_messages` gives a chat model the passages (numbered) and the question, and asks
  it to answer from them only, or to say it does not know.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from auralink.agents.events import Source
from auralink.agents.providers.types import ChatMessage

__all__ = ["EXTRACTIVE_PREFIX", "NOT_FOUND", "answer_messages", "extractive_answer"]

EXTRACTIVE_PREFIX = "From what was said (quoted; no language model):"
"""How an extractive answer begins."""

NOT_FOUND = "I found nothing about that in this call or in memory."
"""The extractive answer when retrieval finds nothing."""


def _where(source: Source) -> str:
    if source.kind == "transcript" and source.start is not None:
        minutes, seconds = divmod(int(source.start), 60)
        return f"{source.speaker} at {minutes:02d}:{seconds:02d}"
    return f"{source.speaker} (memory of {source.session_id})"


def extractive_answer(sources: Sequence[Source], *, quotes: int = 2) -> tuple[str, bool]:
    """The answer text and whether anything was found: the best ``quotes`` passages, quoted with who said them."""
    if not sources:
        return NOT_FOUND, False
    body = " ".join(f'"{s.text}" ({_where(s)}).' for s in sources[:quotes])
    return f"{EXTRACTIVE_PREFIX} {body}", True


_SYSTEM = (
    "You are the co-host of a voice call. Answer the question using only the numbered passages (from the call's "
    "transcript, made by speech recognition, and from the team's memory). Be brief: one or two sentences. If the "
    "passages do not answer it, say you do not know."
)


def answer_messages(question: str, sources: Sequence[Source]) -> list[ChatMessage]:
    """The chat messages that ask a model to answer ``question`` from ``sources``."""
    passages = "\n".join(f"[{i}] {_where(s)}: {s.text}" for i, s in enumerate(sources, 1)) or "(no passages)"
    return [
        ChatMessage("system", _SYSTEM),
        ChatMessage("user", f"Passages:\n{passages}\n\nQuestion: {question}"),
    ]

"""What the agent can say about a call without a language model: retrieval, cue phrases and sentence ranking.

Theory of operation
===================

With no LLM configured, the co-host still answers questions and summarises, *extractively*: every
answer, decision, action item and summary sentence is something a participant actually said,
chosen and quoted, never generated. The labels say so (``method="extractive"``). This module is
a pure core: text and numbers in, values out; no I/O, no clock, no model.

* **Segments.** The transcript is a list of :class:`Segment`: one final caption each, with its
  speaker and its times. Recognised speech has no punctuation, so the caption is the sentence.
* **Retrieval** (:func:`rank_segments`) is Okapi BM25 (k1 = 1.2, b = 0.75) over the segments'
  content words (a small English stop list removed, simple plural and ``-ing``/``-ed`` folding),
  the classic lexical ranking of search engines. It finds the segments that share the question's
  words, and knows nothing of synonyms.
* **Cues** (:func:`find_decisions`, :func:`find_action_items`, :func:`find_preferences`) are
  regular expressions over the words people use to decide (``we decided``, ``let's go with``,
  ``agreed``), to commit (``I'll send``, ``can you``, ``action item``) and to state a preference
  (``I prefer``, ``I'd rather``). An action item takes its owner from ``I``/``we`` (the speaker)
  and a due date from a weekday, ``tomorrow``, ``next week`` or ``end of day``.
* **Highlights** (:func:`highlights`) rank segments by centrality: the sum of their TF-IDF cosine
  similarity to the other segments (LexRank's degree, without the random walk), weighted up for
  segments that carry a decision or an action item; the top ones are given in call order.

Honest limits: cue phrases miss decisions phrased any other way and can fire on a question
("should we decide..."); recognition errors (a word in four or five, offline) flow into
everything here. An LLM, when configured, does these jobs better; this is the floor.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ActionItem",
    "Ranked",
    "Segment",
    "content_words",
    "find_action_items",
    "find_decisions",
    "find_preferences",
    "highlights",
    "rank_segments",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """One thing said: a final caption, or any line of a transcript."""

    text: str
    """What was said."""
    speaker: str
    """Who said it (an AuraID string, a display name, or ``unknown``)."""
    start: float
    """Stream seconds where it started."""
    end: float
    """Stream seconds where it ended."""


@dataclass(frozen=True, slots=True)
class Ranked:
    """A segment that retrieval found, with its BM25 score."""

    segment: Segment
    """The segment."""
    score: float
    """Its BM25 score for the query (greater is better; not comparable across queries)."""
    matched: tuple[str, ...]
    """The query's content words it contains."""


@dataclass(frozen=True, slots=True)
class ActionItem:
    """A commitment someone made."""

    text: str
    """The words that make it."""
    owner: str | None
    """Who will do it: the speaker when they said ``I``/``we``; None when it was asked of someone unnamed."""
    due: str | None
    """When, if said (``friday``, ``tomorrow``, ``next week``, ``end of day``)."""
    speaker: str
    """Who said it."""
    start: float
    """Stream seconds where it was said."""


_STOP_WORDS = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves um uh oh yeah okay ok well also what's it's i'm i'll we'll you'll that's
    there's let's don't didn't"""
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _fold(word: str) -> str:
    """A crude stem: enough to match ``ships``/``ship``, ``meeting``/``meet``, ``decided``/``decide``."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


def content_words(text: str) -> list[str]:
    """The folded content words of ``text``, in order (stop words and fillers removed)."""
    return [_fold(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


def rank_segments(query: str, segments: Sequence[Segment], *, limit: int = 3) -> list[Ranked]:
    """The segments that best match ``query`` by BM25, best first; only those sharing a content word."""
    wanted = set(content_words(query))
    if not wanted or not segments:
        return []
    documents = [content_words(s.text) for s in segments]
    average = sum(len(d) for d in documents) / len(documents) or 1.0
    frequency = Counter(word for d in documents for word in set(d))
    total = len(documents)
    found: list[Ranked] = []
    for segment, words in zip(segments, documents, strict=True):
        counts = Counter(words)
        score = 0.0
        matched = []
        for word in wanted:
            tf = counts.get(word, 0)
            if not tf:
                continue
            matched.append(word)
            idf = math.log(1 + (total - frequency[word] + 0.5) / (frequency[word] + 0.5))
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(words) / average))
        if matched:
            found.append(Ranked(segment, score, tuple(sorted(matched))))
    found.sort(key=lambda r: (-r.score, r.segment.start))
    return found[:limit]


_DECISION = re.compile(
    r"\b(we|i|they|team) (have |had )?(decided|agreed|chose|settled on|are going with|will go with|went with)\b"
    r"|\blet'?s (go with|use|do|ship|move|launch|pick|keep|drop|choose)\b"
    r"|\b(the )?decision is\b|\b(it'?s|that'?s) (decided|agreed|settled)\b|\bagreed\b|\bwe'?ll go with\b",
)
_ACTION = re.compile(
    r"\b(i'?ll|i will|i'm going to|i am going to|we'?ll|we will|you'?ll|you will|can you|could you|would you"
    r"|please|action item|todo|follow up|needs? to|has to|have to|must)\b"
)
_FIRST_PERSON = re.compile(r"\b(i'?ll|i will|i'm going to|i am going to|we'?ll|we will|i have to|we have to)\b")
_DUE = re.compile(
    r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight|today|next week"
    r"|next month|end of (the )?(day|week|month)|eod)\b"
)
_PREFERENCE = re.compile(
    r"\b(i|we) (really )?(prefer|like|love|hate|dislike|want|don'?t like|do not like|would rather|'?d rather)\b"
    r"|\b(i'?d|we'?d) (rather|prefer|like)\b|\bmy (favou?rite|preference)\b"
)


def _is_question(text: str) -> bool:
    lowered = text.strip().lower()
    return lowered.endswith("?") or bool(re.match(r"(should|shall|do|does|did|can|could|would|will) (we|i)\b", lowered))


def find_decisions(segments: Sequence[Segment]) -> list[Segment]:
    """Segments that state a decision (by cue phrase; questions are skipped), in order."""
    return [s for s in segments if _DECISION.search(s.text.lower()) and not _is_question(s.text)]


def find_action_items(segments: Sequence[Segment]) -> list[ActionItem]:
    """Commitments and requests (by cue phrase), in order, with an owner and a due date where said."""
    items = []
    for segment in segments:
        lowered = segment.text.lower()
        if not _ACTION.search(lowered):
            continue
        owner = segment.speaker if _FIRST_PERSON.search(lowered) else None
        due = _DUE.search(lowered)
        items.append(ActionItem(segment.text, owner, due.group(0) if due else None, segment.speaker, segment.start))
    return items


def find_preferences(segments: Sequence[Segment]) -> list[Segment]:
    """Segments where someone states what they like, want or would rather, in order."""
    return [s for s in segments if _PREFERENCE.search(s.text.lower())]


def highlights(segments: Sequence[Segment], *, limit: int = 3) -> list[Segment]:
    """The ``limit`` most central segments (TF-IDF degree, cue-weighted), in call order."""
    documents = [Counter(content_words(s.text)) for s in segments]
    useful = [i for i, d in enumerate(documents) if d]
    if not useful:
        return []
    total = len(useful)
    frequency = Counter(word for i in useful for word in documents[i])
    vectors: dict[int, dict[str, float]] = {}
    for i in useful:
        weights = {w: tf * math.log(1 + total / frequency[w]) for w, tf in documents[i].items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        vectors[i] = {w: v / norm for w, v in weights.items()}
    scores: dict[int, float] = {}
    for i in useful:
        degree = sum(
            sum(value * vectors[j].get(word, 0.0) for word, value in vectors[i].items()) for j in useful if j != i
        )
        lowered = segments[i].text.lower()
        cue = 1.0 + 0.5 * bool(_DECISION.search(lowered)) + 0.25 * bool(_ACTION.search(lowered))
        length = min(1.0, len(documents[i]) / 4)
        scores[i] = (degree + 0.1) * cue * length
    best = sorted(useful, key=lambda i: (-scores[i], i))[:limit]
    return [segments[i] for i in sorted(best)]

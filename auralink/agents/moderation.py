"""Moderation: rules that always run, and an LLM's judgement when a chat provider is configured.

Theory of operation
===================

Two layers, as in most trust-and-safety pipelines:

* **Rules** (:class:`ModerationRule`, :class:`RuleModerator`) are regular expressions, or word
  lists compiled to one, each with a reason a person can read. They are instant, predictable
  and offline, and they are what a tenant configures for its own policy (banned words, a project
  code name that must not be said on an external call). :data:`DEFAULT_RULES` is a small,
  conservative set: threats of violence, insults aimed at someone, and personal data (an email
  address, a card-like run of digits, a spoken password).
* **Judgement** by an LLM (:func:`judgement_messages` and :func:`parse_judgement`) catches what
  no word list can: harassment phrased politely, a threat without the word "kill". The model is
  asked for one JSON object (``{"flag": bool, "category": str, "reason": str}``); an answer that
  is not that object is *not* a flag (the agent reports the judgement as degraded), so a
  confused model never silences anyone by accident.

This module is a pure core: text in, matches or messages out. The agent sends the messages
through the provider router and raises a :class:`~auralink.agents.events.Flagged` event for
either layer, with the reasons.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from auralink.agents.providers.types import ChatMessage
from auralink.errors import ConfigError

__all__ = [
    "DEFAULT_RULES",
    "Judgement",
    "ModerationRule",
    "RuleMatch",
    "RuleModerator",
    "judgement_messages",
    "parse_judgement",
]


@dataclass(frozen=True, slots=True)
class ModerationRule:
    """One rule: a pattern and why matching it is flagged."""

    name: str
    """A short id (``threat``, ``personal-data``)."""
    pattern: str
    """A regular expression, matched case-insensitively anywhere in the text."""
    reason: str
    """What a moderator reads when it fires."""

    def __post_init__(self) -> None:
        if not self.name or not self.reason:
            raise ConfigError("a moderation rule has a name and a reason", "rules")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"moderation rule {self.name!r}: bad pattern: {exc}", "rules") from exc

    @classmethod
    def words(cls, name: str, words: Iterable[str], reason: str) -> ModerationRule:
        """A rule that fires on any of ``words`` (or phrases) as whole words."""
        listed = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
        if not listed:
            raise ConfigError(f"moderation rule {name!r} has no words", "rules")
        return cls(name, r"\b(?:" + "|".join(re.escape(w) for w in listed) + r")\b", reason)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that fired on a text."""

    rule: str
    """The rule's name."""
    reason: str
    """The rule's reason."""
    matched: str
    """The words that matched."""


DEFAULT_RULES: tuple[ModerationRule, ...] = (
    ModerationRule(
        "threat",
        r"\b(?:i'?ll|i will|i'm going to|gonna|going to)\s+(?:kill|hurt|beat|shoot|stab|destroy)\s+"
        r"(?:you|him|her|them|everyone)\b",
        "a threat of violence",
    ),
    ModerationRule(
        "insult",
        r"\byou(?:'re| are)\s+(?:an?\s+)?(?:idiot|moron|stupid|worthless|pathetic|loser|imbecile)\b",
        "an insult aimed at a participant",
    ),
    ModerationRule(
        "personal-data",
        r"[\w.+-]+@[\w-]+\.[\w.-]+|\b(?:\d[ -]?){13,19}\b|\bmy password is\b|\bsocial security number\b",
        "personal data said aloud (an email address, a card-like number or a password)",
    ),
)
"""A small, conservative default: threats, insults aimed at someone, personal data."""


class RuleModerator:
    """Applies rules to text; pure and instant."""

    def __init__(self, rules: Sequence[ModerationRule] = DEFAULT_RULES) -> None:
        """``rules`` in the order their matches are reported."""
        self.rules = tuple(rules)
        """The rules."""
        self._compiled = [(rule, re.compile(rule.pattern, re.IGNORECASE)) for rule in self.rules]

    def check(self, text: str) -> list[RuleMatch]:
        """Every rule that fires on ``text``, once each, in rule order."""
        found = []
        for rule, pattern in self._compiled:
            match = pattern.search(text)
            if match:
                found.append(RuleMatch(rule.name, rule.reason, match.group(0)))
        return found


@dataclass(frozen=True, slots=True)
class Judgement:
    """An LLM's moderation verdict on one utterance."""

    flag: bool
    """True if the model says the utterance breaks the rules."""
    category: str
    """Its category (``harassment``, ``threat``, ``personal-data``, ``none``...)."""
    reason: str
    """Its reason, in its words."""


_SYSTEM = (
    "You moderate a live voice call. Each user message is one utterance, transcribed by speech recognition "
    "(so words may be wrong). Flag it only if it clearly contains harassment, hate, a threat, sexual content, "
    "or someone's personal data or secrets. Reply with exactly one JSON object and nothing else: "
    '{"flag": true or false, "category": "harassment|hate|threat|sexual|personal-data|none", '
    '"reason": "one short sentence"}'
)


def judgement_messages(text: str, speaker: str) -> list[ChatMessage]:
    """The chat messages that ask a model to judge one utterance."""
    return [ChatMessage("system", _SYSTEM), ChatMessage("user", f"{speaker}: {text}")]


def _json_object(reply: str) -> object:
    start, end = reply.find("{"), reply.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return json.loads(reply[start : end + 1])
    except ValueError:
        return None


def parse_judgement(reply: str) -> Judgement | None:
    """The verdict in a model's reply; None if the reply is not the JSON object asked for."""
    document = _json_object(reply)
    if not isinstance(document, dict) or not isinstance(document.get("flag"), bool):
        return None
    category = document.get("category", "none")
    reason = document.get("reason", "")
    if not isinstance(category, str) or not isinstance(reason, str):
        return None
    return Judgement(document["flag"], category.strip()[:40] or "none", reason.strip()[:300])

"""Word error rate: how far a transcript is from a reference, in edits per reference word.

Theory of operation
===================

WER is the word-level Levenshtein distance between the reference and the hypothesis (the fewest
substitutions, deletions and insertions that turn one into the other) divided by the number of
reference words. It is the standard score of speech recognisers (NIST sclite), and it can exceed
1 when the hypothesis inserts many words.

Both texts are first normalised by :func:`normalize`, so that spelling conventions that do not
change what was said are not counted as errors:

* Unicode NFKC, then lower case;
* hyphens, dashes and slashes separate words (``cold-hearted`` is two words, as recognisers with a
  word dictionary write it);
* other punctuation is dropped, except an apostrophe inside a word (``don't``);
* the spoken forms of two titles become their abbreviations, as in Whisper's English normaliser
  (``mister`` is ``mr``, ``missus`` is ``mrs``), because readers say the word and recognisers
  with a newspaper language model write the abbreviation.

Nothing else is rewritten: no number words, no spelling variants, no stemming. Sentence markers
of the CMU transcription format (``<s>``, ``</s>``) and filler tokens in brackets (``<sil>``,
``[NOISE]``) are dropped, since they are not words.

:func:`word_errors` returns the counts of each kind of edit (from a backtrace of the dynamic
programme, preferring substitutions on ties), so a corpus WER is the sum of the errors over the
sum of the reference words (:meth:`WordErrors.__add__`), not the mean of per-utterance rates.
Pure functions; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["WordErrors", "normalize", "word_error_rate", "word_errors"]

_MARKUP = re.compile(r"<[^>\s]*>|\[[^\]\s]*\]")
_SEPARATORS = re.compile(r"[\-\u2010-\u2015/]+")
_NOT_WORD = re.compile(r"[^\w\s']+")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")
_SPOKEN_TITLES = {"mister": "mr", "missus": "mrs"}


def normalize(text: str) -> list[str]:
    """The words of ``text`` after the normalisation described in the module docstring."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _MARKUP.sub(" ", text)
    text = _SEPARATORS.sub(" ", text)
    text = _NOT_WORD.sub(" ", text).replace("_", " ")
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return [_SPOKEN_TITLES.get(word, word) for word in text.split()]


@dataclass(frozen=True, slots=True)
class WordErrors:
    """The edits that turn a reference into a hypothesis."""

    substitutions: int
    """Reference words replaced by another word."""
    deletions: int
    """Reference words the hypothesis left out."""
    insertions: int
    """Hypothesis words with no reference word."""
    reference_words: int
    """Words in the (normalised) reference."""

    @property
    def errors(self) -> int:
        """All edits."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Edits per reference word; 0 for two empty texts, and infinite for words against an empty reference."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_words + other.reference_words,
        )


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """The substitutions, deletions and insertions between two texts, after :func:`normalize`."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    rows, cols = len(ref) + 1, len(hyp) + 1
    # cost[i][j]: the edits that turn ref[:i] into hyp[:j].
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            same = ref[i - 1] == hyp[j - 1]
            cost[i][j] = min(
                cost[i - 1][j - 1] + (0 if same else 1),
                cost[i - 1][j] + 1,
                cost[i][j - 1] + 1,
            )
    substitutions = deletions = insertions = 0
    i, j = len(ref), len(hyp)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            substitutions += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            deletions += 1
            i -= 1
        else:
            insertions += 1
            j -= 1
    return WordErrors(substitutions, deletions, insertions, len(ref))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference``: :func:`word_errors` over the reference's word count."""
    return word_errors(reference, hypothesis).wer

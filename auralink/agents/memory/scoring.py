"""How recall ranks memories: the weights, and the maths that combines the components.

Theory of operation
===================

A recalled memory's score is a weighted sum of four components, each in ``[0, 1]``, in the
manner of the retrieval function of Park et al. (2023, *Generative Agents*), plus a graph term::

    score = similarity * max(cosine, 0)
          + graph      * graph_relevance
          + recency    * 2 ** (-age / half_life)
          + importance * importance

* **cosine** is the dot product of the query's and the memory's unit vectors (see
  :mod:`~auralink.agents.memory.embedding`); negative values count as 0.
* **graph_relevance** comes from the entity graph. The entities whose names appear in the query
  are the *seeds*, worth 1. Entities one relation away from a seed (either direction) are worth
  ``hop_decay`` (0.5). A memory that mentions entities worth ``w1, w2, ...`` gets the noisy-or
  ``1 - (1 - w1)(1 - w2)...``: one seed gives 1, one neighbour 0.5, two neighbours 0.75.
* **age** is ``now - provenance.at`` in seconds (0 for a memory stamped in the future), so a
  memory loses half its recency every ``half_life`` (7 days by default).
* **importance** is the value given when the memory was stored, in ``[0, 1]``.

The default weights (:class:`RecallWeights`) sum to 1, so scores are in ``[0, 1]``: relevance
(similarity 0.60, graph 0.25) dominates, recency (0.10) breaks ties between memories about the
same thing in favour of the newer, and importance (0.05) nudges. They were chosen by hand, so
that each component can decide a ranking when the others are equal (the tests construct such
cases), not fitted to data.

A memory is a *candidate* only if it is relevant at all: its cosine is at least
``min_similarity``, or its graph relevance is above 0. Otherwise recall would fill its results
with whatever is newest. The default, 0.10, sits between the default embedder's noise (cosine
sd 0.07 between texts with no word in common) and a shared word (0.14 on average), so it is a
weak filter: about 8% of unrelated pairs pass it. A caller that wants fewer, surer results can
raise it, or filter on :attr:`~auralink.agents.memory.types.Recalled.similarity`.

This module is a pure core: no I/O, no clock; time comes in as ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from auralink.errors import MemoryInputError

__all__ = ["DAY", "RecallWeights", "combine", "recency"]

DAY = 86_400.0
"""Seconds in a day."""


@dataclass(frozen=True, slots=True)
class RecallWeights:
    """The weights and constants of recall's score (see the module docstring for the formula)."""

    similarity: float = 0.60
    """Weight of the cosine similarity between the query and the memory."""
    graph: float = 0.25
    """Weight of the graph relevance (entities named in the query, and their neighbours)."""
    recency: float = 0.10
    """Weight of the recency, ``2 ** (-age / half_life)``."""
    importance: float = 0.05
    """Weight of the importance given when the memory was stored."""
    half_life: float = 7 * DAY
    """Seconds after which a memory's recency has halved."""
    hop_decay: float = 0.5
    """What an entity one relation away from an entity named in the query is worth (a named one is worth 1)."""
    min_similarity: float = 0.10
    """The cosine a memory needs to be a candidate when the graph does not link it to the query."""

    def __post_init__(self) -> None:
        for name in ("similarity", "graph", "recency", "importance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value < math.inf):
                raise MemoryInputError(f"the {name} weight must be a finite number >= 0, not {value!r}", field=name)
        if not isinstance(self.half_life, int | float) or not (0.0 < self.half_life < math.inf):
            raise MemoryInputError(f"half_life must be finite seconds > 0, not {self.half_life!r}", "half_life")
        if not isinstance(self.hop_decay, int | float) or not 0.0 <= self.hop_decay <= 1.0:
            raise MemoryInputError(f"hop_decay must be in [0, 1], not {self.hop_decay!r}", "hop_decay")
        if not isinstance(self.min_similarity, int | float) or not -1.0 <= self.min_similarity <= 1.0:
            raise MemoryInputError(f"min_similarity must be in [-1, 1], not {self.min_similarity!r}", "min_similarity")


def recency(at: npt.NDArray[np.float64], now: float, half_life: float) -> npt.NDArray[np.float64]:
    """``2 ** (-age / half_life)`` for each timestamp, with ages below 0 counted as 0."""
    age = np.maximum(now - at, 0.0)
    result: npt.NDArray[np.float64] = np.exp2(age * (-1.0 / half_life))
    return result


def combine(
    cosine: npt.NDArray[np.float32],
    graph: npt.NDArray[np.float64],
    recent: npt.NDArray[np.float64],
    importance: npt.NDArray[np.float32],
    weights: RecallWeights,
) -> npt.NDArray[np.float64]:
    """The score of each memory; ``-inf`` for those that are not candidates."""
    score = np.maximum(cosine, 0.0).astype(np.float64) * weights.similarity
    score += graph * weights.graph
    score += recent * weights.recency
    score += importance * weights.importance
    score[(cosine < weights.min_similarity) & (graph <= 0.0)] = -np.inf
    return score

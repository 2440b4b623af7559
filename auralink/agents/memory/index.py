"""The in-memory vector index: one contiguous float32 matrix per identity, searched by one product.

Theory of operation
===================

Recall has to be fast at 100 000 memories (goal: p95 <= 20 ms). An approximate index (HNSW, IVF)
would need a native dependency; an exact scan does not, and at this size it is fast enough if it
is one pass over contiguous memory. So :class:`VectorIndex` keeps, per owner identity, a
*partition*:

* ``vectors``: a C-contiguous ``(capacity, dims)`` float32 matrix, the first ``count`` rows in
  use. Appending writes into spare rows; when none is left, the capacity doubles (amortised O(1)
  per append).
* parallel arrays ``ids`` (int64, ascending, since the store's ids only grow), ``at`` (float64
  wall-clock seconds), ``importance`` (float32) and ``kinds`` (int16 codes);
* ``mentions``: for each entity id, the ascending ids of the owner's memories that mention it
  (a compact ``array('q')``), so that the graph term costs a few array operations per query
  instead of a SQL round trip per mention.

A search for one owner touches only that owner's partition, so filtering by identity costs
nothing and other identities' memories cannot leak into results. The scan is one
matrix-vector product over ``vectors[:count]`` (memory-bound: about 100 MB read at
100 000 * 256), then a handful of vectorised operations for recency, graph and importance (see
:mod:`~auralink.agents.memory.scoring`), then ``argpartition`` among the candidates for the top
``limit`` (not over every score: it degrades badly on many equal ``-inf`` values). The graph
term takes the worth of each entity (from the store's graph walk) and gives each memory the
noisy-or of the worths of the entities it mentions, with one ``bincount`` over
``log(1 - worth)``.

The product is ``np.einsum("ij,j->i", ...)``, numpy's own single-threaded SIMD loop, and not
``@``: on the shared 2-core VM of ``docs/benchmarks.md``, 100 000 * 256 took 5 ms with einsum
against 16 ms with OpenBLAS's threaded sgemv (p50, load average 2.3), and 10 against 32 ms when
the cores were busier. Only float32 is offered: numpy has no fast float16 or int8 kernel (about
140 ms and 40 ms for the same product), so smaller storage would make recall slower, not faster.

*No traces.* Removing memories compacts the partition and zeroes the rows it frees; dropping an
identity zeroes its arrays before releasing them; a grown matrix zeroes the one it replaces. The
index holds no text, only vectors and numbers, and after :meth:`VectorIndex.drop` none of those.

This module is a pure core: no I/O, no clock, no locks (the store serialises access).
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from auralink.agents.memory.scoring import RecallWeights, combine, recency

__all__ = ["Hit", "VectorIndex"]

_INITIAL_CAPACITY = 64


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: a memory id and the components of its score."""

    memory_id: int
    """The memory's id in the store."""
    score: float
    """The combined score."""
    similarity: float
    """The cosine between the query and the memory."""
    graph: float
    """The graph relevance, in ``[0, 1]``."""
    recency: float
    """``2 ** (-age / half_life)``, in ``(0, 1]``."""


class _Partition:
    """The arrays of one owner; rows ``[0, count)`` are in use."""

    __slots__ = ("at", "count", "ids", "importance", "kinds", "mentions", "vectors")

    def __init__(self, dims: int, capacity: int) -> None:
        self.count = 0
        self.mentions: dict[int, array[int]] = {}
        self.vectors: npt.NDArray[np.float32] = np.zeros((capacity, dims), dtype=np.float32)
        self.ids: npt.NDArray[np.int64] = np.zeros(capacity, dtype=np.int64)
        self.at: npt.NDArray[np.float64] = np.zeros(capacity, dtype=np.float64)
        self.importance: npt.NDArray[np.float32] = np.zeros(capacity, dtype=np.float32)
        self.kinds: npt.NDArray[np.int16] = np.zeros(capacity, dtype=np.int16)

    def arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        return (self.vectors, self.ids, self.at, self.importance, self.kinds)

    def grow_to(self, needed: int) -> None:
        capacity = len(self.ids)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        old = self.arrays()
        n = self.count
        self.vectors = np.zeros((capacity, self.vectors.shape[1]), dtype=np.float32)
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.at = np.zeros(capacity, dtype=np.float64)
        self.importance = np.zeros(capacity, dtype=np.float32)
        self.kinds = np.zeros(capacity, dtype=np.int16)
        for new, previous in zip(self.arrays(), old, strict=True):
            new[:n] = previous[:n]
            previous.fill(0)

    def wipe(self) -> None:
        for values in self.arrays():
            values.fill(0)
        self.mentions.clear()
        self.count = 0

    def unlink(self, removed: npt.NDArray[np.int64]) -> None:
        """Drop ``removed`` memory ids from every entity's mention list."""
        few = [int(x) for x in removed] if len(removed) <= 16 else None
        for entity in list(self.mentions):
            ids = self.mentions[entity]
            if few is not None and not any(_contains(ids, x) for x in few):
                continue  # a bisection per id instead of copying every list
            current = np.frombuffer(ids, dtype=np.int64).copy()
            kept = current[~np.isin(current, removed)]
            if len(kept):
                self.mentions[entity] = array("q", kept.tobytes())
            else:
                del self.mentions[entity]


class VectorIndex:
    """Per-owner contiguous vector matrices with their metadata; see the module docstring."""

    __slots__ = ("_dims", "_kind_codes", "_partitions")

    def __init__(self, dims: int) -> None:
        """An empty index of ``dims``-dimensional vectors."""
        self._dims = dims
        self._partitions: dict[str, _Partition] = {}
        self._kind_codes: dict[str, int] = {}

    @property
    def dims(self) -> int:
        """The length of every vector."""
        return self._dims

    def __len__(self) -> int:
        return sum(partition.count for partition in self._partitions.values())

    def owners(self) -> list[str]:
        """Every owner with at least one vector, sorted."""
        return sorted(owner for owner, partition in self._partitions.items() if partition.count)

    def count(self, owner: str) -> int:
        """How many vectors ``owner`` has."""
        partition = self._partitions.get(owner)
        return 0 if partition is None else partition.count

    def nbytes(self) -> int:
        """Bytes held by every partition's arrays, spare capacity included."""
        return sum(sum(a.nbytes for a in p.arrays()) for p in self._partitions.values())

    def _kind_code(self, kind: str) -> int:
        code = self._kind_codes.get(kind)
        if code is None:
            code = self._kind_codes[kind] = len(self._kind_codes)
        return code

    def add(
        self,
        owner: str,
        *,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        at: npt.NDArray[np.float64],
        importance: npt.NDArray[np.float32],
        kinds: list[str],
    ) -> None:
        """Append rows for ``owner``; ``ids`` must be above every id the owner already has, ascending."""
        n = len(ids)
        if n == 0:
            return
        partition = self._partitions.get(owner)
        if partition is None:
            partition = self._partitions[owner] = _Partition(self._dims, max(_INITIAL_CAPACITY, n))
        start = partition.count
        if np.any(np.diff(ids) <= 0) or (start and ids[0] <= partition.ids[start - 1]):
            raise ValueError("ids must be appended in ascending order")
        partition.grow_to(start + n)
        end = start + n
        partition.vectors[start:end] = vectors
        partition.ids[start:end] = ids
        partition.at[start:end] = at
        partition.importance[start:end] = importance
        partition.kinds[start:end] = [self._kind_code(kind) for kind in kinds]
        partition.count = end

    def link(self, owner: str, pairs: Iterable[tuple[int, int]]) -> None:
        """Record ``(memory id, entity id)`` mentions; each entity's memory ids must arrive ascending."""
        partition = self._partitions.get(owner)
        if partition is None:
            raise ValueError("link memories after adding them")
        mentions = partition.mentions
        for memory_id, entity_id in pairs:
            ids = mentions.get(entity_id)
            if ids is None:
                ids = mentions[entity_id] = array("q")
            elif ids[-1] >= memory_id:
                raise ValueError("mentions must be linked in ascending memory id order")
            ids.append(memory_id)

    def remove(self, owner: str, ids: Collection[int]) -> int:
        """Remove the rows of ``ids`` (those ``owner`` has), compacting and zeroing freed rows; return how many."""
        partition = self._partitions.get(owner)
        if partition is None or not ids:
            return 0
        n = partition.count
        removed = np.unique(np.fromiter(ids, dtype=np.int64, count=len(ids)))
        keep = ~np.isin(partition.ids[:n], removed)
        kept = int(keep.sum())
        if kept == n:
            return 0
        if kept == 0:
            self.drop(owner)
            return n
        for values in partition.arrays():
            values[:kept] = values[:n][keep]
            values[kept:n] = 0
        partition.count = kept
        partition.unlink(removed)
        return n - kept

    def drop(self, owner: str) -> int:
        """Forget every vector of ``owner``, zeroing its arrays first; return how many there were."""
        partition = self._partitions.pop(owner, None)
        if partition is None:
            return 0
        count = partition.count
        partition.wipe()
        return count

    def search(
        self,
        owner: str,
        query: npt.NDArray[np.float32],
        now: float,
        *,
        weights: RecallWeights,
        entity_worth: Mapping[int, float],
        limit: int,
        kinds: Collection[str] | None = None,
    ) -> list[Hit]:
        """The best ``limit`` candidates of ``owner`` for a unit ``query`` vector, best first.

        ``entity_worth`` maps entity ids to what mentioning them is worth (1 for an entity named in
        the query, ``hop_decay`` for a neighbour); see :mod:`~auralink.agents.memory.scoring`.
        """
        partition = self._partitions.get(owner)
        if partition is None or partition.count == 0 or limit <= 0:
            return []
        n = partition.count
        # einsum, not `@`: numpy's own single-threaded SIMD loop. OpenBLAS's threaded sgemv was slower
        # on the shared 2-core VMs we measured, and far slower in the tail when the cores were busy.
        cosine: npt.NDArray[np.float32] = np.einsum("ij,j->i", partition.vectors[:n], query)
        graph_values = _graph_values(partition, entity_worth)
        recent = recency(partition.at[:n], now, weights.half_life)
        score = combine(cosine, graph_values, recent, partition.importance[:n], weights)
        if kinds is not None:
            codes = [self._kind_codes[kind] for kind in kinds if kind in self._kind_codes]
            score[~np.isin(partition.kinds[:n], codes)] = -np.inf
        # Select among the candidates only: argpartition degrades badly on the many equal -inf scores.
        top = np.flatnonzero(score > -np.inf)
        if len(top) > limit:
            top = top[np.argpartition(score[top], len(top) - limit)[len(top) - limit :]]
        # Best first; ties by the newer memory (the larger id).
        order = np.lexsort((-partition.ids[top], -score[top]))
        return [
            Hit(
                memory_id=int(partition.ids[row]),
                score=float(score[row]),
                similarity=float(cosine[row]),
                graph=float(graph_values[row]),
                recency=float(recent[row]),
            )
            for row in top[order]
        ]


def _graph_values(partition: _Partition, entity_worth: Mapping[int, float]) -> npt.NDArray[np.float64]:
    """Per row, ``1 - prod(1 - worth)`` over the entities the memory mentions (0 for none)."""
    n = partition.count
    memory_ids: list[npt.NDArray[np.int64]] = []
    logs: list[npt.NDArray[np.float64]] = []
    for entity, worth in entity_worth.items():
        ids = partition.mentions.get(entity)
        if not ids or worth <= 0.0:
            continue
        memory_ids.append(np.frombuffer(ids, dtype=np.int64).copy())  # copy: a live view would pin the array
        logs.append(np.full(len(ids), math.log1p(-worth) if worth < 1.0 else -math.inf))
    if not memory_ids:
        return np.zeros(n, dtype=np.float64)
    rows = np.searchsorted(partition.ids[:n], np.concatenate(memory_ids))
    missing = np.bincount(rows, weights=np.concatenate(logs), minlength=n)
    result: npt.NDArray[np.float64] = -np.expm1(missing)
    return result


def _contains(ids: array[int], memory_id: int) -> bool:
    at = bisect.bisect_left(ids, memory_id)
    return at < len(ids) and ids[at] == memory_id

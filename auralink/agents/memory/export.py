"""The export format of one identity's memory, and its strict reader.

Theory of operation
===================

:meth:`~auralink.agents.memory.MemoryStore.export_identity` writes, and
:meth:`~auralink.agents.memory.MemoryStore.import_identity` reads, one JSON-ready document with
everything the store holds about one identity::

    {
      "format": "auralink-memory-export",
      "version": 1,
      "owner": "<AuraID>",
      "embedder": {"name": "hashing-v1", "dims": 256},
      "entities":  [{"id": 1, "name": "Falcon", "provenance": {...}}],
      "relations": [{"id": 1, "subject": 2, "predicate": "works_on", "object": 1, "provenance": {...}}],
      "memories":  [{"id": 1, "kind": "decision", "text": "...", "importance": 0.9,
                     "provenance": {"session_id": "...", "speaker": "...", "at": 1800000000.0},
                     "entities": [1, 2], "embedding": "<base64 of float32 little-endian>"}]
    }

Ids are the store's, and only tie the document together (``entities`` and ``subject`` refer to
entity ids); an import assigns new ones. ``embedding`` is the stored vector, or ``null`` when the
export was made without embeddings; an import uses it when its store has the same embedder, and
embeds the text again otherwise.

:func:`parse_export` checks every field before the store writes anything: an import is all or
nothing, and a bad document raises :class:`~auralink.errors.MemoryInputError` whose ``field``
says where (``memories[3].provenance.at``).

This module is a pure core: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from auralink.agents.memory.types import (
    MemoryDraft,
    Provenance,
    check_entity_name,
    check_id,
    check_name,
)
from auralink.errors import MemoryInputError

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ParsedExport", "parse_export", "provenance_json", "vector_text"]

EXPORT_FORMAT = "auralink-memory-export"
"""The ``format`` field of an export document."""

EXPORT_VERSION = 1
"""The ``version`` field this build writes and reads."""


def provenance_json(provenance: Provenance) -> dict[str, Any]:
    """A provenance as a JSON object."""
    return {"session_id": provenance.session_id, "speaker": provenance.speaker, "at": provenance.at}


def vector_text(vector: bytes) -> str:
    """A stored vector (float32 little-endian bytes) as base64 text."""
    return base64.b64encode(vector).decode("ascii")


@dataclass(frozen=True, slots=True)
class ParsedExport:
    """A validated export document; ids are still the exporting store's."""

    owner: str
    """The owner's AuraID, as written (the store parses it)."""
    embedder: str
    """``name/dims`` of the embedder that made the vectors."""
    entities: tuple[tuple[int, str, Provenance], ...]
    """``(id, name, provenance)`` per entity."""
    relations: tuple[tuple[int, int, str, int, Provenance], ...]
    """``(id, subject id, predicate, object id, provenance)`` per relation."""
    memories: tuple[tuple[int, MemoryDraft, tuple[int, ...], npt.NDArray[np.float32] | None], ...]
    """``(id, draft, entity ids, vector or None)`` per memory."""


def _field(obj: Mapping[str, Any], name: str, where: str) -> Any:
    if not isinstance(obj, Mapping):
        raise MemoryInputError(f"{where or 'the document'} must be a JSON object", field=where or None)
    if name not in obj:
        raise MemoryInputError(f"{where + '.' if where else ''}{name} is missing", field=f"{where}.{name}".lstrip("."))
    return obj[name]


def _list(obj: Mapping[str, Any], name: str) -> list[Any]:
    value = _field(obj, name, "")
    if not isinstance(value, list):
        raise MemoryInputError(f"{name} must be a JSON array", field=name)
    return value


@contextlib.contextmanager
def _at(where: str) -> Iterator[None]:
    """Prefix the ``field`` of a MemoryInputError raised inside with ``where``, unless it already is."""
    try:
        yield
    except MemoryInputError as exc:
        if exc.field and exc.field.startswith(where):
            raise
        raise MemoryInputError(f"{where}: {exc}", field=f"{where}.{exc.field}" if exc.field else where) from exc


def _provenance(obj: Mapping[str, Any], where: str) -> Provenance:
    raw = _field(obj, "provenance", where)
    where = f"{where}.provenance"
    with _at(where):
        return Provenance(_field(raw, "session_id", where), _field(raw, "speaker", where), _field(raw, "at", where))


def parse_export(document: object) -> ParsedExport:
    """Check every field of an export document; raise MemoryInputError naming the first bad one."""
    if not isinstance(document, Mapping):
        raise MemoryInputError("an export document is a JSON object", field=None)
    if _field(document, "format", "") != EXPORT_FORMAT:
        raise MemoryInputError(f"format must be {EXPORT_FORMAT!r}; this is not a memory export", field="format")
    version = _field(document, "version", "")
    if version != EXPORT_VERSION:
        raise MemoryInputError(f"version {version!r} is not one this build reads ({EXPORT_VERSION})", "version")
    owner = _field(document, "owner", "")
    if not isinstance(owner, str):
        raise MemoryInputError("owner must be an AuraID string", field="owner")
    embedder = _field(document, "embedder", "")
    name, stored_dims = _field(embedder, "name", "embedder"), _field(embedder, "dims", "embedder")
    if not isinstance(name, str) or isinstance(stored_dims, bool) or not isinstance(stored_dims, int):
        raise MemoryInputError("embedder is {name: str, dims: int}", field="embedder")

    entities: list[tuple[int, str, Provenance]] = []
    for index, raw in enumerate(_list(document, "entities")):
        where = f"entities[{index}]"
        with _at(where):
            entities.append(
                (
                    check_id(_field(raw, "id", where)),
                    check_entity_name(_field(raw, "name", where)),
                    _provenance(raw, where),
                )
            )
    known = {entity_id for entity_id, _, _ in entities}
    if len(known) != len(entities):
        raise MemoryInputError("two entities share an id", field="entities")

    def entity_ref(value: object, where: str) -> int:
        ref = check_id(value, where)
        if ref not in known:
            raise MemoryInputError(f"{where} refers to entity {ref}, which the document does not list", field=where)
        return ref

    relations: list[tuple[int, int, str, int, Provenance]] = []
    for index, raw in enumerate(_list(document, "relations")):
        where = f"relations[{index}]"
        with _at(where):
            relations.append(
                (
                    check_id(_field(raw, "id", where)),
                    entity_ref(_field(raw, "subject", where), f"{where}.subject"),
                    check_name(_field(raw, "predicate", where), "predicate"),
                    entity_ref(_field(raw, "object", where), f"{where}.object"),
                    _provenance(raw, where),
                )
            )

    memories: list[tuple[int, MemoryDraft, tuple[int, ...], npt.NDArray[np.float32] | None]] = []
    for index, raw in enumerate(_list(document, "memories")):
        where = f"memories[{index}]"
        with _at(where):
            refs = _field(raw, "entities", where)
            if not isinstance(refs, list):
                raise MemoryInputError(f"{where}.entities must be a JSON array of entity ids", f"{where}.entities")
            draft = MemoryDraft(
                text=_field(raw, "text", where),
                provenance=_provenance(raw, where),
                kind=_field(raw, "kind", where),
                importance=_field(raw, "importance", where),
            )
            vector = _vector(_field(raw, "embedding", where), stored_dims, f"{where}.embedding")
            memories.append(
                (
                    check_id(_field(raw, "id", where)),
                    draft,
                    tuple(entity_ref(ref, f"{where}.entities") for ref in refs),
                    vector,
                )
            )
    return ParsedExport(owner, f"{name}/{stored_dims}", tuple(entities), tuple(relations), tuple(memories))


def _vector(value: object, dims: int, where: str) -> npt.NDArray[np.float32] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MemoryInputError(f"{where} must be base64 text or null", field=where)
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MemoryInputError(f"{where} is not valid base64", field=where) from exc
    if len(raw) != 4 * dims:
        raise MemoryInputError(f"{where} holds {len(raw)} bytes; {dims} float32 are {4 * dims}", field=where)
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise MemoryInputError(f"{where} holds a non-finite number", field=where)
    return vector

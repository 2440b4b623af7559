"""Recall latency of the agent memory store at 10 000 and 100 000 memories, insert throughput, file size.

Prints one JSON object on stdout and nothing else. The work is fixed: every text, entity, relation,
query and timestamp comes from ``random.Random`` with a fixed seed, so every run stores and asks
the same things; only the timings vary.

The data imitates what a co-host agent writes after meetings: sentences about 60 people, 40
projects and a few hundred topics (decisions, preferences, action items, status reports),
each naming one or two entities, over a year of wall-clock time, plus ``works_on`` /
``reports_to`` relations. Queries are questions of the same vocabulary ("What does Karl prefer?",
"Who works on Heron?"), so most name an entity and have many similar memories: the graph term
and the full scan both do real work. All memories belong to **one identity**, the one recalled: the worst
case, because the store keeps one matrix per identity and a recall scans only its owner's.
``other_identity`` shows that: a second identity with 1 000 memories in the same file.

For each size the script builds a fresh store in a temporary directory (the default
``HashingEmbedder``, 256 dimensions), inserts in batches of 500 (``remember_many``), then times
``recall(owner, query, now, limit=10)`` for each query after a warm-up, with
``time.perf_counter`` around the call: embedding the query, the graph lookups in SQLite, the
vector scan and reading the results back are all inside. It also times single ``remember``
calls, reopening the file (loading every vector), and reports the file size after a checkpoint.

The goal from issue 8 is recall p95 <= 20 ms at 100 000 memories (the architecture's bound is
300 ms); ``goal_met`` says whether this run meets it.

Usage::

    python benchmarks/memory.py            # 10k and 100k memories, 300 queries each (about 1 minute)
    python benchmarks/memory.py --quick    # 2k and 10k memories, 60 queries each, for CI smoke runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from auralink.agents.memory import MemoryDraft, MemoryStore, Provenance
from auralink.identity import Identity

GOAL_P95_MS = 20.0
"""The issue's goal for recall p95 at 100 000 memories."""

START = 1_790_000_000.0
"""Wall-clock time of the first memory (November 2026)."""

SPAN = 365 * 86_400.0
"""The memories are spread over one year."""

BATCH = 500
"""Memories per ``remember_many`` call."""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


PEOPLE = _words(
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Karl Laura Mallory Nina Oscar Peggy Quentin "
    "Rupert Sybil Trent Uma Victor Walter Xena Yusuf Zoe Amir Bea Chen Dara Emeka Farah Goran Hana Ines "
    "Jonas Kofi Lena Mateo Noor Olga Pavel Qiu Rosa Sven Tariq Ursula Vera Wen Ximena Yara Zane Arjun "
    "Bianca Cyrus Dmitri Elif Fiona Gabe Hiro"
)
PROJECTS = _words(
    "Falcon Heron Osprey Kestrel Condor Albatross Pelican Puffin Raven Swift Tern Wren Lark Finch Gannet "
    "Ibis Jay Kite Loon Merlin Nightjar Oriole Petrel Quail Robin Shrike Thrush Vireo Warbler Egret Crane "
    "Dove Eagle Flamingo Grouse Hawk Jacana Kingfisher Lapwing Magpie"
)
TOPICS = [
    f"{a} {b}"
    for a in (
        "budget",
        "launch",
        "security",
        "onboarding",
        "pricing",
        "hiring",
        "roadmap",
        "latency",
        "billing",
        "design",
        "compliance",
        "support",
        "migration",
        "analytics",
        "mobile",
        "search",
        "storage",
        "backup",
        "training",
        "marketing",
    )
    for b in ("review", "plan", "audit", "deadline", "retro", "metrics", "rollout", "budget", "demo", "workshop")
]
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next week", "the end of the month", "Q3")
PREFERENCES = (
    "morning meetings",
    "written updates over calls",
    "short standups",
    "async reviews",
    "video off in large calls",
    "agendas sent a day ahead",
    "Slack over email",
    "demos on Fridays",
    "pair programming",
    "quiet Wednesdays",
)
REASONS = ("the offsite", "a holiday", "the outage", "the audit", "a conflict", "the customer visit", "travel")
TEMPLATES = (
    ("decision", "We decided to move the {topic} for {project} to {day} because of {reason}."),
    ("decision", "{person} and {person2} agreed that {project} ships after the {topic}."),
    ("preference", "{person} prefers {preference}."),
    ("preference", "{person} asked for {preference} during the {topic}."),
    ("highlight", "{person} showed the {project} {topic} and the numbers improved by {number} percent."),
    ("highlight", "Action item: {person} will prepare the {topic} for {project} before {day}."),
    ("fact", "{person} works on {project} and reports to {person2}."),
    ("fact", "The {project} {topic} costs {number} thousand dollars per month."),
)
QUESTIONS = (
    "What did we decide about the {topic} for {project}?",
    "What does {person} prefer?",
    "Who works on {project}?",
    "When is the {project} {topic}?",
    "What are the action items for {person}?",
    "How much does {project} cost?",
)


def _owner(seed: int) -> str:
    return str(Identity.from_seed(bytes([seed]) * 32).aura_id)


def _fill(rng: random.Random, template: str) -> tuple[str, list[str]]:
    person, person2 = rng.sample(PEOPLE, 2)
    project = rng.choice(PROJECTS)
    values = {
        "person": person,
        "person2": person2,
        "project": project,
        "topic": rng.choice(TOPICS),
        "day": rng.choice(DAYS),
        "reason": rng.choice(REASONS),
        "preference": rng.choice(PREFERENCES),
        "number": rng.randint(2, 90),
    }
    named = [
        name for key, name in (("{person}", person), ("{person2}", person2), ("{project}", project)) if key in template
    ]
    return template.format(**values), named


def _drafts(rng: random.Random, count: int, sessions: int) -> list[MemoryDraft]:
    times = sorted(START + rng.random() * SPAN for _ in range(count))
    drafts = []
    for at in times:
        kind, template = rng.choice(TEMPLATES)
        text, named = _fill(rng, template)
        drafts.append(
            MemoryDraft(
                text=text,
                provenance=Provenance(f"meeting-{rng.randrange(sessions)}", rng.choice(PEOPLE), at),
                kind=kind,
                importance=round(rng.random(), 2),
                entities=tuple(named),
            )
        )
    return drafts


def _questions(rng: random.Random, count: int) -> list[str]:
    return [
        rng.choice(QUESTIONS).format(person=rng.choice(PEOPLE), project=rng.choice(PROJECTS), topic=rng.choice(TOPICS))
        for _ in range(count)
    ]


def _percentile(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _run_size(size: int, queries: int, seed: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    owner, other = _owner(1), _owner(2)
    path = workdir / f"memory-{size}.db"
    drafts = _drafts(rng, size, sessions=max(size // 20, 1))
    now = START + SPAN + 3_600.0

    with MemoryStore.open(path) as store:
        relation_at = Provenance("org-chart", "hr-bot", START)
        for person in PEOPLE:
            store.relate(owner, person, "works_on", rng.choice(PROJECTS), relation_at)
            store.relate(owner, person, "reports_to", rng.choice(PEOPLE), relation_at)
        start = time.perf_counter()
        for i in range(0, size, BATCH):
            store.remember_many(owner, drafts[i : i + BATCH])
        batched_s = time.perf_counter() - start

        singles = _drafts(rng, 500, sessions=10)
        start = time.perf_counter()
        for draft in singles:
            store.remember(
                other,
                draft.text,
                draft.provenance,
                kind=draft.kind,
                importance=draft.importance,
                entities=draft.entities,
            )
        single_s = time.perf_counter() - start
        store.remember_many(other, _drafts(rng, 500, sessions=10))  # the other identity: 1 000 memories

    start = time.perf_counter()
    store = MemoryStore.open(path)
    open_s = time.perf_counter() - start
    try:
        asked = _questions(rng, queries)
        for question in asked[:20]:  # warm-up: caches, the allocator, BLAS threads
            store.recall(owner, question, now)
        latencies, found = [], []
        for question in asked:
            start = time.perf_counter()
            results = store.recall(owner, question, now, limit=10)
            latencies.append((time.perf_counter() - start) * 1000.0)
            found.append(len(results))
        other_latencies = []
        for question in asked[: min(queries, 100)]:
            start = time.perf_counter()
            store.recall(other, question, now, limit=10)
            other_latencies.append((time.perf_counter() - start) * 1000.0)
        memories = store.count()
        index_bytes = store._index.nbytes()
    finally:
        store.close()
    return {
        "memories": size,
        "memories_in_file": memories,
        "queries": queries,
        "recall_ms": {
            "p50": round(_percentile(latencies, 50), 3),
            "p95": round(_percentile(latencies, 95), 3),
            "p99": round(_percentile(latencies, 99), 3),
            "max": round(max(latencies), 3),
            "mean": round(statistics.fmean(latencies), 3),
        },
        "results_per_query_mean": round(statistics.fmean(found), 2),
        "other_identity": {
            "memories": 1_000,
            "recall_ms_p50": round(_percentile(other_latencies, 50), 3),
            "recall_ms_p95": round(_percentile(other_latencies, 95), 3),
        },
        "insert_per_s_batched": round(size / batched_s),
        "insert_per_s_single": round(len(singles) / single_s),
        "open_s": round(open_s, 3),
        "file_bytes": _file_bytes(path),
        "file_bytes_per_memory": round(_file_bytes(path) / memories),
        "index_ram_bytes": index_bytes,
    }


def run(quick: bool) -> dict[str, Any]:
    """Do the fixed work and return the report."""
    sizes = (2_000, 10_000) if quick else (10_000, 100_000)
    queries = 60 if quick else 300
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="auralink-memory-bench-") as tmp:
        runs = [_run_size(size, queries, seed=size, workdir=Path(tmp)) for size in sizes]
    largest = runs[-1]
    return {
        "benchmark": "memory",
        "mode": "quick" if quick else "full",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "embedder": "hashing-v1/256",
        "batch": BATCH,
        "sizes": runs,
        "goal_p95_ms": GOAL_P95_MS,
        "goal_size": 100_000,
        "goal_met": None if quick else largest["recall_ms"]["p95"] <= GOAL_P95_MS,
        "elapsed_s": round(time.perf_counter() - started, 1),
        # Other work on the machine shows here; on a 2-core VM, a 1-minute load above 2 means queueing.
        "load_average_1m_before": round(load_before[0], 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2k and 10k memories, 60 queries: a smoke run")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

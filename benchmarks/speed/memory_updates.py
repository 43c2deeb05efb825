"""python -m benchmarks.speed.memory_updates [--episodes 100000] [--calls 200] [--out DIR]

How long `remember` takes, without the embedding, when it extracts facts and checks them against
what a large memory already holds. The memory is built in bulk through the store (quick to set up):
`--episodes` episodes of one agent over 1,000 sessions, spoken by 200 people whose homes and
employers changed many times (every person has 40 LIVES_IN and 40 WORKS_AT facts on record, the
older ones superseded), with sessions, IN_SESSION and MENTIONS links as `remember` writes them.
Then `--calls` turns are remembered one at a time through `ContextEngine.remember` with the default
extractor (rules + the spaCy NER model) and supersede on; most state a fact that replaces a stored
one ("I moved to ...", "I joined ... as a ...", "The status of ... is ..."), the rest are small talk.

The embedder is the real model, timed apart: each call's time minus the time spent embedding is
what this reports (p50, p95, max), with the extraction stage's share next to it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
AGENT = "assistant"
NAMESPACE = f"agent:{AGENT}"
PEOPLE = 200
SESSIONS = 1000
HISTORY = 40  # facts of each predicate on record per person
T0 = datetime(2020, 1, 1, tzinfo=UTC)


class TimedEmbedder:
    """The real embedder, with the seconds spent in it counted (so they can be left out)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return np.asarray(self.inner.embed(texts))
        finally:
            self.seconds += time.perf_counter() - started

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.inner.embed_query(text))


def _person(i: int) -> str:
    return f"Person{i:03d}"


def build_memory(engine: Any, episodes: int, batch: int = 5000) -> None:
    """`episodes` episodes with their sessions, people, places, organisations and fact histories."""
    from aesoperator.engine.memory import episode_id, session_id_of
    from aesoperator.engine.stores.base import WriteBatch
    from aesoperator.graph_schema.ids import relation_id
    from aesoperator.graph_schema.knowledge import KNOWLEDGE_SOURCE
    from aesoperator.graph_schema.models import Entity, Relation

    def knowledge(kind: str, name: str) -> Entity:
        key = "name:" + name.lower()
        return Entity(
            id=f"{KNOWLEDGE_SOURCE}:{kind.lower()}:{NAMESPACE}/{key}",
            type=kind,
            name=name,
            text=f"{name} ({kind})",
            properties={"key": key},
            source=KNOWLEDGE_SOURCE,
            namespace=NAMESPACE,
        )

    people = [knowledge("Person", _person(i)) for i in range(PEOPLE)]
    places = [knowledge("Place", f"Town{i:03d}") for i in range(HISTORY * 4)]
    orgs = [knowledge("Organization", f"Company{i:03d}") for i in range(HISTORY * 4)]
    engine.store.write(WriteBatch(entities=people + places + orgs))
    step = timedelta(minutes=5)
    ep_ids: list[str] = []
    pending_entities: list[Entity] = []
    pending_relations: list[Relation] = []

    def flush() -> None:
        engine.store.write(WriteBatch(entities=list(pending_entities), relations=list(pending_relations)))
        pending_entities.clear()
        pending_relations.clear()

    for n in range(episodes):
        speaker = _person(n % PEOPLE)
        session = f"s{n % SESSIONS:04d}"
        at = T0 + n * step
        content = f"{speaker} talked about errands, weather and plans, note {n}."
        eid = episode_id(f"bulk/{n}", AGENT, NAMESPACE)
        ep_ids.append(eid)
        sid = session_id_of(AGENT, session, NAMESPACE)
        pending_entities.append(
            Entity(
                id=eid,
                type="Episode",
                name=f"{speaker}: {content[:60]}",
                text=f"{speaker}: {content}",
                properties={"agent_id": AGENT, "session_id": session, "metadata": {"speaker": speaker}, "mentions": []},
                source="memory",
                namespace=NAMESPACE,
                valid_from=at,
            )
        )
        if n < SESSIONS:
            pending_entities.append(
                Entity(
                    id=sid,
                    type="Session",
                    name=f"session {session}",
                    text=f"Session {session} of agent {AGENT}",
                    properties={"agent_id": AGENT, "session_id": session},
                    source="memory",
                    namespace=NAMESPACE,
                )
            )
        pending_relations.append(Relation(type="IN_SESSION", src=eid, dst=sid, source="memory", namespace=NAMESPACE))
        pending_relations.append(
            Relation(type="MENTIONS", src=eid, dst=people[n % PEOPLE].id, source="memory", namespace=NAMESPACE)
        )
        if len(pending_entities) >= batch:
            flush()
    flush()
    # each person's homes and employers over time, evidenced by their episodes, older ones superseded
    facts: list[Relation] = []
    for p, person in enumerate(people):
        own = ep_ids[p::PEOPLE]
        for predicate, targets in (("LIVES_IN", places), ("WORKS_AT", orgs)):
            chain = []
            for h in range(HISTORY):
                evidence = own[(h * len(own)) // HISTORY]
                dst = targets[(p + h) % len(targets)].id
                chain.append(
                    Relation(
                        id=relation_id(predicate, person.id, dst, evidence),
                        type=predicate,
                        src=person.id,
                        dst=dst,
                        properties={"fact": True, "evidence": [evidence], "evidence_text": "bulk"},
                        source="memory",
                        namespace=NAMESPACE,
                        valid_from=T0 + timedelta(days=h) + timedelta(seconds=p),
                    )
                )
            for old, new in itertools.pairwise(chain):
                old.valid_to = new.valid_from
                old.properties["superseded_by"] = new.id
            facts.extend(chain)
    for start in range(0, len(facts), batch):
        engine.store.write(WriteBatch(relations=facts[start : start + batch]))


TURNS = (
    "I just moved to Newtown{i}.",
    "I joined Firm{i} as a senior analyst.",
    "The status of the warehouse project {i} is blocked.",
    "Thanks, that's really helpful!",
    "I live in Town{j:03d} now, close to the park.",
    "We had a long meeting about the budget today, nothing decided.",
    "I work at Company{j:03d} as a team lead.",
    "The weather is terrible, it has rained all week.",
)


class TimedResolution:
    """Counts the seconds the knowledge stage spends resolving entities after a remember."""

    def __init__(self, knowledge: Any) -> None:
        self.seconds = 0.0
        inner = knowledge.resolve

        def resolve(namespaces: Any, new_ids: Any = None) -> int:
            started = time.perf_counter()
            try:
                return int(inner(namespaces, new_ids))
            finally:
                self.seconds += time.perf_counter() - started

        knowledge.resolve = resolve


def measure(engine: Any, embedder: TimedEmbedder, calls: int, episodes: int) -> dict[str, Any]:
    knowledge = engine.knowledge
    resolving = TimedResolution(knowledge)
    rows: list[dict[str, float]] = []
    start = T0 + episodes * timedelta(minutes=5)
    for i in range(calls):
        text = TURNS[i % len(TURNS)].format(i=i, j=(i * 7) % (HISTORY * 4))
        speaker = _person(i % PEOPLE)
        embedded, extracted, resolved = embedder.seconds, getattr(knowledge, "seconds", 0.0), resolving.seconds
        began = time.perf_counter()
        engine.remember(
            text,
            agent_id=AGENT,
            session_id=f"live{i % 20}",
            speaker=speaker,
            created_at=start + timedelta(minutes=i),
        )
        total = time.perf_counter() - began
        embed = embedder.seconds - embedded
        rows.append(
            {
                "total_ms": total * 1000,
                "embed_ms": embed * 1000,
                "without_embedding_ms": (total - embed) * 1000,
                "extraction_ms": (getattr(knowledge, "seconds", 0.0) - extracted) * 1000,
                "resolution_ms": (resolving.seconds - resolved) * 1000,
                "facts_and_store_ms": (total - embed - (resolving.seconds - resolved)) * 1000,
            }
        )
    warm = rows[min(5, len(rows) - 1) :]  # the first calls load the NER model and warm caches

    def pct(key: str, q: float) -> float:
        values = sorted(r[key] for r in warm)
        return values[min(len(values) - 1, int(q * len(values)))]

    return {
        key: {
            "p50": round(pct(key, 0.5), 2),
            "p95": round(pct(key, 0.95), 2),
            "max": round(max(r[key] for r in warm), 2),
        }
        for key in (
            "without_embedding_ms",
            "facts_and_store_ms",
            "extraction_ms",
            "resolution_ms",
            "embed_ms",
            "total_ms",
        )
    } | {
        "calls_measured": len(warm),
        "mean_without_embedding_ms": round(statistics.mean(r["without_embedding_ms"] for r in warm), 2),
    }


def main(argv: list[str] | None = None) -> int:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.engine.embeddings import Embedder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    embedder = TimedEmbedder(Embedder())
    with tempfile.TemporaryDirectory(prefix="aesop-mu-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        with ContextEngine.open(settings=settings, embedder=embedder) as engine:  # type: ignore[arg-type]
            began = time.perf_counter()
            build_memory(engine, args.episodes)
            build_s = time.perf_counter() - began
            stats = engine.stats()
            result = measure(engine, embedder, args.calls, args.episodes)
    command = f"python -m benchmarks.speed.memory_updates --episodes {args.episodes} --calls {args.calls}"
    payload = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "store": {"entities": stats.entities, "relations": stats.relations, "build_seconds": round(build_s, 1)},
        "remember": result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed-memory-updates.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    r = result
    text = (
        "# `remember` with fact extraction and supersede checks on a large memory\n\n"
        f"`{command}` ({payload['when']}; embedded store of {stats.entities:,} entities and "
        f"{stats.relations:,} relations, built in bulk in {build_s:.0f} s; {r['calls_measured']} calls measured)\n\n"
        "| ms per remember | p50 | p95 | max |\n|---|---|---|---|\n"
        + "".join(
            f"| {label} | {r[key]['p50']} | {r[key]['p95']} | {r[key]['max']} |\n"
            for label, key in (
                ("without the embedding", "without_embedding_ms"),
                ("without the embedding and entity resolution", "facts_and_store_ms"),
                ("of which extraction (rules + NER)", "extraction_ms"),
                ("of which entity resolution (only when new entities appear)", "resolution_ms"),
                ("embedding (left out above)", "embed_ms"),
                ("total", "total_ms"),
            )
        )
    )
    (args.out / "speed-memory-updates.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

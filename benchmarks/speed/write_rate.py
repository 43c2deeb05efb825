"""The ingest-without-embedding measurement: entities and relations through `store.write` in
batches, timing only the write calls. Used by the `scale` job and by `benchmarks.speed.writes`."""

from __future__ import annotations

import time
from typing import Any

from benchmarks import datagen
from benchmarks.speed.measure import PhaseMeter, progress, summarize


def measure_writes(
    store: Any, stream: datagen.GraphStream, size: int, batch_size: int, meter: PhaseMeter
) -> dict[str, Any]:
    """Write the first `size` entities of `stream` (with their relations) to `store` and report
    rows per second of write time, per batch and for the first and last tenth of the batches."""
    from aesoperator.engine.stores.base import WriteBatch

    write_s, write_cpu, gen_s, entities, relations = 0.0, 0.0, 0.0, 0, 0
    batch_ms: list[float] = []
    batch_rows: list[int] = []
    with meter.phase("write"), progress() as bar:
        task = bar.add_task(f"write {size:,} entities → {store.backend}", total=size)
        t_wall = time.perf_counter()
        t_gen = time.perf_counter()
        for ents, rels in datagen.batches(stream.items(size), batch_size):
            gen_s += time.perf_counter() - t_gen
            t0, c0 = time.perf_counter(), time.process_time()
            store.write(WriteBatch(entities=ents, relations=rels))
            dt = time.perf_counter() - t0
            write_cpu += time.process_time() - c0
            write_s += dt
            batch_ms.append(dt * 1000)
            batch_rows.append(len(ents) + len(rels))
            entities += len(ents)
            relations += len(rels)
            bar.advance(task, len(ents))
            t_gen = time.perf_counter()
        wall = time.perf_counter() - t_wall
    rows = entities + relations
    tenth = max(1, len(batch_ms) // 10)
    # CPU seconds spent on the writes: this process's, plus the Neo4j server's over the phase
    # (it is idle while the next batch is generated). On a shared machine wall time stretches
    # with other work; CPU time much less so.
    server_cpu = meter.phases["write"].cpu_server_cores or 0.0
    write_cpu_total = write_cpu + server_cpu * meter.phases["write"].seconds
    return {
        "path": f"store.write(WriteBatch) in batches of {batch_size} rows (entities + relations)",
        "entities": entities,
        "relations": relations,
        "rows": rows,
        "batches": len(batch_ms),
        "write_seconds": round(write_s, 3),
        "generate_seconds": round(gen_s, 3),
        "wall_seconds": round(wall, 3),
        "rows_per_s": round(rows / write_s, 1),
        "entities_per_s": round(entities / write_s, 1),
        "wall_rows_per_s": round(rows / wall, 1),
        "cpu_seconds": round(write_cpu_total, 3),
        "rows_per_cpu_s": round(rows / write_cpu_total, 1) if write_cpu_total else None,
        "batch_ms": summarize(batch_ms),
        "first_tenth_rows_per_s": round(sum(batch_rows[:tenth]) / (sum(batch_ms[:tenth]) / 1000), 1),
        "last_tenth_rows_per_s": round(sum(batch_rows[-tenth:]) / (sum(batch_ms[-tenth:]) / 1000), 1),
    }

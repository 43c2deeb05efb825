"""What the audit log costs each MCP call: `AuditLog.append` (records written and fsynced, signed
checkpoint rewritten and fsynced) on fresh logs in a temporary directory on the data disk's file
system, with 1, 4 and 16 callers appending at once.

Three ways of writing, measured in alternating rounds of the same run so that the machine's load
falls on all alike: `one per write` (`max_group=1, checkpoint_before_answer=True`: every record its
own write, fsync and fsynced checkpoint before the caller returns, as before group commit), `group
commit, checkpoint first` (records that arrive together share the write and both fsyncs) and
`group commit` (the default: the same, and the caller returns once its record is fsynced while the
checkpoint is written behind it, under the log's lock). For each: the latency of one `append` as its
caller sees it (p50/p95), the wall time per record with all callers busy (what the log costs each
call at that concurrency) and the log fsyncs per record.

    python -m benchmarks.speed.audit_append [--records 192] [--rounds 4] [--callers 1,4,16]
                                            [--dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.speed.measure import progress, summarize

MODES: dict[str, dict[str, Any]] = {  # AuditLog options
    "one per write": {"max_group": 1, "checkpoint_before_answer": True},
    "group commit, checkpoint first": {"checkpoint_before_answer": True},
    "group commit": {},
}


def _round(log: Any, callers: int, records: int, times: list[float]) -> float:
    """`records` appends split over `callers` threads started together; returns the wall time (s)."""
    start = threading.Barrier(callers + 1)
    per_caller = records // callers

    def caller(c: int) -> None:
        start.wait()
        for i in range(per_caller):
            t0 = time.perf_counter()
            log.append(principal=f"bench{c}", tool="search_nodes", arguments={"query": f"q{i}"}, decision="allow")
            times.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from aesoperator.security.audit import AuditLog

    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.audit_append", description=__doc__)
    p.add_argument("--records", type=int, default=192, help="appends per round, split over the callers")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of each mode")
    p.add_argument("--callers", default="1,4,16", help="comma-separated numbers of concurrent callers")
    p.add_argument("--dir", type=Path, default=None, help="where the temporary logs go (default: the system temp dir)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    counts = [int(c) for c in args.callers.split(",") if c.strip()]
    times: dict[tuple[str, int], list[float]] = {(m, c): [] for m in MODES for c in counts}
    wall: dict[tuple[str, int], float] = dict.fromkeys(times, 0.0)
    written: dict[tuple[str, int], int] = dict.fromkeys(times, 0)
    commits: dict[tuple[str, int], int] = dict.fromkeys(times, 0)
    with tempfile.TemporaryDirectory(prefix="aesop-audit-", dir=args.dir) as work:
        logs = {}
        for m, (mode, options) in enumerate(MODES.items()):
            for c in counts:
                logs[mode, c] = AuditLog.in_data_dir(Path(work) / f"mode{m}-{c}", **options)
        with progress() as bar:
            task = bar.add_task("audit appends", total=args.rounds * len(counts) * len(MODES))
            for r in range(args.rounds):
                order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
                for c in counts:
                    for mode in order:
                        log = logs[mode, c]
                        before = log.commits
                        wall[mode, c] += _round(log, c, args.records, times[mode, c])
                        log.settle()  # the next round starts with no checkpoint pending
                        written[mode, c] += (args.records // c) * c
                        commits[mode, c] += log.commits - before
                        bar.advance(task)
        for log in logs.values():
            if not log.verify().ok:
                raise SystemExit(f"the benchmark's log {log.path} does not verify")
            log.close()
    result: dict[str, Any] = {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rounds": args.rounds,
        "records_per_round": args.records,
    }
    for mode in MODES:
        for c in counts:
            result[f"{mode}, {c} callers"] = {
                "append_ms": summarize(times[mode, c]),
                "wall_ms_per_record": round(wall[mode, c] * 1000 / max(1, written[mode, c]), 3),
                "fsyncs_per_record": round(commits[mode, c] / max(1, written[mode, c]), 3),
            }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

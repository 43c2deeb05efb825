"""What the audit log costs each MCP call: `AuditLog.append` (record write + fsync, signed
checkpoint + fsync) on a fresh log in a temporary directory on the data disk's file system.

    python -m benchmarks.speed.audit_append [--records 200] [--dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.speed.measure import progress, summarize


def main(argv: list[str] | None = None) -> int:
    from aesoperator.security.audit import AuditLog

    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.audit_append", description=__doc__)
    p.add_argument("--records", type=int, default=200)
    p.add_argument("--dir", type=Path, default=None, help="where the temporary log goes (default: the system temp dir)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aesop-audit-", dir=args.dir) as work:
        log = AuditLog.in_data_dir(Path(work))
        with progress() as bar:
            task = bar.add_task("audit appends", total=args.records)
            for i in range(args.records):
                t0 = time.perf_counter()
                log.append(principal="bench", tool="search_nodes", arguments={"query": f"q{i}"}, decision="allow")
                times.append((time.perf_counter() - t0) * 1000)
                bar.advance(task)
    result = {"append_ms": summarize(times)}
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

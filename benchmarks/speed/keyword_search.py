"""The keyword index's search on a kept store, per checkout: time and answers.

    python -m benchmarks.speed.keyword_search --data-dir DIR [--tree A --tree B] [--rounds 3]
                                              [--questions 40] [--k 50] [--out FILE]

`DIR` is a kept embedded store whose keyword index was saved (the speed suite's
`scale-embedded-1m/store` kept with `--keep-data`). Each checkout runs in a new process that loads
the saved keyword index (nothing is rebuilt), searches the first `--questions` questions of the
HotpotQA, MuSiQue and SciFact splits ten times to warm up, then times every question `--rounds`
times as the search's keyword channel asks (`k`, extracted entities left out). Per checkout and
round: p50, p95 and mean milliseconds; and a digest of all answers (ids and scores), equal across
checkouts exactly when their answers are.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.quality.datasets import load_all
from benchmarks.speed.measure import machine_info, run_in_tree, write_report
from benchmarks.speed.runner import REPO_ROOT

# Run in the checkout under test.
_SEARCH = """
import hashlib, json, sys, time
from pathlib import Path
import numpy as np
from aesoperator.engine.keyword_index import KeywordIndex

index_dir, questions_file, rounds, k = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
questions = json.loads(questions_file.read_text())
index = KeywordIndex(index_dir)
started = time.perf_counter()
index.load()
load_s = time.perf_counter() - started
for question in questions[:10]:
    index.search(question, k, include_extracted=False)
runs, answers = [], []
for _ in range(rounds):
    times = []
    answers = []
    for question in questions:
        t0 = time.perf_counter()
        answers.append(index.search(question, k, include_extracted=False))
        times.append((time.perf_counter() - t0) * 1000)
    runs.append({
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "mean_ms": round(float(np.mean(times)), 3),
    })
print(json.dumps({
    "documents": len(index),
    "load_seconds": round(load_s, 2),
    "rounds": runs,
    "answers_digest": hashlib.sha256(json.dumps(answers).encode()).hexdigest()[:16],
}))
"""


def saved_keyword_index(data_dir: Path) -> Path:
    """The folder of the keyword index a data dir saved (`index/keywords-*`)."""
    found = sorted((data_dir / "index").glob("keywords-*"))
    if not found:
        raise SystemExit(f"{data_dir} has no saved keyword index (index/keywords-*)")
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a kept embedded store with a saved keyword index")
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to measure (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=40, help="questions per dataset")
    parser.add_argument("--k", type=int, default=50, help="hits per search (the keyword channel asks for 50)")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "evaldata")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/keyword-search-latest.json"))
    args = parser.parse_args(argv)
    index_dir = saved_keyword_index(args.data_dir)
    datasets, _notes = load_all(args.data, ["hotpotqa", "musique", "scifact"])
    questions = [q.text for ds in datasets for q in ds.questions[: args.questions]]
    if not questions:
        raise SystemExit(f"no questions found under {args.data}")
    runs: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(questions, handle)
    try:
        for tree in args.tree or [REPO_ROOT]:
            print(f"searching the keyword index with {tree} ...", flush=True)
            result = run_in_tree(
                tree, _SEARCH, str(index_dir), handle.name, str(args.rounds), str(args.k), what="keyword search"
            )
            result["tree"] = str(tree)
            runs.append(result)
            print(result, flush=True)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    report = {"machine": machine_info(), "data_dir": str(args.data_dir), "questions": len(questions), "runs": runs}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

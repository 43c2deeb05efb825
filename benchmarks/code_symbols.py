"""Throughput of the code-symbol parser on a source tree (default: this repository).

    .venv/bin/python -m benchmarks.code_symbols [ROOT ...] [--repeat 3]

Reads every file with a supported extension once (outside the timing), then parses them `--repeat`
times and reports the best run's files/s and MB/s, overall and per language, single-threaded."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from aesoperator.ingest.extract.code import language_for_path, parse_code

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "target", "build", "dist", ".mypy_cache"}


def collect(roots: list[Path]) -> list[tuple[str, str, bytes]]:
    """(language, repository-relative path, content) of every supported file under the roots."""
    files: list[tuple[str, str, bytes]] = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or _SKIP_DIRS.intersection(path.relative_to(root).parts):
                continue
            language = language_for_path(path.name)
            if language is not None:
                files.append((language, path.relative_to(root).as_posix(), path.read_bytes()))
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    files = collect(args.roots)
    total_bytes = sum(len(content) for _, _, content in files)
    best: dict[str, float] = {}
    symbols: Counter[str] = Counter()
    links: Counter[str] = Counter()
    errors = 0
    for run in range(args.repeat):
        seconds: dict[str, float] = dict.fromkeys(sorted({f[0] for f in files}), 0.0)
        for language, rel, content in files:
            start = time.perf_counter()
            result = parse_code(content, language, rel)
            seconds[language] += time.perf_counter() - start
            if run == 0:
                symbols[language] += len(result.symbols)
                links[language] += len(result.links)
                errors += result.has_error
        for language, value in seconds.items():
            best[language] = min(best.get(language, value), value)

    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for language, _, content in files:
        sizes[language] += len(content)
        counts[language] += 1
    print(f"{len(files)} files, {total_bytes / 1e6:.2f} MB, best of {args.repeat}, one thread")
    print(f"{'language':<12}{'files':>7}{'MB':>8}{'files/s':>10}{'MB/s':>8}{'symbols':>9}{'links':>9}")
    for language in sorted(counts):
        secs = best[language]
        print(
            f"{language:<12}{counts[language]:>7}{sizes[language] / 1e6:>8.2f}{counts[language] / secs:>10.0f}"
            f"{sizes[language] / 1e6 / secs:>8.2f}{symbols[language]:>9}{links[language]:>9}"
        )
    secs = sum(best.values())
    print(
        f"{'all':<12}{len(files):>7}{total_bytes / 1e6:>8.2f}{len(files) / secs:>10.0f}{total_bytes / 1e6 / secs:>8.2f}"
        f"{sum(symbols.values()):>9}{sum(links.values()):>9}"
    )
    print(f"files with syntax errors or limits hit: {errors}")


if __name__ == "__main__":
    main()

"""Speed benchmark: `python -m benchmarks.speed --sizes 10k,100k [--backends embedded,neo4j]`.

Measures the embedding model's raw encode rate and the ingest rate with embedding on the same
texts, the ingest rate without embedding at each graph size, query latency per retrieval stage,
peak memory per phase, and search latency beside the reference memory server at 1k and 10k
entities (`--memory-server-sizes`). See benchmarks/README.md for what each number means.
"""

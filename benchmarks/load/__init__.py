"""Load test of the MCP server over authenticated streamable HTTP on loopback.

`python -m benchmarks.load` builds a small graph from the evaluation corpora, starts the engine's
server (`aesoperator.serve.server.build_server`) behind bearer-token authentication on 127.0.0.1
in a child process, and times the `search` tool with 1, 8 and 32 concurrent clients, with the
per-principal rate limit off and on. See `benchmarks/load/README.md`.
"""

"""Soak: `python -m benchmarks.soak` runs mixed reads and writes from several MCP clients against
`aesop serve --http` for a long time (30 minutes by default) and reports errors, the server's
memory growth, latency drift per tool and whether the audit log still verifies."""

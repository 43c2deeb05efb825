"""Ingest throughput from the filesystem and git MCP servers: `python -m benchmarks.ingest_mcp`."""

"""Entry point: `python -m benchmarks.ingest_mcp --help`."""

from benchmarks.ingest_mcp.runner import main

raise SystemExit(main())

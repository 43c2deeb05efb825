"""Entry point: `python -m benchmarks.speed --help`."""

from benchmarks.speed.runner import main

raise SystemExit(main())

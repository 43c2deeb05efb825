"""Knowledge extraction and entity resolution measurements (see benchmarks/README.md)."""

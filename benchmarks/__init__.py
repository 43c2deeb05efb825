"""Speed and quality measurements of the engine (not part of the installed package)."""

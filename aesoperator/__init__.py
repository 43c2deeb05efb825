"""aesoperator: a knowledge-graph context engine for AI agents."""

__version__ = "0.1.0"

"""The HTTP edge both MCP servers share: the bearer-token gate (`gate.py`), the Protected Resource
Metadata document it serves (`resource_metadata.py`), and loopback-first listening sockets with a
uvicorn runner (`listener.py`)."""

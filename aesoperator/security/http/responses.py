"""JSON answers sent straight from ASGI (refusals before a request reaches the MCP server)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.types import Message, Send


def jsonrpc_error(code: int, message: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message, "data": dict(data)}}


async def send_json(
    send: Send, status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})

"""The stdio transport: newline-delimited JSON-RPC over a child process, with bounded messages."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from aesoperator.ingest.client.errors import (
    clip,
)

log = logging.getLogger(__name__)


# A JSON-RPC error code of our own (in the implementation-defined range) that the stdio transport
# answers on the server's behalf when a response was too large to be read.
RESPONSE_TOO_LARGE: Final = -32099
STOP_GRACE_SECONDS: Final = 2.0  # stdin closed -> SIGTERM -> SIGKILL, each this long
_HEAD_ID = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")')
_TAIL_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")\s*\}\s*$')


class MalformedMessage(Exception):
    """The server wrote a line to stdout that is not a JSON-RPC message."""


class OversizeMessage(Exception):
    """The server wrote a message over the size limit that could not be tied to a request."""


class ServerProcess:
    """The stdio server process of one session: how it ended and the tail of its stderr."""

    def __init__(self) -> None:
        self.process: anyio.abc.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.closed = anyio.Event()  # stdout reached end of file
        self.hung = False  # skip the polite shutdown: the server stopped answering

    def exit_description(self) -> str | None:
        code = self.process.returncode if self.process is not None else None
        if code is None:
            return None
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"the server process {how}" + (f" (last stderr line: {clip(last, 300)})" if last else "")


def _oversize_item(head: bytes, tail: bytes, size: int, limit: int) -> SessionMessage | Exception:
    """A response over the limit becomes a JSON-RPC error for its request when its id can be read
    from the first or last bytes (every common server puts it there); otherwise a stream fault."""
    match = None if b'"method"' in head else (_HEAD_ID.match(head) or _TAIL_ID.search(tail))
    if match is None:
        return OversizeMessage(f"a message of {size} bytes is over the {limit}-byte limit")
    request_id: int | str = json.loads(match.group(1))
    error = types.ErrorData(code=RESPONSE_TOO_LARGE, message="response too large", data={"bytes": size})
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _parse_line(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError:
        return MalformedMessage(repr(clip(line[:300].decode("utf-8", "replace"), 200)))


async def _stop_process(process: anyio.abc.Process, hung: bool) -> None:
    """Close stdin, give the server a moment to exit, then SIGTERM and SIGKILL its process group.
    A server that stopped answering gets no moment and a shorter SIGTERM grace."""
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    with anyio.move_on_after(0.1 if hung else STOP_GRACE_SECONDS):
        while process.returncode is None:
            await anyio.sleep(0.02)
    if process.returncode is None:
        if sys.platform == "win32":  # pragma: no cover
            process.kill()
        else:
            from mcp.os.posix.utilities import terminate_posix_process_tree

            await terminate_posix_process_tree(process, 0.5 if hung else STOP_GRACE_SECONDS)
        with anyio.move_on_after(STOP_GRACE_SECONDS):
            while process.returncode is None:
                await anyio.sleep(0.02)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.aclose()


@asynccontextmanager
async def stdio_transport(
    argv: list[str], env: dict[str, str], cwd: str | None, max_message_bytes: int, state: ServerProcess, name: str
) -> AsyncIterator[tuple[Any, Any]]:
    """Newline-delimited JSON-RPC over a child process's stdin/stdout, with bounded messages.

    A line longer than `max_message_bytes` is skipped as it streams in (never held whole) and its
    request answered with a RESPONSE_TOO_LARGE error; stderr is kept as a short tail for error
    messages. On exit the process group is stopped, even when the caller is cancelled.
    """
    process = await anyio.open_process(argv, env=env, cwd=cwd, start_new_session=True)
    state.process = process
    read_send: MemoryObjectSendStream[SessionMessage | Exception]
    read_recv: MemoryObjectReceiveStream[SessionMessage | Exception]
    read_send, read_recv = anyio.create_memory_object_stream(0)
    write_send: MemoryObjectSendStream[SessionMessage]
    write_recv: MemoryObjectReceiveStream[SessionMessage]
    write_send, write_recv = anyio.create_memory_object_stream(0)

    async def read_stdout() -> None:
        assert process.stdout is not None
        buf = bytearray()
        scanned = 0  # bytes of buf known to hold no newline
        dropping = False
        dropped = 0
        head = b""
        tail = bytearray()
        try:
            async with read_send:
                while True:
                    try:
                        chunk = await process.stdout.receive(1 << 20)
                    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                        break
                    if dropping:
                        newline = chunk.find(b"\n")
                        if newline < 0:
                            dropped += len(chunk)
                            tail = (tail + chunk)[-512:]
                            continue
                        dropped += newline
                        tail = (tail + chunk[:newline])[-512:]
                        await read_send.send(_oversize_item(head, bytes(tail), dropped, max_message_bytes))
                        dropping = False
                        chunk = chunk[newline + 1 :]
                    buf += chunk
                    start = 0
                    while (newline := buf.find(b"\n", max(start, scanned))) >= 0:
                        line = bytes(buf[start:newline]).strip()
                        start = newline + 1
                        scanned = 0
                        if len(line) > max_message_bytes:
                            await read_send.send(_oversize_item(line[:512], line[-512:], len(line), max_message_bytes))
                        elif line:
                            await read_send.send(_parse_line(line))
                    del buf[:start]
                    scanned = len(buf)
                    if len(buf) > max_message_bytes:
                        dropping, dropped, head, tail = True, len(buf), bytes(buf[:512]), bytearray(buf[-512:])
                        buf = bytearray()
                        scanned = 0
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the session is gone
        finally:
            state.closed.set()

    async def read_stderr() -> None:
        assert process.stderr is not None
        partial = b""
        with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            while True:
                chunk = await process.stderr.receive(65536)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()[-4096:]
                for raw in lines:
                    text = raw.decode("utf-8", "replace").rstrip()
                    state.stderr_tail.append(text[:1000])
                    log.debug("source %r stderr: %s", name, text[:1000])

    async def write_stdin() -> None:
        assert process.stdin is not None
        try:
            async with write_recv:
                async for message in write_recv:
                    payload = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(payload.encode("utf-8"))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()  # the server cannot hear us: let the session see the end

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_stdout)
        tg.start_soon(read_stderr)
        tg.start_soon(write_stdin)
        try:
            yield read_recv, write_send
        finally:
            with anyio.CancelScope(shield=True):
                read_recv.close()
                write_send.close()
                await _stop_process(process, state.hung)
            tg.cancel_scope.cancel()

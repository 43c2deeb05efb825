"""A local HTTP server (127.0.0.1) that answers `POST /v1/chat/completions` with recorded answers
from tests/fixtures/llm, in the order a test queues them, and keeps the requests it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "llm" / "chat_completions.json").read_text())


class ReplayState:
    def __init__(self) -> None:
        self.queue: list[str] = []
        self.default = "ok"
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next_answer(self) -> dict[str, Any]:
        with self.lock:
            name = self.queue.pop(0) if self.queue else self.default
        return dict(RECORDED[name])


@contextmanager
def llm_replay_server() -> Iterator[tuple[str, ReplayState]]:
    state = ReplayState()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                state.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            answer = state.next_answer()
            time.sleep(float(answer.get("delay_s", 0)))
            payload = json.dumps(answer["body"]).encode()
            try:
                self.send_response(int(answer["status"]))
                for key, value in answer.get("headers", {}).items():
                    self.send_header(key, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                pass

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()

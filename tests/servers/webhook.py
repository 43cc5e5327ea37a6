"""A real HTTP receiver on a free loopback port that records every request (webhooks, robots, SMS
gateways) and can be told to fail the first N requests of a path, or every request of a path for a
while (answering 500, or a 4xx), or to hold a path's answers back (a sender then waits mid-call)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_next: dict[str, int] = {}  # path -> how many requests answer 500
        self.failing: dict[str, tuple[float, int]] = {}  # path -> (until time.monotonic(), HTTP status)
        self.failed: list[Received] = []  # requests answered with a failure
        self.holding: dict[str, threading.Event] = {}  # path -> answered once the event is set
        # path -> canned HTTP 200 body, for providers that refuse inside a 200 answer (SMS/voice APIs)
        self.answers: dict[str, bytes] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the HTTPS endpoints the gateway posts to

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Received(self.path, dict(self.headers), body, time.time())
                with receiver._lock:
                    status = 200
                    until, failing_status = receiver.failing.get(self.path, (0.0, 0))
                    if time.monotonic() < until:
                        status = failing_status
                    elif receiver.fail_next.get(self.path, 0):
                        receiver.fail_next[self.path] -= 1
                        status = 500
                    (receiver.received if status == 200 else receiver.failed).append(request)
                held = receiver.holding.get(self.path)
                if held is not None:
                    held.wait(60)
                failing = status != 200
                # Answer like the chat robots do (HTTP 200 with a zero error code in JSON).
                answer = b'{"errcode":0,"errmsg":"ok","code":0}' if not failing else b'{"errcode":500}'
                if not failing and self.path in receiver.answers:
                    answer = receiver.answers[self.path]
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):  # the sender died or gave up meanwhile
                    self.close_connection = True

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail_for(self, path: str, seconds: float, status: int = 500) -> None:
        """Answer every request of ``path`` with ``status`` for the next ``seconds``."""
        with self._lock:
            self.failing[path] = (time.monotonic() + seconds, status)

    def hold(self, path: str) -> threading.Event:
        """Record but do not answer requests of ``path`` until the returned event is set."""
        self.holding[path] = threading.Event()
        return self.holding[path]

    def failed_paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.failed]

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        for held in self.holding.values():
            held.set()
        self._server.shutdown()
        self._server.server_close()

"""A stand-in for SendGrid's ``POST /v3/mail/send`` on 127.0.0.1, to test the real SendGridSender.

It answers from a script (``standin.script(bad_request(), accepted())``), then accepts everything,
and records every request. Use the ``sendgrid_standin`` fixture (import it into the test module) or
``with SendGridStandIn() as standin:``; either way the server stops when the test ends.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

MAIL_SEND_PATH = "/v3/mail/send"


@dataclass(frozen=True)
class Answer:
    status: int = 202
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # seconds to wait before answering: lets a test overlap requests or trip the client's timeout
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _errors(status: int, message: str, field_name: str | None = None) -> Answer:
    body = {"errors": [{"message": message, "field": field_name, "help": None}]}
    return Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def accepted(message_id: str | None = None, delay: float = 0.0) -> Answer:
    """What SendGrid answers when it takes the email; ``None`` numbers the ids itself."""
    return Answer(202, headers={"X-Message-Id": message_id} if message_id else {}, delay=delay)


def bad_request(
    message: str = "The to email does not contain a valid address.",
    field_name: str = "personalizations.0.to.0.email",
) -> Answer:
    return _errors(400, message, field_name)


def too_many_requests() -> Answer:
    return _errors(429, "too many requests")


def server_error() -> Answer:
    return _errors(500, "Internal server error")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: SendGridStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (timeout test) leaves a broken pipe: not worth a traceback
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.standin._record(
            RecordedRequest("POST", self.path, dict(self.headers.items()), body)
        )
        if self.path != MAIL_SEND_PATH:
            answer = _errors(404, f"no such resource: {self.path}")
        time.sleep(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SendGridStandIn:
    """Listens on 127.0.0.1 only, on a free port; ``host`` is what SendGridSender needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: deque[Answer] = deque()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        # a short poll interval keeps teardown (shutdown waits for one poll) quick
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order; afterwards accept everything."""
        with self._lock:
            self._answers.extend(answers)

    def _record(self, request: RecordedRequest) -> Answer:
        with self._lock:
            self._requests.append(request)
            answer = self._answers.popleft() if self._answers else accepted()
            if answer.status == 202 and "X-Message-Id" not in answer.headers:
                headers = {**answer.headers, "X-Message-Id": f"standin-{next(self._ids)}"}
                answer = Answer(answer.status, answer.body, headers, answer.delay)
            return answer

    def start(self) -> SendGridStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SendGridStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(name="sendgrid_standin")
def sendgrid_standin_fixture() -> Iterator[SendGridStandIn]:
    with SendGridStandIn() as standin:
        yield standin

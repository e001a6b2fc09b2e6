"""A stand-in for SendGrid's ``POST /v3/mail/send`` on 127.0.0.1, to test the real SendGridSender.

It answers from a script (``standin.script(bad_request(), accepted())``), then accepts everything,
and records every request with the status it got. Trouble on demand:
- ``reject(address)``: every email to that address gets a 400 (a bounce);
- ``flaky(rate, seed)``: about ``rate`` of the emails get a 429, 500 or 503 until ``steady()``.
  Whether an email's n-th attempt fails is drawn from ``random.Random`` seeded with the seed, the
  email's dedup key and n, so a run fails the same attempts whatever order the worker's threads
  send in (``key_label`` maps a key to what is hashed: leave out a per-run id to repeat a run);
  at most ``max_in_a_row`` attempts of one email fail in a row;
- ``hold_next()``: the next request waits, recorded, until the test releases it.

Use the ``sendgrid_standin`` fixture (import it into the test module) or ``with SendGridStandIn() as
standin:``; either way the server stops when the test ends.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

from tests.background import Background

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
    status: int = 0  # the status the stand-in answered

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def dedup_key(self) -> str | None:
        """The key SendGridSender puts in ``custom_args``."""
        try:
            return str(self.json()["custom_args"]["dedup_key"])
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def recipients(self) -> list[str]:
        try:
            return [
                str(to["email"]) for p in self.json()["personalizations"] for to in p.get("to", [])
            ]
        except (ValueError, KeyError, TypeError):
            return []


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


def service_unavailable() -> Answer:
    return _errors(503, "Service unavailable")


TRANSIENT_ANSWERS: dict[int, Callable[[], Answer]] = {
    429: too_many_requests,
    500: server_error,
    503: service_unavailable,
}


@dataclass
class _Flaky:
    rate: float
    seed: int
    statuses: tuple[int, ...]
    max_in_a_row: int
    key_label: Callable[[str], str]


class Hold:
    """One request held by the stand-in: ``arrived`` is set once it is in, ``release()`` answers."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.request: RecordedRequest | None = None

    def release(self) -> None:
        self._released.set()

    def _wait(self, timeout: float) -> None:
        self._released.wait(timeout)


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
        answer, hold = self.server.standin._record(
            RecordedRequest("POST", self.path, dict(self.headers.items()), body)
        )
        if hold is not None:
            hold._wait(timeout=20)  # below SendGridSender's 30 s: the answer still reaches it
        time.sleep(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SendGridStandIn(Background):
    """Listens on 127.0.0.1 only, on a free port; ``host`` is what SendGridSender needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: deque[Answer] = deque()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._rejected: set[str] = set()
        self._flaky: _Flaky | None = None
        self._holds: deque[Hold] = deque()
        self._every_hold: list[Hold] = []  # released at stop, so no handler thread waits on
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

    def reject(self, *addresses: str) -> None:
        """Every email to one of these addresses gets a 400, as SendGrid answers a bad address."""
        with self._lock:
            self._rejected.update(a.lower() for a in addresses)

    def flaky(
        self,
        rate: float,
        seed: int,
        statuses: tuple[int, ...] = (429, 500, 503),
        max_in_a_row: int = 3,
        key_label: Callable[[str], str] = str,
    ) -> None:
        """From now on about ``rate`` of the attempts get one of ``statuses`` (see the module)."""
        assert set(statuses) <= set(TRANSIENT_ANSWERS), statuses
        with self._lock:
            self._flaky = _Flaky(rate, seed, statuses, max_in_a_row, key_label)

    def steady(self) -> None:
        with self._lock:
            self._flaky = None

    def hold_next(self) -> Hold:
        """The next request waits (recorded, its answer chosen) until ``release()``."""
        hold = Hold()
        with self._lock:
            self._holds.append(hold)
            self._every_hold.append(hold)
        return hold

    def statuses(self, key: str) -> list[int]:
        """The statuses the attempts of one email got, in order."""
        return [r.status for r in self.requests if r.dedup_key == key]

    def accepted_keys(self) -> dict[str, int]:
        """Dedup key -> how many times it was accepted (202)."""
        counts: dict[str, int] = {}
        for request in self.requests:
            if request.status == 202 and request.dedup_key is not None:
                counts[request.dedup_key] = counts.get(request.dedup_key, 0) + 1
        return counts

    def _choose(self, request: RecordedRequest) -> Answer:
        scripted = self._answers.popleft() if self._answers else None
        if request.path != MAIL_SEND_PATH:
            return _errors(404, f"no such resource: {request.path}")
        if scripted is not None:
            return scripted
        if self._rejected & {r.lower() for r in request.recipients}:
            return bad_request()
        key = request.dedup_key
        if self._flaky is not None and key is not None:
            flaky = self._flaky
            earlier = [r.status for r in self._requests if r.dedup_key == key]
            in_a_row = 0
            for status in reversed(earlier):
                if status not in flaky.statuses:
                    break
                in_a_row += 1
            draw = random.Random(f"{flaky.seed}|{flaky.key_label(key)}|{len(earlier)}")
            if in_a_row < flaky.max_in_a_row and draw.random() < flaky.rate:
                return TRANSIENT_ANSWERS[draw.choice(flaky.statuses)]()
        return accepted()

    def _record(self, request: RecordedRequest) -> tuple[Answer, Hold | None]:
        with self._lock:
            answer = self._choose(request)
            if answer.status == 202 and "X-Message-Id" not in answer.headers:
                headers = {**answer.headers, "X-Message-Id": f"standin-{next(self._ids)}"}
                answer = Answer(answer.status, answer.body, headers, answer.delay)
            recorded = RecordedRequest(
                request.method, request.path, request.headers, request.body, answer.status
            )
            self._requests.append(recorded)
            hold = self._holds.popleft() if self._holds else None
            if hold is not None:
                hold.request = recorded
                hold.arrived.set()
            return answer, hold

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            holds = list(self._every_hold)
        for hold in holds:
            hold.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(name="sendgrid_standin")
def sendgrid_standin_fixture() -> Iterator[SendGridStandIn]:
    with SendGridStandIn() as standin:
        yield standin

"""A stand-in for Microsoft Graph (a shared mailbox) and its Azure AD token endpoint, on 127.0.0.1,
checking each request as Graph documents it (docs/microsoft-365.md):

- ``POST /{tenant}/oauth2/v2.0/token``: client credentials with the Graph scope; bearer tokens.
- ``POST /v1.0/users/{mailbox}/sendMail``: ``Content-Type: text/plain``, the body a base64 MIME
  message; 202 with no body. Each sent message is kept (``sent``).
- ``GET /v1.0/users/{mailbox}/mailFolders/inbox/messages/delta``: rounds of changes to the inbox
  (``$select`` kept in the links), pages of ``Prefer: odata.maxpagesize`` (at most
  ``page_size``), ``@odata.nextLink`` then ``@odata.deltaLink``; a message that left the inbox
  since the round's token comes back ``@removed``.
- ``GET .../mailFolders/inbox/messages`` (``$orderby=receivedDateTime asc``, ``$top``): a listing.
- ``GET .../messages/{id}/$value``: the MIME; ``POST .../messages/{id}/move`` with
  ``destinationId``: 201, the message under a new id (as Graph's ids change when a message moves).
- ``GET .../mailFolders?$filter=displayName eq '...'`` and ``POST .../mailFolders``.

Scripted trouble: ``fail_next(status, times, retry_after)``, ``delta_unsupported``,
``expire_delta_links()``, ``revoke_tokens()``. Every request is recorded with its status.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from tests.background import Background

TENANT_ID = "3f2e1d0c-9b8a-4c7d-8e6f-5a4b3c2d1e0f"
CLIENT_ID = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
CLIENT_SECRET = "graph-standin-secret~Mx4.Ty7_pL2-must-never-leak"
MAILBOX = "billing-support@partner.example.cn"
SCOPE = "https://microsoftgraph.chinacloudapi.cn/.default"

_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
_USER = re.compile(r"^/v1\.0/users/(?P<user>[^/]+)(?P<rest>/.*)$")
_MESSAGE = re.compile(r"^/messages/(?P<id>[^/]+)/(?P<what>\$value|move)$")
_FILTER = re.compile(r"^displayName eq '(?P<name>(?:[^']|'')*)'$")


@dataclass
class Recorded:
    method: str
    path: str  # without the query, %-decoded
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as it is (a message's MIME)


@dataclass
class _Message:
    raw: bytes
    folder: str
    received: str
    arrived: int  # the sequence number of its arrival in its folder


def _error(status: int, code: str, message: str, **headers: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}}, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: GraphStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Recorded(self.command, unquote(parts.path), query, dict(self.headers), body)
        answer = self.server.standin._answer(request)
        data = answer.raw if answer.raw is not None else b""
        if answer.raw is None and answer.body is not None:
            data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        kind = "text/plain" if answer.raw is not None else "application/json; charset=utf-8"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class GraphStandIn(Background):
    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.delta_unsupported = False
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._failures: deque[tuple[int, str | None]] = deque()
        self._tokens: set[str] = set()
        self._issued: list[str] = []
        self._seq = itertools.count(1)
        self._now = 0  # the sequence number of the last change
        self._messages: dict[str, _Message] = {}
        self._folders: dict[str, str] = {"inbox": "Inbox"}  # id -> displayName
        self._removed: dict[str, int] = {}  # id -> the sequence number it left the inbox at
        # skiptoken -> (the round's delta token, its items not yet sent)
        self._rounds: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        self._expired_before = 0  # delta tokens below this are 410 Gone
        self.sent: list[bytes] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def graph_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1.0/")]

    @property
    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if not r.path.startswith("/v1.0/")]

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # ------------------------------------------------------------------- the mailbox

    def deliver(self, raw: bytes, received: str = "") -> str:
        """A message arrives in the inbox; its id."""
        with self._lock:
            key = f"AAMk{uuid.uuid4().hex}"
            seq = self._tick()
            stamp = received or f"2026-12-07T08:{seq // 60:02d}:{seq % 60:02d}Z"
            self._messages[key] = _Message(raw, "inbox", stamp, seq)
            return key

    def folder_of(self, raw: bytes) -> str | None:
        """The display name of the folder holding the message with these bytes."""
        with self._lock:
            for message in self._messages.values():
                if message.raw == raw:
                    return self._folders.get(message.folder)
            return None

    def folder_id(self, name: str) -> str | None:
        with self._lock:
            return next((key for key, n in self._folders.items() if n == name), None)

    def inbox(self) -> list[str]:
        with self._lock:
            return [k for k, m in self._messages.items() if m.folder == "inbox"]

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def expire_delta_links(self) -> None:
        with self._lock:
            self._expired_before = self._now + 1

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def _tick(self) -> int:
        self._now = next(self._seq)
        return self._now

    # ------------------------------------------------------------------- answers

    def _answer(self, request: Recorded) -> Answer:
        with self._lock:
            self._requests.append(request)
            answer = self._route(request)
            request.status = answer.status
            return answer

    def _route(self, request: Recorded) -> Answer:
        token = _TOKEN.match(request.path)
        if token and request.method == "POST":
            return self._token(token["tenant"], request)
        user = _USER.match(request.path)
        if user is None:
            return _error(400, "BadRequest", f"Invalid version or path: {request.path}")
        bearer = request.headers.get("Authorization", "")
        if not bearer.startswith("Bearer ") or bearer[7:] not in self._tokens:
            return _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        if self._failures:
            status, wait = self._failures.popleft()
            return _error(
                status, "Throttled", "stand-in", **({"Retry-After": wait} if wait else {})
            )
        if unquote(user["user"]) != MAILBOX:
            return _error(
                404, "ErrorInvalidUser", f"The requested user '{user['user']}' is invalid."
            )
        return self._mailbox(request, user["rest"])

    def _mailbox(self, request: Recorded, rest: str) -> Answer:
        method = request.method
        if rest == "/sendMail" and method == "POST":
            return self._send(request)
        if rest == "/mailFolders/inbox/messages/delta" and method == "GET":
            return self._delta(request)
        if rest == "/mailFolders/inbox/messages" and method == "GET":
            return self._list(request)
        if rest == "/mailFolders" and method == "GET":
            return self._find_folder(request)
        if rest == "/mailFolders" and method == "POST":
            return self._make_folder(request)
        message = _MESSAGE.match(rest)
        if message and message["id"] not in self._messages:
            return _error(404, "ErrorItemNotFound", "The specified object was not found.")
        if message and message["what"] == "$value" and method == "GET":
            return Answer(200, raw=self._messages[message["id"]].raw)
        if message and message["what"] == "move" and method == "POST":
            return self._move(message["id"], request)
        return _error(400, "BadRequest", f"Unsupported request: {method} {rest}")

    def _token(self, tenant: str, request: Recorded) -> Answer:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if (
            tenant != TENANT_ID
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != CLIENT_ID
            or form.get("scope") != SCOPE
        ):
            return Answer(400, {"error": "invalid_request", "error_description": "AADSTS900144"})
        if form.get("client_secret") != CLIENT_SECRET:
            return Answer(401, {"error": "invalid_client", "error_description": "AADSTS7000215"})
        value = f"eyJ0eXAi.{uuid.uuid4().hex}.graph"
        self._tokens.add(value)
        self._issued.append(value)
        body = {"token_type": "Bearer", "expires_in": 3599, "access_token": value}
        return Answer(200, body)

    def _send(self, request: Recorded) -> Answer:
        if request.headers.get("Content-Type", "").split(";")[0] != "text/plain":
            return _error(400, "ErrorMimeContentInvalid", "MIME content needs text/plain")
        try:
            raw = base64.b64decode(request.body, validate=True)
        except binascii.Error:
            return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string")
        if b"\r\nFrom: " not in b"\r\n" + raw or b"\r\n\r\n" not in raw:
            return _error(400, "ErrorMimeContentInvalid", "not a MIME message")
        self.sent.append(raw)
        return Answer(202)

    def _delta(self, request: Recorded) -> Answer:
        if self.delta_unsupported:
            return _error(400, "ErrorInvalidRequest", "Change tracking is not supported.")
        skip = request.query.get("$skiptoken")
        if skip is None:
            since = int(request.query.get("$deltatoken", "0"))
            if 0 < since < self._expired_before:
                return _error(410, "SyncStateNotFound", "The sync state was not found.")
            skip = uuid.uuid4().hex
            self._rounds[skip] = (self._tick(), self._changes(since))
        if skip not in self._rounds:
            return _error(400, "BadRequest", "unknown skiptoken")
        token, items = self._rounds[skip]
        prefer = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("Prefer", ""))
        size = min(int(prefer[1]), self.page_size) if prefer else self.page_size
        page, self._rounds[skip] = items[:size], (token, items[size:])
        base = f"{self.url}/v1.0/users/{MAILBOX}/mailFolders/inbox/messages/delta"
        body: dict[str, Any] = {"value": page}
        if items[size:]:
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip}"
        else:
            del self._rounds[skip]
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return Answer(200, body)

    def _changes(self, since: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {"id": key, "receivedDateTime": message.received}
            for key, message in self._messages.items()
            if message.folder == "inbox" and message.arrived > since
        ]
        gone = [key for key, seq in self._removed.items() if since > 0 and seq > since]
        return items + [{"id": key, "@removed": {"reason": "deleted"}} for key in gone]

    def _list(self, request: Recorded) -> Answer:
        if request.query.get("$orderby") != "receivedDateTime asc":
            return _error(400, "BadRequest", "stand-in: lists oldest first only")
        top = int(request.query.get("$top", "10"))
        inbox = sorted(((m.received, k) for k, m in self._messages.items() if m.folder == "inbox"))
        return Answer(200, {"value": [{"id": k, "receivedDateTime": r} for r, k in inbox[:top]]})

    def _find_folder(self, request: Recorded) -> Answer:
        wanted = _FILTER.match(request.query.get("$filter", ""))
        if wanted is None:
            return _error(400, "BadRequest", "stand-in: displayName filters only")
        name = wanted["name"].replace("''", "'")
        found = [{"id": i, "displayName": n} for i, n in self._folders.items() if n == name]
        return Answer(200, {"value": found})

    def _make_folder(self, request: Recorded) -> Answer:
        name = request.json().get("displayName")
        if name in self._folders.values():
            return _error(409, "ErrorFolderExists", "A folder with the specified name exists.")
        key = f"AQMk{uuid.uuid4().hex}"
        self._folders[key] = name
        return Answer(201, {"id": key, "displayName": name})

    def _move(self, key: str, request: Recorded) -> Answer:
        destination = request.json().get("destinationId")
        if destination not in self._folders:
            return _error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        message = self._messages.pop(key)
        if message.folder == "inbox":
            self._removed[key] = self._tick()
        moved = f"AAMk{uuid.uuid4().hex}"
        self._messages[moved] = _Message(message.raw, destination, message.received, self._tick())
        return Answer(201, {"id": moved, "parentFolderId": destination})

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

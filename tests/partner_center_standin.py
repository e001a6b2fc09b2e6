"""A stand-in for the Partner Center subscription API and its Azure AD token endpoint, on 127.0.0.1.

- ``POST /{tenant}/oauth2/v2.0/token`` (or ``/oauth2/token``): client credentials; hands out bearer
  tokens that live ``token_lifetime`` seconds (the stand-in never expires them itself).
- ``GET /v1/customers/{customer}/subscriptions/{id}``: the resource, its etag in ``ETag`` and in
  ``attributes.etag``.
- ``PATCH`` the same path: needs a valid bearer token and ``If-Match`` equal to the current etag
  (412 otherwise), refuses the read-only ``suspensionReasons``, applies ``status``; the etag changes
  on every write.

Scripted trouble: ``fail_next(status, times)`` answers the next API requests with that status,
``conflict_next_patch(times)`` makes another writer change the subscription just before the next
PATCH (a 412), ``revoke_tokens()`` invalidates every token handed out. An outage:
``outage(503, 500, DROP)`` answers every request, token requests included, with those statuses in
turn (``DROP``: the connection is closed without an answer) until ``end_outage()``;
``lose_next_answers(times, subscription_id)`` applies the next PATCHes (of that subscription, or
any) and then closes the connection instead of answering: the client cannot tell whether they
happened. Every request is recorded with the
status it got (and whether its answer was dropped), every status change in ``changes``. Use the
``partner_center_standin`` fixture (import it into the test module).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr

from chaos.harness import FAST_POLICY
from core.settings import Settings
from db.migrate import upgrade
from tests.background import Background

PARTNER_TENANT_ID = "6b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
CLIENT_ID = "0c9b8a7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"
# distinctive, so a test can look for it in every message and log line
CLIENT_SECRET = "pc-standin-secret~Qz8.Kw3_vN1-must-never-leak"
VALID_STATUSES = {"none", "active", "pending", "suspended", "deleted"}

_TOKEN_PATH = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/(?:v2\.0/)?token$")
_SUBSCRIPTION_PATH = re.compile(r"^/v1/customers/(?P<customer>[^/]+)/subscriptions/(?P<sub>[^/]+)$")


# in outage(): close the connection without an answer
DROP = 0


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection instead of answering


@dataclass(frozen=True)
class Change:
    """A PATCH that was applied: the subscription's status before and after."""

    customer_id: str
    subscription_id: str
    before: str
    after: str


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # the status the stand-in answered (0: dropped before any answer)
    dropped: bool = False  # the connection was closed instead of answering

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/v1/")


def _error(status: int, code: int, description: str, **headers: str) -> Answer:
    body = {"code": code, "description": description, "errorName": _ERROR_NAMES.get(status, "")}
    return Answer(status, body, headers)


_ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    412: "PreconditionFailed",
    428: "PreconditionRequired",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: PartnerCenterStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
        answer = self.server.standin._answer(request)
        if answer.drop:
            self.close_connection = True
            return  # nothing written: the client sees the connection close
        data = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PartnerCenterStandIn(Background):
    """Listens on 127.0.0.1 only, on a free port; ``url`` serves as base URL and as authority."""

    def __init__(
        self,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        tenant_id: str = PARTNER_TENANT_ID,
        token_lifetime: int = 3599,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant_id = tenant_id
        self.token_lifetime = token_lifetime
        # False: GET answers without the ETag header, the etag is only in attributes.etag
        self.etag_header = True
        self._lock = threading.Lock()
        self._subscriptions: dict[tuple[str, str], dict[str, Any]] = {}
        self._requests: list[RecordedRequest] = []
        self._failures: deque[int] = deque()
        self._conflicts = 0
        self._outage: itertools.cycle[int] | None = None
        self._lost_answers: list[str | None] = []  # one entry per answer to lose
        self._changes: list[Change] = []
        self._tokens: set[str] = set()
        self._issued: list[str] = []
        self._etags = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        # a short poll interval keeps teardown (shutdown waits for one poll) quick
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def api_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_api]

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if not r.is_api]

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    def add_subscription(
        self, customer_id: str, subscription_id: str, status: str = "active"
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "id": subscription_id,
            "offerId": "MS-AZR-0145P",
            "offerName": "Azure operated by 21Vianet",
            "friendlyName": "Production",
            "quantity": 1,
            "unitType": "Usage-based",
            "creationDate": "2026-01-05T02:13:44Z",
            "effectiveStartDate": "2026-01-05T00:00:00Z",
            "commitmentEndDate": "9999-12-14T00:00:00Z",
            "autoRenewEnabled": False,
            "billingType": "usage",
            "contractType": "subscription",
            "orderId": "c1f9a7b2e5d84a06",
            "links": {"self": {"uri": f"/customers/{customer_id}/subscriptions/{subscription_id}"}},
            "attributes": {"objectType": "Subscription"},
        }
        with self._lock:
            self._apply_status(resource, status)
            self._subscriptions[(customer_id, subscription_id)] = resource
            return copy.deepcopy(resource)

    def subscription(self, customer_id: str, subscription_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._subscriptions[(customer_id, subscription_id)])

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` API requests (not token requests) with ``status``."""
        with self._lock:
            self._failures.extend([status] * times)

    def conflict_next_patch(self, times: int = 1) -> None:
        """Another writer changes the subscription just before each of the next PATCHes."""
        with self._lock:
            self._conflicts += times

    def outage(self, *statuses: int) -> None:
        """Answer every request with these statuses in turn (``DROP``: no answer) until
        ``end_outage()``."""
        with self._lock:
            self._outage = itertools.cycle(statuses or (503,))

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def lose_next_answers(self, times: int = 1, subscription_id: str | None = None) -> None:
        """Apply each of the next ``times`` PATCHes (of ``subscription_id``, or of any), then
        close the connection unanswered."""
        with self._lock:
            self._lost_answers.extend([subscription_id] * times)

    @property
    def changes(self) -> list[Change]:
        with self._lock:
            return list(self._changes)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def _apply_status(self, resource: dict[str, Any], status: str) -> None:
        resource["status"] = status
        if status == "suspended":
            resource["suspensionReasons"] = ["ResellerInitiated"]
        else:
            resource.pop("suspensionReasons", None)
        resource["attributes"]["etag"] = f"etag-{next(self._etags):04d}"

    def _answer(self, request: RecordedRequest) -> Answer:
        with self._lock:
            self._requests.append(request)
            answer = self._route(request)
            if request.method == "PATCH" and answer.status == 200 and not answer.drop:
                match = _SUBSCRIPTION_PATH.match(request.path)
                subscription = match["sub"] if match else None
                for n, wanted in enumerate(self._lost_answers):
                    if wanted in (None, subscription):
                        del self._lost_answers[n]
                        answer = Answer(answer.status, answer.body, answer.headers, drop=True)
                        break
            request.status = answer.status
            request.dropped = answer.drop
            return answer

    def _route(self, request: RecordedRequest) -> Answer:
        if self._outage is not None:
            status = next(self._outage)
            if status == DROP:
                return Answer(DROP, drop=True)
            return _error(status, status, f"outage: {status}")
        token = _TOKEN_PATH.match(request.path)
        if token and request.method == "POST":
            return self._token(token["tenant"], request)
        if not request.is_api:
            return _error(404, 404, f"no such resource: {request.path}")
        if self._failures:
            status = self._failures.popleft()
            headers = {"Retry-After": "1"} if status == 429 else {}
            return _error(status, status, f"scripted {status}", **headers)
        authorization = request.headers.get("Authorization", "")
        if authorization.removeprefix("Bearer ") not in self._tokens:
            return _error(401, 401, "The access token is missing, expired or revoked.")
        match = _SUBSCRIPTION_PATH.match(request.path)
        if match is None:
            return _error(404, 404, f"no such resource: {request.path}")
        resource = self._subscriptions.get((match["customer"], match["sub"]))
        if resource is None:
            return _error(404, 800002, f"Subscription {match['sub']} not found.")
        if request.method == "GET":
            return self._resource(resource)
        if request.method == "PATCH":
            return self._patch(resource, request)
        return _error(405, 405, f"method {request.method} not allowed")

    def _resource(self, resource: dict[str, Any]) -> Answer:
        headers = {"ETag": resource["attributes"]["etag"]} if self.etag_header else {}
        return Answer(200, copy.deepcopy(resource), headers)

    def _patch(self, resource: dict[str, Any], request: RecordedRequest) -> Answer:
        if self._conflicts:
            self._conflicts -= 1
            self._apply_status(resource, resource["status"])  # someone else's write
        if_match = request.headers.get("If-Match")
        if not if_match:
            return _error(428, 428, "If-Match is required.")
        if if_match != resource["attributes"]["etag"]:
            return _error(412, 412, "The subscription was changed since it was read.")
        try:
            body = request.json()
        except ValueError:
            return _error(400, 400, "The body is not JSON.")
        if not isinstance(body, dict) or body.get("id") != resource["id"]:
            return _error(400, 400, "The body must be the full Subscription resource.")
        if "suspensionReasons" in body:
            return _error(400, 400, "suspensionReasons is read-only.")
        if body.get("status") not in VALID_STATUSES:
            return _error(400, 400, f"Unknown status {body.get('status')!r}.")
        match = _SUBSCRIPTION_PATH.match(request.path)
        assert match is not None  # routed here by it
        self._changes.append(
            Change(match["customer"], match["sub"], resource["status"], body["status"])
        )
        self._apply_status(resource, body["status"])
        return self._resource(resource)

    def _token(self, tenant: str, request: RecordedRequest) -> Answer:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if tenant != self.tenant_id:
            return Answer(400, {"error": "invalid_request", "error_description": "AADSTS90002"})
        if form.get("grant_type") != "client_credentials" or not (
            form.get("scope") or form.get("resource")
        ):
            return Answer(400, {"error": "invalid_request", "error_description": "AADSTS900144"})
        if form.get("client_id") != self.client_id:
            return Answer(
                400, {"error": "unauthorized_client", "error_description": "AADSTS700016"}
            )
        if form.get("client_secret") != self.client_secret:
            description = (
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                f"the request is the client secret value, not the client secret ID, for app "
                f"'{self.client_id}'.\r\nTrace ID: 0d8a"
            )
            return Answer(
                401,
                {
                    "error": "invalid_client",
                    "error_description": description,
                    "error_codes": [7000215],
                },
            )
        value = f"standin-token-{uuid.uuid4().hex}"
        self._tokens.add(value)
        self._issued.append(value)
        return Answer(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": value,
            },
        )

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(name="partner_center_standin")
def partner_center_standin_fixture() -> Iterator[PartnerCenterStandIn]:
    with PartnerCenterStandIn() as standin:
        yield standin


def partner_center_settings(
    directory: Path, standin: PartnerCenterStandIn, queue: str, **overrides: Any
) -> Settings:
    """The real Partner Center client against `standin`, the day-0 collections policy (the failure
    emailed and the subscriptions suspended at once), a migrated SQLite file, an outbox; any
    other setting from `overrides`."""
    policy = directory / "collections_policy.toml"
    policy.write_text(FAST_POLICY)
    settings = Settings(
        database_url=f"sqlite:///{directory / 'billing.db'}",
        outbox_dir=directory / "outbox",
        task_queue=f"{queue}-{uuid.uuid4()}",
        collections_policy_file=policy,
        partner_center_backend="partner-center",
        partner_center_url=standin.url,
        partner_center_authority=standin.url,
        partner_center_tenant_id=PARTNER_TENANT_ID,
        partner_center_client_id=CLIENT_ID,
        partner_center_client_secret=SecretStr(CLIENT_SECRET),
        **overrides,
    )
    upgrade(settings.database_url)
    return settings

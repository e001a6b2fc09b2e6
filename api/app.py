"""The HTTP intake: the billing system's signed webhooks and case intake, in front of Temporal.

Every `/v1/` request is signed (see `api/signing.py`); the signature is checked on the raw bytes
before anything reads the body, so an unsigned request never reaches validation or Temporal, and an
invalid body (422) never reaches Temporal either. Who acts is the caller that signed (`actor`),
never a name in the body. OpenAPI documentation is at /docs.

Thin over the service layer: each endpoint makes one call to it and maps its typed errors, with no
round trip of its own: not found 404, refused or already there 409, ended 410, Temporal
unavailable 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, status
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import event_webhook, inbound_parse, ratings
from api.idempotency import (
    KEY_CHARS,
    Answered,
    Claimed,
    Conflict,
    IntakeRequests,
    key_problem,
)
from api.models import (
    CaseOpened,
    EventsAnswer,
    FailureAccepted,
    InboundReceived,
    PaymentRecorded,
    Problem,
)
from api.serving import read_body
from api.signing import (
    KEY_HEADER,
    MAX_SECRETS,
    MIN_SECRET_LENGTH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_SECONDS,
    SignatureError,
    Verifier,
)
from core import tracing
from core.ids import case_workflow_id, collections_workflow_id, request_case_id
from core.metrics import INTAKE_REQUESTS, INTAKE_SECONDS
from core.models import BillingFailure, CaseRequest, CollectionsView, PaymentReport
from core.models import CaseOpened as CoreCaseOpened
from core.settings import Settings, required_secrets
from core.temporal import data_converter
from db.session import database_problem, make_engine, make_session_factory
from service import Service, ServiceConnection, ServiceFactory
from service.errors import (
    HTTP_STATUS,
    AlreadyExists,
    Refused,
    ServiceError,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

log = logging.getLogger("api")
SIGNED_PREFIX = "/v1/"
PROBE_SECONDS = 5.0  # a readiness probe answers within this, whatever hangs behind it
MAX_BODY_BYTES = 1024 * 1024
CLAIM = "intake_claim"  # where a signed request's claim waits for its route (request.state)
# who signs which requests: each caller its own secrets, and it acts as itself (`actor`)
CALLERS = {
    "/v1/billing-failures": "billing",
    "/v1/payments": "billing",
    "/v1/cases": "portal",
}
SIGNATURE_PARAMETERS: dict[str, Any] = {
    "parameters": [
        {
            "name": TIMESTAMP_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "integer"},
            "description": f"Unix seconds; accepted within {WINDOW_SECONDS} s of the server clock.",
        },
        {
            "name": KEY_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": KEY_CHARS},
            "description": "A unique id per request: the same key and body again get the first "
            "answer (a retry is safe), the same key with another body 409.",
        },
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Hex HMAC-SHA256, with the caller's secret, of "
            '"{timestamp}\\n{METHOD}\\n{path}\\n{Idempotency-Key}\\n" + the raw body.',
        },
    ]
}
# what every signed endpoint may answer
COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Unsigned, wrongly signed or stale"},
    400: {"model": Problem, "description": "No Idempotency-Key, or a body that is not UTF-8"},
    409: {"model": Problem, "description": "Refused; or the key was used for another request"},
    503: {"model": Problem, "description": "Temporal is unavailable: nothing changed, retry"},
}


def caller_secrets(settings: Settings) -> dict[str, list[SecretStr]]:
    """The API only runs with every caller's secret: without one anyone could act as it."""
    why = "the API accepts only requests signed with it"
    found: dict[str, list[SecretStr]] = {}
    for caller, setting in (
        ("billing", "billing_webhook_secrets"),
        ("portal", "portal_webhook_secrets"),
    ):
        found[caller] = required_secrets(
            getattr(settings, setting), setting.upper(), why, MIN_SECRET_LENGTH, MAX_SECRETS
        )
    return found


def actor(caller: str) -> str:
    """Who a signed request acts as on a timeline: the caller whose secret signed it, never a
    name in its body."""
    return f"{caller} (API)"


def _claim(request: Request) -> Claimed:
    claim: Claimed = getattr(request.state, CLAIM)
    return claim


def _problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status, headers=headers or None)


class SignedRequests:
    """ASGI middleware: every `/v1/` request is signed by its caller (else 401), carries an
    Idempotency-Key (else 400), and is carried out once per key (see `api/idempotency.py`)."""

    def __init__(
        self, app: ASGIApp, verifiers: dict[str, Verifier], requests: IntakeRequests
    ) -> None:
        self._app = app
        self._verifiers = verifiers
        self._requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SIGNED_PREFIX):
            await self._app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path in (inbound_parse.PATH, event_webhook.PATH):  # SendGridRequests guards them
            await self._app(scope, receive, send)
            return
        caller = CALLERS.get(path)
        if caller is None:
            await _problem(404, "no such endpoint")(scope, receive, send)
            return
        headers = Headers(scope=scope)
        body = await read_body(receive, headers, MAX_BODY_BYTES)
        if body is None:
            await _problem(413, f"body over {MAX_BODY_BYTES} bytes")(scope, receive, send)
            return
        key = headers.get(KEY_HEADER, "")
        try:
            self._verifiers[caller].verify(
                headers.get(TIMESTAMP_HEADER),
                headers.get(SIGNATURE_HEADER),
                method=method,
                path=path,
                key=key,
                body=body,
            )
        except SignatureError as err:
            log.warning("refused %s %s: %s", method, path, err)
            await _problem(401, str(err))(scope, receive, send)
            return
        if problem := key_problem(key):
            await _problem(400, problem)(scope, receive, send)
            return
        claim = await asyncio.to_thread(self._requests.claim, caller, key, method, path, body)
        if isinstance(claim, Answered):
            answer = Response(
                claim.body,
                claim.status,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
            await answer(scope, receive, send)
            return
        if isinstance(claim, Conflict):
            retry = {"Retry-After": "5"} if claim.in_progress else {}
            await _problem(409, claim.message, **retry)(scope, receive, send)
            return
        scope.setdefault("state", {})[CLAIM] = claim  # the route's ids come from it
        await self._carry_out(scope, _replaying(body, receive), send, caller, key)

    async def _carry_out(
        self, scope: Scope, receive: Receive, send: Send, caller: str, key: str
    ) -> None:
        """Run the request; keep its answer if it is final, else free the key for a retry."""
        status, chunks = 500, []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self._app(scope, receive, capture)
        except BaseException:
            await asyncio.to_thread(self._requests.release, caller, key)
            raise
        await asyncio.to_thread(self._requests.finish, caller, key, status, b"".join(chunks))


def _text(value: object) -> str:
    """Text any JSON answer can carry: what UTF-8 cannot hold is replaced."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body read once, given to the app as if it came now."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()  # after the body: disconnects come from the server
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class SendGridRequests:
    """ASGI middleware: SendGrid Inbound Parse's posts carry our credentials (else 401, or 404
    while INBOUND_PARSE_SECRET is unset) and are at most SendGrid's size (else 413); Event Webhook
    posts are signed with SendGrid's key, now (else 401, or 404 while SENDGRID_EVENT_PUBLIC_KEY is
    unset). Checked before a route reads them."""

    def __init__(
        self, app: ASGIApp, secret: SecretStr | None, events: event_webhook.EventVerifier | None
    ) -> None:
        self._app = app
        self._secret = secret
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == event_webhook.PATH:
            await self._event_webhook(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] != inbound_parse.PATH:
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._secret is None:
            await _problem(404, "inbound mail is off: INBOUND_PARSE_SECRET is not set")(
                scope, receive, send
            )
            return
        if not inbound_parse.authorized(headers.get("authorization"), self._secret):
            log.warning("refused %s: wrong or no credentials", inbound_parse.PATH)
            await _problem(401, "credentials: wrong or missing", **{"WWW-Authenticate": "Basic"})(
                scope, receive, send
            )
            return
        body = await read_body(receive, headers, inbound_parse.MAX_BYTES)
        if body is None:
            await _problem(413, f"body over {inbound_parse.MAX_BYTES} bytes")(scope, receive, send)
            return
        await self._app(scope, _replaying(body, receive), send)

    async def _event_webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._events is None:
            off = "email events are off: SENDGRID_EVENT_PUBLIC_KEY is not set"
            await _problem(404, off)(scope, receive, send)
            return
        headers = Headers(scope=scope)
        body = await read_body(receive, headers, event_webhook.MAX_BYTES)
        if body is None:
            await _problem(413, f"body over {event_webhook.MAX_BYTES} bytes")(scope, receive, send)
            return
        try:
            self._events.verify(
                body,
                headers.get(event_webhook.SIGNATURE_HEADER),
                headers.get(event_webhook.TIMESTAMP_HEADER),
            )
        except event_webhook.EventSignatureError as err:
            log.warning("refused %s: %s", event_webhook.PATH, err)
            await _problem(401, str(err))(scope, receive, send)
            return
        await self._app(scope, _replaying(body, receive), send)


class CountedRequests:
    """ASGI middleware: every `/v1/` request counted by endpoint and status, and timed (the
    endpoint is one of ours or "other": never a path someone made up)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SIGNED_PREFIX):
            await self._app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in CALLERS else "other"
        status, started = 500, time.perf_counter()

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, observed)
        finally:
            INTAKE_REQUESTS.labels(endpoint, str(status)).inc()
            INTAKE_SECONDS.labels(endpoint).observe(time.perf_counter() - started)


def _payment_answer(view: CollectionsView) -> PaymentRecorded:
    return PaymentRecorded(
        invoice_id=view.invoice_id,
        workflow_id=view.workflow_id,
        status=view.status,
        currency=view.currency,
        amount_due=view.amount_due,
        paid=view.paid,
        credited=view.credited,
        balance=view.balance,
    )


async def _temporal_problem(connection: ServiceConnection) -> str | None:
    try:
        service = await connection.get()
        await service.client.service_client.check_health(timeout=timedelta(seconds=2))
    except Exception as err:  # unreachable, refusing or too slow: not ready, whatever the cause
        return f"temporal: {type(err).__name__}"
    return None


def create_app(
    settings: Settings,
    service_factory: ServiceFactory | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The intake app; raises SettingsError (naming the missing secret, or the missing encryption
    key) when it cannot run safely. `tracer_provider`: traces to it (tests); by default the
    global one when OTEL_EXPORTER_OTLP_ENDPOINT is set, none otherwise."""
    verifiers = {caller: Verifier(secrets) for caller, secrets in caller_secrets(settings).items()}
    requests = IntakeRequests(make_session_factory(make_engine(settings.database_url)))
    settings.case_policy(), settings.collections_policy()  # a broken policy file stops the start
    if service_factory is None:
        data_converter(settings)  # no encryption key, no start: nothing reaches Temporal in clear
    connection = ServiceConnection(service_factory or (lambda: Service.connect(settings)))
    app = FastAPI(
        title="Billing support intake",
        version="1",
        description=(
            "Signed webhooks of the billing system and case intake for a Partner Center "
            "operated by 21Vianet partner. Every request carries `Idempotency-Key` (unique per "
            "request), `X-Signature-Timestamp` (unix seconds) and `X-Signature` = hex "
            "HMAC-SHA256(the caller's secret, `{timestamp}\\n{METHOD}\\n{path}\\n{key}\\n` + "
            "the raw body). The caller whose secret signs a request is who acts: a case is opened "
            "by `portal (API)`, a payment recorded by `billing (API)`; a body that names someone "
            "(`opened_by`, `by`) is refused with 422."
        ),
    )
    app.add_middleware(SignedRequests, verifiers=verifiers, requests=requests)
    events = (
        event_webhook.EventVerifier(
            settings.sendgrid_event_public_key, settings.sendgrid_event_window_seconds
        )
        if settings.sendgrid_event_public_key
        else None
    )
    app.add_middleware(SendGridRequests, secret=settings.inbound_parse_secret, events=events)
    app.add_middleware(CountedRequests)  # outermost: a refused signature is counted too
    if tracer_provider is not None or tracing.enabled(settings):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, excluded_urls="healthz,readyz,metrics"
        )
    probe_engine = make_engine(settings.database_url, pool_size=1, max_overflow=1)
    app.include_router(ratings.router(settings))  # customers' rating links: unsigned, by token

    # unsigned and outside /v1/: for the load balancer, the supervisor and Prometheus
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        """Live: the process answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready: Temporal and the database answer; 503 naming which does not."""
        checks = (
            _temporal_problem(connection),
            asyncio.to_thread(database_problem, probe_engine),
        )
        answers: list[str | None]
        try:
            answers = list(await asyncio.wait_for(asyncio.gather(*checks), PROBE_SECONDS))
        except TimeoutError:
            answers = [f"no answer in {PROBE_SECONDS:.0f} s"]
        problems = [problem for problem in answers if problem]
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: Exception) -> JSONResponse:
        """422 naming each field, without echoing the input: it may be a customer's data, or
        text no JSON answer can carry (a lone surrogate)."""
        assert isinstance(err, RequestValidationError)
        errors = [
            {"type": e["type"], "loc": [str(part) for part in e["loc"]], "msg": _text(e["msg"])}
            for e in err.errors()
        ]
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, err: Exception) -> JSONResponse:
        code = next(code for kind, code in HTTP_STATUS.items() if isinstance(err, kind))
        if code == 503:
            log.error("%s", err)
            return JSONResponse({"detail": "Temporal is unavailable; retry later"}, code)
        return JSONResponse({"detail": _text(err)}, code)

    @app.post(
        "/v1/billing-failures",
        status_code=status.HTTP_202_ACCEPTED,
        responses={
            **COMMON,
            409: {"model": Problem, "description": "Refused (another tenant or currency)"},
            410: {"model": Problem, "description": "The invoice's collections ended"},
        },
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def billing_failure(failure: BillingFailure) -> FailureAccepted:
        """A failed payment: starts the invoice's collections, or joins the running one."""
        service = await connection.get()
        result = await service.collections.report_failure(failure)
        return FailureAccepted(
            result=result, workflow_id=collections_workflow_id(failure.invoice_id)
        )

    @app.post(
        "/v1/payments",
        responses={
            **COMMON,
            404: {"model": Problem, "description": "The invoice is not in collections"},
            409: {"model": Problem, "description": "Refused (other invoice or currency)"},
            410: {"model": Problem, "description": "The invoice's collections ended"},
        },
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def payment(report: PaymentReport, request: Request) -> PaymentRecorded:
        """A payment received (full or partial); a repeated payment id is counted once. It is
        recorded as the signing caller's."""
        service = await connection.get()
        payment = report.recorded_by(actor(_claim(request).caller))
        return _payment_answer(await service.collections.act(payment.invoice_id, payment))

    @app.post(
        "/v1/cases",
        status_code=status.HTTP_201_CREATED,
        responses={**COMMON, 409: {"model": Problem, "description": "The case id exists"}},
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def open_case(case: CaseRequest, request: Request) -> CaseOpened:
        """Open a billing case: the customer is acknowledged, the owner (if one is named)
        notified. The signing caller is the one who opened it."""
        service = await connection.get()
        claim = _claim(request)
        form = case.opened_by_caller(actor(claim.caller))
        case_id = request_case_id(claim.first_claimed, claim.caller, claim.key)
        try:
            opened = await service.cases.open(service.cases.prepare(form, case_id=case_id))
        except AlreadyExists:  # an attempt under this key that broke before answering opened it
            opened = CoreCaseOpened(case_id=case_id, workflow_id=case_workflow_id(case_id))
        return CaseOpened(
            case_id=opened.case_id, workflow_id=opened.workflow_id, status=opened.status.value
        )

    @app.post(
        inbound_parse.PATH,
        response_model=InboundReceived,
        responses={
            400: {"model": Problem, "description": "Not an Inbound Parse post (names the field)"},
            401: {"model": Problem, "description": "Wrong or missing credentials in the URL"},
            404: {"model": Problem, "description": "Off: INBOUND_PARSE_SECRET is not set"},
            413: {"model": Problem, "description": "Over SendGrid's 30 MB"},
            503: {"model": Problem, "description": "Not stored: SendGrid posts it again later"},
        },
    )
    async def inbound_mail(request: Request) -> Response | InboundReceived:
        """SendGrid Inbound Parse (raw mode): a customer's email; it acts once, however often it
        is posted. An email that cannot be read is recorded and answered 200 (a retry cannot
        help)."""
        content_type, body = request.headers.get("content-type", ""), await request.body()
        try:  # up to 30 MB: read beside the event loop
            raw, envelope_to, verdicts = await asyncio.to_thread(
                inbound_parse.raw_email, content_type, body
            )
        except inbound_parse.FormError as err:
            return _problem(400, str(err))
        service = await connection.get()
        try:
            received = await service.inbound.receive(raw, envelope_to, verdicts)
        except Refused as err:
            return _problem(413, str(err))
        return InboundReceived(
            outcome=received.outcome.value,
            workflow_id=received.workflow_id,
            duplicate=received.duplicate,
        )

    @app.post(
        event_webhook.PATH,
        response_model=EventsAnswer,
        responses={
            400: {"model": Problem, "description": "Not an array of events (names the field)"},
            401: {"model": Problem, "description": "Not signed with SendGrid's key, or stale"},
            404: {"model": Problem, "description": "Off: SENDGRID_EVENT_PUBLIC_KEY is not set"},
            413: {"model": Problem, "description": "Body too large"},
            503: {"model": Problem, "description": "Not all recorded: SendGrid posts it again"},
        },
    )
    async def email_events(request: Request) -> Response | EventsAnswer:
        """SendGrid's Event Webhook: each event recorded once in the email log; a bounce, drop
        or block of a case's email reaches the case, and so does a resolution's delivery."""
        try:
            batch = json.loads(await request.body())
        except ValueError:
            return _problem(400, "body: not JSON")
        service = await connection.get()
        try:
            recorded = await service.email_events.record(batch)
        except Refused as err:
            return _problem(400, str(err))
        return EventsAnswer(
            recorded=recorded.recorded, duplicates=recorded.duplicates, ignored=recorded.ignored
        )

    return app

"""The HTTP intake: the billing system's signed webhooks and case intake, in front of Temporal.

Every `/v1/` request is signed (see `api/signing.py`); the signature is checked on the raw bytes
before anything reads the body, so an unsigned request never reaches validation or Temporal, and an
invalid body (422) never reaches Temporal either. OpenAPI documentation is at /docs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import SecretStr, ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import starter
from api.models import CaseOpened, CaseRequest, FailureAccepted, PaymentRecorded, Problem
from api.signing import (
    MIN_SECRET_LENGTH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_SECONDS,
    SignatureError,
    Verifier,
)
from core.models import (
    BillingFailure,
    CaseDetails,
    CollectionsView,
    Customer,
    OpenCase,
    PaymentReceived,
)
from core.settings import Settings, SettingsError
from core.temporal import connect, data_converter

log = logging.getLogger("api")
ClientFactory = Callable[[], Awaitable[Client]]
SIGNED_PREFIX = "/v1/"
MAX_BODY_BYTES = 1024 * 1024
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
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": 'Hex HMAC-SHA256 of f"{timestamp}.{raw body}" with the webhook secret.',
        },
    ]
}
UNSIGNED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Unsigned, wrongly signed, stale or replayed"},
    # FastAPI's answer to a body that is not UTF-8 text (JSON that does not parse gets a 422)
    400: {"model": Problem, "description": "The body is not UTF-8 text"},
}


def webhook_secret(settings: Settings) -> SecretStr:
    """The API only runs with a secret: without one anyone could start collections."""
    secret = settings.webhook_secret
    if secret is None or not secret.get_secret_value().strip():
        raise SettingsError(
            "WEBHOOK_SECRET is not set: the API accepts only signed requests "
            "(set it in the environment or .env; `make run` generates a local one under var/)"
        )
    if len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
        raise SettingsError(f"WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters")
    return secret


class SignedRequests:
    """ASGI middleware: `/v1/` requests need a valid, fresh, unreplayed signature (else 401)."""

    def __init__(self, app: ASGIApp, verifier: Verifier) -> None:
        self._app = app
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SIGNED_PREFIX):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        body = await _read_body(receive, headers)
        if body is None:
            too_large = JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes"}, 413)
            await too_large(scope, receive, send)
            return
        try:
            self._verifier.verify(
                headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), body
            )
        except SignatureError as err:
            log.warning("refused %s %s: %s", scope["method"], scope["path"], err)
            await JSONResponse({"detail": str(err)}, 401)(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: disconnects come from the server
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)


async def _read_body(receive: Receive, headers: Headers) -> bytes | None:
    """The whole body, or None when it is larger than MAX_BODY_BYTES."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class TemporalConnection:
    """One client for the process, connected on first use (the API may start before Temporal)."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self._factory()
                except RuntimeError as err:
                    log.error("cannot reach Temporal: %s", err)
                    raise HTTPException(503, "Temporal is unavailable; retry later") from None
            return self._client


def _invalid(exc: ValidationError, rename: dict[str, str] | None = None) -> RequestValidationError:
    """A model built from the body failed: answer 422 naming the body's field, as FastAPI does."""
    errors = []
    for error in exc.errors(include_url=False):
        loc = [(rename or {}).get(str(p), p) for p in error["loc"]]
        errors.append({**error, "loc": ("body", *loc)})
    return RequestValidationError(errors)


def _open_case_data(form: CaseRequest, settings: Settings) -> OpenCase:
    try:
        customer = Customer(
            tenant_id=form.tenant_id, name=form.name, email=form.email, locale=form.locale
        )
        details = CaseDetails(
            customer=customer,
            subscription_id=form.subscription_id,
            invoice_id=form.invoice_id,
            category=form.category,
            disputed_amount=form.amount,
            currency=form.currency,
            description=form.description,
            priority=form.priority,
        )
        return OpenCase(
            case_id=form.case_id or starter.new_case_id(),
            details=details,
            owner=form.owner,
            opened_by=form.opened_by,
            policy=settings.case_policy(),
        )
    except ValidationError as exc:
        raise _invalid(exc, {"disputed_amount": "amount"}) from None


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


def create_app(settings: Settings, client_factory: ClientFactory | None = None) -> FastAPI:
    """The intake app; raises SettingsError (naming WEBHOOK_SECRET, or the missing encryption
    key) when it cannot run safely."""
    verifier = Verifier(webhook_secret(settings))
    settings.case_policy(), settings.collections_policy()  # a broken policy file stops the start
    if client_factory is None:
        data_converter(settings)  # no encryption key, no start: nothing reaches Temporal in clear
    temporal = TemporalConnection(client_factory or (lambda: connect(settings)))
    app = FastAPI(
        title="Billing support intake",
        version="1",
        description=(
            "Signed webhooks of the billing system and case intake for a Partner Center "
            "operated by 21Vianet partner. Sign each request: `X-Signature-Timestamp` = unix "
            "seconds, `X-Signature` = hex HMAC-SHA256(secret, `{timestamp}.{raw body}`)."
        ),
    )
    app.add_middleware(SignedRequests, verifier=verifier)

    @app.exception_handler(RPCError)
    async def temporal_trouble(_: Any, err: RPCError) -> JSONResponse:
        log.error("Temporal: %s (%s)", err.message, err.status.name if err.status else "-")
        return JSONResponse({"detail": "Temporal is unavailable; retry later"}, 503)

    @app.post(
        "/v1/billing-failures",
        status_code=status.HTTP_202_ACCEPTED,
        responses={**UNSIGNED, 409: {"model": Problem, "description": "Collections ended"}},
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def billing_failure(failure: BillingFailure) -> FailureAccepted:
        """A failed payment: starts the invoice's collections, or joins the running one."""
        client = await temporal.get()
        try:
            result = await starter.report_billing_failure(failure, client=client, settings=settings)
        except starter.CaseError as err:
            raise HTTPException(409, str(err)) from None
        return FailureAccepted(
            result=result, workflow_id=starter.collections_id(failure.invoice_id)
        )

    @app.post(
        "/v1/payments",
        responses={
            **UNSIGNED,
            404: {"model": Problem, "description": "The invoice is not in collections"},
            409: {"model": Problem, "description": "Refused (ended, other invoice or currency)"},
        },
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def payment(payment: PaymentReceived) -> PaymentRecorded:
        """A payment received (full or partial); a repeated payment id is counted once."""
        client = await temporal.get()
        try:
            await client.get_workflow_handle(starter.collections_id(payment.invoice_id)).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                missing = f"invoice {payment.invoice_id} is not in collections"
                raise HTTPException(404, missing) from None
            raise
        try:
            view = await starter.record_payment(payment, client=client)
        except starter.CaseError as err:
            raise HTTPException(409, str(err)) from None
        return _payment_answer(view)

    @app.post(
        "/v1/cases",
        status_code=status.HTTP_201_CREATED,
        responses={**UNSIGNED, 409: {"model": Problem, "description": "The case id exists"}},
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def open_case(form: CaseRequest) -> CaseOpened:
        """Open a billing case: the customer is acknowledged, the owner notified."""
        data = _open_case_data(form, settings)
        client = await temporal.get()
        try:
            view = await starter.open_case(data, client=client, settings=settings)
        except starter.CaseError as err:
            raise HTTPException(409, str(err)) from None
        except WorkflowAlreadyStartedError:  # how the SDK reports ALREADY_EXISTS on start
            raise HTTPException(409, f"case {data.case_id} already exists") from None
        return CaseOpened(
            case_id=view.case_id, workflow_id=view.workflow_id, status=view.status.value
        )

    return app

"""The HTTP intake: the billing system's signed webhooks and case intake, in front of Temporal.

Every `/v1/` request is signed (see `api/signing.py`); the signature is checked on the raw bytes
before anything reads the body, so an unsigned request never reaches validation or Temporal, and an
invalid body (422) never reaches Temporal either. OpenAPI documentation is at /docs.

Thin over the service layer: each endpoint makes one call to it and maps its typed errors, with no
round trip of its own: not found 404, refused or already there 409, ended 410, Temporal
unavailable 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, status
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.models import CaseOpened, FailureAccepted, PaymentRecorded, Problem
from api.signing import (
    MIN_SECRET_LENGTH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_SECONDS,
    SignatureError,
    Verifier,
)
from core.ids import collections_workflow_id
from core.models import BillingFailure, CaseForm, CollectionsView, PaymentReceived
from core.settings import Settings, required_secret
from core.temporal import data_converter
from service import Service
from service.errors import AlreadyExists, Ended, NotFound, Refused, ServiceError, Unavailable

log = logging.getLogger("api")
ServiceFactory = Callable[[], Awaitable[Service]]
STATUS_OF: dict[type[ServiceError], int] = {
    NotFound: 404,
    Refused: 409,
    AlreadyExists: 409,
    Ended: 410,
    Unavailable: 503,
}
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
# what every signed endpoint may answer
COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Unsigned, wrongly signed, stale or replayed"},
    # FastAPI's answer to a body that is not UTF-8 text (JSON that does not parse gets a 422)
    400: {"model": Problem, "description": "The body is not UTF-8 text"},
    503: {"model": Problem, "description": "Temporal is unavailable: nothing changed, retry"},
}


def webhook_secret(settings: Settings) -> SecretStr:
    """The API only runs with a secret: without one anyone could start collections."""
    why = "the API accepts only signed requests"
    return required_secret(settings.webhook_secret, "WEBHOOK_SECRET", why, MIN_SECRET_LENGTH)


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


class ServiceConnection:
    """One service for the process, connected on first use (the API may start before Temporal)."""

    def __init__(self, factory: ServiceFactory) -> None:
        self._factory = factory
        self._service: Service | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Service:
        async with self._lock:
            if self._service is None:
                self._service = await self._factory()
            return self._service


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


def create_app(settings: Settings, service_factory: ServiceFactory | None = None) -> FastAPI:
    """The intake app; raises SettingsError (naming WEBHOOK_SECRET, or the missing encryption
    key) when it cannot run safely."""
    verifier = Verifier(webhook_secret(settings))
    settings.case_policy(), settings.collections_policy()  # a broken policy file stops the start
    if service_factory is None:
        data_converter(settings)  # no encryption key, no start: nothing reaches Temporal in clear
    connection = ServiceConnection(service_factory or (lambda: Service.connect(settings)))
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

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, err: Exception) -> JSONResponse:
        code = next(code for kind, code in STATUS_OF.items() if isinstance(err, kind))
        if code == 503:
            log.error("%s", err)
            return JSONResponse({"detail": "Temporal is unavailable; retry later"}, code)
        return JSONResponse({"detail": str(err)}, code)

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
    async def payment(payment: PaymentReceived) -> PaymentRecorded:
        """A payment received (full or partial); a repeated payment id is counted once."""
        service = await connection.get()
        return _payment_answer(await service.collections.act(payment.invoice_id, payment))

    @app.post(
        "/v1/cases",
        status_code=status.HTTP_201_CREATED,
        responses={**COMMON, 409: {"model": Problem, "description": "The case id exists"}},
        openapi_extra=SIGNATURE_PARAMETERS,
    )
    async def open_case(form: CaseForm) -> CaseOpened:
        """Open a billing case: the customer is acknowledged, the owner notified."""
        service = await connection.get()
        view = await service.cases.open(service.cases.prepare(form))
        return CaseOpened(
            case_id=view.case_id, workflow_id=view.workflow_id, status=view.status.value
        )

    return app

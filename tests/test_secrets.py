"""Secrets stay secret: a whole collections case runs with known secret values (SendGrid key,
Partner Center client secret, webhook secret, codec key and token) through the real SendGrid client,
the real Partner Center client, the signed HTTP intake and the codec endpoint, with a retry on each
service; then every log record (DEBUG and up, tracebacks included) and the whole history, raw and
decrypted, are searched for them. Each stand-in saw its secret, so the secrets really went by."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.codec import create_codec_app
from api.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from core.codec import new_key
from core.ids import collections_workflow_id
from core.models import CollectionsStatus
from core.settings import EmailBackend, Settings
from core.temporal import StampActions, data_converter
from service import Service
from tests.clock_support import eventually
from tests.codec_support import decrypted, raw_history
from tests.intake_support import billing_failure_body, unique_prefix
from tests.partner_center_standin import (
    CLIENT_SECRET,
    PartnerCenterStandIn,
    partner_center_settings,
    partner_center_standin_fixture,  # noqa: F401  (pytest fixture "partner_center_standin")
)
from tests.sendgrid_standin import (
    SendGridStandIn,
    sendgrid_standin_fixture,  # noqa: F401  (pytest fixture "sendgrid_standin")
    server_error,
)
from worker import build_worker
from workflows.collections import CollectionsWorkflow

SENDGRID_KEY = "SG.known-sendgrid-key.must-never-leak-3c1d"
WEBHOOK_SECRET = "known-webhook-secret-must-never-leak-71ab"  # the billing system's
PORTAL_SECRET = "known-portal-secret-must-never-leak-93cd"
CODEC_TOKEN = "known-codec-token-must-never-leak-0e5f"
CODEC_KEY = new_key()


@pytest.fixture
def settings(
    tmp_path: Path, sendgrid_standin: SendGridStandIn, partner_center_standin: PartnerCenterStandIn
) -> Iterator[Settings]:
    settings = partner_center_settings(
        tmp_path,  # suspension on day 0
        partner_center_standin,
        "secrets",
        email_backend=EmailBackend.SENDGRID,
        sendgrid_api_key=SecretStr(SENDGRID_KEY),
        sendgrid_host=sendgrid_standin.host,
        billing_webhook_secrets=SecretStr(WEBHOOK_SECRET),
        portal_webhook_secrets=SecretStr(PORTAL_SECRET),
        codec_keys=SecretStr(f"known-1:{CODEC_KEY}"),
        codec_token=SecretStr(CODEC_TOKEN),
    )
    yield settings


def secrets_in(text: str) -> list[str]:
    known = (SENDGRID_KEY, CLIENT_SECRET, WEBHOOK_SECRET, PORTAL_SECRET, CODEC_KEY, CODEC_TOKEN)
    return [secret for secret in known if secret in text]


def signed(body: dict[str, Any], path: str, secret: str = WEBHOOK_SECRET) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    now, key = int(time.time()), str(uuid.uuid4())
    headers = {
        KEY_HEADER: key,
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: sign(secret, now, raw, path=path, key=key),
    }
    return {"content": raw, "headers": {"Content-Type": "application/json", **headers}}


async def test_no_secret_in_logs_errors_or_history(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    sendgrid_standin: SendGridStandIn,
    partner_center_standin: PartnerCenterStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert not secrets_in(repr(settings)) and not secrets_in(str(settings))
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        data_converter=data_converter(settings),
        interceptors=[StampActions()],
    )
    invoice = unique_prefix()
    body = billing_failure_body(invoice, f"{invoice}-F1", amount_due="3000.00")
    tenant = body["customer"]["tenant_id"]
    for subscription in body["subscription_ids"]:
        partner_center_standin.add_subscription(tenant, subscription)
    # one failure of each service on the way: their errors and retries get logged too
    sendgrid_standin.script(server_error())
    partner_center_standin.fail_next(503)

    async def connect() -> Service:
        return Service(client, settings)

    intake = httpx.ASGITransport(app=create_app(settings, connect))
    codec_app = httpx.ASGITransport(app=create_codec_app(settings))
    async with (
        build_worker(client, settings),
        httpx.AsyncClient(transport=intake, base_url="http://intake") as api,
        httpx.AsyncClient(transport=codec_app, base_url="http://codec") as codec_http,
    ):
        failures = "/v1/billing-failures"
        wrong = await api.post(failures, **signed(body, failures, "a-wrong-secret-0123456"))
        assert wrong.status_code == 401
        accepted = await api.post(failures, **signed(body, failures))
        assert accepted.status_code == 202, accepted.text
        handle = client.get_workflow_handle_for(
            CollectionsWorkflow.run, collections_workflow_id(invoice)
        )

        async def suspended() -> bool:  # in Partner Center, by the customer's account
            statuses = {
                partner_center_standin.subscription(tenant, subscription)["status"]
                for subscription in body["subscription_ids"]
            }
            return statuses == {"suspended"}

        await eventually(suspended)
        payment = {
            "payment_id": f"{invoice}-P1",
            "invoice_id": invoice,
            "amount": "3000.00",
            "received_at": "2026-11-25T10:00:00+08:00",
        }
        paid = await api.post("/v1/payments", **signed(payment, "/v1/payments"))
        assert paid.status_code == 200, paid.text
        result = await handle.result()
        assert result.status is CollectionsStatus.PAID and result.paid == Decimal("3000.00")

        # the customer's account suspends and reactivates (Partner Center) and sends the
        # reactivation's letter, after the invoice ended
        async def every_email() -> bool:
            patches = [r for r in partner_center_standin.api_requests if r.method == "PATCH"]
            changed = len(patches) >= 2 * len(body["subscription_ids"])
            return changed and len(sendgrid_standin.requests) >= 4

        await eventually(every_email)

        # the UI's codec endpoint: one refused request, one decoded history event
        refused = await codec_http.post("/decode", json={"payloads": []})
        assert refused.status_code == 401
        # the header form: a URL carrying the token would sit in this client's own request log
        token = {"Authorization": f"Bearer {CODEC_TOKEN}", "X-Namespace": "default"}
        decoded = await codec_http.post("/decode", json={"payloads": []}, headers=token)
        assert decoded.status_code == 200

    # the secrets did travel: each stand-in received its own
    assert all(
        r.headers["Authorization"] == f"Bearer {SENDGRID_KEY}" for r in sendgrid_standin.requests
    )

    assert len(sendgrid_standin.requests) >= 4  # the failed attempt, then every email
    assert any(CLIENT_SECRET.encode() in r.body for r in partner_center_standin.token_requests)

    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    leaks = [
        (record.name, found)
        for record in caplog.records
        if (found := secrets_in(formatter.format(record)))
    ]
    assert not leaks, leaks
    # the retried failures were logged with their tracebacks: the search covered error paths
    assert any(r.levelno == logging.WARNING and r.exc_info for r in caplog.records)

    stored = await raw_history(client, handle.id)
    codec = client.data_converter.payload_codec
    assert codec is not None
    opened = await decrypted(await handle.fetch_history(), codec)
    readable = b"".join(event.SerializeToString() for event in opened.events)
    for secret in (
        SENDGRID_KEY,
        CLIENT_SECRET,
        WEBHOOK_SECRET,
        PORTAL_SECRET,
        CODEC_KEY,
        CODEC_TOKEN,
    ):
        assert secret.encode() not in stored and secret.encode() not in readable, secret
    assert body["customer"]["email"].encode() in readable  # the decrypted history is readable

"""The HTTP intake on the real dev server with the real worker: signed requests start or join
collections, record payments and open cases; anything unsigned, wrongly signed, stale, replayed
or invalid gets 401/422 and starts nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_SECONDS,
    ReplayCache,
    SignatureError,
    Verifier,
    sign,
)
from core.settings import Settings, SettingsError
from service import Service
from tests.intake_support import (
    WEBHOOK_SECRET,
    billing_failure_body,
    guid,
    post,
    signed,
    unique_prefix,
)
from workflows.collections import CollectionsWorkflow


@pytest_asyncio.fixture
async def api(dev_env: WorkflowEnvironment, running: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the test server's client injected, served in-process over ASGI, in front of
    the real worker."""

    settings = running.model_copy(update={"webhook_secret": SecretStr(WEBHOOK_SECRET)})

    async def service() -> Service:
        return Service(dev_env.client, settings)

    app = create_app(settings, service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


async def exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        assert err.status is RPCStatusCode.NOT_FOUND
        return False
    return True


async def test_billing_failure_starts_then_joins(
    dev_env: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    invoice = unique_prefix()
    body = billing_failure_body(invoice, f"{invoice}-F1")
    first = await post(api, "/v1/billing-failures", body)
    assert first.status_code == 202, first.text
    assert first.json() == {"result": "started", "workflow_id": f"collections-{invoice}"}
    again = await post(api, "/v1/billing-failures", body)  # a retried webhook
    assert again.status_code == 202 and again.json()["result"] == "joined"
    handle = dev_env.client.get_workflow_handle_for(
        CollectionsWorkflow.run, f"collections-{invoice}"
    )
    view = await handle.query(CollectionsWorkflow.view)
    assert view.failures == [f"{invoice}-F1"]  # the same failure id is counted once


async def test_refused_requests_start_nothing(
    dev_env: WorkflowEnvironment, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    invoice = unique_prefix()
    raw, good = signed(billing_failure_body(invoice, f"{invoice}-F1"))
    now = int(time.time())
    attempts: dict[str, dict[str, str]] = {
        "unsigned": {"Content-Type": "application/json"},
        "no timestamp": {k: v for k, v in good.items() if k != TIMESTAMP_HEADER},
        "wrong secret": signed(raw, secret="not-the-webhook-secret-at-all")[1],
        "stale": signed(raw, at=now - WINDOW_SECONDS - 5)[1],
        "from the future": signed(raw, at=now + WINDOW_SECONDS + 5)[1],
        "other body": signed(raw.replace(b"12340.50", b"1.00"))[1],
        "timestamp not a number": {**good, TIMESTAMP_HEADER: "yesterday"},
        "signature not hex": {**good, SIGNATURE_HEADER: "zz-not-hex"},
    }
    for name, headers in attempts.items():
        response = await api.post("/v1/billing-failures", content=raw, headers=headers)
        assert response.status_code == 401, (name, response.text)
    # the signature is checked before the body is read: malformed JSON unsigned is still 401
    garbage = await api.post("/v1/billing-failures", content=b"{not json", headers={})
    assert garbage.status_code == 401
    assert not await exists(dev_env.client, f"collections-{invoice}")

    # the genuine request once; its exact replay is refused and never reaches Temporal
    accepted = await api.post("/v1/billing-failures", content=raw, headers=good)
    assert accepted.status_code == 202
    replayed = await api.post("/v1/billing-failures", content=raw, headers=good)
    assert replayed.status_code == 401 and "already received" in replayed.json()["detail"]
    history = await dev_env.client.get_workflow_handle(f"collections-{invoice}").fetch_history()
    # the failure started the workflow, and nothing else reached it
    arrivals = [
        e.event_type
        for e in history.events
        if e.event_type
        in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        )
    ]
    assert arrivals == [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]

    # the secret is never echoed or logged
    assert WEBHOOK_SECRET not in caplog.text
    assert WEBHOOK_SECRET not in replayed.text


async def test_bad_bodies_name_the_field_and_start_nothing(
    dev_env: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    invoice = unique_prefix()
    negative = billing_failure_body(invoice, f"{invoice}-F1", amount_due="-5.00")
    response = await post(api, "/v1/billing-failures", negative)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "amount_due"]]

    bad_tenant = billing_failure_body(invoice, f"{invoice}-F2")
    bad_tenant["customer"]["tenant_id"] = "not-a-guid"
    response = await post(api, "/v1/billing-failures", bad_tenant)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "customer", "tenant_id"]

    missing = billing_failure_body(invoice, f"{invoice}-F3")
    del missing["invoice_id"]
    response = await post(api, "/v1/billing-failures", missing)
    assert response.status_code == 422 and "invoice_id" in response.text

    response = await post(api, "/v1/billing-failures", b'{"failure_id": ')
    assert response.status_code == 422
    assert not await exists(dev_env.client, f"collections-{invoice}")


async def test_payments(dev_env: WorkflowEnvironment, api: httpx.AsyncClient) -> None:
    invoice = unique_prefix()
    payment: dict[str, Any] = {
        "payment_id": f"{invoice}-P1",
        "invoice_id": invoice,
        "amount": "4000.50",
        "currency": "CNY",
        "received_at": "2026-11-25T10:00:00+08:00",
    }
    unknown = await post(api, "/v1/payments", payment)
    assert unknown.status_code == 404 and "not in collections" in unknown.json()["detail"]

    failure = billing_failure_body(invoice, f"{invoice}-F1", amount_due="10000.00")
    assert (await post(api, "/v1/billing-failures", failure)).status_code == 202
    paid = await post(api, "/v1/payments", payment)
    assert paid.status_code == 200, paid.text
    answer = paid.json()
    assert answer["balance"] == "5999.50" and answer["status"] == "active"
    assert answer["workflow_id"] == f"collections-{invoice}"
    again = await post(api, "/v1/payments", payment)
    assert again.status_code == 200 and again.json()["balance"] == "5999.50"

    dollars = {**payment, "payment_id": f"{invoice}-P2", "currency": "USD"}
    refused = await post(api, "/v1/payments", dollars)
    assert refused.status_code == 409 and "currency" in refused.json()["detail"]
    bad = await post(api, "/v1/payments", {**payment, "amount": "0"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "amount"]


async def test_open_case(dev_env: WorkflowEnvironment, api: httpx.AsyncClient) -> None:
    case_id = f"BC-{unique_prefix()}"
    form: dict[str, Any] = {
        "tenant_id": guid("tenant", case_id),
        "name": "上海云帆信息科技有限公司",
        "email": "finance@yunfan.example.cn",
        "category": "invoice-dispute",
        "description": "2 月发票中的虚拟机费用比上月高出 ¥12,340.00。",
        "invoice_id": "G012345678",
        "amount": "12340.00",
        "priority": "high",
        "case_id": case_id,
        "opened_by": "portal",
    }
    opened = await post(api, "/v1/cases", form)
    assert opened.status_code == 201, opened.text
    assert opened.json() == {"case_id": case_id, "workflow_id": f"case-{case_id}", "status": "open"}
    again = await post(api, "/v1/cases", form)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]

    other = f"BC-{unique_prefix()}"
    bell = await post(api, "/v1/cases", {**form, "case_id": other, "name": "Yunfan\x07"})
    assert bell.status_code == 422 and bell.json()["detail"][0]["loc"] == ["body", "name"]
    negative = await post(api, "/v1/cases", {**form, "case_id": other, "amount": "-1"})
    assert negative.status_code == 422
    assert negative.json()["detail"][0]["loc"] == ["body", "amount"]
    assert not await exists(dev_env.client, f"case-{other}")


async def test_docs_are_open_and_list_the_signature(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200
    schema = (await api.get("/openapi.json")).json()
    assert {"/v1/billing-failures", "/v1/payments", "/v1/cases"} <= set(schema["paths"])
    headers = {p["name"] for p in schema["paths"]["/v1/payments"]["post"]["parameters"]}
    assert headers == {SIGNATURE_HEADER, TIMESTAMP_HEADER}


def test_the_api_needs_a_secret(tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET is not set"):
        create_app(Settings(webhook_secret=None))
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET must be at least 16"):
        create_app(Settings(webhook_secret=SecretStr("short")))
    assert "short" not in repr(Settings(webhook_secret=SecretStr("short")))


def test_signing_window_and_replay_cache() -> None:
    verifier = Verifier(SecretStr(WEBHOOK_SECRET), ReplayCache(max_entries=2))
    body = b'{"x": 1}'
    at = 1_800_000_000
    verifier.verify(str(at), sign(WEBHOOK_SECRET, at, body), body, now=at + WINDOW_SECONDS)
    with pytest.raises(SignatureError, match="window"):
        verifier.verify(str(at), sign(WEBHOOK_SECRET, at, body), body, now=at + WINDOW_SECONDS + 1)
    with pytest.raises(SignatureError, match="already received"):
        verifier.verify(str(at), sign(WEBHOOK_SECRET, at, body), body, now=at + 1)
    # bounded: the oldest entry makes room, and entries expire after the window
    cache = ReplayCache(window=10, max_entries=2)
    assert cache.first_time("a", 0) and cache.first_time("b", 1) and cache.first_time("c", 2)
    assert len(cache) == 2 and cache.first_time("a", 3)
    assert not cache.first_time("c", 4)
    assert cache.first_time("c", 100) and len(cache) == 1
    assert sign("k", 1, "body") == sign(SecretStr("k"), 1, b"body")


async def test_ended_collections_answer_410_and_another_tenant_409(
    dev_env: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    invoice = unique_prefix()
    first = billing_failure_body(invoice, f"{invoice}-F1", amount_due="10000.00")
    assert (await post(api, "/v1/billing-failures", first)).status_code == 202
    # a later failure of the same invoice under another tenant is refused, naming the field
    stranger = billing_failure_body(invoice, f"{invoice}-F2")
    stranger["customer"]["tenant_id"] = guid("someone else", invoice)
    refused = await post(api, "/v1/billing-failures", stranger)
    assert refused.status_code == 409 and "customer.tenant_id" in refused.json()["detail"]

    await dev_env.client.get_workflow_handle(f"collections-{invoice}").terminate("test")
    again = billing_failure_body(invoice, f"{invoice}-F3", amount_due="10000.00")
    ended = await post(api, "/v1/billing-failures", again)
    assert ended.status_code == 410 and "already ended (terminated)" in ended.json()["detail"]
    payment = {
        "payment_id": f"{invoice}-P1",
        "invoice_id": invoice,
        "amount": "1.00",
        "received_at": "2026-11-25T10:00:00+08:00",
    }
    late = await post(api, "/v1/payments", payment)
    assert late.status_code == 410 and "has ended (terminated)" in late.json()["detail"]


async def test_temporal_unavailable_answers_503_and_says_retry(running: Settings) -> None:
    settings = running.model_copy(update={"webhook_secret": SecretStr(WEBHOOK_SECRET)})

    async def service() -> Service:
        return await Service.connect(settings)  # to TEMPORAL_ADDRESS, where nothing listens

    app = create_app(settings, service)
    transport = httpx.ASGITransport(app=app)
    invoice = unique_prefix()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            body = billing_failure_body(invoice, f"{invoice}-F1")
            answer = await post(http, "/v1/billing-failures", body)
    assert answer.status_code == 503 and "retry" in answer.json()["detail"]

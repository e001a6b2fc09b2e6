"""The HTTP intake on the real dev server with the real worker: signed requests start or join
collections, record payments and open cases; anything unsigned, wrongly signed, stale, replayed
or invalid gets 401/422 and starts nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.idempotency import PENDING, PENDING_TTL
from api.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_SECONDS,
    SignatureError,
    Verifier,
    sign,
)
from core.models import EventKind
from core.settings import Settings, SettingsError, split_secrets
from db.session import make_engine, make_session_factory
from db.tables import IntakeRequest
from service import Service
from service.errors import Unavailable
from tests.intake_support import (
    BILLING_SECRET,
    PORTAL_SECRET,
    SIGNED,
    billing_failure_body,
    guid,
    portal_case,
    post,
    signed,
    unique_prefix,
)
from workflows.collections import CollectionsWorkflow


@pytest_asyncio.fixture
async def api(dev_env: WorkflowEnvironment, running: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the test server's client injected, served in-process over ASGI, in front of
    the real worker."""

    async with intake(dev_env.client, running) as http:
        yield http


@asynccontextmanager
async def intake(client: Client, running: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One API process (an app over the same database and Temporal)."""
    settings = running.model_copy(update=SIGNED)

    async def service() -> Service:
        return Service(client, settings)

    transport = httpx.ASGITransport(app=create_app(settings, service))
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


async def arrivals(client: Client, workflow_id: str) -> list[EventType.ValueType]:
    """What reached the workflow from outside: its start, signals, accepted updates."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    )
    return [e.event_type for e in history.events if e.event_type in kinds]


async def test_refused_requests_start_nothing(
    dev_env: WorkflowEnvironment, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    invoice = unique_prefix()
    path = "/v1/billing-failures"
    key = f"{invoice}-delivery-1"
    raw, good = signed(billing_failure_body(invoice, f"{invoice}-F1"), path=path, key=key)
    now = int(time.time())
    attempts: dict[str, dict[str, str]] = {
        "unsigned": {"Content-Type": "application/json", KEY_HEADER: key},
        "no timestamp": {k: v for k, v in good.items() if k != TIMESTAMP_HEADER},
        "wrong secret": signed(raw, path=path, key=key, secret="not-the-secret-at-all")[1],
        "the portal's secret": signed(raw, path=path, key=key, secret=PORTAL_SECRET)[1],
        "stale": signed(raw, path=path, key=key, at=now - WINDOW_SECONDS - 5)[1],
        "from the future": signed(raw, path=path, key=key, at=now + WINDOW_SECONDS + 5)[1],
        "other body": signed(raw.replace(b"12340.50", b"1.00"), path=path, key=key)[1],
        "signed for another path": signed(raw, path="/v1/payments", key=key)[1],
        "another key than signed": {**good, KEY_HEADER: f"{key}-2"},
        "timestamp not a number": {**good, TIMESTAMP_HEADER: "yesterday"},
        "signature not hex": {**good, SIGNATURE_HEADER: "zz-not-hex"},
    }
    for name, headers in attempts.items():
        response = await api.post(path, content=raw, headers=headers)
        assert response.status_code == 401, (name, response.text)
    # the signature is checked before the body is read: malformed JSON unsigned is still 401
    garbage = await api.post(path, content=b"{not json", headers={})
    assert garbage.status_code == 401
    # signed, but without an idempotency key: 400, naming the header
    raw_no_key, no_key = signed(raw, path=path, key="")
    missing = await api.post(path, content=raw_no_key, headers=no_key)
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["detail"]
    assert not await exists(dev_env.client, f"collections-{invoice}")

    # the genuine request once; its exact replay is answered as the first, never carried out
    accepted = await api.post(path, content=raw, headers=good)
    assert accepted.status_code == 202
    replayed = await api.post(path, content=raw, headers=good)
    assert replayed.status_code == 202 and replayed.json() == accepted.json()
    assert replayed.headers["Idempotent-Replayed"] == "true"
    workflow_id = f"collections-{invoice}"
    assert await arrivals(dev_env.client, workflow_id) == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    ]
    # the same key for another request, properly signed: refused
    other_raw, other = signed(billing_failure_body(invoice, f"{invoice}-F9"), path=path, key=key)
    reused = await api.post(path, content=other_raw, headers=other)
    assert reused.status_code == 409 and "used for another request" in reused.json()["detail"]

    # the secrets are never echoed or logged
    for secret in (BILLING_SECRET, PORTAL_SECRET):
        assert secret not in caplog.text and secret not in replayed.text


async def test_keys_are_shared_by_every_api_process_and_kept_across_restarts(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    invoice = unique_prefix()
    case_form = portal_case(guid("tenant", invoice))
    raw, headers = signed(case_form, path="/v1/cases", key=f"{invoice}-open")
    async with intake(dev_env.client, running) as first:
        opened = await first.post("/v1/cases", content=raw, headers=headers)
    assert opened.status_code == 201, opened.text
    # another process, or this one after a restart: the same answer, no second case
    async with intake(dev_env.client, running) as second:
        again = await second.post("/v1/cases", content=raw, headers=headers)
    assert again.status_code == 201 and again.json() == opened.json()
    mine = f'TaskQueue = "{running.cases_task_queue}" AND WorkflowType = "BillingCaseWorkflow"'
    ids = [w.id async for w in dev_env.client.list_workflows(mine)]
    assert ids == [opened.json()["workflow_id"]]


def died_before_answering(running: Settings, key: str) -> None:
    """As if the API process was killed after its request acted and before its answer was kept:
    the key's claim left pending, and old enough for a retry to take it over."""
    sessions = make_session_factory(make_engine(running.database_url))
    with sessions.begin() as session:
        row = session.scalars(
            select(IntakeRequest).where(IntakeRequest.idempotency_key == key)
        ).one()
        row.state, row.response_status, row.response_body = PENDING, None, None
        row.updated_at = datetime.now(UTC) - PENDING_TTL - timedelta(seconds=1)


async def test_a_retry_after_the_process_died_acts_once(
    dev_env: WorkflowEnvironment, running: Settings, api: httpx.AsyncClient
) -> None:
    """Found by `make chaos`: the retry opened a second case (a new id each attempt), and a
    payment that had ended the collections was answered 410."""
    invoice = unique_prefix()
    form = portal_case(guid("tenant", invoice))
    opened = await post(api, "/v1/cases", form, key=f"{invoice}-open")
    assert opened.status_code == 201, opened.text
    died_before_answering(running, f"{invoice}-open")
    again = await post(api, "/v1/cases", form, key=f"{invoice}-open")
    assert again.status_code == 201 and again.json() == opened.json()
    mine = f'TaskQueue = "{running.cases_task_queue}" AND WorkflowType = "BillingCaseWorkflow"'
    assert [w.id async for w in dev_env.client.list_workflows(mine)] == [
        opened.json()["workflow_id"]
    ]

    failure = billing_failure_body(invoice, f"{invoice}-F1", amount_due="100.00")
    assert (await post(api, "/v1/billing-failures", failure)).status_code == 202
    payment = {
        "payment_id": f"{invoice}-P1",
        "invoice_id": invoice,
        "amount": "100.00",
        "currency": "CNY",
        "received_at": "2026-11-25T10:00:00+08:00",
    }
    paid = await post(api, "/v1/payments", payment, key=f"{invoice}-pay")
    assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
    await dev_env.client.get_workflow_handle(f"collections-{invoice}").result()  # it ended
    died_before_answering(running, f"{invoice}-pay")
    again = await post(api, "/v1/payments", payment, key=f"{invoice}-pay")
    assert again.status_code == 200 and again.json() == paid.json()


async def test_a_retry_after_temporal_was_down_is_carried_out(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    """A key is remembered only with a final answer: after a 503 the same request runs."""
    settings = running.model_copy(update=SIGNED)
    down = True

    async def service() -> Service:
        if down:
            raise Unavailable("Temporal is unavailable: test")
        return Service(dev_env.client, settings)

    invoice = unique_prefix()
    raw, headers = signed(
        billing_failure_body(invoice, f"{invoice}-F1"),
        path="/v1/billing-failures",
        key=f"{invoice}-1",
    )
    transport = httpx.ASGITransport(app=create_app(settings, service))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        failed = await http.post("/v1/billing-failures", content=raw, headers=headers)
        assert failed.status_code == 503
        down = False
        retried = await http.post("/v1/billing-failures", content=raw, headers=headers)
    assert retried.status_code == 202 and retried.json()["result"] == "started"


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
    tenant = guid("tenant", unique_prefix())
    form: dict[str, Any] = {
        "tenant_id": tenant,
        "name": "上海云帆信息科技有限公司",
        "email": "finance@yunfan.example.cn",
        "category": "invoice-dispute",
        "description": "2 月发票中的虚拟机费用比上月高出 ¥12,340.00。",
        "invoice_id": "G012345678",
        "amount": "12340.00",
        "priority": "high",
    }
    opened = await post(api, "/v1/cases", form, key=f"{tenant}-1")
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["case_id"]
    assert opened.json() == {"case_id": case_id, "workflow_id": f"case-{case_id}", "status": "open"}
    assert case_id.startswith("BC-") and len(case_id) == 29  # a ULID: never the caller's
    # a case id of the caller's own is refused: a retry is known by its idempotency key
    chosen = await post(api, "/v1/cases", {**form, "case_id": "BC-MINE"})
    assert chosen.status_code == 422 and chosen.json()["detail"][0]["loc"] == ["body", "case_id"]

    bell = await post(api, "/v1/cases", {**form, "name": "Yunfan\x07"})
    assert bell.status_code == 422 and bell.json()["detail"][0]["loc"] == ["body", "name"]
    negative = await post(api, "/v1/cases", {**form, "amount": "-1"})
    assert negative.status_code == 422
    assert negative.json()["detail"][0]["loc"] == ["body", "amount"]
    nul = await post(api, "/v1/cases", {**form, "description": "deleted\u0000 VM"})
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"][0]["msg"]


async def test_the_actor_is_the_signing_caller_never_a_body_field(
    dev_env: WorkflowEnvironment, running: Settings, api: httpx.AsyncClient
) -> None:
    service = Service(dev_env.client, running.model_copy(update=SIGNED))
    invoice = unique_prefix()
    form = portal_case(guid("tenant", invoice))
    for name in ("opened_by", "by"):  # a body naming who acts is refused, naming the field
        named = await post(api, "/v1/cases", {**form, name: "zhang.wei@partner.example.cn"})
        assert named.status_code == 422 and named.json()["detail"][0]["loc"] == ["body", name]
    assigned = {**form, "owner": "agent.wang@partner.example.cn"}  # the assignee may be named
    opened = await post(api, "/v1/cases", assigned)
    assert opened.status_code == 201, opened.text
    case = await service.cases.show(opened.json()["case_id"])
    assert case.opened_by == "portal (API)" and case.owner == "agent.wang@partner.example.cn"
    assert [e.actor for e in case.timeline if e.kind is EventKind.OPENED] == ["portal (API)"]

    failure = billing_failure_body(invoice, f"{invoice}-F1", amount_due="100.00")
    assert (await post(api, "/v1/billing-failures", failure)).status_code == 202
    payment = {
        "payment_id": f"{invoice}-P1",
        "invoice_id": invoice,
        "amount": "40.00",
        "received_at": "2026-11-25T10:00:00+08:00",
    }
    by_someone = await post(api, "/v1/payments", {**payment, "by": "finance.manager"})
    assert by_someone.status_code == 422
    assert by_someone.json()["detail"][0]["loc"] == ["body", "by"]
    assert (await post(api, "/v1/payments", payment)).status_code == 200
    view = await service.collections.show(invoice)
    paid = [e.actor for e in view.timeline if e.kind is EventKind.PAYMENT_RECEIVED]
    assert paid == ["billing (API)"]


async def test_docs_are_open_and_list_the_signature(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200
    schema = (await api.get("/openapi.json")).json()
    assert {"/v1/billing-failures", "/v1/payments", "/v1/cases"} <= set(schema["paths"])
    headers = {p["name"] for p in schema["paths"]["/v1/payments"]["post"]["parameters"]}
    assert headers == {SIGNATURE_HEADER, TIMESTAMP_HEADER, KEY_HEADER}
    # who acts is the caller: the bodies name nobody, and take no other field
    bodies = schema["components"]["schemas"]
    case, payment = bodies["CaseRequest"], bodies["PaymentReport"]
    assert "opened_by" not in case["properties"] and "owner" in case["properties"]
    assert "by" not in payment["properties"]
    assert case["additionalProperties"] is False and payment["additionalProperties"] is False


def test_the_api_needs_each_callers_secret() -> None:
    billing = SecretStr(BILLING_SECRET)
    with pytest.raises(SettingsError, match="PORTAL_WEBHOOK_SECRETS is not set"):
        create_app(Settings(billing_webhook_secrets=billing, portal_webhook_secrets=None))
    short = SecretStr("short")
    with pytest.raises(SettingsError, match="BILLING_WEBHOOK_SECRETS must be at least 16"):
        create_app(Settings(billing_webhook_secrets=short, portal_webhook_secrets=billing))
    three = SecretStr(",".join([BILLING_SECRET] * 3))
    with pytest.raises(SettingsError, match="at most 2 secrets"):
        create_app(Settings(billing_webhook_secrets=three, portal_webhook_secrets=billing))
    assert "short" not in repr(Settings(billing_webhook_secrets=short))


def test_signatures_cover_method_path_key_and_body_and_rotate() -> None:
    old, new = "the-old-secret-of-billing", "the-new-secret-of-billing"
    verifier = Verifier(split_secrets(SecretStr(f"{old},{new}")))
    body = b'{"x": 1}'
    at = 1_800_000_000
    where = {"method": "POST", "path": "/v1/payments", "key": "k-1"}

    def check(secret: str, now: int, **changes: str) -> None:
        asked = {**where, **changes}
        signature = sign(secret, at, body, **where)
        verifier.verify(str(at), signature, body=body, now=now, **asked)

    for secret in (old, new):  # both accepted while the caller moves over
        check(secret, at + WINDOW_SECONDS)
    with pytest.raises(SignatureError, match="window"):
        check(new, at + WINDOW_SECONDS + 1)
    for change in ({"method": "PUT"}, {"path": "/v1/cases"}, {"key": "k-2"}):
        with pytest.raises(SignatureError, match="does not match"):
            check(new, at, **change)
    with pytest.raises(SignatureError, match="does not match"):
        check("a-third-secret-not-given", at)
    assert sign("k", 1, "body", path="/p") == sign(SecretStr("k"), 1, b"body", path="/p")


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
    settings = running.model_copy(update=SIGNED)

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

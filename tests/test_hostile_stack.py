"""Hostile input on the real stack: the real worker and activities, PostgreSQL (where
TEST_DATABASE_URL is set, else SQLite), the signed API and the service layer the CLI uses.

Hypothesis sends, one field at a time, what a careless export, a confused client or an attacker
would: NUL and other C0/C1 controls, lone surrogates, bidi overrides, 60 KB of Chinese, huge,
negative and NaN amounts, other currencies and tenants, mistyped ids, and the same request
twice. Each one is either refused with a clear error naming the field (422, a ValidationError,
or the service's typed error) and changes nothing, or carried out. Then, once the workflows are
idle: no workflow FAILED, no activity past 3 attempts, nothing accepted lost (`verify` clean).

The first two checks are the issue's own findings: a dispute linked to a mistyped case id, and a
case whose description holds NUL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core import search
from core.models import (
    AddNote,
    Assign,
    BillingFailure,
    CaseOpened,
    CaseRequest,
    CollectionsStatus,
    CorrectContact,
    CustomerReply,
    Escalate,
    EventKind,
    LiftFraud,
    OpenDispute,
    PaymentReceived,
    PromiseToPay,
    Reopen,
    Reply,
    ReportFraud,
    RequestInfo,
    Resolve,
    RetryStep,
    SetOverrides,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from core.models.case_actions import LinkCase, MergeCase
from core.models.fapiao import RequestFapiao
from core.models.ledger import ApplyCredit, RequestRefund
from core.settings import Settings
from db.migrate import upgrade
from db.session import one_off_session
from db.tables import Case
from service import Kind, Service
from service.collections import Approve
from service.errors import Refused, ServiceError
from tests.clock_support import eventually
from tests.conftest import _reset_postgres
from tests.hostile import odd_text, poisoned_notes, values_for
from tests.intake_support import (
    SIGNED,
    billing_failure_body,
    failure_fields,
    guid,
    post,
    unique_prefix,
)
from tests.statement_support import YUNFAN, Transfer, balance, open_invoice, statement, stored
from tests.test_inbound import last_email
from worker import build_worker

D = Decimal
AGENT = "agent.hostile@partner.example.cn"
TEXT = "2 月发票中的虚拟机费用比上月高出 ¥12,340.00，请核实。"
# what a test of each kind builds from: one valid body; a field of it is replaced
CASE_FORM: dict[str, Any] = {
    "tenant_id": "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64",
    "name": "上海云帆信息科技有限公司",
    "email": "finance@yunfan.example.cn",
    "category": "invoice-dispute",
    "description": TEXT,
    "amount": "12340.00",
}
CASE_ACTIONS: dict[type[BaseModel], dict[str, Any]] = {
    AddNote: {"text": TEXT, "by": AGENT},
    Assign: {"agent": "agent.wang@partner.example.cn", "by": AGENT},
    UpdateContact: {"email": "ap@yunfan.example.cn", "by": AGENT},
    RequestInfo: {"question": TEXT, "by": AGENT},
    Reply: {"text": TEXT, "subject": "发票金额", "by": AGENT},
    CustomerReply: {"text": TEXT},
    Escalate: {"reason": TEXT, "severity": "B", "by": AGENT},
    VianetTicket: {"ticket_number": "VN-2612030001", "by": AGENT},
    VianetResponse: {"text": TEXT, "by": AGENT},
    Resolve: {"outcome": "credit-issued", "summary": TEXT, "credit_amount": "1", "by": AGENT},
    Reopen: {"reason": TEXT},
    Withdraw: {"reason": TEXT, "by": AGENT},
}
INVOICE_ACTIONS: dict[type[BaseModel], dict[str, Any]] = {
    OpenDispute: {"description": TEXT, "disputed_amount": "10.00", "by": AGENT},
    ReportFraud: {"reason": TEXT, "by": AGENT},
    PromiseToPay: {"until": "2026-12-20T10:00:00+08:00", "by": AGENT},
    CorrectContact: {"email": "ap@yunfan.example.cn", "by": AGENT},
    Approve: {"reason": TEXT, "by": AGENT},
}
# the actions between two cases of one customer (the other case's id is filled in), and the
# fapiao a case asks finance for
LINKED_ACTIONS: dict[type[BaseModel], dict[str, Any]] = {
    MergeCase: {"into": "", "by": AGENT},
    LinkCase: {"other": "", "by": AGENT},
    RequestFapiao: {
        "kind": "issue",
        "buyer_name": "上海云帆信息科技有限公司",
        "buyer_tax_id": "91310000MA1FL8XQ3C",
        "by": AGENT,
    },
}
ACCOUNT_ACTIONS: dict[type[BaseModel], dict[str, Any]] = {
    ApplyCredit: {"invoice_id": "G000123456", "currency": "CNY", "amount": "10.00", "by": AGENT},
    RequestRefund: {"currency": "CNY", "amount": "10.00", "reason": TEXT, "by": AGENT},
    LiftFraud: {"reason": TEXT, "by": AGENT},
    SetOverrides: {
        "overrides": {"exempt_from_suspension": True, "extra_grace_days": 5},
        "reason": TEXT,
        "by": AGENT,
    },
}


def database() -> str | None:
    return os.environ.get("TEST_DATABASE_URL")


@pytest_asyncio.fixture(scope="module")
async def stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The real worker on PostgreSQL (or SQLite), the signed API over ASGI, the service."""
    directory = tmp_path_factory.mktemp("hostile")
    url = database() or f"sqlite:///{directory / 'billing.db'}"
    if database():
        _reset_postgres(url)
    upgrade(url)
    settings = Settings(
        database_url=url,
        outbox_dir=directory / "outbox",
        task_queue=f"hostile-{uuid.uuid4()}",
        email_thread_secret=SecretStr("thread-secret-of-the-hostile-stack-0123"),
    ).model_copy(update=SIGNED)
    service = Service(dev_env.client, settings)

    async def connect() -> Service:
        return service

    transport = httpx.ASGITransport(app=create_app(settings, connect))
    async with (
        build_worker(dev_env.client, settings),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as api,
    ):
        yield service, api


def names_the_field(error: ValidationError, field: str) -> bool:
    """A field's own error; a model's check (no location: a fapiao's buyer needs both 抬头 and
    税号) names its fields in its message, which the caller reads."""
    return any(e["loc"] and str(e["loc"][0]) == field for e in error.errors())


def api_names_the_field(answer: httpx.Response, field: str) -> bool:
    detail = answer.json()["detail"]
    return isinstance(detail, list) and any(field in map(str, d["loc"]) for d in detail)


async def test_a_mistyped_case_id_in_a_dispute_is_refused_and_collections_runs_on(
    stack: tuple[Service, httpx.AsyncClient],
) -> None:
    service, api = stack
    invoice = unique_prefix()
    assert (await post(api, "/v1/billing-failures", billing_failure_body(invoice, "F1"))).is_success
    typo = OpenDispute(case_id="BC-20990101-ABCDEF", description="wrong", by=AGENT)
    with pytest.raises(Refused, match="case_id: no case BC-20990101-ABCDEF"):
        await service.collections.act(invoice, typo)
    view = await service.collections.show(invoice)
    assert view.status is CollectionsStatus.ACTIVE and view.linked_case_id is None


async def test_nul_in_a_description_is_refused_at_the_edge(
    stack: tuple[Service, httpx.AsyncClient],
) -> None:
    _, api = stack
    answer = await post(api, "/v1/cases", {**CASE_FORM, "description": "deleted\u0000 VM"})
    assert answer.status_code == 422 and api_names_the_field(answer, "description")
    with pytest.raises(ValidationError) as refused:
        CaseRequest.model_validate({**CASE_FORM, "description": "deleted\u0000 VM"})
    assert names_the_field(refused.value, "description")


async def _open(service: Service, tenant: str | None = None) -> CaseOpened:
    tenant = tenant or guid("tenant", uuid.uuid4())
    form = CaseRequest.model_validate(
        {**CASE_FORM, "tenant_id": tenant, "invoice_id": unique_prefix()}
    ).opened_by_caller(AGENT)
    return await service.cases.open(service.cases.prepare(form))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink step replays requests
)
@given(data=st.data())
async def test_hostile_input_is_refused_clearly_or_carried_out(
    stack: tuple[Service, httpx.AsyncClient], data: st.DataObject
) -> None:
    service, api = stack
    kind = data.draw(
        st.sampled_from(["case form", "failure", "payment", "case", "linked", "invoice", "account"])
    )
    if kind == "case form":
        field = data.draw(st.sampled_from(sorted(CASE_FORM)), label="field")
        body = {**CASE_FORM, field: data.draw(values_for(field), label="value")}
        answer = await post(api, "/v1/cases", _jsonable(body))
        assert answer.status_code in (201, 422), answer.text
        if answer.status_code == 422:
            assert api_names_the_field(answer, field), answer.text
        return
    if kind in ("failure", "payment"):
        invoice = unique_prefix()
        await post(api, "/v1/billing-failures", billing_failure_body(invoice, "F1"))
        if kind == "failure":
            body = billing_failure_body(invoice, "F2")
            path = "/v1/billing-failures"
        else:
            path = "/v1/payments"
            body = {
                "payment_id": "P1",
                "invoice_id": invoice,
                "amount": "100.00",
                "received_at": "2026-11-25T10:00:00+08:00",
            }
        field = data.draw(st.sampled_from(sorted(body)), label="field")
        body[field] = data.draw(values_for(field), label="value")
        key = str(uuid.uuid4())
        answer = await post(api, path, _jsonable(body), key=key)
        assert answer.status_code in (200, 202, 404, 409, 410, 422), answer.text
        if answer.status_code == 422:
            assert api_names_the_field(answer, field), answer.text
        again = await post(api, path, _jsonable(body), key=key)  # the same request again
        assert (again.status_code, again.content) == (answer.status_code, answer.content)
        return
    # an update of a running case, invoice or account, built as the CLI builds it
    if kind == "case":
        target = (await _open(service)).case_id
        actions = CASE_ACTIONS
    elif kind == "linked":  # two cases of one customer: merge, link, a fapiao asked for
        tenant = guid("tenant", uuid.uuid4())
        target, other = [(await _open(service, tenant)).case_id for _ in range(2)]
        actions = {m: {k: v or other for k, v in b.items()} for m, b in LINKED_ACTIONS.items()}
    elif kind == "invoice":
        target = unique_prefix()
        await post(api, "/v1/billing-failures", billing_failure_body(target, "F1"))
        actions = INVOICE_ACTIONS
    else:  # an account holding a fraud hold, so that lift-fraud has one to lift
        invoice = unique_prefix()
        await post(api, "/v1/billing-failures", billing_failure_body(invoice, "F1"))
        fraud = ReportFraud(reason=TEXT, by=AGENT)
        target = (await service.collections.act(invoice, fraud)).customer.tenant_id
        await _until_account(service, target)
        actions = ACCOUNT_ACTIONS
    model = data.draw(st.sampled_from(list(actions)), label="action")
    body = dict(actions[model])
    field = data.draw(st.sampled_from(sorted(body)), label="field")
    body[field] = data.draw(values_for(field), label="value")
    try:
        action = model.model_validate(body)
    except ValidationError as refused:
        assert names_the_field(refused, field) or field in str(refused), str(refused)
        return
    try:
        await _act(service, kind, target, action)
    except ServiceError as refused:
        assert str(refused), "a refusal says why"


async def _act(service: Service, kind: str, target: str, action: Any) -> Any:
    """What the CLI (or the workspace, for the ledger's and the fapiao's) calls for the action."""
    if isinstance(action, MergeCase):
        return await service.cases.merge(target, action)
    if isinstance(action, LinkCase):
        return await service.links.link(target, action)
    if isinstance(action, RequestFapiao):
        return await service.fapiao.request(target, action)
    if isinstance(action, ApplyCredit):
        return await service.ledger.apply(target, action)
    if isinstance(action, RequestRefund):
        return await service.ledger.request_refund(target, action)
    if kind == "case":
        return await service.cases.act(target, action)
    if kind == "invoice":
        return await service.collections.act(target, action)
    if isinstance(action, LiftFraud):
        return await service.accounts.lift_fraud(target, action)
    return await service.accounts.set_overrides(target, action)


async def _until_account(service: Service, tenant: str) -> None:
    """The fraud's hold reached the customer's account (started by the invoice)."""

    async def held() -> bool:
        try:
            return (await service.accounts.show(tenant)).fraud
        except ServiceError:
            return False

    await eventually(held, f"an account with a fraud hold for tenant {tenant}")


def _jsonable(body: dict[str, Any]) -> Any:
    """As a client would send it: what JSON cannot carry (a lone surrogate) sent escaped."""
    return json.loads(json.dumps(body, default=str))


_REPLIED_TO: dict[str, Any] = {}  # the case the hostile replies answer (opened once)


def _mime_words(text: str) -> str:
    """A header as a careless client encodes it: UTF-8 base64, a lone surrogate kept as bytes."""
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8', 'surrogatepass')).decode()}?="


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    body=odd_text,
    subject=odd_text,
    thread=st.sampled_from(["ours", "unknown", "forged-token", "none"]),
)
async def test_a_hostile_email_is_recorded_or_acted_on_and_never_wedges_its_case(
    stack: tuple[Service, httpx.AsyncClient], body: str, subject: str, thread: str
) -> None:
    """The inbound edge (issue 14) on the real worker: NUL, controls, bidi overrides, lone
    surrogates, 60 KB of Chinese in the body or the subject, a reply to an unknown message, a
    forged thread token. Each is answered (acted on, recorded, or refused for its size) and the
    case it names goes on taking actions."""
    service, _ = stack
    if "case" not in _REPLIED_TO:
        opened = await _open(service)
        _REPLIED_TO["case"] = opened.case_id
        _REPLIED_TO["sent"] = await last_email(
            service.settings, "case_acknowledged", opened.case_id
        )
    case_id, sent = _REPLIED_TO["case"], _REPLIED_TO["sent"]
    replying_to = {
        "ours": str(sent["Message-ID"]),
        "unknown": f"<{uuid.uuid4()}@partner.example.cn>",
        "forged-token": "<thread.forged0token@partner.example.cn>",
        "none": "",
    }[thread]
    head = (
        f"From: {CASE_FORM['email']}\r\nTo: billing-support+forged@reply.partner.example.cn\r\n"
        f"Subject: {_mime_words(subject)}\r\nMessage-ID: <{uuid.uuid4()}@yunfan.example.cn>\r\n"
        + (f"In-Reply-To: {replying_to}\r\nReferences: {replying_to}\r\n" if replying_to else "")
        + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    raw = head.encode() + base64.encodebytes(body.encode("utf-8", "surrogatepass"))
    try:
        received = await service.inbound.receive(raw)
    except Refused as refused:
        assert str(refused)
    else:
        assert received.outcome.value
    # the case answers and still takes an action (it did not fail or wedge on the email)
    await service.cases.act(case_id, AddNote(text="after a hostile email", by=AGENT))
    assert (await service.cases.show(case_id)).case_id == case_id


async def test_a_hostile_billing_run_file_is_imported_line_by_line(
    stack: tuple[Service, httpx.AsyncClient], tmp_path: Path
) -> None:
    """A billing run's file with NUL, controls, bidi, 60 KB of Chinese and wrong ids beside good
    lines, through the import's batch reads on the real worker: every line is started, joined or
    rejected with the field named; nothing else happens to it."""
    service, _ = stack
    prefix = unique_prefix()
    good = [failure_fields(f"{prefix}-{n}", f"{prefix}-F{n}") for n in range(3)]
    good.append(failure_fields(f"{prefix}-0", f"{prefix}-F9"))  # its invoice again, same batch
    hostile = [
        # 60 KB of Chinese: within the line's 64 KiB, too long for a failure's reason
        failure_fields(f"{prefix}-3", f"{prefix}-H0", reason="账单扣款失败" * 3300),
        failure_fields(f"{prefix}-4", f"{prefix}-H1", reason="card\x00declined"),
        failure_fields(f"{prefix}-5", f"{prefix}-H2", customer_name="云帆\x07\x1b[31m"),
        failure_fields(f"{prefix}-6", f"{prefix}-H3", customer_name="云帆\u202e司公"),
        failure_fields(f"{prefix}-7", f"{prefix}-H4", tenant_id="not-a-guid"),
        failure_fields("INV/../1", f"{prefix}-H5"),
        failure_fields(f"{prefix}-8", "\x00"),
        failure_fields(f"{prefix}-9", f"{prefix}-H6", reason="账" * 30_000),  # over 64 KiB
    ]
    path = tmp_path / "hostile.jsonl"
    lines = [json.dumps(line, ensure_ascii=False) + "\n" for line in [*good, *hostile]]
    path.write_text("".join(lines), encoding="utf-8")
    summary = await service.import_failures(path)
    assert summary.lines == len(good) + len(hostile)
    assert (summary.started, summary.joined) == (3, 1)
    assert summary.started + summary.joined + summary.rejected == summary.lines
    assert summary.rejected == len(hostile)
    assert summary.rejected_file is not None
    for rejected in summary.rejected_file.read_text().splitlines():
        reason = json.loads(rejected)["reason"]  # the field named, or the line's own limit
        assert ": " in reason or reason == "line longer than 65536 bytes", reason
    view = await service.collections.show(f"{prefix}-0")
    # both lines of the invoice went at once: whichever start won is its first failure
    assert sorted(view.failures) == [f"{prefix}-F0", f"{prefix}-F9"]


async def test_a_hostile_bank_statement_is_imported_or_refused_line_by_line(
    stack: tuple[Service, httpx.AsyncClient], tmp_path: Path
) -> None:
    """A bank's export with NUL, controls, bidi, 60 KB of Chinese and wrong bill numbers in its
    payers and remarks, beside a good line, on the real worker: the good line pays its bill, the
    others are stored (waiting for finance) or rejected naming their column; nothing else."""
    service, _ = stack
    bill = unique_prefix()
    await open_invoice(service, bill, YUNFAN, "1000.00", 1)
    await stored(service, [bill])
    hostile = [
        Transfer(D("1000.00"), YUNFAN, "6222020200112233", f"货款{bill}"),  # good
        Transfer(D("10.00"), "云帆\x00公司", "6222\x07", f"付{bill}\x00"),
        Transfer(D("20.00"), "云帆\u202e司公", "", "\x1b[31m转账"),
        Transfer(D("30.00"), "账" * 20_000, "", "付款" * 15_000),  # 60 KB of Chinese each
        Transfer(D("40.00"), "某公司", "", "INV/../1 G' OR 1=1 --"),
    ]
    path = statement(tmp_path / "hostile.csv", "icbc", hostile, "utf-8")
    summary = await service.statements.import_file(path, by="finance.qian@partner.example.cn")
    assert summary.credits + summary.rejected_count == len(hostile), summary
    assert summary.matched >= 1 and await balance(service, bill) == 0
    for rejected in summary.rejected:  # the column named
        assert rejected.reason and ":" in rejected.reason, rejected
    again = await service.statements.import_file(path, by="finance.qian@partner.example.cn")
    assert again.payments == 0  # nothing recorded twice


async def test_after_all_of_it_nothing_failed_wedged_or_was_lost(
    stack: tuple[Service, httpx.AsyncClient],
) -> None:
    service, _ = stack
    client = service.client
    query = search.on_task_queues(service.settings.task_queues())
    failed = f"{query} AND ExecutionStatus = 'Failed'"
    assert [w.id async for w in client.list_workflows(failed)] == []

    async def pending() -> list[str]:
        """The activities not done yet (none retrying past 3 attempts): every workflow done or
        waiting for a person or a clock when there are none."""
        found = []
        async for execution in client.list_workflows(f"{query} AND ExecutionStatus = 'Running'"):
            described = await client.get_workflow_handle(execution.id).describe()
            for activity in described.raw_description.pending_activities:
                assert activity.attempt <= 3, (execution.id, activity)
                found.append(
                    f"{execution.id} {activity.activity_type.name} attempt {activity.attempt} "
                    f"{activity.last_failure.message[:200]}"
                )
        return found

    # asked once a round: a collections' next notice may be due meanwhile (each answer is a
    # moment; asking again after an empty one could meet that new email)
    running = await pending()
    for _ in range(600):  # at most 2 minutes
        if not running:
            break
        await asyncio.sleep(0.2)
        running = await pending()
    assert running == [], "activities still running"
    report = await service.verify()
    assert report.ok, report.differences
    assert report.workflows >= 20 and report.running >= 1


def test_amounts_that_are_accepted_are_exact() -> None:
    """A payment accepted by the model is the amount sent, to the fen."""
    payment = PaymentReceived.model_validate(
        {
            "payment_id": "P1",
            "invoice_id": "G1",
            "amount": "999999999999.99",
            "received_at": "2026-11-25T10:00:00+08:00",
        }
    )
    assert payment.amount == Decimal("999999999999.99")
    with pytest.raises(ValidationError) as refused:
        BillingFailure.model_validate({**billing_failure_body("G1", "F1"), "amount_due": "NaN"})
    assert names_the_field(refused.value, "amount_due")


async def test_a_row_the_database_refuses_waits_for_an_operator(
    stack: tuple[Service, httpx.AsyncClient],
) -> None:
    """What the edge cannot know the database may still refuse (here a rule added by hand): the
    step is not retried for ever, the case needs attention, and a retry after the fix saves it."""
    service, _ = stack
    url = service.settings.database_url
    with poisoned_notes(url):
        case = await _open(service)
        await service.cases.act(case.case_id, AddNote(text="POISON", by=AGENT))

        def stuck(times: int) -> Callable[[], Awaitable[bool]]:
            """The case waits for an operator after its save failed `times` times (a retry's
            answer comes before the step has run again: the count tells the new failure)."""

            async def waiting() -> bool:
                view = await service.cases.show(case.case_id)
                failed = [e for e in view.timeline if e.kind is EventKind.STEP_FAILED]
                return view.needs_attention is not None and len(failed) >= times

            return waiting

        await eventually(stuck(1))
        shown = await service.cases.show(case.case_id)
        assert shown.needs_attention and "save to the database failed" in shown.needs_attention
        # retried before the fix: it fails again, and still nothing is retried for ever
        await service.retry_step(Kind.CASE, case.case_id, RetryStep(by=AGENT))
        await eventually(stuck(2))
    await service.retry_step(Kind.CASE, case.case_id, RetryStep(by=AGENT))

    async def saved() -> bool:
        view = await service.cases.show(case.case_id)
        return view.needs_attention is None and not _unsaved(url, case.case_id, view.event_count)

    await eventually(saved)
    with pytest.raises(Refused, match="no failed step"):
        await service.retry_step(Kind.CASE, case.case_id, RetryStep(by=AGENT))


def _unsaved(url: str, case_id: str, count: int) -> bool:
    with one_off_session(url) as session:
        stored = session.scalar(select(Case.last_event_seq).where(Case.case_id == case_id))
    return stored != count

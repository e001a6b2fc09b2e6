"""Bad input, generated: every payload model and every update either refuses clearly or gives a
correct result; never a crash, never a half-applied change.

- models: a valid example with one field replaced by hostile values (wrong types, amounts with
  fen fractions, NaN, huge numbers, unknown currencies and locales, malformed ids and dates,
  long and non-Latin text, control characters), dropped, or an unknown field added. A refusal
  is a pydantic ValidationError whose errors name that field; an acceptance survives the trip
  through Temporal's JSON unchanged.
- updates: the same raw bodies sent to running workflows (time-skipping server, stand-in
  activities). A refusal (the worker's ValidationError naming the field, or the validator's
  ActionRefused) leaves the `view` exactly as it was; an acceptance only appends to the timeline.

Every model a workflow, update or signal takes and every API body needs an example below: a new
one without it fails `test_every_input_model_has_an_example`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from core.models import (
    AccountOverrides,
    AddNote,
    Assign,
    BillingFailure,
    CaseDetails,
    CaseForm,
    CasePolicy,
    CaseRequest,
    CollectionsPolicy,
    CollectionsReply,
    Confirm,
    CorrectContact,
    Customer,
    CustomerReply,
    DecideSuspension,
    DisputeOutcome,
    EmailDelivered,
    EmailUndelivered,
    Escalate,
    LiftFraud,
    MarkVianetPaid,
    Money,
    Notice,
    NoticeOutcome,
    OpenCase,
    OpenDispute,
    PaymentReceived,
    PaymentReport,
    PlaceHolds,
    PromiseToPay,
    RecordVianetInvoice,
    ReleaseHolds,
    Reopen,
    Reply,
    ReportFraud,
    RequestInfo,
    Resolve,
    ResumePolicy,
    RetryStep,
    SetOverrides,
    SkipStep,
    StartAccount,
    StartCollections,
    TriageReply,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Waive,
    Withdraw,
)
from core.models.case_actions import LinkCase, Merge, MergedIn, UnlinkCase
from core.models.fapiao import BuyerMustConfirm, FapiaoRecorded, RequestFapiao
from core.models.ledger import (
    ApplyCredit,
    CreditApplication,
    CreditKept,
    CreditSettled,
    DecideRefund,
    RequestRefund,
    UnappliedPayment,
)
from core.models.shared import HandleAttention
from core.settings import Settings
from tests.hostile import amounts, currencies, ids, junk, locales, moments, values_for
from tests.workflow_support import FakeActivities
from worker import WORKFLOWS
from workflows.account import AccountWorkflow
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow
from workflows.vianet_invoice import VianetInvoiceWorkflow

AGENT = "agent.li@partner.example.cn"
TEXT = "2 月发票中的虚拟机费用比上月高出 ¥12,340.00，请核实。"
API_BODIES: list[type[BaseModel]] = [CaseRequest, BillingFailure, PaymentReport]


@dataclass
class Context:
    """What examples refer to: the running workflow's ids and its clock."""

    invoice_id: str = "G000123456"
    case_id: str = "BC-20261124-0A1B2C"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def examples(ctx: Context) -> dict[type[BaseModel], dict[str, Any]]:
    """One valid body per model, as JSON sends it."""
    case_policy, collections_policy = policies()
    customer = {
        "tenant_id": "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64",
        "name": "上海云帆信息科技有限公司",
        "email": "finance@yunfan.example.cn",
        "locale": "zh-CN",
    }
    details = {
        "customer": customer,
        "subscription_id": "a7c4e2d9-1b3f-4c8a-8e6d-5f0b9c2a7e13",
        "invoice_id": ctx.invoice_id,
        "category": "invoice-dispute",
        "disputed_amount": "12340.00",
        "currency": "CNY",
        "description": TEXT,
        "priority": "high",
    }
    failure = {
        "failure_id": f"{ctx.invoice_id}-F1",
        "invoice_id": ctx.invoice_id,
        "customer": customer,
        "subscription_ids": ["a7c4e2d9-1b3f-4c8a-8e6d-5f0b9c2a7e13"],
        "amount_due": "48760.00",
        "currency": "CNY",
        "failed_at": "2026-11-24T09:00:00+08:00",
        "reason": "卡片余额不足",
    }
    case_request = {  # as the portal sends it: who opened it is the caller
        "tenant_id": customer["tenant_id"],
        "name": customer["name"],
        "email": customer["email"],
        "category": "unexpected-charge",
        "description": TEXT,
        "amount": "12340.00",
        "owner": "agent.wang@partner.example.cn",
    }
    payment = {
        "payment_id": f"{ctx.invoice_id}-P1",
        "invoice_id": ctx.invoice_id,
        "amount": "1000.00",
        "currency": "CNY",
        "received_at": ctx.now.isoformat(),
    }
    return {
        Customer: customer,
        CaseDetails: details,
        CasePolicy: case_policy,
        CollectionsPolicy: collections_policy,
        OpenCase: {"case_id": ctx.case_id, "details": details, "opened_by": AGENT},
        Assign: {"agent": "agent.wang@partner.example.cn", "by": AGENT},
        AddNote: {"text": TEXT, "by": AGENT},
        UpdateContact: {"email": "ap@yunfan.example.cn", "locale": "en-US", "by": AGENT},
        RequestInfo: {"question": TEXT, "by": AGENT},
        Reply: {
            "text": TEXT,
            "subject": "发票金额",
            "locale": "zh-CN",
            "attachments": [
                {
                    "sha256": "a" * 64,
                    "name": "贷项通知单.pdf",
                    "content_type": "application/pdf",
                    "size": 1,
                }
            ],
            "by": AGENT,
        },
        CustomerReply: {"text": TEXT},
        Resolve: {
            "outcome": "credit-issued",
            "summary": TEXT,
            "credit_amount": "100.00",
            "by": AGENT,
        },
        Escalate: {"reason": TEXT, "severity": "B", "by": AGENT},
        VianetTicket: {"ticket_number": "VN-2611240001", "by": AGENT},
        VianetResponse: {"text": TEXT, "by": AGENT},
        Confirm: {},
        Reopen: {"reason": TEXT},
        Withdraw: {"reason": TEXT, "by": AGENT},
        BillingFailure: failure,
        StartCollections: {
            "failure": failure,
            "policy": collections_policy,
        },
        PaymentReceived: {**payment, "by": AGENT},
        PaymentReport: payment,
        OpenDispute: {"description": TEXT, "disputed_amount": "100.00", "by": AGENT},
        DisputeOutcome: {"case_id": ctx.case_id, "outcome": "credit-issued", "credit_amount": "1"},
        ReportFraud: {"reason": TEXT, "by": AGENT},
        PromiseToPay: {"until": (ctx.now + timedelta(days=3)).isoformat(), "by": AGENT},
        Waive: {"reason": TEXT, "by": AGENT},
        ResumePolicy: {"reason": TEXT, "by": AGENT},
        TriageReply: {"decision": "no-action", "by": AGENT},
        CollectionsReply: {"text": TEXT, "by": "customer (email)"},
        EmailUndelivered: {
            "key": f"{ctx.case_id}/case_resolved/1",
            "event": "bounce",
            "address": customer["email"],
            "template": "case_resolved",
            "reason": "550 5.1.1 mailbox unknown",
        },
        EmailDelivered: {"key": f"{ctx.case_id}/case_resolved/1", "template": "case_resolved"},
        RetryStep: {"by": AGENT},
        SkipStep: {"reason": TEXT, "by": AGENT},
        RecordVianetInvoice: {
            "invoice_number": "VN2026110088",
            "amount": "98000.00",
            "due_date": (ctx.now + timedelta(days=10)).date().isoformat(),
            "recorded_by": AGENT,
            "finance_email": "finance@partner.example.cn",
            "manager_email": "billing-manager@partner.example.cn",
        },
        MarkVianetPaid: {
            "paid_at": (ctx.now - timedelta(hours=1)).isoformat(),
            "reference": "ICBC-20261124-0042",
            "by": AGENT,
        },
        StartAccount: {"customer": customer, "policy": collections_policy},
        PlaceHolds: {
            "invoice_id": ctx.invoice_id,
            "reason": "non-payment",
            "subscription_ids": ["a7c4e2d9-1b3f-4c8a-8e6d-5f0b9c2a7e13"],
            "customer": customer,
            "by": "workflow",
        },
        ReleaseHolds: {"invoice_id": ctx.invoice_id, "why": "paid in full"},
        LiftFraud: {"reason": TEXT, "by": AGENT},
        AccountOverrides: {"exempt_from_suspension": True, "extra_grace_days": 5},
        SetOverrides: {
            "overrides": {"exempt_from_suspension": True, "extra_grace_days": 5},
            "reason": TEXT,
            "by": AGENT,
        },
        DecideSuspension: {"reason": TEXT, "by": AGENT},
        Notice: {
            "data": {"template": "collections_reminder"},
            "view": {
                "invoice_id": ctx.invoice_id,
                "workflow_id": f"collections-{ctx.invoice_id}",
                "status": "active",
                "stage": "reminder",
                "customer": customer,
                "subscription_ids": ["a7c4e2d9-1b3f-4c8a-8e6d-5f0b9c2a7e13"],
                "currency": "CNY",
                "amount_due": "48760.00",
                "paid": "0.00",
                "credited": "0.00",
                "balance": "48760.00",
                "first_failed_at": "2026-11-24T09:00:00+08:00",
                "failures": [f"{ctx.invoice_id}-F1"],
            },
        },
        NoticeOutcome: {"template": "collections_final_notice", "state": "delivered"},
        CorrectContact: {"email": "ap@yunfan.example.cn", "by": AGENT},
        CaseForm: {**case_request, "opened_by": AGENT},
        CaseRequest: case_request,
        HandleAttention: {"note": TEXT, "by": AGENT},
        RequestFapiao: {
            "kind": "issue",
            "buyer_name": customer["name"],
            "buyer_tax_id": "91310000MA1FL8XQ3C",
            "by": AGENT,
        },
        BuyerMustConfirm: {"by": AGENT},
        FapiaoRecorded: {"fapiao_number": "26312000000012345678", "by": AGENT},
        Merge: {
            "into": "BC-20261124-0D4E5F",
            "into_tenant_id": customer["tenant_id"],
            "into_status": "open",
            "by": AGENT,
        },
        MergedIn: {"case_id": "BC-20261124-0D4E5F", "by": AGENT},
        LinkCase: {"other": "BC-20261124-0D4E5F", "by": AGENT},
        UnlinkCase: {"other": "BC-20261124-0D4E5F", "by": AGENT},
        CreditKept: {
            "invoice_id": ctx.invoice_id,
            "tenant_id": customer["tenant_id"],
            "payment_id": f"{ctx.invoice_id}-P2",
            "currency": "CNY",
            "amount": "120.00",
        },
        UnappliedPayment: {
            "payment_id": f"{ctx.invoice_id}-P3",
            "invoice_id": ctx.invoice_id,
            "currency": "CNY",
            "amount": "120.00",
            "by": AGENT,
        },
        ApplyCredit: {
            "invoice_id": ctx.invoice_id,
            "currency": "CNY",
            "amount": "50.00",
            "by": AGENT,
        },
        CreditApplication: {
            "application_id": "CA-01J0000000000000000000000",
            "tenant_id": customer["tenant_id"],
            "currency": "CNY",
            "amount": "50.00",
        },
        CreditSettled: {
            "application_id": "CA-01J0000000000000000000000",
            "invoice_id": ctx.invoice_id,
            "applied": "50.00",
            "returned": "0.00",
            "balance": "48710.00",
        },
        RequestRefund: {
            "currency": "CNY",
            "amount": "70.00",
            "reason": "退回多付款项",
            "by": AGENT,
        },
        DecideRefund: {"refund_id": "RF-01J0000000000000000000000", "reason": TEXT, "by": AGENT},
    }


@functools.cache
def policies() -> tuple[dict[str, Any], dict[str, Any]]:
    settings = Settings()
    return (
        settings.case_policy().model_dump(mode="json"),
        settings.collections_policy().model_dump(mode="json"),
    )


DEFAULT = Context(now=datetime(2026, 11, 24, 1, 0, tzinfo=UTC))


def input_models() -> set[type[BaseModel]]:
    """Every model a workflow starts with, an update or a signal takes, or the API reads."""
    found: set[type[BaseModel]] = set(API_BODIES)
    for cls in WORKFLOWS:
        definition = workflow._Definition.must_from_class(cls)
        handlers = [definition.arg_types or [], *(u.arg_types for u in definition.updates.values())]
        handlers += [s.arg_types for s in definition.signals.values()]
        for types in handlers:
            for one in types or []:  # an update of several actions takes their union
                found.update(
                    t
                    for t in get_args(one) or (one,)
                    if isinstance(t, type) and issubclass(t, BaseModel)
                )
    return found


def test_every_input_model_has_an_example() -> None:
    missing = input_models() - set(examples(DEFAULT))
    assert not missing, f"add an example for {sorted(m.__name__ for m in missing)}"


@pytest.mark.parametrize("model", list(examples(DEFAULT)), ids=lambda m: m.__name__)
def test_examples_are_valid(model: type[BaseModel]) -> None:
    model.model_validate(examples(DEFAULT)[model])


Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every field (and list item) inside a JSON body."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        yield (*prefix, key)
        if isinstance(inner, dict | list) and inner:
            yield from paths(inner, (*prefix, key))


def copy_with(body: Any, path: Path, change: Callable[[Any, str | int], None]) -> Any:
    if not path:
        return body
    copied: Any = dict(body) if isinstance(body, dict) else list(body)
    head, *rest = path
    if rest:
        copied[head] = copy_with(copied[head], tuple(rest), change)
    else:
        change(copied, head)
    return copied


@st.composite
def mutated(draw: st.DrawFn, body: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The body with one hostile change, and the path of what changed."""
    how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "unknown"]))
    targets = list(paths(body))
    if how == "unknown" or not targets:
        where = draw(st.sampled_from([(), *[p for p in targets if isinstance(p[-1], str)]]))
        node: Any = body
        for key in where:
            node = node[key]
        if not isinstance(node, dict):
            where = ()

        def add(container: Any, key: str | int) -> None:
            container[key] = {**container[key], "unexpected": draw(junk)}

        if not where:
            return {**body, "unexpected": draw(junk)}, ("unexpected",)
        return copy_with(body, where, add), where
    path = draw(st.sampled_from(targets))
    name = next((p for p in reversed(path) if isinstance(p, str)), "")
    if how == "drop" and isinstance(path[-1], str):
        return copy_with(body, path, lambda c, k: c.pop(k)), path
    value = draw(values_for(name))
    return copy_with(body, path, lambda c, k: c.__setitem__(k, value)), path


def assert_clear_refusal(exc: ValidationError, model: type[BaseModel], path: Path) -> None:
    """Each error points at the changed field, or (a rule across fields) names one in its text."""
    for error in exc.errors():
        loc = error["loc"]
        if loc:
            assert loc[0] == path[0], (loc, path, error["msg"])
        else:
            assert any(name in error["msg"] for name in model.model_fields), error["msg"]


def check(model: type[BaseModel], body: dict[str, Any], path: Path) -> BaseModel | None:
    """None for a clear refusal; the model, proven to survive Temporal's JSON, for an acceptance."""
    try:
        accepted = model.model_validate(body)
    except ValidationError as exc:
        assert_clear_refusal(exc, model, path)
        return None
    assert model.model_validate_json(accepted.model_dump_json()) == accepted
    return accepted


MODELS = sorted(examples(DEFAULT), key=lambda m: m.__name__)


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_models_refuse_clearly_or_accept_correctly(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(MODELS), label="model")
    body, path = data.draw(mutated(examples(DEFAULT)[model]), label="body")
    check(model, body, path)


class Amount(BaseModel):
    amount: Money


def meaning(value: Any) -> Decimal | None:
    """What an amount means to a reader: its decimal text's value, if it has one."""
    try:
        return Decimal(str(value).strip())
    except ArithmeticError:
        return None


@settings(max_examples=200, deadline=None)
@given(amounts)
def test_an_accepted_amount_is_exactly_what_was_sent(value: Any) -> None:
    try:
        got = Amount(amount=value).amount
    except ValidationError as exc:
        assert [e["loc"] for e in exc.errors()] == [("amount",)]
        return
    expected = meaning(value)
    assert expected is not None and expected.is_finite(), value
    assert got == expected and got.as_tuple().exponent == -2, (value, got)
    assert Decimal(0) <= got <= Decimal("999999999999.99")


@settings(max_examples=100, deadline=None)
@given(st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2))
def test_every_amount_in_fen_is_accepted(value: Decimal) -> None:
    assert Amount(amount=str(value)).amount == value


@settings(max_examples=100, deadline=None)
@given(tenant=ids, currency=currencies, failed_at=moments, locale=locales)
def test_ids_currencies_dates_and_locales(
    tenant: Any, currency: Any, failed_at: Any, locale: Any
) -> None:
    """The rules as an agent reads them: a GUID (stored lower-case), three capitals, a moment
    with its timezone, one of the two languages."""
    body = examples(DEFAULT)[BillingFailure]
    body = {**body, "currency": currency, "failed_at": failed_at}
    body["customer"] = {**body["customer"], "tenant_id": tenant, "locale": locale}
    try:
        failure = BillingFailure.model_validate(body)
    except ValidationError as exc:
        assert {e["loc"][0] for e in exc.errors()} <= {"currency", "failed_at", "customer"}
        return
    assert isinstance(tenant, str) and failure.customer.tenant_id == tenant.lower()
    assert re.fullmatch("[A-Z]{3}", currency)
    assert failure.failed_at.tzinfo is not None
    assert failure.customer.locale.value in ("zh-CN", "en-US")


# --------------------------------------------------------------------------- updates on workflows


async def start_case(client: Client, fake: FakeActivities, ctx: Context) -> Any:
    data = OpenCase.model_validate(examples(ctx)[OpenCase])
    return await client.start_workflow(
        BillingCaseWorkflow.run, data, id=f"case-{ctx.case_id}", task_queue=fake.task_queue
    )


async def start_collections(client: Client, fake: FakeActivities, ctx: Context) -> Any:
    data = StartCollections.model_validate(examples(ctx)[StartCollections])
    return await client.start_workflow(
        CollectionsWorkflow.run,
        data,
        id=f"collections-{ctx.invoice_id}",
        task_queue=fake.task_queue,
    )


async def start_vianet(client: Client, fake: FakeActivities, ctx: Context) -> Any:
    body = {**examples(ctx)[RecordVianetInvoice], "invoice_number": ctx.invoice_id}
    return await client.start_workflow(
        VianetInvoiceWorkflow.run,
        RecordVianetInvoice.model_validate(body),
        id=f"vianet-invoice-{ctx.invoice_id}",
        task_queue=fake.task_queue,
    )


async def start_account(client: Client, fake: FakeActivities, ctx: Context) -> Any:
    data = StartAccount.model_validate(examples(ctx)[StartAccount])
    handle = await client.start_workflow(
        AccountWorkflow.run, data, id=f"account-{ctx.invoice_id}", task_queue=fake.task_queue
    )
    # a fraud hold, so that lift-fraud has something to lift
    hold = {**examples(ctx)[PlaceHolds], "reason": "fraud"}
    await handle.signal(AccountWorkflow.place_holds, PlaceHolds.model_validate(hold))
    return handle


STARTS: dict[type, Callable[[Client, FakeActivities, Context], Awaitable[Any]]] = {
    BillingCaseWorkflow: start_case,
    CollectionsWorkflow: start_collections,
    VianetInvoiceWorkflow: start_vianet,
    AccountWorkflow: start_account,
}


def test_every_workflow_is_driven_with_bad_updates() -> None:
    assert set(STARTS) == set(WORKFLOWS)


OPENS = {
    "activity_task_scheduled_event_attributes",
    "start_child_workflow_execution_initiated_event_attributes",
    "signal_external_workflow_execution_initiated_event_attributes",
}
CLOSED = (
    "workflow_execution_completed_event_attributes",
    "workflow_execution_failed_event_attributes",
    "workflow_execution_terminated_event_attributes",
)
IDLE_LAST = {"workflow_task_completed_event_attributes", *CLOSED}
TASK_OR_CLOSE = ("workflow_task_", *CLOSED)


async def idle(handle: Any) -> bool:
    """Its history says so: the last workflow task is done (its commands, such as timers, follow
    it), and no activity, child start or signal to another workflow is in flight (the time-skipping
    server does not describe pending work)."""
    events = (await handle.fetch_history()).events
    in_flight: set[int] = set()
    for event in events:
        kind = event.WhichOneof("attributes")
        attributes = getattr(event, kind)
        if kind in OPENS:
            in_flight.add(event.event_id)
        elif kind.startswith("activity_task_") and kind != "activity_task_started_event_attributes":
            in_flight.discard(attributes.scheduled_event_id)
        elif hasattr(attributes, "initiated_event_id"):
            in_flight.discard(attributes.initiated_event_id)
    tasks = [k for e in events if (k := str(e.WhichOneof("attributes"))).startswith(TASK_OR_CLOSE)]
    return not in_flight and bool(tasks) and tasks[-1] in IDLE_LAST


async def settled(handle: Any, view_type: type[BaseModel]) -> Any:
    """The view once every queued effect is carried out and the workflow waits for input."""
    for _ in range(500):
        if await idle(handle):
            return await handle.query("view", result_type=view_type)
        await asyncio.sleep(0.02)
    raise AssertionError("the workflow never settled")


async def current_view(handle: Any, view_type: type[BaseModel]) -> Any:
    """The view now; the final one if the update just ended the workflow (a query racing the
    completion is refused with "Completed workflow")."""
    try:
        return await handle.query("view", result_type=view_type)
    except RPCError:
        if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
            raise
        return await handle.result()


def view_type(cls: type) -> type[BaseModel]:
    definition = workflow._Definition.must_from_class(cls)
    returned = definition.queries["view"].ret_type
    assert isinstance(returned, type) and issubclass(returned, BaseModel)
    return returned


@pytest.mark.parametrize("cls", WORKFLOWS, ids=lambda c: c.__name__)
@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking would restart workflows
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_updates_refuse_without_change_or_apply(
    cls: type, time_env: WorkflowEnvironment, fake: FakeActivities, data: st.DataObject
) -> None:
    client = time_env.client
    # a fresh id per run, not drawn: Hypothesis replays draws, and ids cannot be reused
    ctx = Context(invoice_id=f"G{uuid.uuid4().hex[:12].upper()}")
    ctx.case_id = f"BC-{ctx.invoice_id}"
    handle = await STARTS[cls](client, fake, ctx)
    definition = workflow._Definition.must_from_class(cls)
    kind = view_type(cls)
    bodies = examples(ctx)
    for _ in range(data.draw(st.integers(1, 3), label="attempts")):
        before = await settled(handle, kind)
        if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
            break
        name = data.draw(st.sampled_from(sorted(map(str, definition.updates))), label="update")
        [arg] = definition.updates[name].arg_types or []
        model = data.draw(st.sampled_from(get_args(arg) or (arg,)), label=f"{name} model")
        assert isinstance(model, type) and issubclass(model, BaseModel)
        valid = bodies[model]
        body, path = data.draw(
            st.one_of(st.just((valid, None)), mutated(valid)), label=f"{name} body"
        )
        try:
            model.model_validate(body)
            local_error = None
        except ValidationError as exc:
            assert path is not None
            assert_clear_refusal(exc, model, path)
            local_error = exc
        try:
            result = await handle.execute_update(name, body, result_type=kind)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError), repr(cause)
            if local_error is None:
                assert cause.type == "ActionRefused", (name, body, cause)
            else:
                assert cause.type == "ValidationError", (name, cause)
                # the worker refuses it with the same errors the client would have shown
                for error in local_error.errors():
                    # the worker validates JSON, the client a dict: the same error type, though
                    # the words may differ ("a valid list" here, "a valid array" there)
                    same = error["msg"] in cause.message or f"type={error['type']}" in cause.message
                    assert same, (error, cause.message)
                    assert not error["loc"] or str(error["loc"][0]) in cause.message
            assert await handle.query("view", result_type=kind) == before, name
            continue
        except PydanticSerializationError:
            # what JSON cannot carry (a lone surrogate) cannot be sent: nothing left this process
            assert local_error is not None, (name, body)
            assert await handle.query("view", result_type=kind) == before, name
            continue
        except RPCError as err:
            # it finished (waived, paid) between our look and the update: refused all the same
            assert (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING, err
            assert await handle.result() == before, name  # its last view
            break
        assert local_error is None, (name, body)
        assert result.timeline == []  # an answer leaves the timeline to the query
        timeline = (await current_view(handle, kind)).timeline
        assert timeline[: len(before.timeline)] == before.timeline, name
        assert [e.seq for e in timeline] == list(range(1, len(timeline) + 1))
        if isinstance(result, type(before)) and hasattr(result, "balance"):
            # money adds up: what is left is what was due less what was paid, credited or waived
            due = result.amount_due - result.paid - result.credited - result.waived
            assert result.balance == max(due, Decimal("0.00"))
    if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        try:
            await handle.terminate("test over")
        except RPCError as err:  # it ended (paid) between the look and the terminate
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise

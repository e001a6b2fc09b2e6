"""Faults of the services around the pipeline, on the real dev server, the real worker
(`worker.build_worker`) and the real activities; each test proves the fault really happened.

- SendGrid flaky: about 30 % of the attempts get a 429, 500 or 503 (seeded, so every run fails
  the same attempts) while 6 cases go from open to closed: every email is accepted exactly once.
- SendGrid bounces a customer's address (400): the owner is told, the timeline says so, and the
  case goes on (the agent corrects the contact and resolves again).
- PostgreSQL unreachable for 30 s (a TCP proxy between the worker and the database cuts every
  connection and refuses new ones) while agents keep acting: every case closes, every invoice is
  paid, the database agrees with Temporal, no event is missing and no email went out twice.
- The same cut between SendGrid's accept and the email log's commit: the email must still go
  out once.
- A PostgreSQL that accepts the connection and never answers: the connection attempt gives up
  (an activity's thread cannot be cancelled, so it must not hang).
- Partner Center down (500, 503, dropped connections) during the day-0 suspension and again
  during the reactivation, with a PATCH whose answer is lost: each subscription is suspended once
  and reactivated once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from chaos.harness import (
    FAST_POLICY,
    check_emails,
    confirm_case,
    open_case,
    report_failure,
    resolve_case,
)
from core.ids import account_workflow_id, case_workflow_id, collections_workflow_id
from core.models import (
    AccountView,
    BillingFailure,
    CaseStatus,
    CaseView,
    CollectionsStatus,
    CollectionsView,
    EmailTemplate,
    EventKind,
    OpenCase,
    Outcome,
    PaymentReceived,
    Resolve,
    UpdateContact,
)
from core.settings import EmailBackend, Settings
from db.migrate import upgrade
from db.session import make_engine, one_off_session
from db.tables import Case, CaseEventRow, Collections, CollectionsEventRow, EmailLog
from db.tables import PartnerCenterAction as Action
from service import Service
from service.errors import Unavailable
from service.verify import verify
from tests.clock_support import eventually as wait_until
from tests.partner_center_standin import (
    DROP,
    Change,
    PartnerCenterStandIn,
    partner_center_settings,
    partner_center_standin_fixture,  # noqa: F401  (pytest fixture "partner_center_standin")
)
from tests.sendgrid_standin import (
    SendGridStandIn,
    sendgrid_standin_fixture,  # noqa: F401  (pytest fixture "sendgrid_standin")
)
from tests.tcp_proxy import TcpProxy
from tests.test_chaos import settle
from tests.ui_support import LOCAL_ACTIVITY_MARKER
from tests.workflow_support import billing_failure
from tests.workflow_support import open_case as case_data
from worker import build_worker
from workflows.account import AccountWorkflow
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

AGENT = "agent.faults@partner.example.cn"
SENDGRID_KEY = "SG.faults-test-key"
TRANSIENT = {429, 500, 503}
# the flaky run: every run fails the same attempts (see tests/sendgrid_standin.py)
SEED = 20261124
FLAKY_RATE = 0.3
FLAKY_CASES = 6
# emails of a case from open to closed: acknowledgement, owner notice, resolution, closing
EMAILS_PER_CASE = 4
CUT_SECONDS = 30.0
HANG_GUARD = 150.0  # seconds: a stuck run fails instead of hanging the suite
POLL = 0.2


# polls until a check holds; past HANG_GUARD seconds the test fails naming what it waited for
eventually = partial(wait_until, seconds=HANG_GUARD, every=POLL)


async def case_view(client: Client, case_id: str) -> CaseView:
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, case_workflow_id(case_id))
    return await handle.query(BillingCaseWorkflow.view)


def collections_handle(
    client: Client, invoice_id: str
) -> WorkflowHandle[CollectionsWorkflow, CollectionsView]:
    return client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(invoice_id)
    )


def count(
    view: CaseView | CollectionsView | AccountView, kind: EventKind, text: str | None = None
) -> int:
    return sum(e.kind is kind and text in (None, e.text) for e in view.timeline)


async def accounts(client: Client, failures: list[BillingFailure]) -> list[AccountView]:
    """The accounts of the failures' customers, in their order."""
    return [
        await client.get_workflow_handle_for(
            AccountWorkflow.run, account_workflow_id(f.customer.tenant_id)
        ).query(AccountWorkflow.view)
        for f in failures
    ]


async def record_payment(client: Client, failure: BillingFailure) -> CollectionsView:
    """The whole amount under one payment id: an update, so it is workflow state at once."""
    payment = PaymentReceived(
        payment_id=f"PAY-{failure.invoice_id}",
        invoice_id=failure.invoice_id,
        amount=failure.amount_due,
        received_at=datetime.now(UTC),
    )
    return await collections_handle(client, failure.invoice_id).execute_update(
        CollectionsWorkflow.payment_received, payment, id=f"faults-{payment.payment_id}"
    )


def sendgrid_settings(directory: Path, standin: SendGridStandIn, **overrides: Any) -> Settings:
    """SendGrid (the stand-in) for email, a migrated SQLite file unless `database_url` is given,
    the day-0 collections policy, dry-run Partner Center."""
    policy = directory / "collections_policy.toml"
    policy.write_text(FAST_POLICY)
    fields: dict[str, Any] = {
        "database_url": f"sqlite:///{directory / 'billing.db'}",
        "outbox_dir": directory / "outbox",
        "task_queue": f"faults-{uuid.uuid4()}",
        "collections_policy_file": policy,
        "email_backend": EmailBackend.SENDGRID,
        "sendgrid_api_key": SecretStr(SENDGRID_KEY),
        "sendgrid_host": standin.host,
    }
    settings = Settings(**{**fields, **overrides})
    upgrade(settings.database_url)
    return settings


def email_rows(settings: Settings) -> list[EmailLog]:
    with one_off_session(settings.database_url) as session:
        rows = list(session.scalars(select(EmailLog)))
        session.expunge_all()
        return rows


def assert_each_email_accepted_once(settings: Settings, standin: SendGridStandIn) -> set[str]:
    """Every email_log row is sent, SendGrid accepted each of those keys exactly once and no
    other; returns the keys."""
    rows = email_rows(settings)
    assert {row.status for row in rows} == {"sent"}, [(r.dedup_key, r.status) for r in rows]
    keys = {row.dedup_key for row in rows}
    accepted = standin.accepted_keys()
    twice = {key: n for key, n in accepted.items() if n != 1}
    assert not twice, f"accepted more than once: {twice}"
    assert set(accepted) == keys
    # every attempt the log counts reached SendGrid, and nothing else did
    assert {row.dedup_key: row.attempts for row in rows} == {
        key: len(standin.statuses(key)) for key in keys
    }
    return keys


# --------------------------------------------------------------------------- SendGrid


async def test_flaky_sendgrid_every_email_accepted_once(
    dev_env: WorkflowEnvironment, tmp_path: Path, sendgrid_standin: SendGridStandIn
) -> None:
    client = dev_env.client
    settings = sendgrid_settings(tmp_path, sendgrid_standin)
    run = uuid.uuid4().hex[:10].upper()  # the dev server lives for the session: unique ids
    cases = [
        case_data(owner=None).model_copy(update={"case_id": f"FLAKY-{run}-{n}"})
        for n in range(FLAKY_CASES)
    ]

    # the draws leave this test's run id and the workflow's first run id (in every dedup key) out,
    # so every run fails the same attempts of the same emails
    def label(key: str) -> str:
        workflow_id, _first_run, name = key.split("/")
        return f"{workflow_id.replace(run, 'RUN')}/{name}"

    sendgrid_standin.flaky(FLAKY_RATE, SEED, key_label=label)

    async def open_to_closed(data: OpenCase) -> CaseView:
        await open_case(client, settings, data)
        await resolve_case(client, data.case_id)  # a note, then the resolution
        return await confirm_case(client, data.case_id)

    async with build_worker(client, settings):
        closed = await asyncio.wait_for(
            asyncio.gather(*(open_to_closed(data) for data in cases)), HANG_GUARD
        )

    assert [view.status for view in closed] == [CaseStatus.CLOSED] * FLAKY_CASES
    for view in closed:
        assert count(view, EventKind.EMAIL_SENT) == EMAILS_PER_CASE, view.timeline
        assert count(view, EventKind.EMAIL_BOUNCED) == 0
    keys = assert_each_email_accepted_once(settings, sendgrid_standin)
    assert len(keys) == EMAILS_PER_CASE * FLAKY_CASES
    for key in keys:  # failures first, then the one acceptance
        *failed, last = sendgrid_standin.statuses(key)
        assert last == 202 and set(failed) <= TRANSIENT, (key, failed, last)
    # the failures really happened, on many emails and with every kind of answer
    failures = [r.status for r in sendgrid_standin.requests if r.status in TRANSIENT]
    assert len(failures) >= 5 and set(failures) == TRANSIENT, failures
    assert sum(len(sendgrid_standin.statuses(key)) > 1 for key in keys) >= 3


async def test_bounced_address_owner_told_and_case_goes_on(
    dev_env: WorkflowEnvironment, tmp_path: Path, sendgrid_standin: SendGridStandIn
) -> None:
    client = dev_env.client
    settings = sendgrid_settings(tmp_path, sendgrid_standin)
    owner = "agent.li@partner.example.cn"
    bounced, corrected = "nobody@bounce.example.cn", "finance@customer.example.cn"
    sendgrid_standin.reject(bounced)
    data = case_data(owner=owner)
    customer = data.details.customer.model_copy(update={"email": bounced})
    data = data.model_copy(
        update={"details": data.details.model_copy(update={"customer": customer})}
    )
    case_id = data.case_id

    def bounces(view: CaseView, template: EmailTemplate) -> int:
        return sum(
            e.kind is EventKind.EMAIL_BOUNCED and e.data.get("template") == template.value
            for e in view.timeline
        )

    def owner_told(view: CaseView) -> int:
        return count(view, EventKind.EMAIL_SENT, EmailTemplate.OWNER_EMAIL_BOUNCED.value)

    async with build_worker(client, settings):
        await Service(client, settings).cases.open(data)

        # the acknowledgement bounces: the owner is told, the case waits for the agent as before
        async def acknowledgement_bounced() -> bool:
            view = await case_view(client, case_id)
            return bounces(view, EmailTemplate.CASE_ACKNOWLEDGED) == 1 and owner_told(view) == 1

        await eventually(acknowledgement_bounced, "the acknowledgement bounced, owner told")
        assert (await case_view(client, case_id)).status is CaseStatus.OPEN

        # the resolution bounces: not resolved, back to the agent
        resolution = Resolve(
            outcome=Outcome.EXPLAINED, summary="The charge is explained.", by=AGENT
        )
        # resolve answers once the email's fate is known: bounced, so back to the agent
        answered = await Service(client).cases.act(case_id, resolution)
        assert answered.status is CaseStatus.OPEN and answered.resolution is None

        async def resolution_bounced() -> bool:
            view = await case_view(client, case_id)
            return bounces(view, EmailTemplate.CASE_RESOLVED) == 1 and owner_told(view) == 2

        await eventually(resolution_bounced, "the resolution bounced, owner told")
        view = await case_view(client, case_id)
        assert view.status is CaseStatus.OPEN and view.resolution is None
        assert count(view, EventKind.CUSTOMER_TOLD) == 0
        assert any("resolution email bounced" in e.text for e in view.timeline)

        # docs/cases.md: `contact --email`, then `resolve` again
        contact = UpdateContact(email=corrected, by=AGENT)
        await Service(client).cases.act(case_id, contact)
        await Service(client).cases.act(case_id, resolution)
        closed = await asyncio.wait_for(confirm_case(client, case_id), HANG_GUARD)

    assert closed.status is CaseStatus.CLOSED and closed.resolution is not None
    assert count(closed, EventKind.EMAIL_BOUNCED) == 2 and owner_told(closed) == 2
    requests = sendgrid_standin.requests
    # each bounce was final: one attempt, a 400, no retry
    to_bounced = [r for r in requests if bounced in r.recipients]
    assert [r.status for r in to_bounced] == [400, 400]
    assert {r.json()["categories"][0] for r in to_bounced} == {
        EmailTemplate.CASE_ACKNOWLEDGED.value,
        EmailTemplate.CASE_RESOLVED.value,
    }
    # the owner's two notices name the bounced address
    notices = [
        r for r in requests if r.json()["categories"][0] == EmailTemplate.OWNER_EMAIL_BOUNCED.value
    ]
    assert [(r.recipients, r.status) for r in notices] == [([owner], 202)] * 2
    assert all(bounced in r.body.decode() for r in notices)
    # the corrected address got the resolution and the closing
    to_corrected = [r.json()["categories"][0] for r in requests if corrected in r.recipients]
    assert to_corrected == [EmailTemplate.CASE_RESOLVED.value, EmailTemplate.CASE_CLOSED.value]
    assert all(r.status == 202 for r in requests if bounced not in r.recipients)
    rows = email_rows(settings)
    assert sorted(r.status for r in rows) == ["rejected"] * 2 + ["sent"] * (len(rows) - 2)


# --------------------------------------------------------------------------- the database


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL test database, emptied and migrated."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip(
            "the database cut needs PostgreSQL: set "
            "TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test"
        )
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


@pytest.fixture
def db_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of PostgreSQL; it stops (and closes everything) at teardown."""
    parsed = make_url(postgres_url)
    with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        yield proxy


def through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@asynccontextmanager
async def proxied_worker(
    client: Client,
    tmp_path: Path,
    standin: SendGridStandIn,
    proxy: TcpProxy,
    postgres_url: str,
) -> AsyncIterator[tuple[Settings, Settings]]:
    """The real worker with its database behind the proxy; yields its settings and the same with
    the direct URL (the test's own reads never go through the proxy)."""
    settings = sendgrid_settings(tmp_path, standin, database_url=through(proxy, postgres_url))
    direct = settings.model_copy(update={"database_url": postgres_url})
    async with build_worker(client, settings):
        yield settings, direct


async def retried_activities(client: Client, workflow_id: str) -> list[str]:
    """Names of the activities that completed only on a later attempt: a regular one's started
    event carries the attempt, a local one's marker its data."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    names = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    retried = [
        names[e.activity_task_started_event_attributes.scheduled_event_id]
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.attempt > 1
    ]
    for e in history.events:
        marker = e.marker_recorded_event_attributes
        if not e.HasField("marker_recorded_event_attributes") or (
            marker.marker_name != LOCAL_ACTIVITY_MARKER
        ):
            continue
        [data] = await client.data_converter.decode(marker.details["data"].payloads, [dict])
        if data["attempt"] > 1:
            retried.append(data["activity_type"])
    return retried


def stored_state(settings: Settings, case_ids: list[str]) -> tuple[dict[str, str], int]:
    """The stored status of each of these cases that has a row, and the number of emails."""
    with one_off_session(settings.database_url) as session:
        found = session.execute(select(Case.case_id, Case.status).where(Case.case_id.in_(case_ids)))
        statuses = {case_id: status for case_id, status in found}
        emails = session.scalar(select(func.count()).select_from(EmailLog)) or 0
    return statuses, emails


def stored_events(settings: Settings) -> dict[str, list[int]]:
    """Workflow id -> the seqs of its stored events, in order."""
    with one_off_session(settings.database_url) as session:
        rows = [
            *session.execute(
                select(Case.workflow_id, CaseEventRow.seq)
                .join(Case, Case.case_id == CaseEventRow.case_id)
                .order_by(CaseEventRow.seq)
            ),
            *session.execute(
                select(Collections.workflow_id, CollectionsEventRow.seq)
                .join(Collections, Collections.invoice_id == CollectionsEventRow.invoice_id)
                .order_by(CollectionsEventRow.seq)
            ),
        ]
    found: dict[str, list[int]] = {}
    for workflow_id, seq in rows:
        found.setdefault(workflow_id, []).append(seq)
    return found


async def test_database_cut_for_30_seconds_loses_nothing(
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
    sendgrid_standin: SendGridStandIn,
    db_proxy: TcpProxy,
    postgres_url: str,
) -> None:
    client = dev_env.client
    before = [case_data(owner=None) for _ in range(4)]
    during = [case_data(owner=None)]
    failures = [billing_failure(amount=f"{2000 + n}.50") for n in range(3)]
    cases = [data.case_id for data in before + during]
    invoices = [failure.invoice_id for failure in failures]

    async with proxied_worker(client, tmp_path, sendgrid_standin, db_proxy, postgres_url) as (
        settings,
        direct,
    ):
        # 4 cases acknowledged, 2 subscriptions suspended, all of it stored: then the cut
        await asyncio.gather(*(open_case(client, settings, data) for data in before))
        await asyncio.gather(*(report_failure(client, settings, f) for f in failures[:2]))
        tenants = [failure.customer.tenant_id for failure in failures[:2]]
        settled = settle(client, direct, cases[:4], invoices[:2], None, tenants)
        await asyncio.wait_for(settled, HANG_GUARD)
        assert db_proxy.cut() > 0  # the worker's pool held open connections: all closed now
        cut_at = time.monotonic()

        # the agents go on: a case opens, every case gets a note and a resolution, two invoices
        # are paid. All updates are workflow state: they succeed. A new failure is refused for
        # now (503 at the intake): whether its invoice's collections ended is in the database
        await open_case(client, settings, during[0])
        with pytest.raises(Unavailable, match="database is unavailable"):
            await Service(client, settings).collections.report_failure(failures[2])
        await asyncio.gather(*(resolve_case(client, case_id) for case_id in cases))
        paid_in_cut = await asyncio.gather(*(record_payment(client, f) for f in failures[:2]))
        assert [v.status for v in paid_in_cut] == [CollectionsStatus.PAID] * 2

        # ... and every activity that would store or send any of it fails meanwhile
        async def refused_again_and_again() -> bool:
            return db_proxy.counts.refused >= 20

        await eventually(refused_again_and_again, "the worker tried the database during the cut")
        # nothing of it reached the database: the new case has no row, the resolved ones are
        # open there, no email was claimed (each case had 2, each invoice 2 before the cut)
        statuses, emails = stored_state(direct, cases)
        assert statuses == {data.case_id: "open" for data in before}
        assert emails == 2 * len(before) + 2 * 2
        await asyncio.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
        db_proxy.restore()
        refused = db_proxy.counts.refused
        await report_failure(client, settings, failures[2])  # the billing system's retry

        async def suspended_after_restore() -> bool:
            # by Partner Center, as the account says: the invoice's view lists what it holds as
            # soon as it asks, and a payment before the suspension leaves nothing to reactivate
            try:
                [account] = await accounts(client, failures[2:])
            except RPCError:  # the invoice starts its account on its first notice
                return False
            return set(failures[2].subscription_ids) <= set(account.suspended_subscriptions)

        await eventually(suspended_after_restore, "the invoice reported in the cut suspended")
        await record_payment(client, failures[2])
        closed = await asyncio.wait_for(
            asyncio.gather(*(confirm_case(client, case_id) for case_id in cases)), HANG_GUARD
        )
        paid = [await collections_handle(client, invoice).result() for invoice in invoices]

        async def reactivated_and_told() -> bool:  # by the customers' accounts, after
            return all(
                not v.suspended_subscriptions
                and count(v, EventKind.EMAIL_SENT, EmailTemplate.COLLECTIONS_REACTIVATED.value)
                for v in await accounts(client, failures)
            )

        # the accounts act last, after activity retries that backed off through the cut (up
        # to minutes apart): a longer guard
        await eventually(
            reactivated_and_told,
            "every account reactivated and told its customer",
            seconds=2 * HANG_GUARD,
        )
        held = await accounts(client, failures)
        report = await verify(client=client, settings=direct)  # the accounts answer queries

    assert [view.status for view in closed] == [CaseStatus.CLOSED] * 5
    assert [view.status for view in paid] == [CollectionsStatus.PAID] * 3
    # the cut did make the activities fail: refused connections, and in every workflow that ran
    # through it (not the invoice reported after it) a step that completed on a later attempt
    assert refused >= 20
    views: list[CaseView | CollectionsView] = [*closed, *paid]
    for view in views[:-1]:
        assert await retried_activities(client, view.workflow_id), view.workflow_id

    assert (report.cases, report.collections, report.accounts, report.workflows) == (5, 3, 3, 11)
    assert report.differences == []
    # every event of every workflow is stored once, in order
    stored = stored_events(direct)
    assert {view.workflow_id: stored.get(view.workflow_id) for view in views} == {
        view.workflow_id: list(range(1, len(view.timeline) + 1)) for view in views
    }
    keys = assert_each_email_accepted_once(direct, sendgrid_standin)
    sent_events = sum(count(view, EventKind.EMAIL_SENT) for view in [*views, *held])
    assert len(keys) == sent_events == len(sendgrid_standin.requests)


async def send_email_failures(client: Client, workflow_id: str) -> list[BaseException]:
    """The last failure of each pending send_email activity of the workflow, decrypted."""
    described = await client.get_workflow_handle(workflow_id).describe()
    return [
        await client.data_converter.decode_failure(pending.last_failure)
        for pending in described.raw_description.pending_activities
        if pending.activity_type.name == "send_email" and pending.HasField("last_failure")
    ]


async def test_database_cut_between_sendgrid_accept_and_commit_sends_once(
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
    sendgrid_standin: SendGridStandIn,
    db_proxy: TcpProxy,
    postgres_url: str,
) -> None:
    """The cut comes while SendGrid takes the acknowledgement: the 202 arrives after the email
    log's claim was committed, and `sent` cannot be. The email must still go out once, and soon
    after the database is back."""
    client = dev_env.client
    data = case_data(owner=None)
    workflow_id = case_workflow_id(data.case_id)
    held = sendgrid_standin.hold_next()  # the case's first email: the acknowledgement
    async with proxied_worker(client, tmp_path, sendgrid_standin, db_proxy, postgres_url) as (
        settings,
        direct,
    ):
        await open_case(client, settings, data)
        assert await asyncio.to_thread(held.arrived.wait, HANG_GUARD)
        db_proxy.cut()
        held.release()  # SendGrid accepts; the activity cannot record it

        async def retried_in_cut() -> bool:
            return db_proxy.counts.refused >= 2

        await eventually(retried_in_cut, "the email activity failed and was retried in the cut")
        db_proxy.restore()
        assert held.request is not None and held.request.status == 202
        key = held.request.dedup_key
        assert key is not None
        stuck: list[str] = []

        async def sent_or_stuck() -> bool:
            """The acknowledgement is recorded, or an attempt after the restore was refused
            because the key still looks claimed."""
            if count(await case_view(client, data.case_id), EventKind.EMAIL_SENT) >= 1:
                return True
            for failure in await send_email_failures(client, workflow_id):
                if isinstance(failure, ApplicationError) and failure.type == "EmailInProgress":
                    stuck.append(failure.message)
            return bool(stuck)

        await eventually(sent_or_stuck, "the acknowledgement recorded, or its retry refused")
        # the attempt that SendGrid answered heartbeated its answer; the next one records it
        # instead of waiting out the claim and sending again (activities/email.py)
        assert not stuck, f"{key} accepted but still claimed after the restore: {stuck[0]!r}"
        view = await case_view(client, data.case_id)
        assert count(view, EventKind.EMAIL_SENT) >= 1
        rows = [r for r in email_rows(direct) if r.dedup_key == key]
        assert [r.status for r in rows] == ["sent"]
        assert sendgrid_standin.accepted_keys()[key] == 1


def test_a_database_that_never_answers_fails_the_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts or answers
        port = silent.getsockname()[1]
        engine = make_engine(f"postgresql://postgres@127.0.0.1:{port}/test")
        failed: list[BaseException] = []

        def connect() -> None:
            try:
                engine.connect()
            except BaseException as exc:
                failed.append(exc)

        attempt = threading.Thread(target=connect, daemon=True)  # a hang fails, not blocks, us
        attempt.start()
        attempt.join(30)
        assert not attempt.is_alive(), "the connection attempt still hangs after 30 s"
        assert isinstance(failed[0], OperationalError) and "timeout" in str(failed[0])
        engine.dispose()


# --------------------------------------------------------------------------- Partner Center


def actions(settings: Settings, status: str) -> list[Action]:
    """partner_center_actions rows for changes to `status`."""
    with one_off_session(settings.database_url) as session:
        rows = list(session.scalars(select(Action).where(Action.status == status)))
        session.expunge_all()
        return rows


async def test_partner_center_down_suspends_and_reactivates_once(
    dev_env: WorkflowEnvironment, tmp_path: Path, partner_center_standin: PartnerCenterStandIn
) -> None:
    client = dev_env.client
    standin = partner_center_standin
    settings = partner_center_settings(tmp_path, standin, "faults-pc")
    failures = [billing_failure(amount=f"{3000 + n}.00", subscriptions=2) for n in range(2)]
    subscriptions = [(f.customer.tenant_id, s) for f in failures for s in f.subscription_ids]
    for tenant, subscription in subscriptions:
        standin.add_subscription(tenant, subscription)
    handles = [collections_handle(client, f.invoice_id) for f in failures]

    def tried(status: str, attempts: int) -> Callable[[], Awaitable[bool]]:
        """Each workflow's first subscription change to `status` failed `attempts` times."""

        async def check() -> bool:
            rows = actions(settings, status)
            return len(rows) == len(failures) and all(
                row.attempts >= attempts and row.outcome == "pending" and row.error for row in rows
            )

        return check

    async with build_worker(client, settings):
        # day 0 in an outage: 503, 500 and dropped connections, token requests included
        standin.outage(503, 500, DROP)
        await asyncio.gather(*(report_failure(client, settings, f) for f in failures))
        await eventually(tried("suspended", 3), "three failed suspension attempts each")
        for handle in handles:
            view = await handle.query(CollectionsWorkflow.view)
            assert view.status is CollectionsStatus.ACTIVE  # its holds placed, nothing suspended
        for account in await accounts(client, failures):
            assert account.suspended_subscriptions == [] and len(account.holds) == 2
        # Partner Center is back, but one PATCH's answer is lost on the way (of a subscription not
        # tried yet: its retry comes after 1 s, not after the outage's longer backoff)
        standin.lose_next_answers(1, failures[0].subscription_ids[1])
        standin.end_outage()

        async def all_suspended() -> bool:  # by the customers' accounts, their only writers
            views = await accounts(client, failures)
            return all(len(v.suspended_subscriptions) == 2 for v in views)

        await eventually(all_suspended, "every subscription suspended")
        assert [c.after for c in standin.changes] == ["suspended"] * 4

        # the payment comes during a second outage: the reactivation fails too, then goes through
        standin.outage(500, DROP, 503)
        paid = await asyncio.gather(*(record_payment(client, f) for f in failures))
        assert [view.status for view in paid] == [CollectionsStatus.PAID] * 2
        await eventually(tried("active", 2), "two failed reactivation attempts each")
        standin.lose_next_answers(1, failures[1].subscription_ids[1])
        standin.end_outage()
        results = await asyncio.wait_for(
            asyncio.gather(*(handle.result() for handle in handles)), HANG_GUARD
        )

        async def all_reactivated() -> bool:  # and the letter that says so
            views = await accounts(client, failures)
            return all(
                not v.suspended_subscriptions
                and count(v, EventKind.EMAIL_SENT, EmailTemplate.COLLECTIONS_REACTIVATED.value)
                for v in views
            )

        await eventually(all_reactivated, "every subscription reactivated")
        held = await accounts(client, failures)
        report = await verify(client=client, settings=settings)  # the accounts answer queries

    assert [view.status for view in results] == [CollectionsStatus.PAID] * 2
    # once each way per subscription, though answers were lost and attempts repeated
    assert sorted(standin.changes, key=lambda c: (c.customer_id, c.subscription_id)) == sorted(
        [
            change
            for tenant, subscription in subscriptions
            for change in (
                Change(tenant, subscription, "active", "suspended"),
                Change(tenant, subscription, "suspended", "active"),
            )
        ],
        key=lambda c: (c.customer_id, c.subscription_id),
    )
    assert {standin.subscription(t, s)["status"] for t, s in subscriptions} == {"active"}
    # the outages really happened: errors, dropped connections, lost answers, retried actions
    requests = standin.requests
    assert {r.status for r in requests if not r.dropped and r.status >= 500} == {500, 503}
    assert any(r.dropped and r.status == DROP for r in requests)
    lost = [r for r in requests if r.dropped and r.method == "PATCH"]
    assert [r.status for r in lost] == [200, 200]
    for status, attempts, lost_one in (
        ("suspended", 3, failures[0].subscription_ids[1]),
        ("active", 2, failures[1].subscription_ids[1]),
    ):
        rows = actions(settings, status)
        assert len(rows) == 4 and {r.outcome for r in rows} == {"done"}
        assert sum(r.attempts >= attempts for r in rows) >= 2, [(r.key, r.attempts) for r in rows]
        # the lost answer: a later attempt read the subscription, found it done and sent no
        # PATCH (the changes above are once each way); the outage may have failed it before
        [tries] = [r.attempts for r in rows if r.subscription_id == lost_one]
        assert tries >= 2
    for view, account in zip(results, held, strict=True):
        # the account suspends and reactivates; the invoice tells the customer of the suspension
        assert count(account, EventKind.SUSPENDED) == 2
        assert count(account, EventKind.REACTIVATED) == 2
        assert count(account, EventKind.PARTNER_CENTER_ERROR) == 0
        assert count(view, EventKind.HANDED_OFF) == 0
        assert count(view, EventKind.EMAIL_SENT, EmailTemplate.COLLECTIONS_SUSPENDED.value) == 1
        reactivated = EmailTemplate.COLLECTIONS_REACTIVATED.value
        assert count(account, EventKind.EMAIL_SENT, reactivated) == 1
    emails = check_emails(settings)
    assert emails.not_sent == 0 and emails.duplicates == 0 and emails.files == emails.sent
    assert report.differences == [] and (report.collections, report.accounts) == (2, 2)

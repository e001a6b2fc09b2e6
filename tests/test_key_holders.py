"""Only key holders act, on the real dev server with the real worker: what a client without the
encryption key sends in clear (the Temporal CLI, a plain SDK client) is refused with a message it
can read, and changes nothing; the same through the codec endpoint, with its token, is taken. A
workflow that took plain input before this rule replays and goes on under it.

`RECORD_HISTORIES=1` also writes that workflow's history to tests/histories/.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.codec import create_codec_app
from chaos.harness import free_port
from core.codec import ENCODING, KEY_ID
from core.ids import case_workflow_id, collections_workflow_id
from core.models import (
    AddNote,
    BillingFailure,
    CollectionsStatus,
    DisputeOutcome,
    EventKind,
    OpenDispute,
    Outcome,
    ResumePolicy,
    Waive,
)
from core.sealing import NOT_SEALED, REFUSED
from core.settings import Settings
from db.session import make_engine, make_session_factory
from db.tables import CollectionsEventRow
from service import Service
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.conftest import DEV_SERVER
from tests.db_queries import get_case
from tests.intake_support import billing_failure_body, unique_prefix
from tests.workflow_support import open_case
from worker import WORKFLOWS, build_worker, worker_client
from workflows.base import REFUSALS_RECORDED
from workflows.billing_case import BillingCaseWorkflow
from workflows.sealed import RefuseUnsealed

MALLORY = "mallory@evil.example.com"
AGENT = "agent.wang@partner.example.cn"


@pytest_asyncio.fixture
async def running(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Settings]:
    """The real worker on SQLite and, where TEST_DATABASE_URL is set, PostgreSQL."""
    settings = Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        task_queue=f"billing-{uuid.uuid4()}",
    )
    async with build_worker(dev_env.client, settings):
        yield settings


async def plain_client(dev_env: WorkflowEnvironment) -> Client:
    """A client without the key: pydantic JSON, no codec."""
    return await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
    )


async def temporal_cli(dev_env: WorkflowEnvironment, *args: str) -> tuple[int, str]:
    """The real Temporal CLI (asynchronously: the worker runs on this event loop)."""
    process = await asyncio.create_subprocess_exec(
        shutil.which("temporal") or str(DEV_SERVER),
        *args,
        "--address",
        dev_env.client.service_client.config.target_host,
        "--namespace",
        dev_env.client.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def note_by_cli(case_id: str, text: str) -> list[str]:
    body = AddNote(text=text, by=MALLORY).model_dump_json()
    workflow_id = case_workflow_id(case_id)
    return ["workflow", "update", "execute", "-w", workflow_id, "--name", "note", "--input", body]


def assert_refused(err: BaseException | None, message: str) -> None:
    """A refusal of plain input: its own error type, and a message a client without the key
    reads."""
    assert isinstance(err, ApplicationError) and err.type == REFUSED, err
    assert err.message.startswith(message), err.message


@pytest.fixture
def codec_endpoint(codec_keys: str) -> Iterator[tuple[str, str]]:
    """The codec endpoint (`python -m api.codec`) on a free port, in its own thread: its URL and
    token."""
    token = secrets.token_urlsafe(24)
    settings = Settings(codec_keys=SecretStr(codec_keys), codec_token=SecretStr(token))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_codec_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True
    thread.join(10)


def test_every_update_has_a_validator() -> None:
    """The rule refuses a plain update in its validator: an update without one would take it."""
    for cls in WORKFLOWS:
        updates = workflow._Definition.must_from_class(cls).updates
        assert updates and all(u.validator is not None for u in updates.values()), cls.__name__


async def test_a_plain_update_is_refused_and_the_codec_endpoint_seals_nothing(
    dev_env: WorkflowEnvironment, running: Settings, codec_endpoint: tuple[str, str]
) -> None:
    cases = Service(dev_env.client, running).cases
    data = open_case()
    await cases.open(data)

    # the issue's command: the CLI with no key
    code, out = await temporal_cli(dev_env, *note_by_cli(data.case_id, "plain payload, no key"))
    assert code != 0
    assert f"update `note` refused: its argument {NOT_SEALED}" in out, out

    # the codec endpoint, with its token, only decodes: nobody seals through it (the CLI given
    # it as its --codec-endpoint retries the 403 until its deadline, and sends nothing)
    url, token = codec_endpoint
    async with httpx.AsyncClient() as http:
        body = {"payloads": [{"metadata": {}, "data": ""}]}
        headers = {"Authorization": f"Bearer {token}", "X-Namespace": dev_env.client.namespace}
        answer = await http.post(f"{url}/encode", json=body, headers=headers)
    assert answer.status_code == 403

    assert not [e for e in (await cases.show(data.case_id)).timeline if e.actor == MALLORY]


async def raw_events(dev_env: WorkflowEnvironment, workflow_id: str) -> list[HistoryEvent]:
    """A workflow's history as a namespace user without the key reads it."""
    plain = await Client.connect(
        dev_env.client.service_client.config.target_host, namespace=dev_env.client.namespace
    )
    return list((await plain.get_workflow_handle(workflow_id).fetch_history()).events)


def sealed_update_argument(events: list[HistoryEvent], update: str) -> Payload:
    [accepted] = [
        e.workflow_execution_update_accepted_event_attributes
        for e in events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == update
    ]
    [payload] = accepted.accepted_request.input.args.payloads
    assert payload.metadata["encoding"] == ENCODING  # sealed: the copier cannot read it
    return payload


def as_cli_input(payload: Payload) -> list[str]:
    """The CLI's flags that send `payload` exactly as it was stored."""
    meta = [f"--input-meta={key}={value.decode()}" for key, value in payload.metadata.items()]
    return [*meta, "--input-base64", "--input", base64.b64encode(payload.data).decode()]


async def test_a_sealed_argument_copied_from_a_history_acts_nowhere_else_and_once(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    """The issue's replay, with the real `temporal` CLI and no key: invoice A's sealed `waive`
    sent as invoice B's is refused, and so is B's own `resume` sent as its `waive`, or as its
    `resume` again."""
    service = Service(dev_env.client, running)
    invoice_a, invoice_b = unique_prefix(), unique_prefix()
    for invoice in (invoice_a, invoice_b):
        await service.collections.report_failure(
            BillingFailure.model_validate(billing_failure_body(invoice, f"{invoice}-F1"))
        )
    await service.collections.act(
        invoice_a, Waive(reason="goodwill for A only", by="manager.zhao@partner.example.cn")
    )
    copied = sealed_update_argument(
        await raw_events(dev_env, collections_workflow_id(invoice_a)), "waive"
    )
    workflow_b = collections_workflow_id(invoice_b)
    update = ["workflow", "update", "execute", "-w", workflow_b]
    code, out = await temporal_cli(dev_env, *update, "--name", "waive", *as_cli_input(copied))
    assert code != 0
    assert "update `waive` refused: its argument was sealed for another workflow" in out, out

    # B's own sealed `resume` (same shape as `waive`): not a `waive`, and not a second `resume`
    await service.collections.act(invoice_b, OpenDispute(description="deleted VM", by=AGENT))
    await service.collections.act(
        invoice_b, ResumePolicy(reason="dispute answered by phone", by=AGENT)
    )
    resume = sealed_update_argument(await raw_events(dev_env, workflow_b), "resume")
    code, out = await temporal_cli(dev_env, *update, "--name", "waive", *as_cli_input(resume))
    assert code != 0
    assert "update `waive` refused: its argument was sealed for `update:resume`" in out, out
    await service.collections.act(invoice_b, OpenDispute(description="again", by=AGENT))
    code, out = await temporal_cli(dev_env, *update, "--name", "resume", *as_cli_input(resume))
    assert code != 0 and "was taken already" in out, out

    view = await service.collections.show(invoice_b)
    assert view.status is CollectionsStatus.PAUSED_DISPUTE and view.balance == view.amount_due
    resumed = [e.text for e in view.timeline if e.kind is EventKind.RESUMED]
    assert len(resumed) == 1 and resumed[0].endswith("dispute answered by phone")
    await service.collections.act(invoice_b, Waive(reason="test over", by=AGENT))
    history = await dev_env.client.get_workflow_handle(workflow_b).fetch_history()
    await replay_and_record(dev_env.client, history, "collections_copied_argument_refused")


async def test_a_fake_sealed_signal_is_refused_and_the_workflow_keeps_serving(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    """A signal whose payload claims to be sealed and does not open: recorded as refused, and
    the next key holder's update is answered (it used to fail the workflow task for ever)."""
    service = Service(dev_env.client, running)
    invoice = unique_prefix()
    await service.collections.report_failure(
        BillingFailure.model_validate(billing_failure_body(invoice, f"{invoice}-F1"))
    )
    fake = Payload(
        metadata={"encoding": ENCODING, KEY_ID: b"test-key"}, data=secrets.token_bytes(80)
    )
    signal = ["workflow", "signal", "-w", collections_workflow_id(invoice)]
    code, out = await temporal_cli(dev_env, *signal, "--name", "waive", *as_cli_input(fake))
    assert code == 0, out  # a signal lands before anything can refuse it
    code, out = await temporal_cli(
        dev_env, *signal, "--name", "customer_replied", *as_cli_input(fake)
    )
    assert code == 0, out
    # a signal without an argument names no sender: refused, from anyone
    code, out = await temporal_cli(dev_env, *signal, "--name", "notice_outcome")
    assert code == 0, out

    async def refused() -> bool:
        view = await service.collections.show(invoice)
        return any(e.data.get("signal") == "notice_outcome" for e in view.timeline)

    await eventually(refused)
    done = await asyncio.wait_for(
        service.collections.act(invoice, Waive(reason="test over", by=AGENT)), timeout=30
    )
    assert done.status is CollectionsStatus.WAIVED
    view = await service.collections.show(invoice)
    [event] = [e for e in view.timeline if e.kind is EventKind.SIGNAL_REFUSED]
    assert event.text.startswith("signal `notice_outcome` refused: it carries no sealed argument")


async def test_a_plain_start_is_refused_and_does_nothing(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    data = open_case()
    plain = await plain_client(dev_env)
    handle = await plain.start_workflow(
        BillingCaseWorkflow.run,
        data,
        id=case_workflow_id(data.case_id),
        task_queue=running.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert_refused(
        failed.value.cause,
        f"BillingCaseWorkflow refused: its start input {NOT_SEALED}; nothing was done",
    )
    history = await handle.fetch_history()
    kinds = {event.WhichOneof("attributes") for event in history.events}
    assert (
        not {
            "activity_task_scheduled_event_attributes",
            "start_child_workflow_execution_initiated_event_attributes",
        }
        & kinds
    )
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    assert set(markers) <= {"core_patch"}  # no local activity: nothing was saved
    sessions = make_session_factory(make_engine(running.database_url))
    with sessions() as session:
        assert get_case(session, data.case_id) is None
    assert not list(running.outbox_dir.glob("*"))
    # plain and not even valid: refused the same way, not a workflow task failing for ever
    invalid = await plain.start_workflow(
        "BillingCaseWorkflow",
        {"case_id": data.case_id, "by": MALLORY},
        id=f"{case_workflow_id(data.case_id)}-invalid",
        task_queue=running.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await invalid.result()
    assert_refused(failed.value.cause, f"input refused: it {NOT_SEALED}, and is not valid either")


async def test_a_forged_dispute_outcome_is_recorded_as_refused(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    service = Service(dev_env.client, running)
    invoice = unique_prefix()
    await service.collections.report_failure(
        BillingFailure.model_validate(billing_failure_body(invoice, f"{invoice}-F1"))
    )
    disputed = await service.collections.act(
        invoice, OpenDispute(description="the VM was deleted", by=AGENT)
    )
    assert disputed.linked_case_id is not None
    plain = await plain_client(dev_env)
    forged = DisputeOutcome(
        case_id=disputed.linked_case_id,
        outcome=Outcome.CREDIT_ISSUED,
        credit_amount=Decimal("12340.50"),
    )
    workflow_id = collections_workflow_id(invoice)
    await plain.get_workflow_handle(workflow_id).signal("dispute_resolved", forged)

    async def refused() -> bool:
        view = await service.collections.show(invoice)
        return any(e.kind is EventKind.SIGNAL_REFUSED for e in view.timeline)

    await eventually(refused)
    view = await service.collections.show(invoice)
    assert view.status is CollectionsStatus.PAUSED_DISPUTE
    assert view.credited == 0 and view.balance == view.amount_due
    [event] = [e for e in view.timeline if e.kind is EventKind.SIGNAL_REFUSED]
    assert event.data == {"signal": "dispute_resolved", "refused": "1"}
    assert event.text.startswith(f"signal `dispute_resolved` refused: its argument {NOT_SEALED}")
    # a plain update to the same workflow: refused, readable without the key
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await plain.get_workflow_handle(workflow_id).execute_update(
            "waive", Waive(reason="forged", by=MALLORY)
        )
    assert_refused(rejected.value.cause, f"update `waive` refused: its argument {NOT_SEALED}")
    await service.collections.act(invoice, Waive(reason="test over", by=AGENT))


async def test_a_flood_of_forged_signals_is_counted_not_recorded_one_by_one(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    """A client without the key sends 45 forged signals: the first REFUSALS_RECORDED are in the
    timeline (and the log), the rest counted; the invoice is unchanged and still answers."""
    service = Service(dev_env.client, running)
    invoice = unique_prefix()
    await service.collections.report_failure(
        BillingFailure.model_validate(billing_failure_body(invoice, f"{invoice}-F1"))
    )
    handle = (await plain_client(dev_env)).get_workflow_handle(collections_workflow_id(invoice))
    forged = DisputeOutcome(case_id="CASE-X", outcome=Outcome.CREDIT_ISSUED)
    await asyncio.gather(*(handle.signal("dispute_resolved", forged) for _ in range(45)))

    view = await service.collections.show(invoice)
    assert view.credited == 0 and view.balance == view.amount_due
    # an action after the flood: once it shows, every refusal before it was recorded or counted
    await service.collections.act(invoice, Waive(reason="test over", by=AGENT))

    async def waived() -> bool:
        view = await service.collections.show(invoice)
        return any(e.kind is EventKind.WAIVED for e in view.timeline)

    await eventually(waived)
    with make_session_factory(make_engine(running.database_url))() as session:
        stored = session.scalars(
            select(CollectionsEventRow.data)
            .where(CollectionsEventRow.invoice_id == invoice)
            .where(CollectionsEventRow.kind == EventKind.SIGNAL_REFUSED.value)
            .order_by(CollectionsEventRow.seq)
        )
        refused = [data["refused"] for data in stored]
    assert refused == [str(n) for n in range(1, REFUSALS_RECORDED + 1)]


@workflow.defn(sandboxed=False)  # defined in a test module: outside the sandbox
class Echo:
    """A query that takes an argument (the product's take none)."""

    @workflow.run
    async def run(self, text: str) -> str:
        await workflow.wait_condition(lambda: False)
        return text

    @workflow.query
    def echo(self, text: str) -> str:
        return text


async def test_a_query_with_a_plain_argument_is_refused(dev_env: WorkflowEnvironment) -> None:
    queue = f"echo-{uuid.uuid4()}"
    worker = Worker(
        worker_client(dev_env.client, Settings()),
        task_queue=queue,
        workflows=[Echo],
        interceptors=[RefuseUnsealed()],
    )
    async with worker:
        handle = await dev_env.client.start_workflow(
            Echo.run, "started", id=f"echo-{uuid.uuid4()}", task_queue=queue
        )
        assert await handle.query(Echo.echo, "sealed") == "sealed"
        plain = (await plain_client(dev_env)).get_workflow_handle(handle.id)
        with pytest.raises(WorkflowQueryFailedError) as refused:
            await plain.query(Echo.echo, "in clear")
        assert str(refused.value) == f"query `echo` refused: its argument {NOT_SEALED}"
        await handle.terminate()

"""A whole case on the real dev server: the service layer and the CLI, the real worker, database
and outbox.

The histories it produces are replayed with `Replayer`; `RECORD_HISTORIES=1` also writes them to
tests/histories/, where test_replay.py replays them on every run (non-determinism fails CI).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from core import search
from core.models import (
    AddNote,
    CaseStatus,
    Confirm,
    CustomerReply,
    Escalate,
    Outcome,
    RequestInfo,
    Resolve,
    Severity,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from core.settings import Settings
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from db.tables import EmailLog, VianetEscalation
from service import Service
from service.cases import CaseAction
from service.errors import Ended, Refused
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.db_queries import case_events, get_case
from tests.workflow_support import open_case
from worker import build_worker
from workflows.billing_case import BillingCaseWorkflow

AGENT = "agent.wang@partner.example.cn"


@pytest_asyncio.fixture(params=[True, False], ids=["sandboxed", "unsandboxed"])
async def running(
    request: pytest.FixtureRequest, dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[Settings]:
    """The real worker against a migrated SQLite file and a file outbox, on a fresh task queue:
    inside Temporal's sandbox (as every other test) and without it (the product's default)."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"billing-{uuid.uuid4()}",
        workflow_sandbox=request.param,
    )
    upgrade(settings.database_url)
    async with build_worker(dev_env.client, settings):
        yield settings


async def test_case_from_open_to_closed(dev_env: WorkflowEnvironment, running: Settings) -> None:
    client = dev_env.client
    cases = Service(client, running).cases
    data = open_case(amount="12340.00")
    opened = await cases.open(data)
    assert opened.status is CaseStatus.OPEN
    case_id = data.case_id

    resolution = Resolve(
        outcome=Outcome.CREDIT_ISSUED,
        summary="A credit note of ¥2,000.00 was issued.",
        credit_amount=Decimal("2000.00"),
        by=AGENT,
    )
    steps: list[CaseAction] = [
        AddNote(text="Checking the meter data", by=AGENT),
        RequestInfo(question="请提供删除记录", by=AGENT),
        CustomerReply(text="<script>x</script> 附件"),
        Escalate(reason="Meter error", severity=Severity.A, by=AGENT),
        VianetTicket(ticket_number="VN-2611240001", by=AGENT),
        VianetResponse(text="Credit approved", by=AGENT),
        resolution,
    ]
    for action in steps:
        await cases.act(case_id, action)

    async def told() -> bool:
        return (await cases.show(case_id)).status is CaseStatus.RESOLVED

    await eventually(told)
    # a refused action names the problem and changes nothing
    with pytest.raises(Refused, match="cannot resolve"):
        await cases.act(case_id, resolution)
    await cases.act(case_id, Confirm())
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, f"case-{case_id}")
    final = await handle.result()
    assert final.status is CaseStatus.CLOSED
    with pytest.raises(Ended, match="has ended"):
        await cases.act(case_id, AddNote(text="x", by=AGENT))

    # the database holds the same story
    sessions = make_session_factory(make_engine(running.database_url))
    with sessions() as session:
        row = get_case(session, case_id)
        assert row is not None and row.status == "closed" and row.escalated
        assert row.credit_amount == Decimal("2000.00")
        assert row.disputed_amount == Decimal("12340.00")
        assert [e.seq for e in case_events(session, case_id)] == [e.seq for e in final.timeline]
        statuses = session.execute(
            select(EmailLog.status, func.count())
            .where(EmailLog.case_id == case_id)
            .group_by(EmailLog.status)
        ).all()
        escalation = session.scalars(select(VianetEscalation)).one()
    sent = dict(statuses)
    assert set(sent) == {"sent"}
    assert escalation.ticket_number == "VN-2611240001" and escalation.response == "Credit approved"

    # every email went out once, as a readable .eml in the outbox
    files = sorted(running.outbox_dir.glob("*.eml"))
    assert len(files) == sent["sent"]
    closing = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    subjects = [str(m["Subject"]) for m in closing if m["To"] == "finance@customer.example.cn"]
    assert any(case_id in s for s in subjects)
    bodies = "".join(
        part.get_content()
        for m in closing
        for part in m.walk()
        if part.get_content_type() == "text/html"
    )
    assert "<script>x</script>" not in bodies

    # the UI's view: search attributes and the static summary
    described = await handle.describe()
    attrs = described.typed_search_attributes
    assert attrs.get(search.CASE_STATUS) == "closed"
    assert attrs.get(search.ESCALATED_TO_VIANET) is True
    assert attrs.get(search.DISPUTED_AMOUNT) == 12340.0
    summary = await described.static_summary()
    assert summary and "¥12,340.00" in summary and "上海" not in summary
    # what people work on goes before a billing run's backlog (core/priority.py), on a task
    # queue of its own (core/settings.py cases_task_queue)
    assert described.raw_description.workflow_execution_info.priority.priority_key == 2
    assert described.task_queue == running.cases_task_queue != running.task_queue

    # the history replays deterministically
    history = await handle.fetch_history()
    await replay_and_record(client, history, "billing_case_escalated_closed")


async def test_cli_show_and_refusal(dev_env: WorkflowEnvironment, running: Settings) -> None:
    cases = Service(dev_env.client, running).cases
    data = open_case()
    # a customer's words that Rich would read as markup (the CLI once crashed on `[/b]`)
    markup = "云帆 [/b] [link=https://evil.example]点这里[/link] [red]"
    customer = data.details.customer.model_copy(update={"name": markup})
    data = data.model_copy(
        update={"details": data.details.model_copy(update={"customer": customer})}
    )
    await cases.open(data)
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
    }
    runner = CliRunner()
    shown = await asyncio.to_thread(
        runner.invoke, starter.app, ["case", "show", data.case_id], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert data.case_id in shown.output and "opened" in shown.output
    assert markup in shown.output.replace("\n", "") or "[link=https://evil.example]" in shown.output
    assert "\x1b]8;" not in shown.output  # no terminal hyperlink
    bad = await asyncio.to_thread(
        runner.invoke,
        starter.app,
        [
            "case",
            "resolve",
            data.case_id,
            "--outcome",
            "credit-issued",
            "--summary",
            "x",
            "--credit",
            "-5",
        ],
        env=env,
    )
    assert bad.exit_code == 2 and "credit_amount" in bad.output
    refused = await asyncio.to_thread(
        runner.invoke, starter.app, ["case", "vianet-ticket", data.case_id, "VN-1234"], env=env
    )
    assert refused.exit_code == 1 and "cannot record a 21Vianet ticket number" in refused.output
    missing = await asyncio.to_thread(
        runner.invoke, starter.app, ["case", "show", "NOPE-1"], env=env
    )
    assert missing.exit_code == 1 and "no case NOPE-1" in missing.output
    await cases.act(data.case_id, Withdraw(reason="test over", by=AGENT))

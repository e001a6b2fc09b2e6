"""Fapiao on the real worker and Temporal dev server, on SQLite and PostgreSQL: finance records a
bill's fapiao on the fapiao tasks page (a 19-digit number refused naming the field), an agent
resolves with a credit on that bill, the case waits for the red-letter fapiao, the buyer is asked
to confirm the red-letter information (zh-CN letter), finance records the red-letter number and
only then is the customer told, with the number; an agent's reissue request; the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from core.models import (
    CaseStatus,
    Category,
    EventKind,
    FapiaoKind,
    FapiaoTaskKind,
    Outcome,
    RequestFapiao,
    Resolve,
)
from service.errors import Refused
from tests.clock_support import eventually
from tests.conftest import DATABASES, _reset_postgres
from tests.workflow_support import open_case
from tests.workspace_support import AGENT, FINANCE, Stack, act, csrf_of, signed_in, workspace

BUYER = {"buyer_name": "上海示例科技有限公司", "buyer_tax_id": "91310000MA1FL8XQ3C"}


@pytest_asyncio.fixture(scope="module", params=DATABASES)
async def stack(
    request: pytest.FixtureRequest,
    dev_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp(f"fapiao-{request.param}")
    url = f"sqlite:///{folder / 'billing.db'}"
    if request.param == "postgresql":
        url = __import__("os").environ["TEST_DATABASE_URL"]
        _reset_postgres(url)
    async with workspace(dev_env, folder, database_url=url) as stack:
        yield stack


async def on_task(
    client: httpx.AsyncClient, case_id: str, action: str, **fields: str
) -> httpx.Response:
    """Send a task's form from the fapiao tasks page."""
    token = csrf_of((await client.get("/fapiao")).text)
    return await client.post(
        f"/fapiao/{case_id}/actions/{action}", data={**fields, "csrf_token": token}
    )


def number() -> str:
    return f"2631{uuid.uuid4().int % 10**16:016d}"


def bill() -> str:
    return f"G{uuid.uuid4().int % 10**9:09d}"


def letters(stack: Stack, template: str) -> list[str]:
    """The text of the outbox's emails of `template` (written = delivered)."""
    found = []
    for path in sorted(Path(stack.settings.outbox_dir).rglob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        if template in path.name or mail.get("X-Template", "") == template:
            body = mail.get_body(preferencelist=("plain",))
            found.append(f"{mail['Subject']}\n{body.get_content() if body else ''}")
    return found


async def _status(stack: Stack, case_id: str, status: CaseStatus) -> None:
    async def reached() -> bool:
        return (await stack.service.cases.show(case_id)).status is status

    await eventually(reached, f"case {case_id} {status.value}")


async def test_a_credit_on_a_bill_with_a_fapiao_waits_for_its_red_letter_number(
    stack: Stack,
) -> None:
    finance = await signed_in(stack.app, FINANCE)
    invoice, blue, red = bill(), number(), number()
    fields = {"invoice_id": invoice, "kind": "blue", "issued_on": "2026-11-30", **BUYER}
    short = await act(finance, "/fapiao", "record", fapiao_number=blue[:-1], **fields)
    assert short.status_code == 422 and "fapiao_number" in short.text
    assert await stack.service.fapiao.of_bill(invoice) == []  # nothing changed
    assert (
        await act(finance, "/fapiao", "record", fapiao_number=blue, **fields)
    ).status_code == 303
    again = await act(finance, "/fapiao", "record", fapiao_number=blue, **fields)
    assert again.status_code == 409 and "already recorded" in again.text

    data = open_case()
    data = data.model_copy(
        update={"details": data.details.model_copy(update={"invoice_id": invoice})}
    )
    await stack.service.cases.open(data)
    case_id = data.case_id
    credit = Resolve(
        outcome=Outcome.CREDIT_ISSUED,
        summary="多计的 100 元已贷记。",
        credit_amount=Decimal("100.00"),
        by=AGENT,
    )
    view = await stack.service.cases.act(case_id, credit)
    assert view.status is CaseStatus.WAITING_ON_FINANCE
    assert view.resolution is not None and view.resolution.fapiao_to_reverse == [blue]

    async def listed() -> bool:
        return case_id in (await finance.get("/fapiao")).text

    await eventually(listed, "the task on the fapiao tasks page")
    assert (await on_task(finance, case_id, "buyer")).status_code == 303
    await _status(stack, case_id, CaseStatus.WAITING_ON_BUYER)
    page = (await finance.get("/fapiao")).text
    assert "tax system" in page

    def asked() -> bool:
        return any(
            "红字发票信息确认单" in text and blue in text and "72 小时" in text
            for text in letters(stack, "fapiao_confirm_red_letter")
        )

    await eventually(asked, "the letter asking the buyer to confirm")
    assert not any("贷项" in text for text in letters(stack, "case_resolved") if case_id in text)

    bad = await on_task(finance, case_id, "done", fapiao_number="12345")
    assert bad.status_code == 422 and "fapiao_number" in bad.text
    done = await on_task(finance, case_id, "done", fapiao_number=red)
    assert done.status_code == 303
    await _status(stack, case_id, CaseStatus.RESOLVED)

    def told() -> bool:
        return any(red in t for t in letters(stack, "case_resolved") if case_id in t)

    await eventually(told, "the resolution letter with the red-letter number")
    view = await stack.service.cases.show(case_id)
    assert view.resolution is not None and view.resolution.red_fapiao_number == red
    kinds = [e.kind for e in view.timeline]
    assert kinds.index(EventKind.FAPIAO_RECORDED) < kinds.index(EventKind.CUSTOMER_TOLD)
    recorded = {f.fapiao_number: f for f in await stack.service.fapiao.of_bill(invoice)}
    assert recorded[red].kind is FapiaoKind.RED and recorded[red].reverses == blue
    assert recorded[red].case_id == case_id and recorded[red].recorded_by == FINANCE
    # a credit's red-letter fapiao is partial: the bill still has its fapiao for the rest
    assert await stack.service.fapiao.issued(invoice) == [blue]


async def test_an_agent_asks_for_a_reissue_and_finance_records_both_numbers(stack: Stack) -> None:
    invoice, blue, red, new = bill(), number(), number(), number()
    agent = await signed_in(stack.app, AGENT)
    data = open_case()
    details = {"invoice_id": invoice, "category": Category.FAPIAO}
    data = data.model_copy(update={"details": data.details.model_copy(update=details)})
    await stack.service.cases.open(data)
    case_id = data.case_id
    # no fapiao recorded for the bill yet: a reissue is refused, naming what is missing
    with pytest.raises(Refused, match="no issued fapiao is recorded"):
        await stack.service.fapiao.request(
            case_id, RequestFapiao(kind=FapiaoTaskKind.REISSUE, by=AGENT, **BUYER)
        )
    runner = CliRunner()
    env = {
        "TEMPORAL_ADDRESS": stack.service.client.service_client.config.target_host,
        "TASK_QUEUE": stack.settings.task_queue,
        "DATABASE_URL": stack.settings.database_url,
    }
    args = ["fapiao", "record", "--invoice", invoice, "--issued-on", "2026-11-30"]
    args += ["--buyer-name", "上海示例科技", "--buyer-tax-id", "91310000MA1FL8XQ3C"]
    bad = await asyncio.to_thread(
        runner.invoke, starter.app, [*args, "--number", "1" * 21], env=env
    )
    assert bad.exit_code == 2 and "fapiao_number" in bad.output
    ok = await asyncio.to_thread(runner.invoke, starter.app, [*args, "--number", blue], env=env)
    assert ok.exit_code == 0, ok.output
    form = {"kind": "reissue", **BUYER, "buyer_address_phone": "上海市浦东新区 021-00000000"}
    assert (await act(agent, f"/cases/{case_id}", "request-fapiao", **form)).status_code == 303
    view = await stack.service.cases.show(case_id)
    assert view.status is CaseStatus.WAITING_ON_FINANCE
    assert view.fapiao_task is not None and view.fapiao_task.blue_numbers == [blue]
    finance = await signed_in(stack.app, FINANCE)

    async def listed() -> bool:
        return case_id in (await finance.get("/fapiao")).text

    await eventually(listed, "the reissue on the fapiao tasks page")
    only_new = await on_task(finance, case_id, "done", fapiao_number=new)
    assert only_new.status_code == 409 and "red_fapiao_number" in only_new.text
    both = await on_task(finance, case_id, "done", fapiao_number=new, red_fapiao_number=red)
    assert both.status_code == 303
    view = await stack.service.cases.show(case_id)
    assert view.status is CaseStatus.OPEN and view.fapiao_task is None
    assert await stack.service.fapiao.issued(invoice) == [new]  # the old one reversed in full
    listed_cli = await asyncio.to_thread(
        runner.invoke, starter.app, ["fapiao", "list", "--invoice", invoice], env=env
    )
    assert listed_cli.exit_code == 0 and new in listed_cli.output and red in listed_cli.output

"""The workspace's rules over the real worker and Temporal dev server: sign-in, roles, CSRF, the
actor, refusals shown inline, queues read from the projection with filters and paging, customer
text inert. (The same in a real browser: test_workspace_browser.py.)"""

from __future__ import annotations

import asyncio
import html
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

import starter
from core.models import CaseStatus, CaseView, Category, Locale, Priority
from core.search import FAILED_STEP
from core.settings import Settings
from db.migrate import upgrade
from db.session import shared_sessions
from db.tables import Case, WorkspaceUser
from service.errors import ServiceError, Unavailable
from service.workspace import PAGE_SIZE, CaseFilter, Queue, Workspace
from tests.workflow_support import billing_failure, open_case
from tests.workspace_support import (
    AGENT,
    FINANCE,
    MANAGER,
    OTHER_AGENT,
    PASSWORD,
    Stack,
    act,
    csrf_of,
    signed_in,
)
from web.i18n import translations

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


async def _case(stack: Stack, owner: str | None = AGENT, **details: object) -> str:
    data = open_case(owner=owner)
    if details:
        data = data.model_copy(update={"details": data.details.model_copy(update=details)})
    await stack.service.cases.open(data)
    return data.case_id


async def test_sign_in_sets_a_signed_httponly_samesite_cookie(stack: Stack) -> None:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.app), base_url="http://web.test"
    )
    first = await client.get("/queues/mine")
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=%2Fqueues%2Fmine"
    token = csrf_of((await client.get("/login")).text)
    wrong = await client.post(
        "/login", data={"email": AGENT, "password": "not it at all", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "邮箱或密码错误" in wrong.text
    unknown = await client.post(
        "/login", data={"email": "nobody@x.cn", "password": PASSWORD, "csrf_token": token}
    )
    assert unknown.status_code == 401
    right = await client.post(
        "/login",
        data={"email": AGENT, "password": PASSWORD, "csrf_token": token, "next": "/queues/mine"},
    )
    assert right.status_code == 303 and right.headers["location"] == "/queues/mine"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=43200" in cookie
    page = await client.get("/queues/mine")
    assert page.status_code == 200 and "王客服" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # another site's redirect target is not followed after sign-in
    evil = await client.post(
        "/login",
        data={"email": AGENT, "password": PASSWORD, "csrf_token": token, "next": "//evil.cn"},
    )
    assert evil.status_code == 403  # a new session: the old token is gone (no fixation)
    token = csrf_of((await client.get("/login")).text)
    evil = await client.post(
        "/login",
        data={"email": AGENT, "password": PASSWORD, "csrf_token": token, "next": "//evil.cn"},
    )
    assert evil.headers["location"] == "/"
    for elsewhere in ("/\t/evil.cn", "/\\evil.cn", "https://evil.cn", "/%0a/evil"):
        token = csrf_of((await client.get("/login")).text)
        answer = await client.post(
            "/login",
            data={"email": AGENT, "password": PASSWORD, "csrf_token": token, "next": elsewhere},
        )
        assert answer.headers["location"] in ("/", "/%0a/evil"), elsewhere
    logout = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert logout.status_code == 403  # the page's token belonged to the session before
    token = csrf_of((await client.get("/queues/mine")).text)
    assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
    assert (await client.get("/queues/mine")).status_code == 303


async def test_an_idle_session_ends(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await signed_in(stack.app, AGENT)
    assert (await client.get("/queues/mine")).status_code == 200
    later = time.time() + stack.settings.web_session_idle_minutes * 60 + 5
    monkeypatch.setattr("web.auth.time.time", lambda: later)
    answer = await client.get("/queues/mine")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


async def test_the_actor_is_the_signed_in_person_and_a_form_without_csrf_changes_nothing(
    stack: Stack,
) -> None:
    case_id = await _case(stack)
    client = await signed_in(stack.app, AGENT)
    page = f"/cases/{case_id}"
    no_token = await client.post(f"{page}/actions/note", data={"text": "sneaky"})
    assert no_token.status_code == 403 and "安全令牌" in no_token.text
    wrong = await client.post(f"{page}/actions/note", data={"text": "x", "csrf_token": "forged"})
    assert wrong.status_code == 403
    texts = [event.text for event in (await stack.service.cases.show(case_id)).timeline]
    assert "sneaky" not in texts and "x" not in texts
    done = await act(client, page, "note", text="Meter data shows usage", by="ceo@partner.cn")
    assert done.status_code == 303
    view = await stack.service.cases.show(case_id)
    note = [event for event in view.timeline if event.text == "Meter data shows usage"]
    assert [event.actor for event in note] == [AGENT]


async def test_a_forbidden_action_answers_403_and_changes_nothing(stack: Stack) -> None:
    case_id = await _case(stack)
    agent = await signed_in(stack.app, AGENT)
    page = f"/cases/{case_id}"
    reassign = await act(agent, page, "assign", agent="someone@partner.example.cn")
    assert reassign.status_code == 403 and "无权" in reassign.text
    finance = await signed_in(stack.app, FINANCE)
    note = await act(finance, page, "note", text="finance has no say here")
    assert note.status_code == 403 and "does not allow" in note.text
    view = await stack.service.cases.show(case_id)
    assert view.owner == AGENT and all("finance" not in e.text for e in view.timeline)
    # the forms a role may not send are not offered either
    assert 'action="/cases/' + case_id + '/actions/assign"' not in (await agent.get(page)).text
    manager = await signed_in(stack.app, MANAGER)
    assert (await act(manager, page, "assign", agent=OTHER_AGENT)).status_code == 303
    assert (await stack.service.cases.show(case_id)).owner == OTHER_AGENT


async def test_a_refusal_and_a_bad_field_show_inline(stack: Stack) -> None:
    case_id = await _case(stack)
    client = await signed_in(stack.app, AGENT)
    page = f"/cases/{case_id}"
    refused = await act(client, page, "vianet-ticket", ticket_number="VN-2611240001")
    assert refused.status_code == 409
    assert 'role="alert"' in refused.text and "escalat" in refused.text.lower()
    bad = await act(client, page, "resolve", outcome="credit-issued", summary="A credit")
    assert bad.status_code == 422 and "credit_amount" in bad.text
    assert "A credit" in bad.text  # what was typed is kept
    assert (await stack.service.cases.show(case_id)).status is CaseStatus.OPEN
    taken = await act(client, page, "take")  # the agent's own case: fine
    assert taken.status_code == 303
    other = await signed_in(stack.app, "agent.li@partner.example.cn")
    assert 'data-action="take"' not in (await other.get(page)).text  # not offered, and refused:
    grab = await act(other, page, "take")
    assert grab.status_code == 409 and "a manager reassigns it" in grab.text


async def test_customer_text_is_rendered_inert(stack: Stack) -> None:
    case_id = await _case(stack, description=HOSTILE)
    client = await signed_in(stack.app, AGENT)
    await act(client, f"/cases/{case_id}", "note", text=HOSTILE)
    page = (await client.get(f"/cases/{case_id}")).text
    assert "<script>window.pwned" not in page and "<img src=x" not in page
    assert html.escape(HOSTILE, quote=False) in page or "&lt;script&gt;window.pwned" in page


def _projected(stack: Stack, count: int, **columns: object) -> list[str]:
    """Cases straight into the projection (what the queues read), without workflows."""
    now = datetime.now(UTC)
    ids = []
    with shared_sessions(stack.settings.database_url)() as session:
        for n in range(count):
            case_id = f"Q{now:%H%M%S%f}{n:03d}"
            values: dict[str, object] = {
                "case_id": case_id,
                "workflow_id": f"case-{case_id}",
                "status": CaseStatus.OPEN.value,
                "tenant_id": "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64",
                "customer_name": f"上海云帆 {n}",
                "customer_email": "finance@yunfan.example.cn",
                "locale": "zh-CN",
                "category": Category.BILLING_QUESTION.value,
                "priority": Priority.LOW.value,
                "disputed_amount": Decimal("1.00"),
                "currency": "CNY",
                "description": "d",
                "owner": None,
                "opened_at": now - timedelta(minutes=n),
            }
            values.update(columns)
            session.add(Case(**values))
            ids.append(case_id)
        session.commit()
    return ids


async def test_queues_filter_and_page_the_projection(stack: Stack) -> None:
    unassigned = _projected(stack, PAGE_SIZE + 3, priority=Priority.URGENT.value)
    breached = _projected(stack, 1, owner=AGENT, sla_breached=True)
    waiting = _projected(stack, 1, owner=AGENT, status=CaseStatus.WAITING_ON_VIANET.value)
    closed = _projected(stack, 1, owner=AGENT, status=CaseStatus.CLOSED.value)
    client = await signed_in(stack.app, AGENT)
    first = (await client.get("/queues/unassigned?priority=urgent")).text
    assert unassigned[0] in first and unassigned[PAGE_SIZE] not in first
    assert f"{PAGE_SIZE + 3} 条" in first and 'rel="next"' in first
    second = (await client.get("/queues/unassigned?priority=urgent&page=2")).text
    assert unassigned[PAGE_SIZE] in second and unassigned[0] not in second
    assert "priority=urgent&amp;page=1" in second
    by_name = (await client.get("/queues/unassigned", params={"q": "上海云帆 7"})).text
    assert unassigned[7] in by_name and unassigned[8] not in by_name
    mine = (await client.get("/queues/mine")).text
    assert breached[0] in mine and waiting[0] in mine and closed[0] not in mine
    sla = (await client.get("/queues/sla")).text
    assert breached[0] in sla and waiting[0] not in sla
    vianet = (await client.get("/queues/waiting-on-21vianet")).text
    assert waiting[0] in vianet and breached[0] not in vianet
    assert (await client.get("/queues/nonsense")).status_code == 404
    # a filter that is not one of ours is ignored, not an error
    assert (await client.get("/queues/mine?priority=<b>&page=x")).status_code == 200


async def test_a_huge_page_number_is_the_last_page(stack: Stack) -> None:
    """`?page=99999999999999999999` answered 500 (the offset overflowed the database's integer)."""
    _projected(stack, PAGE_SIZE + 1, priority=Priority.HIGH.value)
    client = await signed_in(stack.app, AGENT)
    for page in ("/queues/unassigned", "/collections", "/payables"):
        answer = await client.get(page, params={"page": "9" * 20})
        assert answer.status_code == 200, page
    last = await client.get("/queues/unassigned", params={"priority": "high", "page": "9" * 20})
    shown = re.search(r"第 (\d+) / (\d+) ", last.text)  # page N of N
    assert shown and shown[1] == shown[2] != "1", "not the last page"


async def test_finance_records_and_pays_a_21vianet_invoice(stack: Stack) -> None:
    client = await signed_in(stack.app, FINANCE)
    number = f"VN{int(time.time() * 1000) % 10**10:010d}"
    due = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
    bad = await act(client, "/payables", "record", invoice_number=number, amount="-5", due_date=due)
    assert bad.status_code == 422 and "amount" in bad.text
    done = await act(
        client, "/payables", "record", invoice_number=number, amount="1286400.00", due_date=due
    )
    assert done.status_code == 303
    again = await act(
        client, "/payables", "record", invoice_number=number, amount="1.00", due_date=due
    )
    assert again.status_code == 409 and "already recorded" in again.text
    listed = await client.get("/payables")
    assert number in listed.text and f"/payables/{number}/actions/paid" in listed.text
    paid = await client.post(
        f"/payables/{number}/actions/paid",
        data={"reference": "CMB-20261214-0001", "csrf_token": csrf_of(listed.text)},
    )
    assert paid.status_code == 303
    view = await stack.service.vianet_invoices.show(number)
    assert view.paid_by == FINANCE and view.recorded_by == FINANCE
    agent = await signed_in(stack.app, AGENT)
    assert (
        await act(agent, "/payables", "record", invoice_number="VN1", amount="1", due_date=due)
    ).status_code == 403


async def test_collections_actions_by_role(stack: Stack) -> None:
    failure = billing_failure(amount="5000.00")
    await stack.service.collections.report_failure(failure)
    page = f"/collections/{failure.invoice_id}"
    agent = await signed_in(stack.app, AGENT)
    shown = await agent.get(page)
    assert shown.status_code == 200 and "¥5,000.00" in shown.text and "扣款失败" in shown.text
    assert (await act(agent, page, "waive", reason="goodwill")).status_code == 403
    bad = await act(agent, page, "promise", until="next week")
    assert bad.status_code == 409 and "until" in bad.text
    too_far = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
    refused = await act(agent, page, "promise", until=too_far)
    assert refused.status_code == 409 and 'role="alert"' in refused.text
    finance = await signed_in(stack.app, FINANCE)
    paid = await act(finance, page, "payment", payment_id="PAY-web-1", amount="1000.00")
    assert paid.status_code == 303
    manager = await signed_in(stack.app, MANAGER)
    assert (await act(manager, page, "waive", reason="goodwill")).status_code == 303
    view = await stack.service.collections.show(failure.invoice_id)
    assert view.status.value == "waived" and view.paid == Decimal("1000.00")
    actors = {event.kind: event.actor for event in view.timeline}
    assert MANAGER in actors.values() and FINANCE in actors.values()
    listed = (await agent.get("/collections")).text
    assert failure.invoice_id not in listed  # ended: no longer in collections


def test_every_page_text_has_a_chinese_translation() -> None:
    """Babel extracts every marked text of the templates and web/*.py; each is translated."""
    from babel.messages.extract import extract_from_dir

    root = Path(__file__).resolve().parent.parent / "web"
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    found = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(root), method_map, options_map={"**/templates/**.html": {}}
        )
        if isinstance(message, str)
    }
    catalog = translations(Locale.ZH_CN)
    untranslated = sorted(m for m in found if catalog.gettext(m) == m)
    assert len(found) > 150 and untranslated == []


def test_user_add_refuses_a_short_password_and_a_second_account(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    upgrade(url)
    env = {"DATABASE_URL": url}
    args = ["user", "add", "Li@Partner.example.cn", "--name", "李", "--role", "agent"]
    short = CliRunner().invoke(starter.app, [*args, "--password", "short"], env=env)
    assert short.exit_code == 2 and "password: " in short.output
    added = CliRunner().invoke(starter.app, args, input=f"{PASSWORD}\n{PASSWORD}\n", env=env)
    assert added.exit_code == 0, added.output
    again = CliRunner().invoke(starter.app, [*args, "--password", PASSWORD], env=env)
    assert again.exit_code == 1 and "has an account already" in again.output
    with shared_sessions(url)() as session:
        row = session.get(WorkspaceUser, "li@partner.example.cn")
    assert row is not None and row.roles == ["agent"]
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash


async def test_each_person_chooses_their_language(stack: Stack) -> None:
    chinese = await signed_in(stack.app, AGENT)  # an account in zh-CN
    page = await chinese.get("/queues/unassigned")
    assert "未分配" in page.text and 'lang="zh-CN"' in page.text
    switched = await chinese.post(
        "/locale",
        data={"locale": "en-US", "next": "/queues/unassigned", "csrf_token": csrf_of(page.text)},
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/queues/unassigned"
    page = await chinese.get("/queues/unassigned")
    assert "Unassigned" in page.text and "未分配" not in page.text
    english = await signed_in(stack.app, FINANCE)  # an account in en-US
    assert "Record a 21Vianet invoice" in (await english.get("/payables")).text
    anonymous = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.app), base_url="http://web.test"
    )
    page = await anonymous.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert ">Sign in<" in page.text


async def test_the_queries_on_each_database(database_url: str) -> None:
    """The queues' SQL (text search with wildcards escaped, SLA at risk, paging) on SQLite and
    on PostgreSQL."""
    settings = Settings(database_url=database_url)
    now = datetime.now(UTC)
    with shared_sessions(database_url)() as session:
        for n, (name, priority, hours) in enumerate(
            [("100%_上海", "urgent", 1), ("100 上海", "urgent", 100), ("北京", "low", 1)]
        ):
            session.add(
                Case(
                    case_id=f"DB{n}",
                    workflow_id=f"case-DB{n}",
                    status="open",
                    tenant_id="t",
                    customer_name=name,
                    customer_email="a@b.cn",
                    locale="zh-CN",
                    category="billing-question",
                    priority=priority,
                    disputed_amount=Decimal(0),
                    currency="CNY",
                    description="d",
                    owner=None,
                    opened_at=now - timedelta(hours=hours),
                )
            )
        session.commit()
    workspace = Workspace(settings)

    async def ids(queue: Queue, text: str = "", page: int = 1) -> list[str]:
        found = await workspace.cases(queue, AGENT, CaseFilter(text=text), page, now=now)
        return [row.case_id for row in found.rows]

    assert await ids(Queue.UNASSIGNED, "100%_") == ["DB0"]  # % and _ are not wildcards
    assert await ids(Queue.UNASSIGNED, "上海") == ["DB0", "DB1"]
    assert await ids(Queue.SLA) == ["DB1"]  # urgent and 100 h old: past 75 % of its target
    # a page past the end is the last page, a number too big for the database's integers too
    assert await ids(Queue.UNASSIGNED, page=2) == await ids(Queue.UNASSIGNED, page=10**20)
    assert await ids(Queue.UNASSIGNED, page=10**20) == ["DB0", "DB2", "DB1"]
    # needs attention: the workflows Temporal lists (NeedsAttention), as the route passes them
    flagged = await workspace.cases(
        Queue.NEEDS_ATTENTION, AGENT, CaseFilter(), 1, now=now, attention=["case-DB2"]
    )
    assert [row.case_id for row in flagged.rows] == ["DB2"]
    assert await ids(Queue.NEEDS_ATTENTION) == []
    assert (await workspace.cases(Queue.MINE, AGENT, CaseFilter(), 1, now=now)).total == 0


async def test_a_manager_lifts_fraud_and_decides_a_suspension_an_agent_cannot(
    stack: Stack,
) -> None:
    """Issue 15's manager actions in the workspace: an agent reports fraud; only a manager
    lifts the fraud hold (on the customer's account, shown on the invoice page) and approves or
    refuses a suspension the policy asks for."""
    failure = billing_failure(amount="5000.00")
    await stack.service.collections.report_failure(failure)
    page = f"/collections/{failure.invoice_id}"
    agent = await signed_in(stack.app, AGENT)
    manager = await signed_in(stack.app, MANAGER)
    assert (await act(agent, page, "fraud", reason="风控信号")).status_code == 303
    tenant = failure.customer.tenant_id
    for _ in range(100):  # the hold reaches the customer's account
        try:
            if (await stack.service.accounts.show(tenant)).fraud:
                break
        except ServiceError:
            pass
        await asyncio.sleep(0.1)
    shown = (await manager.get(page)).text
    assert 'data-testid="account-holds"' in shown and "fraud" in shown
    assert (await act(agent, page, "lift-fraud", reason="误报")).status_code == 403
    assert (await stack.service.accounts.show(tenant)).fraud  # the 403 changed nothing
    nothing = await act(manager, page, "approve-suspension", reason="批准")
    assert nothing.status_code == 409 and "没有等待经理审批的暂停服务" in nothing.text
    lifted = await act(manager, page, "lift-fraud", reason="风控复核：误报")
    assert lifted.status_code == 303
    account = await stack.service.accounts.show(tenant)
    assert not account.fraud
    lift = next(e for e in account.timeline if e.kind.value == "fraud-lifted")
    assert lift.actor == MANAGER and lift.text == "风控复核：误报"


async def _saved(stack: Stack, case_id: str) -> CaseView:
    """The case as its workflow saved it, once it has (its first save follows its start)."""
    deadline = time.monotonic() + 30
    while (view := await stack.service.workspace.case(case_id)) is None:
        assert time.monotonic() < deadline, f"{case_id} was never saved with its view"
        await asyncio.sleep(0.1)
    return view


def _asked(stack: Stack, monkeypatch: pytest.MonkeyPatch, answer: CaseView | None) -> None:
    """The workflow's `view` query answers `answer` (None: it does not answer)."""

    async def show(case_id: str) -> CaseView:
        if answer is None:
            raise Unavailable("the worker did not answer")
        return answer

    monkeypatch.setattr(stack.service.cases, "show", show)


async def test_a_case_page_reads_the_case_as_its_workflow_saved_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case's page never waits on the worker: the workflow saves its view with its row, and an
    agent's action is saved before its update answers, so the page after it shows it."""
    long = "用量与账单核对：" + "计费周期内的用量明细。" * 150  # longer than a view keeps
    case_id = await _case(stack, description=long)
    saved = await _saved(stack, case_id)
    assert saved.details.description == long and saved.owner == AGENT
    client = await signed_in(stack.app, AGENT)
    page = f"/cases/{case_id}"
    assert (await act(client, page, "note", text="Meter data checked")).status_code == 303
    # no waiting: what the action did is in the database once it has answered
    view = await stack.service.workspace.case(case_id)
    assert view is not None and [e.actor for e in view.timeline if e.text == "Meter data checked"]
    asked = await stack.service.cases.show(case_id)
    assert (view.status, view.owner, view.details) == (asked.status, asked.owner, asked.details)
    # the page asks no worker: with the query failing, it shows the case all the same
    _asked(stack, monkeypatch, None)
    shown = await client.get(page)
    assert shown.status_code == 200 and "Meter data checked" in shown.text
    assert html.escape(long, quote=False)[-200:] in shown.text  # whole, not cut
    # no view saved (a row of an older build): the page asks the workflow
    _asked(stack, monkeypatch, asked.model_copy(update={"waiting_for": "asked of the workflow"}))
    with shared_sessions(stack.settings.database_url)() as session:
        session.execute(update(Case).where(Case.case_id == case_id).values(view=None))
        session.commit()
    assert "asked of the workflow" in (await client.get(page)).text


async def test_a_case_held_by_a_failed_step_is_asked_of_its_workflow(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed step holds a workflow's saves until an operator acts: while Temporal says so,
    the page asks the workflow, and shows the saved case with the line if it does not answer."""
    case_id = await _case(stack)
    saved = await _saved(stack, case_id)
    assert await stack.service.cases.attention(case_id) is None  # Temporal's own answer
    client = await signed_in(stack.app, AGENT)
    page = f"/cases/{case_id}"
    _asked(stack, monkeypatch, saved.model_copy(update={"waiting_for": "asked of the workflow"}))
    assert "asked of the workflow" not in (await client.get(page)).text

    async def failed_step(case_id: str) -> str:
        return FAILED_STEP

    monkeypatch.setattr(stack.service.cases, "attention", failed_step)
    assert "asked of the workflow" in (await client.get(page)).text
    _asked(stack, monkeypatch, None)
    held = await client.get(page)
    assert held.status_code == 200 and 'data-testid="attention-reason"' in held.text
    assert "NEEDS ATTENTION: a step failed" in held.text  # its technical details

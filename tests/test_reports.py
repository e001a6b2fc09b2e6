"""The managers' report, checked figure by figure against a database the test seeds (SQLite and,
where TEST_DATABASE_URL is set, PostgreSQL), and its terminal, HTML and command-line forms."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.models import CasePolicy, CaseStatus, Priority, Severity
from core.settings import ROOT, load_case_policy
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from db.tables import Account, Case, CaseEventRow, Collections, VianetEscalation, VianetInvoice
from reporting.html import render_html
from reporting.queries import AGING_BUCKETS, Report, aging_bucket, build_report, days_past_due
from reporting.sections import sections
from reporting.terminal import print_report
from starter import app

# 12:00 in Beijing on Monday 30 November 2026
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
POLICY = load_case_policy(ROOT / "config" / "case_policy.toml")
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
EVIL_NAME = "Evil [red]<script>alert(1)</script>[/red] Ltd"


def _case(case_id: str, status: CaseStatus, priority: Priority, age: timedelta, **kw: Any) -> Case:
    opened = kw.pop("now") - age
    offsets = {
        k: opened + kw.pop(k)
        for k in ("first_response", "resolved", "closed")
        if kw.get(k) is not None
    }
    return Case(
        case_id=case_id,
        workflow_id=f"case-{case_id}",
        status=status.value,
        tenant_id=str(uuid.uuid4()),
        customer_name="上海示例科技有限公司",
        customer_email="finance@customer.example.cn",
        locale="zh-CN",
        category="invoice-dispute",
        priority=priority.value,
        disputed_amount=Decimal(kw.pop("disputed", "0.00")),
        currency=kw.pop("currency", "CNY"),
        description="October invoice",
        opened_at=opened,
        first_response_at=offsets.get("first_response"),
        resolved_at=offsets.get("resolved"),
        closed_at=offsets.get("closed"),
        last_event_seq=0,
        **{k: v for k, v in kw.items() if k not in ("first_response", "resolved", "closed")},
    )


def _collections(invoice_id: str, status: str, stage: str, balance: str, **kw: Any) -> Collections:
    now = kw.pop("now")
    suspended_days = kw.pop("suspended_days_ago", None)
    suspended_at = now - suspended_days * DAY if suspended_days is not None else None
    return Collections(
        invoice_id=invoice_id,
        workflow_id=f"collections-{invoice_id}",
        status=status,
        stage=stage,
        tenant_id=kw.pop("tenant_id", str(uuid.uuid4())),
        customer_name=kw.pop("customer_name", "北京示例贸易有限公司"),
        customer_email="ap@customer.example.cn",
        locale="zh-CN",
        currency=kw.pop("currency", "CNY"),
        amount_due=Decimal("50000.00"),
        paid=Decimal("0.00"),
        credited=Decimal("0.00"),
        balance=Decimal(balance),
        first_failed_at=now - kw.pop("failed_days_ago", 30) * DAY,
        subscription_ids=[str(uuid.uuid4())],
        suspended_subscriptions=[str(uuid.uuid4()) for _ in range(kw.pop("suspended", 0))],
        suspended_at=suspended_at,
        data_deletion_at=suspended_at + 90 * DAY if suspended_at else None,
        fraud=kw.pop("fraud", False),
        last_event_seq=0,
    )


def _escalation(
    case_id: str, no: int, severity: Severity, escalated: datetime, **kw: Any
) -> VianetEscalation:
    ticket = escalated + HOUR if kw.get("ticket", True) else None
    answer = kw.get("answer")
    return VianetEscalation(
        case_id=case_id,
        escalation_no=no,
        severity=severity.value,
        reason="metering data",
        escalated_at=escalated,
        ticket_number=f"T{case_id}{no}" if ticket else None,
        ticket_recorded_at=ticket,
        responded_at=ticket + answer if ticket and answer else None,
        response="answered" if answer else None,
    )


def _invoice(number: str, status: str, amount: str, due: date, now: datetime) -> VianetInvoice:
    return VianetInvoice(
        invoice_number=number,
        workflow_id=f"vianet-invoice-{number}",
        status=status,
        amount=Decimal(amount),
        currency="CNY",
        due_date=due,
        recorded_at=now - 20 * DAY,
        recorded_by="zhao.min@partner.example.cn",
        reminders_sent=0,
        last_event_seq=1,
    )


def seed(session_factory: sessionmaker[Session], now: datetime = NOW) -> None:
    """Eleven cases, nine collections, five escalations, five 21Vianet invoices; the expected
    figures are worked out in the comments of `test_report_figures`."""
    s, o, w, v, r = (
        CaseStatus.OPEN,
        CaseStatus.WAITING_ON_CUSTOMER,
        CaseStatus.WAITING_ON_VIANET,
        CaseStatus.RESOLVED,
        CaseStatus.CLOSED,
    )
    urgent, high, normal, low = Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW
    cases = [
        _case("C1", s, normal, DAY / 2, now=now, disputed="1000.00", first_response=2 * HOUR),
        _case("C2", s, high, 2 * DAY, now=now, disputed="2500.50"),
        _case("C3", o, normal, 5 * DAY, now=now, first_response=HOUR),
        _case(
            "C4",
            w,
            urgent,
            10 * DAY,
            now=now,
            disputed="12340.00",
            escalated=True,
            first_response=HOUR / 2,
        ),
        _case(
            "C5",
            v,
            high,
            20 * DAY,
            now=now,
            disputed="800.25",
            first_response=3 * HOUR,
            resolved=20 * HOUR,
            reopen_count=1,
        ),
        _case(
            "C6",
            r,
            normal,
            8 * DAY,
            now=now,
            disputed="5000.00",
            escalated=True,
            first_response=HOUR,
            resolved=2 * DAY,
            closed=4 * DAY,
        ),
        _case(
            "C7",
            r,
            low,
            15 * DAY,
            now=now,
            first_response=30 * HOUR,
            resolved=3 * DAY,
            closed=10 * DAY,
        ),
        _case("C8", CaseStatus.WITHDRAWN, normal, 3 * DAY, now=now, closed=DAY),
        _case(
            "C9",
            s,
            normal,
            40 * DAY,
            now=now,
            disputed="100.00",
            escalated=True,
            first_response=HOUR,
        ),
        _case("C10", s, normal, DAY, now=now, disputed="50.00", currency="USD"),
        _case("C11", r, normal, 60 * DAY, now=now, first_response=HOUR, closed=10 * DAY),
    ]
    events = [
        CaseEventRow(
            case_id=case_id, seq=seq, at=now, kind="sla-breached", actor="workflow", text=t
        )
        for case_id, seq, t in (
            ("C2", 2, "first response SLA breached"),
            ("C4", 5, "resolution SLA breached"),
            ("C7", 3, "first response SLA breached"),
            ("C9", 4, "resolution SLA breached"),  # opened before the period
        )
    ]
    c4_escalated, c6_escalated = now - 9 * DAY, now - 7 * DAY
    escalations = [
        _escalation("C4", 1, Severity.A, c4_escalated, answer=3 * HOUR),
        _escalation("C6", 1, Severity.B, c6_escalated, answer=2 * HOUR),
        _escalation("C6", 2, Severity.B, c6_escalated + DAY, answer=6 * HOUR),
        _escalation("C4", 2, Severity.C, c4_escalated + DAY),
        _escalation("C4", 3, Severity.C, c4_escalated + 2 * DAY, ticket=False),
        _escalation("C9", 1, Severity.A, now - 35 * DAY, answer=HOUR),  # before the period
    ]
    collections = [
        _collections("K1", "active", "reminder", "5000.00", now=now),
        _collections("K2", "active", "final-notice", "3000.10", now=now, failed_days_ago=31),
        _collections("K3", "active", "reminder", "1999.90", now=now, failed_days_ago=2),
        _collections(
            "K4", "paused-dispute", "final-notice", "8000.00", now=now, failed_days_ago=60
        ),
        _collections(
            "K5",
            "handed-off",
            "hand-off",
            "12000.00",
            now=now,
            suspended=2,
            suspended_days_ago=85,
            customer_name=EVIL_NAME,
            failed_days_ago=120,
        ),
        _collections(
            "K6",
            "active",
            "suspension",
            "4000.00",
            now=now,
            suspended=1,
            suspended_days_ago=10,
            failed_days_ago=61,
        ),
        _collections(
            "K7", "paid", "paid", "0.00", now=now, suspended=1, suspended_days_ago=30, fraud=True
        ),
        _collections("K8", "paid", "paid", "0.00", now=now),
        _collections(
            "K9", "active", "reminder", "700.00", now=now, currency="USD", failed_days_ago=91
        ),
    ]
    today = (now + 8 * HOUR).date()
    invoices = [
        _invoice("VN1", "unpaid", "100000.00", today - 10 * DAY, now),
        _invoice("VN2", "overdue", "50000.50", today - DAY, now),
        _invoice("VN3", "unpaid", "20000.00", today + 5 * DAY, now),
        _invoice("VN4", "unpaid", "30000.00", today + 31 * DAY, now),
        _invoice("VN5", "paid", "99999.99", today - 29 * DAY, now),
    ]
    with session_factory.begin() as session:
        session.add_all(cases)
        session.flush()
        session.add_all([*events, *escalations, *collections, *invoices])


def report(session_factory: sessionmaker[Session], policy: CasePolicy = POLICY) -> Report:
    with session_factory() as session:
        return build_report(session, now=NOW, since=NOW - 30 * DAY, case_policy=policy)


def test_report_figures(session_factory: sessionmaker[Session]) -> None:
    seed(session_factory)
    got = report(session_factory)

    # backlog: C1 (½ day), C2 (2 d), C10 (1 d), C9 (40 d) open; C3 5 d; C4 10 d; C5 20 d
    assert got.backlog.counts == {
        CaseStatus.OPEN: [1, 2, 0, 0, 0, 1],
        CaseStatus.WAITING_ON_CUSTOMER: [0, 0, 1, 0, 0, 0],
        CaseStatus.WAITING_ON_VIANET: [0, 0, 0, 1, 0, 0],
        CaseStatus.RESOLVED: [0, 0, 0, 0, 1, 0],
    }
    assert got.backlog.total == 7

    # SLA over the nine cases opened in the last 30 days (C9 and C11 are older)
    sla = {row.priority: row for row in got.sla}
    assert [row.priority for row in got.sla] == list(reversed(Priority))
    urgent, high, normal, low = (sla[p] for p in reversed(Priority))
    assert (urgent.cases, high.cases, normal.cases, low.cases) == (1, 2, 5, 1)
    assert (urgent.first_response.met, urgent.resolution.breached) == (1, 1)
    assert urgent.resolution.attainment.percent == Decimal("0.0")
    assert (high.first_response.met, high.first_response.breached) == (1, 1)
    assert high.first_response.attainment.percent == Decimal("50.0")
    assert (high.resolution.met, high.resolution.pending) == (1, 1)
    assert (normal.first_response.met, normal.first_response.pending) == (3, 2)
    assert normal.first_response.attainment.percent == Decimal("100.0")
    assert (normal.resolution.met, normal.resolution.breached, normal.resolution.pending) == (
        1,
        0,
        4,
    )
    assert (low.first_response.breached, low.resolution.met) == (1, 1)
    assert normal.first_response_time.median == HOUR  # 1 h, 1 h, 2 h
    assert high.first_response_time.median == 3 * HOUR
    assert normal.first_response_target == timedelta(hours=8)
    assert urgent.resolution_target == timedelta(hours=8)

    # escalations: C4 and C6 of the nine; five escalations in the period, one not filed yet
    esc = got.escalations
    assert (esc.rate.part, esc.rate.whole, esc.rate.percent) == (2, 9, Decimal("22.2"))
    assert (esc.escalations, esc.awaiting_ticket) == (5, 1)
    assert (esc.responses.count, esc.responses.median, esc.responses.p90) == (
        3,
        3 * HOUR,
        6 * HOUR,
    )
    a, b, c = esc.by_severity
    assert (a.times.median, a.within_target, a.target) == (3 * HOUR, 0, 2 * HOUR)
    assert (b.times.count, b.times.median, b.times.p90, b.within_target) == (
        2,
        4 * HOUR,
        6 * HOUR,
        1,
    )
    assert (c.times.count, c.times.median, c.awaiting) == (0, None, 1)

    # closed in the period: C6 after 4 days, C7 after 10 (C11 closed 50 days ago, C8 withdrawn)
    assert (got.time_to_close.count, got.time_to_close.median, got.time_to_close.p90) == (
        2,
        7 * DAY,
        10 * DAY,
    )
    assert (got.reopen.part, got.reopen.whole, got.reopen.percent) == (1, 3, Decimal("33.3"))

    # open CNY cases with an amount: 1000.00 + 2500.50 + 12340.00 + 800.25 + 100.00
    assert got.in_dispute == Decimal("16740.75")
    assert got.disputed_cases == 5
    assert got.other_currency == 2  # C10 and K9 are in USD

    assert [(r.status, r.stage, r.invoices, r.balance) for r in got.receivables] == [
        ("active", "final-notice", 1, Decimal("3000.10")),
        ("active", "reminder", 2, Decimal("6999.90")),
        ("active", "suspension", 1, Decimal("4000.00")),
        ("paused-dispute", "final-notice", 1, Decimal("8000.00")),
        ("handed-off", "hand-off", 1, Decimal("12000.00")),
    ]
    assert got.receivable_total == Decimal("34000.00")

    # aging, each currency apart: K1 30 days past due, K3 2 | K2 31, K4 60 (disputed, still
    # owed) | K6 61 | K5 120; K9 91 in USD; the paid K7 and K8 are not receivables
    assert [(a.currency, a.balances, a.invoices) for a in got.aging] == [
        (
            "CNY",
            [Decimal("6999.90"), Decimal("11000.10"), Decimal("4000.00"), Decimal("12000.00")],
            [2, 2, 1, 1],
        ),
        (
            "USD",
            [Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("700.00")],
            [0, 0, 0, 1],
        ),
    ]
    assert got.aging[0].total == got.receivable_total

    # the fraud case K7 is paid but stays suspended: its data still goes
    assert [(s.invoice_id, s.subscriptions, s.days_left) for s in got.suspensions] == [
        ("K5", 2, 5),
        ("K7", 1, 60),
        ("K6", 1, 80),
    ]
    assert got.suspensions[0].data_deletion_at == NOW + 5 * DAY

    e = got.exposure
    assert (e.payable, e.payable_invoices) == (Decimal("200000.50"), 4)
    assert e.payable_overdue == Decimal("150000.50")
    assert e.payable_due_soon == Decimal("20000.00")
    assert (e.receivable, e.receivable_disputed, e.receivable_overdue) == (
        Decimal("34000.00"),
        Decimal("8000.00"),
        Decimal("26000.00"),
    )
    assert e.net == Decimal("-166000.50")
    assert [(p.invoice_number, p.days_overdue) for p in got.payables] == [
        ("VN1", 10),
        ("VN2", 1),
        ("VN3", 0),
        ("VN4", 0),
    ]
    for money in (e.payable, e.receivable, got.in_dispute, *(r.balance for r in got.receivables)):
        assert isinstance(money, Decimal)


def test_all_time_takes_every_case(session_factory: sessionmaker[Session]) -> None:
    seed(session_factory)
    with session_factory() as session:
        got = build_report(session, now=NOW, since=None, case_policy=POLICY)
    assert sum(row.cases for row in got.sla) == 11
    assert got.escalations.escalations == 6
    assert got.time_to_close.count == 3  # C11 after 50 days too
    normal = next(row for row in got.sla if row.priority is Priority.NORMAL)
    assert normal.resolution.breached == 1  # C9's breach counts now


def test_empty_database(session_factory: sessionmaker[Session]) -> None:
    got = report(session_factory)
    assert got.backlog.total == 0
    assert got.in_dispute == Decimal("0.00") and got.exposure.net == Decimal("0.00")
    assert got.escalations.rate.percent is None
    assert got.time_to_close.median is None
    rendered = {s.key: s for s in sections(got)}
    assert rendered["escalations"].rows[0] == ["Escalation rate", "-"]
    assert "none" in render_html(got, ROOT / "templates")


def test_sections_format_money_and_rates(session_factory: sessionmaker[Session]) -> None:
    seed(session_factory)
    rendered = {s.key: s for s in sections(report(session_factory))}
    assert rendered["dispute"].rows[1] == ["Disputed amount", "¥16,740.75"]
    assert rendered["exposure"].footer == ["Net (customers owe − the partner owes)", "-¥166,000.50"]
    assert rendered["receivables"].footer == ["Total", "", "6", "¥34,000.00"]
    assert rendered["aging"].columns == [
        "Currency",
        "0–30 days",
        "31–60 days",
        "61–90 days",
        "90+ days",
        "Total",
    ]
    assert rendered["aging"].rows == [
        [
            "CNY",
            "¥6,999.90 (2)",
            "¥11,000.10 (2)",
            "¥4,000.00 (1)",
            "¥12,000.00 (1)",
            "¥34,000.00 (6)",
        ],
        ["USD", "USD 0.00 (0)", "USD 0.00 (0)", "USD 0.00 (0)", "USD 700.00 (1)", "USD 700.00 (1)"],
    ]
    assert rendered["escalations"].rows[0] == ["Escalation rate", "22.2% (2/9)"]
    assert rendered["backlog"].footer == ["Total", "1", "2", "1", "1", "1", "1", "7"]
    assert rendered["closing"].rows[1] == ["Time to close: median", "7 days"]


def test_html_report_has_charts_and_figures(session_factory: sessionmaker[Session]) -> None:
    seed(session_factory)
    html = render_html(report(session_factory), ROOT / "templates")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('class="plotly-graph-div"') == 7
    assert 'id="aging"' in html and "¥11,000.10 (2)" in html and "USD 700.00 (1)" in html
    assert "Plotly.newPlot" in html
    assert get_plotlyjs()[:500] in html and "<script src=" not in html  # inlined: offline
    for figure in ("¥16,740.75", "¥34,000.00", "-¥166,000.50", "¥200,000.50", "22.2% (2/9)"):
        assert figure in html
    assert "<script>alert(1)</script>" not in html
    assert "Evil [red]&lt;script&gt;alert(1)&lt;/script&gt;[/red] Ltd" in html


def test_terminal_tables_print_names_as_they_are(session_factory: sessionmaker[Session]) -> None:
    seed(session_factory)
    console = Console(record=True, width=400)
    print_report(report(session_factory), console)
    printed = console.export_text()
    assert EVIL_NAME in printed  # no markup taken from a customer's name
    assert "Net (customers owe − the partner owes) │ -¥166,000.50" in printed
    assert "Receivables aging: days past due" in printed and "¥12,000.00 (1)" in printed


# --------------------------------------------------------------------------- the command line


def test_report_help() -> None:
    result = CliRunner().invoke(app, ["report", "show", "--help"])
    assert result.exit_code == 0
    assert "--html" in result.output and "--days" in result.output


@pytest.fixture
def seeded_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'report.db'}"
    upgrade(url)
    engine = make_engine(url)
    seed(make_session_factory(engine), now=datetime.now(UTC))
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    return url


def test_report_command(seeded_sqlite: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "show", "--html", str(page)])
    assert result.exit_code == 0, result.output
    for line in (
        "Backlog by status and age",
        "Disputed amount",
        "¥16,740.75",
        "¥34,000.00",
        "-¥166,000.50",
        "22.2% (2/9)",
        "HTML report written to",
    ):
        assert line in result.output
    html = page.read_text(encoding="utf-8")
    assert "¥16,740.75" in html and "Plotly.newPlot" in html
    # the page names customers: its owner's alone, like the database it came from
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    database = Path(seeded_sqlite.removeprefix("sqlite:///"))
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_report_command_all_time(seeded_sqlite: str) -> None:
    result = CliRunner().invoke(app, ["report", "show", "--days", "0"])
    assert result.exit_code == 0, result.output
    assert "all time" in result.output
    assert "27.3% (3/11)" in result.output  # C4, C6, C9 escalated of eleven


def test_report_command_refuses_bad_input(seeded_sqlite: str) -> None:
    result = CliRunner().invoke(app, ["report", "show", "--currency", "yuan"])
    assert result.exit_code == 2
    assert "currency" in result.output
    result = CliRunner().invoke(app, ["report", "show", "--days", "-1"])
    assert result.exit_code == 2


def test_report_command_on_an_unmigrated_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(app, ["report", "show"])
    assert result.exit_code == 1
    assert "db.migrate" in result.output


@pytest.mark.parametrize(
    ("failed", "now", "days", "bucket"),
    [
        # a day in China: 23:30 and 00:30 Beijing time are a day apart
        ("2026-01-01T15:30:00+00:00", "2026-01-01T16:30:00+00:00", 1, "0–30 days"),
        ("2026-01-01T15:30:00+00:00", "2026-01-01T15:59:00+00:00", 0, "0–30 days"),
        ("2026-01-01T02:00:00+00:00", "2026-01-31T02:00:00+00:00", 30, "0–30 days"),
        ("2026-01-01T02:00:00+00:00", "2026-02-01T02:00:00+00:00", 31, "31–60 days"),
        ("2026-01-01T02:00:00+00:00", "2026-04-01T02:00:00+00:00", 90, "61–90 days"),
        ("2026-01-01T02:00:00+00:00", "2026-04-02T02:00:00+00:00", 91, "90+ days"),
        ("2026-01-02T02:00:00+00:00", "2026-01-01T02:00:00+00:00", 0, "0–30 days"),  # clock skew
    ],
)
def test_days_past_due_and_their_bucket(failed: str, now: str, days: int, bucket: str) -> None:
    got = days_past_due(datetime.fromisoformat(failed), datetime.fromisoformat(now))
    assert got == days
    assert AGING_BUCKETS[aging_bucket(got)][0] == bucket


def test_holds_per_account(session_factory: sessionmaker[Session]) -> None:
    """Each account holding something: its suspended subscriptions and holds by reason, fraud
    first; an account with nothing left is not listed."""

    def account(tenant: str, name: str, holds: list[tuple[str, str, str]], **kw: Any) -> Account:
        return Account(
            account_id=tenant,
            workflow_id=f"account-{tenant}",
            tenant_id=tenant,
            customer_name=name,
            customer_email="ap@customer.example.cn",
            locale="zh-CN",
            holds=[
                {"subscription_id": s, "reason": r, "invoice_id": i, "placed_at": "x", "by": "w"}
                for s, r, i in holds
            ],
            suspended_subscriptions=sorted({s for s, _, _ in holds}),
            fraud=any(r == "fraud" for _, r, _ in holds),
            overrides=kw.get("overrides", {}),
        )

    with session_factory.begin() as session:
        session.add_all(
            [
                account("t-a", "甲公司", [("S1", "non-payment", "A"), ("S1", "non-payment", "B")]),
                account("t-b", "乙公司", [("S2", "fraud", "C"), ("S2", "non-payment", "C")]),
                account("t-c", "丙公司", [], overrides={"exempt_from_suspension": True}),
            ]
        )
    got = report(session_factory).holds
    assert [(a.tenant_id, a.suspended, a.non_payment, a.fraud, a.invoices) for a in got] == [
        ("t-b", 1, 1, 1, 1),
        ("t-a", 1, 2, 0, 2),
    ]
    rendered = {s.key: s for s in sections(report(session_factory))}
    assert rendered["holds"].rows[0] == ["乙公司", "t-b", "1", "1", "1", "1"]


def test_cash_received_per_day_unapplied_cash_and_refunds(
    session_factory: sessionmaker[Session],
) -> None:
    """Finance's figures: the payments the invoices took and those the accounts took after an
    invoice ended, by China's day and currency; the customers' credit balances; the refunds."""
    from db.tables import AccountEventRow, CollectionsEventRow

    def paid(seq: int, at: datetime, amount: str) -> CollectionsEventRow:
        return CollectionsEventRow(
            invoice_id="G-CASH", seq=seq, at=at, kind="payment-received", actor="billing",
            text="payment", data={"payment_id": f"P{seq}", "amount": amount},
        )  # fmt: skip

    ledger = {
        "balances": [
            {"currency": "CNY", "received": "900.00", "applied": "100.00", "refunded": "300.00",
             "reserved": "200.00"},
        ],
        "refunds": [
            {"refund_id": "RF-1", "currency": "CNY", "amount": "300.00", "reason": "r",
             "requested_by": "f", "requested_at": (NOW - DAY).isoformat(), "status": "refunded"},
            {"refund_id": "RF-2", "currency": "CNY", "amount": "200.00", "reason": "r",
             "requested_by": "f", "requested_at": NOW.isoformat(),
             "status": "awaiting-approval"},
        ],
        "applications": [],
    }  # fmt: skip
    with session_factory.begin() as session:
        session.add(_collections("G-CASH", "paid", "paid", "0.00", now=NOW))
        session.add(
            Account(
                account_id="t-cash", workflow_id="account-t-cash", tenant_id="t-cash",
                customer_name="甲公司", customer_email="ap@customer.example.cn", locale="zh-CN",
                ledger=ledger, has_credit=True, refunds_awaiting=1,
            )
        )  # fmt: skip
    with session_factory.begin() as session:
        # 23:30 UTC is the next morning in China
        session.add_all([paid(1, NOW - DAY, "1000.00"), paid(2, NOW - DAY + HOUR, "500.00")])
        session.add(
            AccountEventRow(
                account_id="t-cash", seq=1, at=NOW - 60 * DAY, kind="credit-received",
                actor="billing", data={"amount": "7.00", "currency": "CNY"},
            )
        )  # fmt: skip
        session.add(
            AccountEventRow(
                account_id="t-cash", seq=2, at=NOW, kind="credit-received", actor="billing",
                data={"amount": "400.00", "currency": "CNY"},
            )
        )  # fmt: skip
        session.add(
            AccountEventRow(
                account_id="t-cash", seq=3, at=NOW, kind="refunded", actor="workflow",
                data={"amount": "300.00", "currency": "CNY", "refund_id": "RF-1"},
            )
        )  # fmt: skip
    cash = report(session_factory).cash
    days = {(d.day, d.currency): (d.payments, d.amount) for d in cash.days}
    assert sum(n for n, _ in days.values()) == 3  # the one before the period is left out
    assert sum((a for _, a in days.values()), Decimal("0")) == Decimal("1900.00")
    [unapplied] = cash.unapplied
    assert (unapplied.customers, unapplied.balance, unapplied.awaiting_approval) == (
        1, Decimal("500.00"), Decimal("200.00"),
    )  # fmt: skip
    [refunds] = cash.refunds
    assert (refunds.refunded, refunds.amount, refunds.awaiting) == (1, Decimal("300.00"), 1)
    rendered = {s.key: s for s in sections(report(session_factory))}
    assert rendered["unapplied"].rows == [["CNY", "1", "¥500.00", "¥200.00"]]
    assert rendered["refunds"].rows == [["CNY", "1", "¥300.00", "1", "¥200.00"]]
    assert rendered["cash"].rows and all(row[1] == "CNY" for row in rendered["cash"].rows)

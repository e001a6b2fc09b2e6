"""persist_case against the real databases: upsert, append-only events, replays, round-trips."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.case_store import CaseStoreActivities
from core.models import (
    CaseEvent,
    CaseRecord,
    CaseStatus,
    Category,
    EventKind,
    Locale,
    Outcome,
    PersistCase,
    Priority,
)
from db.tables import Case
from tests.db_queries import case_events, get_case
from tests.factories import (
    CASE_ID,
    DESCRIPTION,
    INVOICE_ID,
    OPENED_AT,
    OWNER,
    SUBSCRIPTION_ID,
    TENANT_ID,
    make_event,
)

CUSTOMER_NAME = "上海云帆信息科技有限公司"


def make_record(case_id: str = CASE_ID, **changes: Any) -> CaseRecord:
    record = CaseRecord(
        case_id=case_id,
        workflow_id=f"billing-case-{case_id}",
        status=CaseStatus.OPEN,
        tenant_id=TENANT_ID,
        customer_name=CUSTOMER_NAME,
        customer_email="finance@yunfan.example.cn",
        locale=Locale.ZH_CN,
        subscription_id=SUBSCRIPTION_ID,
        invoice_id=INVOICE_ID,
        category=Category.INVOICE_DISPUTE,
        priority=Priority.HIGH,
        disputed_amount=Decimal("12340.50"),
        currency="CNY",
        description=DESCRIPTION,
        owner=None,
        opened_at=OPENED_AT,
        closed_at=None,
        sla_breached=False,
        escalated=False,
        reopen_count=0,
        outcome=None,
        credit_amount=None,
        resolved_at=None,
        first_response_at=None,
    )
    return record.model_copy(update=changes)


OPENED_EVENTS = [
    make_event(1, EventKind.OPENED, "zhang.wei@partner.example.cn", "客户来电反映 2 月账单异常"),
    make_event(2, EventKind.ASSIGNED, "zhang.wei@partner.example.cn", OWNER, data={"to": OWNER}),
]
ESCALATED_EVENTS = [
    *OPENED_EVENTS,
    make_event(3, EventKind.ESCALATED, OWNER, "需要世纪互联核对计费数据", data={"severity": "B"}),
    make_event(4, EventKind.VIANET_TICKET, OWNER, "2503030010001234"),
]


def persist(session_factory: sessionmaker[Session], data: PersistCase) -> None:
    ActivityEnvironment().run(CaseStoreActivities(session_factory).persist_case, data)


def load(session_factory: sessionmaker[Session], case_id: str = CASE_ID) -> Case:
    with session_factory() as session:
        case = get_case(session, case_id)
        assert case is not None
        return case


def stored_events(
    session_factory: sessionmaker[Session], case_id: str = CASE_ID
) -> list[tuple[int, str, str, str, datetime, dict[str, str]]]:
    with session_factory() as session:
        return [
            (row.seq, row.kind, row.actor, row.text, row.at, row.data)
            for row in case_events(session, case_id)
        ]


def expected_events(
    events: list[CaseEvent],
) -> list[tuple[int, str, str, str, datetime, dict[str, str]]]:
    return [(e.seq, e.kind.value, e.actor, e.text, e.at, e.data) for e in events]


def assert_row_matches(case: Case, record: CaseRecord) -> None:
    # StrEnum members compare equal to the strings stored for them
    assert {name: getattr(case, name) for name in CaseRecord.model_fields} == record.model_dump()


def test_every_record_field_has_a_column() -> None:
    assert set(CaseRecord.model_fields) <= set(Case.__table__.columns.keys())


def test_first_persist_inserts_the_row_and_its_events(
    session_factory: sessionmaker[Session],
) -> None:
    record = make_record()
    persist(session_factory, PersistCase(record=record, events=OPENED_EVENTS))

    case = load(session_factory)
    assert_row_matches(case, record)
    assert case.status == "open" and case.category == "invoice-dispute"
    assert case.last_event_seq == 2
    assert stored_events(session_factory) == expected_events(OPENED_EVENTS)


def test_update_changes_the_row_and_appends_only_new_events(
    session_factory: sessionmaker[Session],
) -> None:
    persist(session_factory, PersistCase(record=make_record(), events=OPENED_EVENTS))
    escalated = make_record(status=CaseStatus.WAITING_ON_VIANET, escalated=True, owner=OWNER)
    # the full timeline again: events 1-2 are skipped, 3-4 appended
    persist(session_factory, PersistCase(record=escalated, events=ESCALATED_EVENTS))
    # only the newest event: appended as well
    resolved_at = OPENED_AT + timedelta(days=2)
    resolved = make_record(
        status=CaseStatus.RESOLVING,
        escalated=True,
        owner=OWNER,
        outcome=Outcome.CREDIT_ISSUED,
        credit_amount=Decimal("300.00"),
        resolved_at=resolved_at,
    )
    resolution = make_event(5, EventKind.RESOLVED, OWNER, "已开具贷项通知单")
    persist(session_factory, PersistCase(record=resolved, events=[resolution]))

    case = load(session_factory)
    assert_row_matches(case, resolved)
    assert case.status == "resolving" and case.outcome == "credit-issued"
    assert case.last_event_seq == 5
    assert stored_events(session_factory) == expected_events([*ESCALATED_EVENTS, resolution])


def test_replaying_the_same_persist_changes_nothing(session_factory: sessionmaker[Session]) -> None:
    data = PersistCase(record=make_record(), events=ESCALATED_EVENTS)
    persist(session_factory, data)
    with session_factory() as session:
        first_ids = [row.id for row in case_events(session, CASE_ID)]

    persist(session_factory, data)
    persist(session_factory, data)

    with session_factory() as session:
        assert [row.id for row in case_events(session, CASE_ID)] == first_ids
    assert stored_events(session_factory) == expected_events(ESCALATED_EVENTS)
    assert load(session_factory).last_event_seq == 4


def test_an_older_persist_replayed_late_keeps_events_and_seq(
    session_factory: sessionmaker[Session],
) -> None:
    newer = make_record(status=CaseStatus.WAITING_ON_VIANET, escalated=True)
    persist(session_factory, PersistCase(record=newer, events=ESCALATED_EVENTS))
    older = make_record()
    persist(session_factory, PersistCase(record=older, events=OPENED_EVENTS))

    case = load(session_factory)
    # the row is last-writer-wins (the workflow's next persist corrects it); the log never shrinks
    assert_row_matches(case, older)
    assert case.last_event_seq == 4
    assert stored_events(session_factory) == expected_events(ESCALATED_EVENTS)


def test_amounts_times_and_chinese_text_round_trip_exactly(
    session_factory: sessionmaker[Session],
) -> None:
    beijing = timezone(timedelta(hours=8))
    record = make_record(
        disputed_amount=Decimal("12340.50"),
        credit_amount=Decimal("999999999999.99"),
        outcome=Outcome.REFUND_ISSUED,
        first_response_at=datetime(2025, 3, 3, 10, 15, tzinfo=beijing),
    )
    note = make_event(3, EventKind.NOTE, OWNER, "客户确认：退款 ¥12,340.50 至招商银行账户 ✓")
    persist(session_factory, PersistCase(record=record, events=[*OPENED_EVENTS, note]))

    case = load(session_factory)
    assert str(case.disputed_amount) == "12340.50"
    assert str(case.credit_amount) == "999999999999.99"
    assert case.customer_name == CUSTOMER_NAME
    assert case.description == DESCRIPTION
    # stored as UTC, read back aware on both databases
    assert case.first_response_at == datetime(2025, 3, 3, 2, 15, tzinfo=UTC)
    assert case.first_response_at is not None and case.first_response_at.utcoffset() == timedelta(0)
    assert stored_events(session_factory)[-1][3] == "客户确认：退款 ¥12,340.50 至招商银行账户 ✓"


def test_concurrent_attempts_neither_fail_nor_duplicate(
    session_factory: sessionmaker[Session],
) -> None:
    case_ids = [f"{CASE_ID}-{n}" for n in range(3)]
    errors: list[BaseException] = []

    def attempt(data: PersistCase, start: threading.Barrier) -> None:
        start.wait()
        try:
            persist(session_factory, data)
        except BaseException as exc:  # collected: an exception in a thread would go unseen
            errors.append(exc)

    for case_id in case_ids:
        data = PersistCase(record=make_record(case_id), events=ESCALATED_EVENTS)
        start = threading.Barrier(6)
        threads = [threading.Thread(target=attempt, args=(data, start)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    for case_id in case_ids:
        assert stored_events(session_factory, case_id) == expected_events(ESCALATED_EVENTS)
        assert load(session_factory, case_id).last_event_seq == 4

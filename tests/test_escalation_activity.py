"""prepare_escalation and record_escalation on the real databases: one row each, idempotent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.escalation import EscalationActivities
from activities.rendering import TemplateRenderer
from core.models import (
    CaseView,
    EscalationRequest,
    PrepareEscalation,
    RecordEscalation,
    Severity,
)
from db.tables import Case, VianetEscalation
from tests.factories import OPENED_AT, make_escalated_case_view, make_escalation

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
REASON = "合作伙伴无法在合作伙伴中心查看该发票的计费明细，需要世纪互联核实计量数据。"


def store_case(session_factory: sessionmaker[Session], view: CaseView) -> None:
    """The cases row persist_case would have written (vianet_escalations references it)."""
    details = view.details
    with session_factory() as session:
        session.add(
            Case(
                case_id=view.case_id,
                workflow_id=view.workflow_id,
                status=view.status.value,
                tenant_id=details.customer.tenant_id,
                customer_name=details.customer.name,
                customer_email=str(details.customer.email),
                locale=details.customer.locale.value,
                subscription_id=details.subscription_id,
                invoice_id=details.invoice_id,
                category=details.category.value,
                priority=details.priority.value,
                disputed_amount=details.disputed_amount,
                currency=details.currency,
                description=details.description,
                owner=view.owner,
                opened_at=view.opened_at,
            )
        )
        session.commit()


def rows(session_factory: sessionmaker[Session]) -> list[VianetEscalation]:
    with session_factory() as session:
        return list(session.scalars(select(VianetEscalation).order_by(VianetEscalation.id)))


@pytest.fixture
def activities(session_factory: sessionmaker[Session]) -> EscalationActivities:
    return EscalationActivities(TemplateRenderer(TEMPLATES), session_factory)


@pytest.fixture
def view(session_factory: sessionmaker[Session]) -> CaseView:
    """An escalated case whose cases row is stored."""
    view = make_escalated_case_view()
    store_case(session_factory, view)
    return view


def prepare(
    activities: EscalationActivities,
    view: CaseView,
    escalation_no: int = 1,
    severity: Severity = Severity.B,
) -> EscalationRequest:
    data = PrepareEscalation(
        case=view, escalation_no=escalation_no, severity=severity, reason=REASON
    )
    request: EscalationRequest = ActivityEnvironment().run(activities.prepare_escalation, data)
    return request


def test_prepare_renders_the_request_and_records_it_once(
    session_factory: sessionmaker[Session], activities: EscalationActivities, view: CaseView
) -> None:
    first = prepare(activities, view)
    again = prepare(activities, view)

    assert first == again
    assert "\n" not in first.title and view.case_id in first.title
    assert "严重性 Severity: B" in first.body and REASON in first.body
    [row] = rows(session_factory)
    assert (row.case_id, row.escalation_no, row.severity, row.reason) == (
        view.case_id,
        1,
        "B",
        REASON,
    )
    assert (row.request_title, row.request_body) == (first.title, first.body)
    assert row.escalated_at == view.escalations[0].escalated_at
    assert row.ticket_number is None


def test_record_keeps_the_row_current(
    session_factory: sessionmaker[Session], activities: EscalationActivities, view: CaseView
) -> None:
    request = prepare(activities, view)

    answered = make_escalation(
        reason=REASON,
        request_title=request.title,
        request_body=request.body,
        response="世纪互联确认计量异常，将开具贷项通知单。",
        responded_at=OPENED_AT + timedelta(days=1),
    )
    record = RecordEscalation(case_id=view.case_id, escalation_no=1, escalation=answered)
    for _ in range(2):
        ActivityEnvironment().run(activities.record_escalation, record)

    [row] = rows(session_factory)
    assert row.ticket_number == answered.ticket_number
    assert row.ticket_recorded_at == answered.ticket_recorded_at
    assert row.response == answered.response
    assert row.responded_at == answered.responded_at
    assert row.request_title == request.title  # what prepare stored stays


def test_second_escalation_gets_its_own_row(
    session_factory: sessionmaker[Session], activities: EscalationActivities, view: CaseView
) -> None:
    prepare(activities, view, 1, Severity.B)
    prepare(activities, view, 2, Severity.A)

    assert [(r.escalation_no, r.severity) for r in rows(session_factory)] == [(1, "B"), (2, "A")]
    assert "escalation #2" in rows(session_factory)[1].request_body


def test_record_without_prepare_inserts_the_row(
    session_factory: sessionmaker[Session], activities: EscalationActivities, view: CaseView
) -> None:
    escalation = view.escalations[0]
    data = RecordEscalation(case_id=view.case_id, escalation_no=1, escalation=escalation)

    ActivityEnvironment().run(activities.record_escalation, data)

    [row] = rows(session_factory)
    assert (row.severity, row.ticket_number) == ("B", escalation.ticket_number)


def test_escalation_before_the_case_is_stored_is_retried(activities: EscalationActivities) -> None:
    with pytest.raises(ApplicationError, match="not in the database yet") as early:
        prepare(activities, make_escalated_case_view(case_id="BC-UNKNOWN"))
    assert early.value.type == "CaseNotStoredYet" and not early.value.non_retryable

"""21Vianet escalations: render the service request the agent files by hand, keep its row current.

Partner Center operated by 21Vianet has no service-request API, so a person pastes the rendered
title and body into the portal and records the ticket number they get back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import RENDER_ERRORS, database, render_failed
from activities.rendering import TemplateRenderer
from core.models import EscalationRequest, PrepareEscalation, RecordEscalation
from db.tables import Case, VianetEscalation

TITLE_TEMPLATE = "vianet/request_title.txt"
BODY_TEMPLATE = "vianet/request_body.txt"


class EscalationActivities:
    def __init__(self, renderer: TemplateRenderer, session_factory: sessionmaker[Session]) -> None:
        self.renderer = renderer
        self.session_factory = session_factory

    @activity.defn
    def prepare_escalation(self, data: PrepareEscalation) -> EscalationRequest:
        """Render the request and upsert the escalation row (same input, same row, same text)."""
        context = {
            "case": data.case,
            "severity": data.severity.value,
            "reason": data.reason,
            "escalation_no": data.escalation_no,
        }
        try:
            title = " ".join(self.renderer.render_text(TITLE_TEMPLATE, context).split())
            body = self.renderer.render_text(BODY_TEMPLATE, context).strip() + "\n"
        except RENDER_ERRORS as err:
            raise render_failed(f"21Vianet request #{data.escalation_no}", err) from err
        known = data.case.escalations[data.escalation_no - 1 : data.escalation_no]
        self._upsert(
            data.case.case_id,
            data.escalation_no,
            always={
                "severity": data.severity.value,
                "reason": data.reason,
                "request_title": title,
                "request_body": body,
            },
            on_insert={"escalated_at": known[0].escalated_at if known else datetime.now(UTC)},
        )
        return EscalationRequest(title=title, body=body)

    @activity.defn
    def record_escalation(self, data: RecordEscalation) -> None:
        """Store the ticket number and 21Vianet's answer as the case now knows them."""
        escalation = data.escalation
        self._upsert(
            data.case_id,
            data.escalation_no,
            always={
                "ticket_number": escalation.ticket_number,
                "ticket_recorded_at": escalation.ticket_recorded_at,
                "response": escalation.response,
                "responded_at": escalation.responded_at,
            },
            on_insert={
                "severity": escalation.severity.value,
                "reason": escalation.reason,
                "request_title": escalation.request_title,
                "request_body": escalation.request_body,
                "escalated_at": escalation.escalated_at,
            },
        )

    def _upsert(
        self,
        case_id: str,
        escalation_no: int,
        always: dict[str, Any],
        on_insert: dict[str, Any],
    ) -> None:
        query = select(VianetEscalation).where(
            VianetEscalation.case_id == case_id, VianetEscalation.escalation_no == escalation_no
        )
        with database(f"21Vianet escalation #{escalation_no}"), self.session_factory() as session:
            row = session.scalars(query).first()
            if row is None and session.get(Case, case_id) is None:
                # the case's first save is still on its way (it races an early escalation)
                raise ApplicationError(
                    f"case {case_id} is not in the database yet", type="CaseNotStoredYet"
                )
            if row is None:
                session.add(
                    VianetEscalation(
                        case_id=case_id, escalation_no=escalation_no, **on_insert, **always
                    )
                )
                try:
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()
                    # a concurrent attempt inserted it; anything else is real
                    row = session.scalars(query).first()
                    if row is None:
                        raise
            for name, value in always.items():
                setattr(row, name, value)
            session.commit()

"""What a case's steps (activities) take and answer: its row saved, its 21Vianet request
rendered and recorded."""

from __future__ import annotations

from pydantic import Field

from core.models.case import (
    CaseRecord,
    CaseView,
    EscalationView,
)
from core.models.case_policy import Severity
from core.models.shared import (
    CaseEvent,
    Strict,
)


class PersistCase(Strict):
    """Upsert the case row and append the events not yet stored (idempotent on case_id + seq)."""

    record: CaseRecord
    events: list[CaseEvent]
    # the case as its page shows it, without the timeline and with long texts cut (as an update
    # answers it): the workspace reads it from the row instead of querying the workflow
    view: CaseView | None = None


class PrepareEscalation(Strict):
    """Render the 21Vianet request for the agent and record the escalation."""

    case: CaseView
    escalation_no: int = Field(ge=1)
    severity: Severity
    reason: str


class EscalationRequest(Strict):
    title: str
    body: str


class RecordEscalation(Strict):
    """Keep the ``vianet_escalations`` row current (ticket number, answer)."""

    case_id: str
    escalation_no: int = Field(ge=1)
    escalation: EscalationView


# --------------------------------------------------------------------------- the next run

"""What a case shows: the view (query, update answers, emails), the database row and the UI's
details and search attributes, each read from the case's state (no I/O, no clock)."""

from __future__ import annotations

from temporalio.common import TypedSearchAttributes

from core import search
from core.ids import case_workflow_id
from core.models import Attention, CaseEvent, CaseRecord, CaseStatus, CaseView, RecordEscalation
from workflows.base import cut, without_timeline
from workflows.billing_case.rules import Case
from workflows.billing_case.sla import SlaClock


def case_view(
    case: Case,
    *,
    needs_attention: str | None,
    event_count: int,
    timeline: list[CaseEvent],
    attention: Attention | None = None,
) -> CaseView:
    due = case.next_due()
    return CaseView(
        case_id=case.case_id,
        workflow_id=case_workflow_id(case.case_id),
        collections_workflow_id=case.collections_workflow_id,
        status=case.status,
        details=case.details,
        owner=case.owner,
        opened_at=case.opened_at,
        opened_by=case.opened_by,
        closed_at=case.closed_at,
        waiting_for=waiting_for(case),
        next_deadline=due.at if due else None,
        next_deadline_label=due.label if due else "",
        sla=[case.first_response_sla.view(), case.resolution_sla.view()],
        sla_breached=case.sla_breached,
        escalations=list(case.escalations),
        resolution=case.resolution,
        reopen_count=case.reopen_count,
        customer_reminders_sent=case.customer_reminders,
        fapiao_task=case.fapiao_task,
        fapiao=list(case.fapiao),
        merged_into=case.merged_into,
        merged_cases=list(case.merged_cases),
        needs_attention=needs_attention,
        attention=attention,
        event_count=event_count,
        timeline=timeline,
    )


def answer(view: CaseView, request: int = 0) -> CaseView:
    """What an update answers (Temporal keeps it in the history): the view without the timeline
    and with long texts cut, but for the request to file (`escalate`'s answer)."""
    escalations = [
        e.model_copy(
            update={
                "reason": cut(e.reason),
                "request_body": e.request_body if n == request else cut(e.request_body),
                "response": cut(e.response) if e.response else e.response,
            }
        )
        for n, e in enumerate(view.escalations, 1)
    ]
    details = view.details.model_copy(update={"description": cut(view.details.description)})
    resolution = view.resolution
    if resolution is not None:
        resolution = resolution.model_copy(update={"summary": cut(resolution.summary)})
    return view.model_copy(
        update={
            "timeline": [],
            "details": details,
            "escalations": escalations,
            "resolution": resolution,
        }
    )


def email_view(view: CaseView) -> CaseView:
    """An email reads the last escalation's title and reason, never the earlier ones nor a
    request or an answer (an email that quotes the request has it in its data)."""
    last = [
        e.model_copy(update={"request_body": "", "response": None}) for e in view.escalations[-1:]
    ]
    return without_timeline(view).model_copy(update={"escalations": last})


def attributes(case: Case) -> TypedSearchAttributes:
    """What the case's search attributes say (no customer data)."""
    return search.case_attributes(
        case.details,
        status=case.status.value,
        owner=case.owner,
        sla_breached=case.sla_breached,
        escalated=bool(case.escalations),
    )


def record(case: Case) -> CaseRecord:
    """The case's row in the database."""
    details, resolution = case.details, case.resolution
    return CaseRecord(
        case_id=case.case_id,
        workflow_id=case_workflow_id(case.case_id),
        status=case.status,
        tenant_id=details.customer.tenant_id,
        customer_name=details.customer.name,
        customer_email=str(details.customer.email),
        locale=details.customer.locale,
        subscription_id=details.subscription_id,
        invoice_id=details.invoice_id,
        category=details.category,
        priority=details.priority,
        disputed_amount=details.disputed_amount,
        currency=details.currency,
        description=details.description,
        owner=case.owner,
        opened_at=case.opened_at,
        closed_at=case.closed_at,
        sla_breached=case.sla_breached,
        escalated=bool(case.escalations),
        reopen_count=case.reopen_count,
        outcome=resolution.outcome if resolution else None,
        credit_amount=resolution.credit_amount if resolution else None,
        resolved_at=resolution.resolved_at if resolution else None,
        first_response_at=case.first_response_sla.met_at,
        fapiao_task=case.fapiao_task.kind.value if case.fapiao_task else None,
        fapiao_task_data=fapiao_task_data(case),
        merged_into=case.merged_into,
    )


def fapiao_task_data(case: Case) -> dict[str, str] | None:
    """What the fapiao tasks page shows of the case's open task (text only, no customer email)."""
    task = case.fapiao_task
    if task is None:
        return None
    data = {
        "requested_by": task.requested_by,
        "requested_at": task.requested_at.isoformat(),
        "blue_numbers": ", ".join(task.blue_numbers),
        "for_credit": "yes" if task.for_credit else "",
        "buyer_confirms_since": (
            task.buyer_confirms_since.isoformat() if task.buyer_confirms_since else ""
        ),
        "buyer_reminders": str(task.buyer_reminders),
    }
    if case.resolution is not None and case.resolution.credit_amount is not None:
        data["credit_amount"] = str(case.resolution.credit_amount)
    if task.buyer is not None:
        data |= {
            "buyer_name": task.buyer.name,
            "buyer_tax_id": task.buyer.tax_id,
            "buyer_address_phone": task.buyer.address_phone or "",
            "buyer_bank_account": task.buyer.bank_account or "",
        }
    return data


def escalation(case: Case, number: int) -> RecordEscalation:
    """21Vianet escalation `number` (1-based) as the database keeps it."""
    return RecordEscalation(
        case_id=case.case_id, escalation_no=number, escalation=case.escalations[number - 1]
    )


def details(case: Case, attention: str | None) -> str:
    """The UI's current details (markdown): what the case waits for, the deadline, the owner."""
    due = case.next_due()
    lines = [
        f"**{case.status.value}** · waiting for {waiting_for(case)}",
        "",
        f"- Owner: {case.owner or 'unassigned'}",
        f"- Next deadline: {due.label}, {due.at:%Y-%m-%d %H:%M} UTC"
        if due
        else "- Next deadline: none",
        "- SLA: " + " · ".join(_clock(c) for c in (case.first_response_sla, case.resolution_sla)),
    ]
    if case.escalations:
        last = case.escalations[-1]
        lines.append(
            f"- 21Vianet: {len(case.escalations)} escalation(s), last severity "
            f"{last.severity.value}, ticket {last.ticket_number or 'not filed yet'}"
        )
    if case.reopen_count:
        lines.append(f"- Reopened: {case.reopen_count}×")
    if case.collections_workflow_id:
        lines.append(f"- Collections: {case.collections_workflow_id}")
    if case.merged_into:
        lines.append(f"- Merged into: {case.merged_into}")
    if case.merged_cases:
        lines.append(f"- Merged into it: {', '.join(case.merged_cases)}")
    if attention:
        lines[:0] = [f"**{attention}**", ""]
    return "\n".join(lines)


def _clock(clock: SlaClock) -> str:
    view = clock.view()
    if view.met_at:
        state = f"met {view.met_at:%m-%d %H:%M}"
    elif view.due_at:
        state = f"due {view.due_at:%m-%d %H:%M}"
    else:
        state = "paused"
    return f"{clock.name} {state}" + (" **BREACHED**" if clock.breached else "")


def waiting_for(case: Case) -> str:
    match case.status:
        case CaseStatus.OPEN:
            done = case.first_response_sla.done
            return "the agent: resolution" if done else "the agent: first response"
        case CaseStatus.WAITING_ON_CUSTOMER:
            return "the customer: reply to the information request"
        case CaseStatus.ESCALATION_PENDING:
            return "the agent: file the request in the 21Vianet portal, record the ticket number"
        case CaseStatus.WAITING_ON_VIANET:
            return f"21Vianet: answer to ticket {case.escalations[-1].ticket_number}"
        case CaseStatus.WAITING_ON_FINANCE:
            kind = case.fapiao_task.kind.value if case.fapiao_task else "fapiao"
            return f"finance: record the {kind} fapiao number (fapiao tasks page)"
        case CaseStatus.WAITING_ON_BUYER:
            return (
                "the buyer: confirm the red-letter information in the tax system "
                "(reminded on working days), then finance records the red-letter fapiao"
            )
        case CaseStatus.RESOLVING:
            return "the resolution email to reach the customer"
        case CaseStatus.RESOLVED:
            return "the customer: confirm or reopen"
        case CaseStatus.MERGED:
            return f"nothing (merged into case {case.merged_into})"
        case _:
            return "nothing (case ended)"

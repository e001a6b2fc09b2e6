"""BillingCaseWorkflow: one billing question or dispute, from intake to a closed loop.

Agents act through validated updates that change the state at once and queue side effects (emails,
database writes); the main loop carries the effects out in order and fires the clocks (SLA, customer
silence, 21Vianet ticket and follow-up, reopen window). Activities are called by name so this module
loads no database, template or email library inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from core import search
    from core.contracts import DISPUTE_RESOLVED, PERSIST_CASE, PREPARE_ESCALATION, RECORD_ESCALATION
    from core.ids import is_collections_workflow_id
    from core.models import (
        FIRST_STATUS,
        WORKING_STATUSES,
        AddNote,
        Assign,
        CaseEvent,
        CaseRecord,
        CaseState,
        CaseStatus,
        CaseView,
        Confirm,
        CustomerReply,
        DisputeOutcome,
        EmailSent,
        Escalate,
        EscalationRequest,
        EscalationView,
        EventKind,
        Locale,
        OpenCase,
        PersistCase,
        PrepareEscalation,
        Recipient,
        RecordEscalation,
        Reopen,
        RequestInfo,
        ResolutionView,
        Resolve,
        UpdateContact,
        VianetResponse,
        VianetTicket,
        Withdraw,
    )
    from core.models.email import (
        CaseAcknowledged,
        CaseClosed,
        CaseEscalated,
        CaseReopened,
        CaseResolved,
        CaseWithdrawn,
        CustomerReminder,
        EmailDelivered,
        EmailTemplate,
        EmailUndelivered,
        InfoRequested,
        ManagerSlaBreach,
        OwnerCaseUpdate,
        OwnerCustomerSilent,
        OwnerEmailBounced,
        OwnerEscalationReminder,
        OwnerFileEscalation,
        OwnerNewCase,
        OwnerSlaReminder,
    )
    from workflows.base import (
        BUSINESS_CALENDAR,
        EMAIL_EVENTS,
        TOLD_WHEN_DELIVERED,
        WORKFLOW,
        ActionRefused,
        Alarm,
        EffectLoop,
        SendEmail,
        cut,
        run,
        send,
        without_timeline,
    )
    from workflows.sla import SlaClock

_TEMPLATES = frozenset(t.value for t in EmailTemplate)
# The statuses in which each SLA clock counts; elsewhere it is paused.
FIRST_RESPONSE_RUNS = frozenset({CaseStatus.OPEN})
RESOLUTION_RUNS = frozenset({CaseStatus.OPEN, CaseStatus.ESCALATION_PENDING})
# escalations of one case: what it carries stays well inside a payload (each may hold 64 KiB of
# reason, request and answer)
MAX_ESCALATIONS = 5


@dataclass(frozen=True)
class DeliverResolution:
    """Effect: the resolution email; the case is resolved only once it reached the customer."""

    email: SendEmail


@dataclass(frozen=True)
class PrepareRequest:
    """Effect: render 21Vianet request `number` (1-based) for the agent to file in the portal."""

    number: int


@dataclass(frozen=True)
class SaveEscalation:
    """Effect: keep 21Vianet escalation `number` (1-based) current in the database."""

    number: int


@dataclass(frozen=True)
class ReportOutcome:
    """Effect: tell the collections workflow of the disputed invoice how the case ended."""

    outcome: DisputeOutcome


CaseEffect = SendEmail | DeliverResolution | PrepareRequest | SaveEscalation | ReportOutcome


@workflow.defn
class BillingCaseWorkflow(EffectLoop[CaseEffect]):
    @workflow.init
    def __init__(self, data: OpenCase) -> None:
        self._data = data
        self._policy = data.policy
        self._details = data.details
        self._status = FIRST_STATUS
        self._owner = data.owner
        self._opened_at = workflow.now()
        self._closed_at: datetime | None = None
        targets = data.policy.sla[data.details.priority]
        reminder_at = data.policy.sla_reminder_at
        calendar = data.policy.calendar
        # the case's working calendar: its SLA (per priority), reminders and 21Vianet follow-ups
        self._calendar = calendar if calendar and workflow.patched(BUSINESS_CALENDAR) else None
        sla_calendar = self._calendar if targets.business_hours else None
        self._first_response = SlaClock(
            name="first response",
            target=targets.first_response,
            reminder_at=reminder_at,
            calendar=sla_calendar,
        )
        self._resolution = SlaClock(
            name="resolution",
            target=targets.resolution,
            reminder_at=reminder_at,
            calendar=sla_calendar,
        )
        self._waiting_since: datetime | None = None
        self._last_question: str | None = None
        self._customer_reminders = 0
        self._customer_silence_reported = False
        self._escalations: list[EscalationView] = []
        self._escalation_reminders = 0
        self._vianet_follow_ups = 0
        self._resolution_view: ResolutionView | None = None
        self._told_at: datetime | None = None
        self._accepted_at: datetime | None = None  # a resolution accepted, not yet delivered
        self._reopen_count = 0
        self._collections = data.collections_workflow_id
        self._preparing: set[int] = set()  # 21Vianet requests being rendered
        self._start_log(data.carried.log if data.carried else None)
        if data.carried is not None:
            self._restore(data.carried)

    def _restore(self, state: CaseState) -> None:
        """Go on where the run before this one stopped (it continued as new)."""
        self._status, self._details, self._owner = state.status, state.details, state.owner
        self._opened_at, self._closed_at = state.opened_at, state.closed_at
        self._first_response = SlaClock.model_validate(state.first_response.model_dump())
        self._resolution = SlaClock.model_validate(state.resolution.model_dump())
        self._waiting_since, self._last_question = state.waiting_since, state.last_question
        self._customer_reminders = state.customer_reminders
        self._customer_silence_reported = state.customer_silence_reported
        self._escalations = list(state.escalations)
        self._escalation_reminders = state.escalation_reminders
        self._vianet_follow_ups = state.vianet_follow_ups
        self._resolution_view, self._told_at = state.resolution_view, state.told_at
        self._accepted_at = state.accepted_at
        self._reopen_count = state.reopen_count
        self._collections = state.collections_workflow_id

    def _continue_as_new(self) -> None:
        state = CaseState(
            status=self._status,
            details=self._details,
            owner=self._owner,
            opened_at=self._opened_at,
            closed_at=self._closed_at,
            first_response=self._first_response,
            resolution=self._resolution,
            waiting_since=self._waiting_since,
            last_question=self._last_question,
            customer_reminders=self._customer_reminders,
            customer_silence_reported=self._customer_silence_reported,
            escalations=self._escalations,
            escalation_reminders=self._escalation_reminders,
            vianet_follow_ups=self._vianet_follow_ups,
            resolution_view=self._resolution_view,
            told_at=self._told_at,
            accepted_at=self._accepted_at,
            reopen_count=self._reopen_count,
            collections_workflow_id=self._collections,
            log=self._log_state(),
        )
        workflow.continue_as_new(self._data.model_copy(update={"carried": state}))

    # ------------------------------------------------------------------ the story

    @workflow.run
    async def run(self, data: OpenCase) -> CaseView:
        if data.carried is None:  # a new case, not the next run of one
            self._record(EventKind.OPENED, data.opened_by, data.details.description)
            self._queue_email(CaseAcknowledged())
            self._queue_email(OwnerNewCase())
            self._sync_clocks()
            if self._calendar is not None:
                self._calendar_alert(self._calendar, *(a.at for a in self._alarms() if a))
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return self._status.is_final

    # ------------------------------------------------------------------ updates

    @workflow.update
    def assign(self, data: Assign) -> CaseView:
        self._owner = str(data.agent)
        self._record(EventKind.ASSIGNED, data.by, f"assigned to {data.agent}")
        self._queue_email(OwnerNewCase())
        if workflow.patched("assign-publishes-agent"):  # older histories have no upsert here
            self._publish()
        return self._answer()

    @assign.validator
    def _check_assign(self, data: Assign) -> None:
        self._refuse_if_final("assign")

    @workflow.update
    def note(self, data: AddNote) -> CaseView:
        self._record(EventKind.NOTE, data.by, data.text)
        return self._answer()

    @note.validator
    def _check_note(self, data: AddNote) -> None:
        self._refuse_if_final("add a note to")

    @workflow.update
    def update_contact(self, data: UpdateContact) -> CaseView:
        customer = self._details.customer.model_copy(
            update={"email": data.email, "locale": data.locale or self._details.customer.locale}
        )
        self._details = self._details.model_copy(update={"customer": customer})
        self._record(EventKind.NOTE, data.by, f"customer contact changed to {data.email}")
        return self._answer()

    @update_contact.validator
    def _check_update_contact(self, data: UpdateContact) -> None:
        self._refuse_if_final("change the contact of")

    @workflow.update
    def request_info(self, data: RequestInfo) -> CaseView:
        self._first_response.meet(workflow.now())
        self._set_status(CaseStatus.WAITING_ON_CUSTOMER)
        self._waiting_since, self._customer_reminders = workflow.now(), 0
        self._customer_silence_reported = False
        self._last_question = data.question
        self._record(EventKind.INFO_REQUESTED, data.by, data.question)
        self._queue_email(InfoRequested(question=data.question))
        return self._answer()

    @request_info.validator
    def _check_request_info(self, data: RequestInfo) -> None:
        self._require({CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}, "request information")

    @workflow.update
    def customer_reply(self, data: CustomerReply) -> CaseView:
        self._record(EventKind.CUSTOMER_REPLIED, data.by, data.text)
        if self._status is CaseStatus.WAITING_ON_CUSTOMER:
            self._waiting_since = None
            self._set_status(CaseStatus.OPEN)
        self._queue_email(OwnerCaseUpdate(text=data.text))
        return self._answer()

    @customer_reply.validator
    def _check_customer_reply(self, data: CustomerReply) -> None:
        self._require(WORKING_STATUSES, "record a customer reply on")

    @workflow.update
    async def resolve(self, data: Resolve) -> CaseView:
        now = workflow.now()
        self._first_response.meet(now)
        self._resolution.meet(now)
        self._resolution_view = ResolutionView(
            outcome=data.outcome,
            summary=data.summary,
            credit_amount=data.credit_amount,
            resolved_by=data.by,
            resolved_at=now,
        )
        self._set_status(CaseStatus.RESOLVING)
        self._record(
            EventKind.RESOLVED,
            data.by,
            data.summary,
            outcome=data.outcome.value,
            **({"credit_amount": str(data.credit_amount)} if data.credit_amount else {}),
        )
        resolution = self._email(CaseResolved(reopen_days=self._policy.reopen_window.days))
        self._effects.append(DeliverResolution(resolution))
        if self._current:
            # the answer says how it went (resolved once the customer has it, back to open if
            # the address bounced, resolving while a person must see to a failed step): the
            # agent's screen needs no query after it
            await workflow.wait_condition(
                lambda: (
                    self._status is not CaseStatus.RESOLVING
                    or self._stuck is not None
                    or self._accepted_at is not None
                )  # accepted: its delivery may take a while
            )
        return self._answer()

    @resolve.validator
    def _check_resolve(self, data: Resolve) -> None:
        if self._status in (CaseStatus.ESCALATION_PENDING, CaseStatus.WAITING_ON_VIANET):
            raise ActionRefused(
                f"case {self._data.case_id} is escalated to 21Vianet ({self._status.value}): "
                "record 21Vianet's answer with vianet-response before resolving"
            )
        self._require({CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}, "resolve")
        if data.credit_amount is not None and data.credit_amount > self._details.disputed_amount:
            raise ActionRefused(
                f"credit_amount {data.credit_amount} exceeds the disputed amount "
                f"{self._details.disputed_amount} {self._details.currency}"
            )

    @workflow.update
    async def escalate(self, data: Escalate) -> CaseView:
        now = workflow.now()
        self._first_response.meet(now)
        self._waiting_since = None
        self._escalation_reminders = 0
        self._escalations.append(
            EscalationView(severity=data.severity, reason=data.reason, escalated_at=now)
        )
        self._set_status(CaseStatus.ESCALATION_PENDING)
        number = len(self._escalations)
        self._record(EventKind.ESCALATED, data.by, data.reason, severity=data.severity.value)
        if self._current:
            # a step of the main loop, so a failure waits for an operator, not this update: the
            # answer has the request to file once it is rendered, or says who must act
            self._preparing.add(number)
            self._effects.append(PrepareRequest(number))
            await workflow.wait_condition(
                lambda: number not in self._preparing or self._stuck is not None
            )
        else:  # running cases that escalated before: rendered inside the update
            self._request_prepared(number, await self._prepare_request(number))
        return self._answer(request=number)

    async def _prepare_request(self, number: int) -> EscalationRequest:
        escalation = self._escalations[number - 1]
        request = await run(
            PREPARE_ESCALATION,
            PrepareEscalation(
                case=self.view(),
                escalation_no=number,
                severity=escalation.severity,
                reason=escalation.reason,
            ),
            f"Render 21Vianet request #{number} (severity {escalation.severity.value})",
        )
        return request

    def _request_prepared(self, number: int, request: EscalationRequest) -> None:
        """The request is ready to file: the owner gets it, the customer hears of the escalation."""
        self._escalations[number - 1] = self._escalations[number - 1].model_copy(
            update={"request_title": request.title, "request_body": request.body}
        )
        self._queue_email(
            OwnerFileEscalation(request_title=request.title, request_body=request.body)
        )
        self._queue_email(CaseEscalated())

    @escalate.validator
    def _check_escalate(self, data: Escalate) -> None:
        self._require({CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}, "escalate")
        if len(self._escalations) >= MAX_ESCALATIONS:
            raise ActionRefused(
                f"case {self._data.case_id} was escalated to 21Vianet {MAX_ESCALATIONS} times: "
                "a manager decides what happens next"
            )

    @workflow.update
    def vianet_ticket(self, data: VianetTicket) -> CaseView:
        number = len(self._escalations)
        self._escalations[-1] = self._escalations[-1].model_copy(
            update={"ticket_number": data.ticket_number, "ticket_recorded_at": workflow.now()}
        )
        self._vianet_follow_ups = 0
        self._set_status(CaseStatus.WAITING_ON_VIANET)
        self._record(EventKind.VIANET_TICKET, data.by, data.ticket_number)
        self._effects.append(SaveEscalation(number))
        return self._answer()

    @vianet_ticket.validator
    def _check_vianet_ticket(self, data: VianetTicket) -> None:
        if self._status is CaseStatus.WAITING_ON_VIANET:
            raise ActionRefused(
                f"case {self._data.case_id} already has 21Vianet ticket "
                f"{self._escalations[-1].ticket_number}"
            )
        self._require({CaseStatus.ESCALATION_PENDING}, "record a 21Vianet ticket number on")

    @workflow.update
    def vianet_response(self, data: VianetResponse) -> CaseView:
        self._escalations[-1] = self._escalations[-1].model_copy(
            update={"response": data.text, "responded_at": workflow.now()}
        )
        self._set_status(CaseStatus.OPEN)
        self._record(EventKind.VIANET_RESPONSE, data.by, data.text)
        self._effects.append(SaveEscalation(len(self._escalations)))
        return self._answer()

    @vianet_response.validator
    def _check_vianet_response(self, data: VianetResponse) -> None:
        if self._status is CaseStatus.ESCALATION_PENDING:
            raise ActionRefused(
                f"case {self._data.case_id} has no 21Vianet ticket number yet: "
                "record it with vianet-ticket first"
            )
        self._require({CaseStatus.WAITING_ON_VIANET}, "record a 21Vianet response on")

    @workflow.update
    def confirm(self, data: Confirm) -> CaseView:
        self._record(EventKind.CONFIRMED, data.by, "customer confirmed the resolution")
        self._close()
        return self._answer()

    @confirm.validator
    def _check_confirm(self, data: Confirm) -> None:
        self._require({CaseStatus.RESOLVED}, "confirm")

    @workflow.update
    def reopen(self, data: Reopen) -> CaseView:
        now = workflow.now()
        self._reopen_count += 1
        self._told_at = None
        self._resolution_view = None
        self._set_status(CaseStatus.OPEN)
        self._resolution.restart(now, self._policy.sla[self._details.priority].resolution)
        self._record(EventKind.REOPENED, data.by, data.reason, count=str(self._reopen_count))
        self._queue_email(CaseReopened(reason=data.reason))
        self._queue_email(OwnerCaseUpdate(text=f"Reopened: {data.reason}"))
        return self._answer()

    @reopen.validator
    def _check_reopen(self, data: Reopen) -> None:
        self._require({CaseStatus.RESOLVED}, "reopen")

    @workflow.update
    def withdraw(self, data: Withdraw) -> CaseView:
        self._record(EventKind.WITHDRAWN, data.by, data.reason)
        self._set_status(CaseStatus.WITHDRAWN)
        self._closed_at = workflow.now()
        self._queue_email(CaseWithdrawn())
        self._report_to_collections()
        return self._answer()

    @withdraw.validator
    def _check_withdraw(self, data: Withdraw) -> None:
        self._require(WORKING_STATUSES, "withdraw")

    @workflow.signal
    def link_collections(self, collections_workflow_id: str) -> None:
        """The invoice this case disputes is in collections: report the outcome there (at once,
        when the customer has been told it already)."""
        if not is_collections_workflow_id(collections_workflow_id):
            return  # not a collections workflow's id: nothing to report to
        self._collections = collections_workflow_id
        self._record(EventKind.LINKED, WORKFLOW, collections_workflow_id)
        if self._status is CaseStatus.RESOLVED:
            self._report_to_collections()

    @workflow.signal
    def email_undelivered(self, data: EmailUndelivered) -> None:
        """An email the provider had taken did not reach its address: the owner is told, and a
        resolution that bounced sends the case back to the agent (correct the contact, resolve
        again), as a bounce at sending does."""
        if not workflow.patched(EMAIL_EVENTS) or self._status.is_final:
            return
        template = EmailTemplate(data.template) if data.template in _TEMPLATES else None
        if template is None or not template.to_customer:
            return  # a staff address: the email log shows it
        self._record(EventKind.NOTE, WORKFLOW, f"{template.value} was not delivered ({data.event})")
        if template is EmailTemplate.CASE_RESOLVED and self._status is CaseStatus.RESOLVED:
            self._told_at = None
            self._resolution_bounced()
        elif template is EmailTemplate.CASE_RESOLVED and self._awaiting_delivery():
            self._accepted_at = None
            self._resolution_bounced()
        self._queue_email(
            OwnerEmailBounced(
                bounced_address=data.address,
                bounced_template=template,
                error=f"{data.event}: {data.reason}"[:500],
            )
        )

    @workflow.signal
    def email_delivered(self, data: EmailDelivered) -> None:
        """SendGrid delivered an email: the resolution waiting for it has reached the customer."""
        if not self._awaiting_delivery():
            return  # (only a case resolved since TOLD_WHEN_DELIVERED waits for it)
        if data.template == EmailTemplate.CASE_RESOLVED.value:
            self._resolution_delivered()

    def _awaiting_delivery(self) -> bool:
        return self._status is CaseStatus.RESOLVING and self._accepted_at is not None

    @workflow.query
    def view(self) -> CaseView:
        alarm = self._next_alarm()
        return CaseView(
            case_id=self._data.case_id,
            workflow_id=workflow.info().workflow_id,
            collections_workflow_id=self._collections,
            status=self._status,
            details=self._details,
            owner=self._owner,
            opened_at=self._opened_at,
            opened_by=self._data.opened_by,
            closed_at=self._closed_at,
            waiting_for=self._waiting_for(),
            next_deadline=alarm.at if alarm else None,
            next_deadline_label=alarm.label if alarm else "",
            sla=[self._first_response.view(), self._resolution.view()],
            sla_breached=self._first_response.breached or self._resolution.breached,
            escalations=list(self._escalations),
            resolution=self._resolution_view,
            reopen_count=self._reopen_count,
            customer_reminders_sent=self._customer_reminders,
            needs_attention=self._attention_line(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    # ------------------------------------------------------------------ validation helpers

    def _refuse_if_final(self, action: str) -> None:
        if self._status.is_final:
            raise ActionRefused(
                f"cannot {action} case {self._data.case_id}: it is {self._status.value}"
            )

    def _require(self, allowed: frozenset[CaseStatus] | set[CaseStatus], action: str) -> None:
        if self._status not in allowed:
            wanted = " or ".join(sorted(s.value for s in allowed))
            raise ActionRefused(
                f"cannot {action} case {self._data.case_id}: it is {self._status.value} "
                f"(needs {wanted})"
            )

    # ------------------------------------------------------------------ state changes

    def _set_status(self, status: CaseStatus) -> None:
        if status is not self._status:
            self._unflag()  # what ran out was a wait in the status it leaves
        self._status = status
        self._sync_clocks()

    def _sync_clocks(self) -> None:
        now = workflow.now()
        for clock, runs_in in (
            (self._first_response, FIRST_RESPONSE_RUNS),
            (self._resolution, RESOLUTION_RUNS),
        ):
            if self._status in runs_in:
                clock.run(now)
            else:
                clock.pause(now)
        self._publish()

    def _close(self) -> None:
        self._set_status(CaseStatus.CLOSED)
        self._closed_at = workflow.now()
        self._record(EventKind.CLOSED, WORKFLOW, "case closed")
        self._queue_email(CaseClosed())

    def _address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.CUSTOMER:
                return str(self._details.customer.email)
            case Recipient.MANAGER:
                return str(self._policy.manager_email)
            case Recipient.OWNER:
                return str(self._owner or self._policy.team_email)
        raise ValueError(f"a case sends no email to {recipient.value}")

    def _attributes(self) -> TypedSearchAttributes:
        return search.case_attributes(
            self._details,
            status=self._status.value,
            owner=self._owner,
            sla_breached=self._first_response.breached or self._resolution.breached,
            escalated=bool(self._escalations),
        )

    def _publish_details(self) -> None:
        """The UI's current details (markdown): what the case waits for, the deadline, the owner."""
        alarm = self._next_alarm()
        lines = [
            f"**{self._status.value}** · waiting for {self._waiting_for()}",
            "",
            f"- Owner: {self._owner or 'unassigned'}",
            f"- Next deadline: {alarm.label}, {alarm.at:%Y-%m-%d %H:%M} UTC"
            if alarm
            else "- Next deadline: none",
            "- SLA: "
            + " · ".join(self._clock_state(c) for c in (self._first_response, self._resolution)),
        ]
        if self._escalations:
            last = self._escalations[-1]
            lines.append(
                f"- 21Vianet: {len(self._escalations)} escalation(s), last severity "
                f"{last.severity.value}, ticket {last.ticket_number or 'not filed yet'}"
            )
        if self._reopen_count:
            lines.append(f"- Reopened: {self._reopen_count}×")
        if self._collections:
            lines.append(f"- Collections: {self._collections}")
        if attention := self._attention_line():
            lines[:0] = [f"**{attention}**", ""]
        workflow.set_current_details("\n".join(lines))

    @staticmethod
    def _clock_state(clock: SlaClock) -> str:
        view = clock.view()
        if view.met_at:
            state = f"met {view.met_at:%m-%d %H:%M}"
        elif view.due_at:
            state = f"due {view.due_at:%m-%d %H:%M}"
        else:
            state = "paused"
        return f"{clock.name} {state}" + (" **BREACHED**" if clock.breached else "")

    def _waiting_for(self) -> str:
        match self._status:
            case CaseStatus.OPEN:
                return (
                    "the agent: first response"
                    if not self._first_response.done
                    else ("the agent: resolution")
                )
            case CaseStatus.WAITING_ON_CUSTOMER:
                return "the customer: reply to the information request"
            case CaseStatus.ESCALATION_PENDING:
                return (
                    "the agent: file the request in the 21Vianet portal, record the ticket number"
                )
            case CaseStatus.WAITING_ON_VIANET:
                return f"21Vianet: answer to ticket {self._escalations[-1].ticket_number}"
            case CaseStatus.RESOLVING:
                return "the resolution email to reach the customer"
            case CaseStatus.RESOLVED:
                return "the customer: confirm or reopen"
            case _:
                return "nothing (case ended)"

    # ------------------------------------------------------------------ clocks

    def _next_alarm(self) -> Alarm | None:
        alarms = [a for a in self._alarms() if a is not None]
        return min(alarms, key=lambda a: a.at) if alarms else None

    def _alarms(self) -> list[Alarm | None]:
        alarms: list[Alarm | None] = []
        for clock in (self._first_response, self._resolution):
            if clock.reminder_due:
                alarms.append(
                    Alarm(clock.reminder_due, f"SLA: {clock.name} reminder", self._remind(clock))
                )
            if clock.breach_due:
                alarms.append(
                    Alarm(clock.breach_due, f"SLA: {clock.name} due", self._breach(clock))
                )
        policy = self._policy
        if self._status is CaseStatus.WAITING_ON_CUSTOMER and self._waiting_since:
            n = self._customer_reminders + 1
            at = self._later(self._waiting_since, policy.customer_reminder_after * n)
            if self._customer_reminders < policy.customer_reminders_max:
                alarms.append(Alarm(at, f"Customer silent: reminder {n}", self._remind_customer))
            elif not self._customer_silence_reported:
                alarms.append(Alarm(at, "Customer silent: tell the owner", self._report_silence))
        if self._status is CaseStatus.ESCALATION_PENDING and not self._flagged:
            escalation = self._escalations[-1]
            at = self._later(
                escalation.escalated_at,
                policy.ticket_reminder_every * (self._escalation_reminders + 1),
            )
            alarms.append(Alarm(at, "21Vianet: ticket number missing", self._remind_ticket))
        if self._status is CaseStatus.WAITING_ON_VIANET and not self._flagged:
            escalation = self._escalations[-1]
            assert escalation.ticket_recorded_at is not None
            target = policy.vianet_response_targets[escalation.severity]
            at = self._later(escalation.ticket_recorded_at, target)
            at = self._later(at, policy.vianet_follow_up_every * self._vianet_follow_ups)
            label = (
                "21Vianet: response target"
                if not self._vianet_follow_ups
                else ("21Vianet: follow up")
            )
            alarms.append(Alarm(at, label, self._follow_up_vianet))
        if self._awaiting_delivery() and self._accepted_at is not None:
            at = self._accepted_at + policy.no_bounce_window
            alarms.append(Alarm(at, "Resolution: no bounce", self._resolution_delivered))
        if self._status is CaseStatus.RESOLVED and self._told_at:
            alarms.append(
                Alarm(self._told_at + policy.reopen_window, "Reopen window ends", self._window_ends)
            )
        return alarms

    def _later(self, at: datetime, duration: timedelta) -> datetime:
        """`duration` after `at`: with a calendar in business time (customers and staff are
        reminded, 21Vianet followed up, on working days in opening hours), else around the
        clock."""
        return at + duration if self._calendar is None else self._calendar.add(at, duration)

    def _remind(self, clock: SlaClock) -> Callable[[], None]:
        def fire() -> None:
            clock.reminded = True
            self._record(EventKind.SLA_REMINDER, WORKFLOW, f"{clock.name} SLA reminder")
            self._queue_email(OwnerSlaReminder(clock=clock.name, due_at=self._clock_due(clock)))
            self._publish()

        return fire

    def _breach(self, clock: SlaClock) -> Callable[[], None]:
        def fire() -> None:
            clock.breached = True
            self._record(EventKind.SLA_BREACHED, WORKFLOW, f"{clock.name} SLA breached")
            self._queue_email(ManagerSlaBreach(clock=clock.name, due_at=self._clock_due(clock)))
            self._publish()

        return fire

    def _clock_due(self, clock: SlaClock) -> datetime:
        return clock.breach_due or workflow.now()

    def _remind_customer(self) -> None:
        self._customer_reminders += 1
        self._record(EventKind.CUSTOMER_REMINDED, WORKFLOW, f"reminder {self._customer_reminders}")
        self._queue_email(CustomerReminder(question=self._last_question))
        self._publish()

    def _report_silence(self) -> None:
        self._customer_silence_reported = True
        self._record(EventKind.REMINDER, WORKFLOW, "customer has not replied; owner told")
        self._queue_email(OwnerCustomerSilent(question=self._last_question))
        self._publish()

    def _remind_ticket(self) -> None:
        if self._escalation_reminders >= self._policy.ticket_reminders_max:
            self._flag(
                f"21Vianet request #{len(self._escalations)} is still not filed after "
                f"{self._escalation_reminders} reminders to the owner: file it in the portal "
                "and record the ticket number (vianet-ticket), or reassign the case"
            )
            self._publish()
            return
        self._escalation_reminders += 1
        self._record(EventKind.REMINDER, WORKFLOW, "21Vianet ticket number not recorded yet")
        escalation = self._escalations[-1]
        self._queue_email(
            OwnerEscalationReminder(
                request_title=escalation.request_title, request_body=escalation.request_body
            )
        )
        self._publish()

    def _follow_up_vianet(self) -> None:
        if self._vianet_follow_ups >= self._policy.vianet_follow_ups_max:
            ticket = self._escalations[-1].ticket_number
            self._flag(
                f"21Vianet has not answered ticket {ticket} after {self._vianet_follow_ups} "
                "follow-ups: escalate with 21Vianet, or record its answer (vianet-response)"
            )
            self._publish()
            return
        self._vianet_follow_ups += 1
        ticket = self._escalations[-1].ticket_number or ""
        self._record(EventKind.VIANET_FOLLOW_UP, WORKFLOW, f"check 21Vianet ticket {ticket}")
        self._queue_email(
            OwnerEscalationReminder(ticket_number=ticket, follow_up=self._vianet_follow_ups)
        )
        self._publish()

    def _window_ends(self) -> None:
        self._record(EventKind.NOTE, WORKFLOW, "reopen window ended without a reopen")
        self._close()

    # ------------------------------------------------------------------ effects

    def _report_to_collections(self) -> None:
        if self._collections:
            resolution = self._resolution_view
            outcome = DisputeOutcome(
                case_id=self._data.case_id,
                outcome=resolution.outcome if resolution else None,
                credit_amount=resolution.credit_amount if resolution else None,
                tenant_id=self._details.customer.tenant_id,
                currency=self._details.currency,
            )
            self._effects.append(ReportOutcome(outcome))

    async def _carry_out(self, effect: CaseEffect) -> None:
        match effect:
            case SendEmail():
                await self._deliver(effect)
            case DeliverResolution():
                await self._deliver_resolution(effect.email)
            case PrepareRequest():
                try:
                    self._request_prepared(
                        effect.number, await self._prepare_request(effect.number)
                    )
                finally:  # done, or failed: the update that waits for it answers now
                    self._preparing.discard(effect.number)
            case SaveEscalation():
                await self._persist_escalation(effect.number)
            case ReportOutcome():
                await self._tell_collections(effect.outcome)

    async def _deliver_resolution(self, email: SendEmail) -> None:
        """Closing the loop: the case is resolved only once the customer has the resolution."""
        delivered = await self._deliver(email)
        if self._status is not CaseStatus.RESOLVING:
            return
        if not delivered:
            self._resolution_bounced()
        elif self._policy.told_when_delivered and workflow.patched(TOLD_WHEN_DELIVERED):
            # accepted is not delivered: told once SendGrid reports the delivery, or once the
            # window passed without a bounce; a bounce meanwhile sends the case back
            self._accepted_at = workflow.now()
            self._record(
                EventKind.NOTE, WORKFLOW, "resolution accepted by SendGrid: waiting for delivery"
            )
        else:
            self._resolution_delivered()

    def _resolution_delivered(self) -> None:
        self._accepted_at = None
        self._told_at = workflow.now()
        assert self._resolution_view is not None
        self._resolution_view = self._resolution_view.model_copy(
            update={"customer_told_at": self._told_at}
        )
        self._set_status(CaseStatus.RESOLVED)
        self._record(EventKind.CUSTOMER_TOLD, WORKFLOW, "resolution sent to the customer")
        self._report_to_collections()

    def _resolution_bounced(self) -> None:
        # the loop is not closed until the customer hears the resolution: back to the agent
        self._resolution_view = None
        self._set_status(CaseStatus.OPEN)
        self._record(
            EventKind.NOTE,
            WORKFLOW,
            "resolution email bounced: correct the contact and resolve again",
        )

    async def _tell_collections(self, outcome: DisputeOutcome) -> None:
        assert self._collections is not None
        try:
            await send(self._collections, DISPUTE_RESOLVED, outcome)
            self._record(EventKind.NOTE, WORKFLOW, f"outcome reported to {self._collections}")
        except FailureError as err:  # collections already ended (paid, waived)
            self._record(EventKind.NOTE, WORKFLOW, f"{self._collections}: {err.message}")

    async def _persist(self, events: list[CaseEvent]) -> None:
        await self._write(
            PERSIST_CASE,
            PersistCase(record=self._record_row(), events=events),
            f"Save case: {self._status.value}, events {events[0].seq}-{events[-1].seq}",
        )

    async def _persist_escalation(self, number: int) -> None:
        await self._write(
            RECORD_ESCALATION,
            RecordEscalation(
                case_id=self._data.case_id,
                escalation_no=number,
                escalation=self._escalations[number - 1],
            ),
            f"Save 21Vianet escalation #{number}",
        )

    def _send_locale(self) -> Locale:
        return self._details.customer.locale

    def _answer(self, request: int = 0) -> CaseView:
        """What an update answers (Temporal keeps it in the history): the view without the
        timeline and with long texts cut, but for the request to file (`escalate`'s answer)."""
        view = self.view()
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

    def _email_view(self, view: CaseView) -> CaseView:  # type: ignore[override]
        """An email reads the last escalation's title and reason, never the earlier ones nor a
        request or an answer (an email that quotes the request has it in its data)."""
        last = [
            e.model_copy(update={"request_body": "", "response": None})
            for e in view.escalations[-1:]
        ]
        return without_timeline(view).model_copy(update={"escalations": last})

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), case=self.view())

    async def _deliver(self, email: SendEmail) -> bool:
        """Whether the email went out; a bounce is recorded and the owner told."""
        sent = await self._send(email)
        if isinstance(sent, ApplicationError):
            self._bounced(email, sent.message)
            return False
        return True

    def _bounced(self, email: SendEmail, error: str) -> None:
        if email.recipient is not Recipient.CUSTOMER:
            return  # a staff address bounced: the event log and the UI show it
        self._queue_email(
            OwnerEmailBounced(
                bounced_address=email.address, bounced_template=email.template, error=error
            )
        )

    def _record_row(self) -> CaseRecord:
        details, resolution = self._details, self._resolution_view
        return CaseRecord(
            case_id=self._data.case_id,
            workflow_id=workflow.info().workflow_id,
            status=self._status,
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
            owner=self._owner,
            opened_at=self._opened_at,
            closed_at=self._closed_at,
            sla_breached=self._first_response.breached or self._resolution.breached,
            escalated=bool(self._escalations),
            reopen_count=self._reopen_count,
            outcome=resolution.outcome if resolution else None,
            credit_amount=resolution.credit_amount if resolution else None,
            resolved_at=resolution.resolved_at if resolution else None,
            first_response_at=self._first_response.met_at,
        )

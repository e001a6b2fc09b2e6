"""BillingCaseWorkflow: one billing question or dispute, from intake to a closed loop. The shell of
its rules (rules.py): handlers check and take actions; the main loop carries out their effects."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import TypedSearchAttributes, VersioningBehavior
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from core.contracts import DISPUTE_RESOLVED, PERSIST_CASE, PREPARE_ESCALATION, RECORD_ESCALATION
    from core.models import (
        AddNote,
        Assign,
        CaseEvent,
        CaseStatus,
        CaseView,
        Confirm,
        CustomerReply,
        EmailSent,
        Escalate,
        EventKind,
        Locale,
        OpenCase,
        PersistCase,
        PrepareEscalation,
        Recipient,
        Reopen,
        Reply,
        RequestInfo,
        Resolve,
        UpdateContact,
        VianetResponse,
        VianetTicket,
        Withdraw,
    )
    from core.models.fapiao import FapiaoAction
    from core.models.messages import EmailDelivered, EmailUndelivered
    from workflows.base import ActionRefused, Alarm, EffectLoop, SendEmail, run, send
    from workflows.billing_case import views
    from workflows.billing_case.calls import OtherCases
    from workflows.billing_case.rules import (
        Case,
        CaseAction,
        DeliverResolution,
        Effect,
        PrepareRequest,
        ReportOutcome,
        SaveEscalation,
        Unflag,
    )
    from workflows.effects import WORKFLOW, Email, Flag, Record

# what the main loop carries out, in order
Step = SendEmail | DeliverResolution | PrepareRequest | SaveEscalation | ReportOutcome


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class BillingCaseWorkflow(EffectLoop[Step], OtherCases):
    @workflow.init
    def __init__(self, data: OpenCase) -> None:
        self._data = data
        self._start_log(data.carried.log if data.carried else None)
        self._preparing: set[int] = set()  # 21Vianet requests being rendered
        if data.carried is not None:
            self._case = Case.carried(data.carried)
        else:
            # opened here, before any handler of the first task: "opened" comes first
            self._case, opened = Case.open(data, workflow.now())
            self._apply(opened)

    def _continue_as_new(self) -> None:
        self._carry_on(self._data, self._case)

    @workflow.run
    async def run(self, data: OpenCase) -> CaseView:
        calendar = self._case.policy.calendar
        if data.carried is None and calendar is not None:
            self._calendar_alert(calendar, *(due.at for due in self._case.timers()))
        self._publish()
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return self._case.status.is_final

    # ------------------------------------------------------------------ the rules, applied

    def _check(self, action: CaseAction) -> None:
        """Every validator: the rules' refusal, if any, and nothing changes."""
        why = self._case.refusal(action, workflow.now())
        if why is not None:
            raise ActionRefused(why)

    def _take(self, action: CaseAction) -> CaseView:
        self._act(self._case.take(action, workflow.now()))
        return views.answer(self.view())

    def _act(self, effects: list[Effect]) -> None:
        self._apply(effects)
        self._publish()  # the UI shows it; the search attributes follow in the main loop

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Record():
                    self._record(effect.kind, effect.actor, effect.text, **effect.data)
                case Email():
                    self._effects.append(SendEmail(effect.data, effect.to))
                case Flag():
                    self._flag(effect.why, effect.reason)
                case Unflag():
                    self._unflag()
                case _:
                    self._effects.append(effect)

    # ------------------------------------------------------------------ updates

    @workflow.update
    def assign(self, data: Assign) -> CaseView:
        return self._take(data)

    @assign.validator
    def _check_assign(self, data: Assign) -> None:
        self._check(data)

    @workflow.update
    def note(self, data: AddNote) -> CaseView:
        return self._take(data)

    @note.validator
    def _check_note(self, data: AddNote) -> None:
        self._check(data)

    @workflow.update
    def update_contact(self, data: UpdateContact) -> CaseView:
        return self._take(data)

    @update_contact.validator
    def _check_update_contact(self, data: UpdateContact) -> None:
        self._check(data)

    @workflow.update
    def reply(self, data: Reply) -> CaseView:
        return self._take(data)

    @reply.validator
    def _check_reply(self, data: Reply) -> None:
        self._check(data)

    @workflow.update
    def request_info(self, data: RequestInfo) -> CaseView:
        return self._take(data)

    @request_info.validator
    def _check_request_info(self, data: RequestInfo) -> None:
        self._check(data)

    @workflow.update
    def customer_reply(self, data: CustomerReply) -> CaseView:
        return self._take(data)

    @customer_reply.validator
    def _check_customer_reply(self, data: CustomerReply) -> None:
        self._check(data)

    @workflow.update
    async def resolve(self, data: Resolve) -> CaseView:
        self._act(self._case.resolve(data, workflow.now()))
        # the answer says how it went (resolved, open after a bounce, resolving, waiting on finance)
        await workflow.wait_condition(
            lambda: (
                self._case.status is not CaseStatus.RESOLVING
                or self._stuck is not None
                or self._case.accepted_at is not None
            )
        )
        return views.answer(self.view())

    @resolve.validator
    def _check_resolve(self, data: Resolve) -> None:
        self._check(data)

    @workflow.update
    async def escalate(self, data: Escalate) -> CaseView:
        effects = self._case.escalate(data, workflow.now())
        number = len(self._case.escalations)  # rendered by the main loop, not this update
        self._preparing.add(number)
        self._act(effects)
        await workflow.wait_condition(
            lambda: number not in self._preparing or self._stuck is not None
        )
        return views.answer(self.view(), request=number)

    @escalate.validator
    def _check_escalate(self, data: Escalate) -> None:
        self._check(data)

    @workflow.update
    def vianet_ticket(self, data: VianetTicket) -> CaseView:
        return self._take(data)

    @vianet_ticket.validator
    def _check_vianet_ticket(self, data: VianetTicket) -> None:
        self._check(data)

    @workflow.update
    def vianet_response(self, data: VianetResponse) -> CaseView:
        return self._take(data)

    @vianet_response.validator
    def _check_vianet_response(self, data: VianetResponse) -> None:
        self._check(data)

    @workflow.update
    def fapiao(self, data: FapiaoAction) -> CaseView:
        return self._take(data)

    @fapiao.validator
    def _check_fapiao(self, data: FapiaoAction) -> None:
        self._check(data)

    @workflow.update
    def confirm(self, data: Confirm) -> CaseView:
        return self._take(data)

    @confirm.validator
    def _check_confirm(self, data: Confirm) -> None:
        self._check(data)

    @workflow.update
    def reopen(self, data: Reopen) -> CaseView:
        return self._take(data)

    @reopen.validator
    def _check_reopen(self, data: Reopen) -> None:
        self._check(data)

    @workflow.update
    def withdraw(self, data: Withdraw) -> CaseView:
        return self._take(data)

    @withdraw.validator
    def _check_withdraw(self, data: Withdraw) -> None:
        self._check(data)

    # ------------------------------------------------------------------ signals

    @workflow.signal
    def link_collections(self, collections_workflow_id: str) -> None:
        self._act(self._case.link_collections(collections_workflow_id, workflow.now()))

    @workflow.signal
    def email_undelivered(self, data: EmailUndelivered) -> None:
        self._act(self._case.email_undelivered(data, workflow.now()))

    @workflow.signal
    def email_delivered(self, data: EmailDelivered) -> None:
        self._act(self._case.email_delivered(data, workflow.now()))

    @workflow.query
    def view(self) -> CaseView:
        return views.case_view(
            self._case,
            needs_attention=self._attention_line(),
            attention=self._attention_reason(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    def _next_alarm(self) -> Alarm | None:
        if (due := self._case.next_due()) is None:
            return None
        return Alarm(
            due.at, due.label, lambda: self._act(self._case.fire(due.timer, workflow.now()))
        )

    # ------------------------------------------------------------------ effects

    async def _carry_out(self, effect: Step) -> None:
        match effect:
            case SendEmail():
                await self._deliver(effect)
            case DeliverResolution():
                sent = await self._deliver(SendEmail(effect.email.data, effect.email.to))
                self._act(self._case.resolution_sent(sent, workflow.now()))
            case PrepareRequest():
                try:
                    await self._prepare_request(effect.number)
                finally:  # done, or failed: the update that waits for it answers now
                    self._preparing.discard(effect.number)
            case SaveEscalation():
                saved = views.escalation(self._case, effect.number)
                summary = f"Save 21Vianet escalation #{effect.number}"
                await self._write(RECORD_ESCALATION, saved, summary)
            case ReportOutcome():
                await self._report(effect)

    async def _prepare_request(self, number: int) -> None:
        escalation = self._case.escalations[number - 1]
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
        self._act(self._case.request_prepared(number, request.title, request.body))

    async def _report(self, effect: ReportOutcome) -> None:
        try:
            await send(effect.workflow_id, DISPUTE_RESOLVED, effect.outcome)
            self._record(EventKind.NOTE, WORKFLOW, f"outcome reported to {effect.workflow_id}")
        except FailureError as err:  # collections already ended (paid, waived)
            self._record(EventKind.NOTE, WORKFLOW, f"{effect.workflow_id}: {err.message}")

    async def _deliver(self, email: SendEmail) -> bool:
        """Whether the email went out; a bounce is recorded and the owner told."""
        sent = await self._send(email)
        if isinstance(sent, ApplicationError):
            self._act(self._case.email_rejected(email.data, email.address, sent.message))
            return False
        return True

    async def _persist(self, events: list[CaseEvent]) -> None:
        view = views.answer(self.view())
        saved = PersistCase(record=views.record(self._case), events=events, view=view)
        summary = f"Save case: {self._case.status.value}, events {events[0].seq}-{events[-1].seq}"
        await self._write(PERSIST_CASE, saved, summary)

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), case=self.view())

    def _email_view(self, view: CaseView) -> CaseView:  # type: ignore[override]
        return views.email_view(view)

    def _send_locale(self) -> Locale:
        return self._case.details.customer.locale

    def _address(self, recipient: Recipient) -> str:
        return self._case.address(recipient)

    def _attributes(self) -> TypedSearchAttributes:
        return views.attributes(self._case)

    def _publish_details(self) -> None:
        workflow.set_current_details(views.details(self._case, self._attention_line()))

"""CollectionsWorkflow: the Temporal shell of one unpaid invoice's collections. Handlers validate,
ask the rules (rules.py), and carry out the effects they answer; timers, queries and search
attributes live here, what happens lives there."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes, VersioningBehavior
from temporalio.exceptions import ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from core import models as m
    from core import search
    from core.contracts import (
        CREDIT_KEPT,
        CREDIT_SETTLED,
        EMAIL_DELIVERED,
        EMAIL_UNDELIVERED,
        LINK_COLLECTIONS,
        NOTICE,
        PERSIST_COLLECTIONS,
        PLACE_HOLDS,
        RELEASE_HOLDS,
    )
    from core.ids import case_workflow_id, new_case_id
    from core.models import CollectionsView, Recipient, StartCollections
    from core.models.ledger import CreditApplication
    from workflows.base import ActionRefused, Alarm, EffectLoop, SendEmail, failure_reason, send
    from workflows.base import without_timeline as brief
    from workflows.collections import rules as r
    from workflows.collections.calls import TellAccount, start_account, start_dispute_case
    from workflows.effects import Flag, Record

# a customer email queued this soon after closing time still goes (a step due at 17:59)
SEND_GRACE = timedelta(minutes=15)
CollectionsEffect = SendEmail | r.StartDisputeCase | r.LinkCase | TellAccount


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class CollectionsWorkflow(EffectLoop[CollectionsEffect]):
    @workflow.init
    def __init__(self, data: StartCollections) -> None:
        self._data = data
        self._start_log(data.carried.log if data.carried else None)
        self._waiting: list[SendEmail] = []  # customer emails held for the next opening
        self._account_id: str | None = None  # the customer's account, once started
        # the first failure is taken here, before any handler: a later one comes after it
        self._rules, effects = r.Collections.open(data, workflow.now())
        self._apply(effects)

    @workflow.run
    async def run(self, data: StartCollections) -> CollectionsView:
        self._publish()
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return self._rules.status.is_final and not self._waiting

    def _continue_as_new(self) -> None:
        if self._waiting:  # the customer emails held for the opening go first: this run has them
            return
        self._carry_on(self._data, self._rules)

    def _apply(self, effects: list[r.Effect]) -> None:
        """What the rules answered: recorded and flagged now, the rest queued in order."""
        for effect in effects:
            match effect:
                case Record():
                    self._record(effect.kind, effect.actor, effect.text, **effect.data)
                case r.Letter():
                    self._queue_email(effect.data)
                case Flag():
                    self._flag(effect.why, effect.reason)
                case r.Unflag():
                    self._unflag()
                case r.CheckCalendar() if (calendar := self._rules.policy.calendar) is not None:
                    self._calendar_alert(calendar, effect.at)
                case r.HoldSubscriptions():
                    self._effects.append(TellAccount(PLACE_HOLDS, effect.holds))
                case r.ReleaseSubscriptions():
                    self._effects.append(TellAccount(RELEASE_HOLDS, self._release(effect)))
                case r.SendNotice():
                    view = brief(self.view()).model_dump()
                    notice = m.Notice.model_validate(
                        {"data": effect.data.model_dump(), "view": view}
                    )
                    self._effects.append(TellAccount(NOTICE, notice))
                case r.PassOn(event=m.EmailDelivered() as event):
                    self._effects.append(TellAccount(EMAIL_DELIVERED, event))
                case r.PassOn(event=m.EmailUndelivered() as event):
                    self._effects.append(TellAccount(EMAIL_UNDELIVERED, event))
                case r.KeepCredit():
                    self._effects.append(TellAccount(CREDIT_KEPT, effect.credit))
                case r.SettleCredit():
                    self._effects.append(TellAccount(CREDIT_SETTLED, effect.settled))
                case r.StartDisputeCase() | r.LinkCase():
                    self._effects.append(effect)
        self._publish()

    def _still_waiting(self) -> Flag | None:
        return self._rules.waiting_on_a_person()

    def _release(self, effect: r.ReleaseSubscriptions) -> m.ReleaseHolds:
        """A payment goes with the view, as it shows what the invoice held until now."""
        if effect.release.paid is None:
            return effect.release
        view = brief(self.view()).model_copy(update={"suspended_subscriptions": list(effect.held)})
        return effect.release.model_copy(update={"view": view})

    def _answer(self, effects: list[r.Effect]) -> CollectionsView:
        self._apply(effects)
        return brief(self.view())

    # ------------------------------------------------------------------ handlers

    @workflow.update
    def add_failure(self, failure: m.BillingFailure) -> CollectionsView:
        """A later failure of this invoice joins (the same failure id again changes nothing)."""
        return self._answer(self._rules.add_failure(failure, workflow.now()))

    @add_failure.validator
    def _check_failure(self, failure: m.BillingFailure) -> None:
        _refuse(self._rules.refuse_failure(failure))

    @workflow.update
    def payment_received(self, payment: m.PaymentReceived) -> CollectionsView:
        return self._answer(self._rules.pay(payment, workflow.now()))

    @payment_received.validator
    def _check_payment(self, payment: m.PaymentReceived) -> None:
        _refuse(self._rules.refuse_payment(payment))

    @workflow.update
    def open_dispute(self, data: m.OpenDispute) -> CollectionsView:
        case_id = data.case_id or new_case_id(workflow.now(), workflow.random())
        return self._answer(self._rules.open_dispute(data, case_id, workflow.now()))

    @open_dispute.validator
    def _check_dispute(self, data: m.OpenDispute) -> None:
        _refuse(self._rules.refuse_dispute(data))

    @workflow.update
    def resume(self, data: m.ResumePolicy) -> CollectionsView:
        return self._answer(self._rules.resume(data, workflow.now()))

    @resume.validator
    def _check_resume(self, data: m.ResumePolicy) -> None:
        _refuse(self._rules.refuse_resume(data))

    @workflow.update
    def report_fraud(self, data: m.ReportFraud) -> CollectionsView:
        return self._answer(self._rules.report_fraud(data, workflow.now()))

    @report_fraud.validator
    def _check_fraud(self, data: m.ReportFraud) -> None:
        _refuse(self._rules.refuse_fraud(data))

    @workflow.update
    def promise_to_pay(self, data: m.PromiseToPay) -> CollectionsView:
        return self._answer(self._rules.promise(data, workflow.now()))

    @promise_to_pay.validator
    def _check_promise(self, data: m.PromiseToPay) -> None:
        _refuse(self._rules.refuse_promise(data, workflow.now()))

    @workflow.update
    def waive(self, data: m.Waive) -> CollectionsView:
        return self._answer(self._rules.waive(data, workflow.now()))

    @waive.validator
    def _check_waive(self, data: m.Waive) -> None:
        _refuse(self._rules.refuse_waive(data))

    @workflow.update
    def correct_contact(self, data: m.CorrectContact) -> CollectionsView:
        return self._answer(self._rules.correct_contact(data, workflow.now()))

    @correct_contact.validator
    def _check_contact(self, data: m.CorrectContact) -> None:
        _refuse(self._rules.refuse_contact(data))

    @workflow.update
    def approve_suspension(self, data: m.DecideSuspension) -> CollectionsView:
        return self._answer(self._rules.approve(data, workflow.now()))

    @approve_suspension.validator
    def _check_approve(self, data: m.DecideSuspension) -> None:
        _refuse(self._rules.refuse_decision("approve"))

    @workflow.update
    def refuse_suspension(self, data: m.DecideSuspension) -> CollectionsView:
        return self._answer(self._rules.refuse(data, workflow.now()))

    @refuse_suspension.validator
    def _check_refuse(self, data: m.DecideSuspension) -> None:
        _refuse(self._rules.refuse_decision("refuse"))

    @workflow.update
    def triage_reply(self, data: m.TriageReply) -> CollectionsView:
        return self._answer(self._rules.triage_done(data))

    @triage_reply.validator
    def _check_triage(self, data: m.TriageReply) -> None:
        _refuse(self._rules.refuse_triage(data))

    @workflow.signal
    def dispute_resolved(self, outcome: m.DisputeOutcome) -> None:
        """From the linked BillingCaseWorkflow once its customer has been told the outcome."""
        self._apply(self._rules.dispute_resolved(outcome, workflow.now()))

    @workflow.signal
    def apply_credit(self, data: CreditApplication) -> None:
        """From the customer's account: finance applies their credit to this invoice."""
        self._apply(self._rules.take_credit(data, workflow.now()))

    @workflow.signal  # the customer answered a notice (service/inbound.py)
    def customer_replied(self, data: m.CollectionsReply) -> None:
        self._apply(self._rules.customer_replied(data, workflow.now()))

    @workflow.signal  # SendGrid: a notice bounced (or was dropped or blocked) after it took it
    def email_undelivered(self, data: m.EmailUndelivered) -> None:
        self._apply(self._rules.email_undelivered(data, workflow.now()))

    @workflow.signal  # SendGrid: a notice reached the customer's mailbox
    def email_delivered(self, data: m.EmailDelivered) -> None:
        self._apply(self._rules.email_delivered(data, workflow.now()))

    @workflow.signal
    def notice_outcome(self, data: m.NoticeOutcome) -> None:
        """From the customer's account: our notice went out, was delivered, or was not."""
        self._apply(self._rules.notice_outcome(data, workflow.now()))

    @workflow.query
    def view(self) -> CollectionsView:
        return self._rules.view(
            workflow_id=workflow.info().workflow_id,
            needs_attention=self._attention_line(),
            attention=self._attention_reason(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    # ------------------------------------------------------------------ the clock

    def _next_alarm(self) -> Alarm | None:
        due = self._rules.next_due()
        alarm = None if due is None else Alarm(due.at, due.label, lambda: self._fire(due))
        calendar = self._rules.policy.calendar
        if calendar is None or not self._waiting:
            return alarm
        opening = calendar.next_opening(workflow.now())
        if alarm is not None and alarm.at <= opening:
            return alarm
        return Alarm(opening, "Customer emails: business hours", self._release_emails)

    def _fire(self, due: r.Due) -> None:
        self._apply(self._rules.fire(due, workflow.now()))

    def _release_emails(self) -> None:
        self._effects.extend(self._waiting)
        self._waiting.clear()

    def _held_for_opening(self, email: SendEmail) -> bool:
        """A customer reads us in business hours: an email queued at night or on a holiday
        waits for the next opening, the effects after it do not; staff's go at once."""
        calendar = self._rules.policy.calendar
        if calendar is None or email.recipient is not Recipient.CUSTOMER:
            return False
        now = workflow.now()
        return calendar.next_opening(now - SEND_GRACE) > now

    # ------------------------------------------------------------------ what it shows

    def _address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.CUSTOMER:
                return str(self._rules.customer.email)
            case Recipient.MANAGER:
                return str(self._rules.policy.manager_email)
        raise ValueError(f"collections sends no email to {recipient.value}")

    def _attributes(self) -> TypedSearchAttributes:
        return search.collections_attributes(
            invoice_id=self._rules.invoice_id,
            tenant_id=self._rules.customer.tenant_id,
            stage=self._rules.stage,
            balance=self._rules.balance,
            suspended=bool(self._rules.held),
        )

    def _publish_details(self) -> None:
        workflow.set_current_details(self._rules.details(self._attention_line()))

    # ------------------------------------------------------------------ effects

    async def _carry_out(self, effect: CollectionsEffect) -> None:
        try:
            match effect:
                case SendEmail() if self._held_for_opening(effect):
                    self._waiting.append(effect)
                case SendEmail():
                    await self._send(effect)
                case TellAccount():
                    await self._tell_account(effect)
                case r.StartDisputeCase():
                    await start_dispute_case(effect.data)
                case r.LinkCase():
                    await send(case_workflow_id(effect.case_id), LINK_COLLECTIONS, self._id())
        except CancelledError:
            raise
        except FailureError as err:  # the case's id was taken, or no such case (any more)
            if not isinstance(effect, r.StartDisputeCase | r.LinkCase):
                raise
            case = effect.data.case_id if isinstance(effect, r.StartDisputeCase) else effect.case_id
            why = failure_reason(err)
            self._apply(self._rules.dispute_not_linked(case, why, workflow.now()))

    async def _tell_account(self, effect: TellAccount) -> None:
        if self._account_id is None:
            self._account_id = await start_account(self._rules)
        try:
            await send(self._account_id, effect.contract, effect.arg)
        except FailureError:
            self._account_id = None  # ended by hand? a retry starts it again
            raise

    def _id(self) -> str:
        return workflow.info().workflow_id

    def _send_locale(self) -> m.Locale:
        return self._rules.customer.locale

    async def _send(self, email: SendEmail) -> m.EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), collections=self.view())

    async def _persist(self, events: list[m.CaseEvent]) -> None:
        await self._write(
            PERSIST_COLLECTIONS,
            m.PersistCollections(view=brief(self.view()), events=events),
            f"Save collections: {self._rules.stage}, balance {self._rules.balance:,.2f}",
        )


def _refuse(why: str | None) -> None:
    """A validator's answer: a reason refuses the update, and nothing changes."""
    if why is not None:
        raise ActionRefused(why)

"""CollectionsWorkflow: one unpaid invoice, from the failed payment through the partner's
collections policy (notices, suspension through Partner Center, deletion warnings, hand-off) to
payment, credit, waiver or expiry.

Day 0 is when the failure reached us. Pauses (a dispute, a promise to pay) stop the policy's clock:
the remaining steps move later by the length of the pause, so nothing fires in a burst on resume.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from core import search
    from core.contracts import CHANGE_SUBSCRIPTION, PERSIST_COLLECTIONS
    from core.formatting import money
    from core.ids import account_workflow_id, case_workflow_id, dispute_case_id, new_case_id
    from core.models import (
        MONEY_MAX,
        Approval,
        BillingFailure,
        CaseDetails,
        CaseEvent,
        Category,
        ChangeSubscription,
        CollectionsAction,
        CollectionsReply,
        CollectionsState,
        CollectionsStatus,
        CollectionsStep,
        CollectionsView,
        CorrectContact,
        DayCount,
        DecideSuspension,
        DisputeOutcome,
        EmailData,
        EmailSent,
        EmailTemplate,
        EventKind,
        HandOverHolds,
        HoldReason,
        Locale,
        Notice,
        NoticeOutcome,
        NoticeState,
        OpenCase,
        OpenDispute,
        Outcome,
        PaymentReceived,
        PersistCollections,
        PlaceHolds,
        Priority,
        PromiseToPay,
        Recipient,
        ReleaseHolds,
        ReportFraud,
        ResumePolicy,
        StartAccount,
        StartCollections,
        StepAnchor,
        SubscriptionStatus,
        TriageReply,
        Waive,
        payment_failure,
    )
    from core.models.collections import MAX_REPORTS, ZERO
    from core.models.email import (
        CollectionsClosed,
        CollectionsDeletionWarning,
        CollectionsFinalNotice,
        CollectionsFraudSuspended,
        CollectionsPaymentFailed,
        CollectionsPaymentReceived,
        CollectionsPromiseAccepted,
        CollectionsReactivated,
        CollectionsReminder,
        CollectionsSuspended,
        EmailDelivered,
        EmailUndelivered,
        ManagerCollectionsHandOff,
        ManagerFraudReported,
        ManagerNeedsAttention,
        ManagerPartnerCenterError,
    )
    from core.ui import case_details, case_summary
    from workflows.account import AccountWorkflow
    from workflows.base import (
        ACCOUNT_HOLDS,
        BUSINESS_CALENDAR,
        EMAIL_EVENTS,
        FIRST_FAILURE_FIRST,
        HAND_OVER,
        SUSPENSION_RULES,
        WORKFLOW,
        ActionRefused,
        Alarm,
        EffectLoop,
        SendEmail,
        business_error,
        failure_reason,
        run,
        without_timeline,
    )
    from workflows.billing_case import BillingCaseWorkflow

UPHELD = (Outcome.CHARGE_UPHELD, Outcome.EXPLAINED)
# the notices the customer's account sends, one email a kind a day for all their invoices
CONSOLIDATED = frozenset(
    {
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED,
        EmailTemplate.COLLECTIONS_REMINDER,
        EmailTemplate.COLLECTIONS_FINAL_NOTICE,
    }
)
# a customer email queued this soon after closing time still goes (a step due at 17:59)
SEND_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class ChangeSubscriptions:
    """Effect: change every subscription to `status` (suspend, or reactivate what we suspended)."""

    status: SubscriptionStatus
    reason: str


@dataclass(frozen=True)
class StartDisputeCase:
    """Effect: open the case that works the customer's dispute (a child that outlives us)."""

    data: OpenCase


@dataclass(frozen=True)
class LinkCase:
    """Effect: tell an existing case that it disputes this invoice."""

    case_workflow_id: str


@dataclass(frozen=True)
class TellAccount:
    """Effect: place or release holds, or hand a notice over, through the customer's account
    (started if need be)."""

    signal: str
    arg: PlaceHolds | ReleaseHolds | Notice | EmailDelivered | EmailUndelivered


CollectionsEffect = SendEmail | ChangeSubscriptions | StartDisputeCase | LinkCase | TellAccount


@workflow.defn
class CollectionsWorkflow(EffectLoop[CollectionsEffect]):
    @workflow.init
    def __init__(self, data: StartCollections) -> None:
        self._data = data
        self._start_log(data.carried.log if data.carried else None)
        self._policy = data.policy
        self._case_policy = data.case_policy
        calendar = data.policy.calendar  # steps and customer emails on working days, in hours
        self._calendar = calendar if calendar and workflow.patched(BUSINESS_CALENDAR) else None
        self._waiting: list[SendEmail] = []  # customer emails held for the next opening
        failure = data.failure
        self._invoice_id = failure.invoice_id
        self._customer = failure.customer
        self._currency = failure.currency
        self._subscriptions = list(dict.fromkeys(failure.subscription_ids))
        self._amount_due = failure.amount_due
        self._paid = ZERO
        self._credited = ZERO
        self._payments: set[str] = set()
        self._failures: list[str] = []
        self._reason = failure.reason
        self._status = CollectionsStatus.ACTIVE
        self._stage = "opened"
        self._started_at = workflow.now()
        self._done: set[str] = set()
        self._offset = timedelta(0)  # total paused time: the policy's clock stood still
        self._paused_at: datetime | None = None
        self._promised_until: datetime | None = None
        self._suspended: list[str] = []
        self._suspended_at: datetime | None = None
        self._offset_at_suspension = timedelta(0)
        self._fraud = False
        self._linked_case: str | None = None
        self._disputes = 0
        self._handed_off_at: datetime | None = None
        # the suspension waits for a person (a reply to triage, a notice that bounced): until
        self._hold: str | None = None
        self._hold_until: datetime | None = None  # None: until a person acts
        # the suspension rules (approval, delivery of the final notice): asked by the main loop
        self._rules = False
        self._asked_at: datetime | None = None  # a manager was asked to approve the suspension
        self._reminders = 0
        self._notice: NoticeState | None = None  # the final notice
        self._notice_at: datetime | None = None
        self._handed_over = False  # what this invoice suspended is held through the account
        self._account_started = False
        self._first_taken = False  # the failure that started the first run (run() takes it)
        if data.carried is not None:
            self._restore(data.carried)

    def _restore(self, state: CollectionsState) -> None:
        """Go on where the run before this one stopped (it continued as new)."""
        self._customer, self._currency = state.customer, state.currency
        self._subscriptions = list(state.subscription_ids)
        self._amount_due, self._paid, self._credited = state.amount_due, state.paid, state.credited
        self._payments, self._failures = set(state.payments), list(state.failures)
        self._reason, self._status, self._stage = state.reason, state.status, state.stage
        self._started_at, self._done = state.started_at, set(state.steps_done)
        self._offset, self._paused_at = state.offset, state.paused_at
        self._promised_until = state.promised_until
        self._suspended, self._suspended_at = list(state.suspended), state.suspended_at
        self._offset_at_suspension, self._fraud = state.offset_at_suspension, state.fraud
        self._linked_case, self._disputes = state.linked_case, state.disputes
        self._handed_off_at = state.handed_off_at
        self._hold, self._hold_until = state.hold, state.hold_until
        self._asked_at, self._reminders = state.approval_asked_at, state.approval_reminders
        self._notice, self._notice_at = state.notice, state.notice_at
        self._handed_over = state.handed_over

    def _continue_as_new(self) -> None:
        if self._waiting:  # the customer emails held for the opening go first: this run has them
            return
        state = CollectionsState(
            customer=self._customer,
            currency=self._currency,
            subscription_ids=self._subscriptions,
            amount_due=self._amount_due,
            paid=self._paid,
            credited=self._credited,
            payments=sorted(self._payments),
            failures=self._failures,
            reason=self._reason,
            status=self._status,
            stage=self._stage,
            started_at=self._started_at,
            steps_done=sorted(self._done),
            offset=self._offset,
            paused_at=self._paused_at,
            promised_until=self._promised_until,
            suspended=self._suspended,
            suspended_at=self._suspended_at,
            offset_at_suspension=self._offset_at_suspension,
            fraud=self._fraud,
            linked_case=self._linked_case,
            disputes=self._disputes,
            handed_off_at=self._handed_off_at,
            hold=self._hold,
            hold_until=self._hold_until,
            approval_asked_at=self._asked_at,
            approval_reminders=self._reminders,
            notice=self._notice,
            notice_at=self._notice_at,
            handed_over=self._handed_over,
            log=self._log_state(),
        )
        workflow.continue_as_new(self._data.model_copy(update={"carried": state}))

    @workflow.run
    async def run(self, data: StartCollections) -> CollectionsView:
        if data.carried is None:  # the first run: its failure is the first
            self._take_first_failure()
            self._publish()
            self._alert_calendar()
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return self._status.is_final and not self._waiting

    # ------------------------------------------------------------------ the billing system

    @workflow.update
    def add_failure(self, failure: BillingFailure) -> CollectionsView:
        """A later failure of this invoice joins (the same failure id again changes nothing)."""
        self._first_failure_first()
        self._take_failure(failure)
        self._publish()
        return without_timeline(self.view())

    @add_failure.validator
    def _check_failure(self, failure: BillingFailure) -> None:
        self._refuse_if_final("add a billing failure to")
        if failure.failure_id not in self._failures and len(self._failures) >= MAX_REPORTS:
            raise ActionRefused(
                f"invoice {self._invoice_id} has taken {MAX_REPORTS} failures: ask a manager"
            )
        for field, theirs, ours in (
            ("invoice_id", failure.invoice_id, self._invoice_id),
            ("customer.tenant_id", failure.customer.tenant_id, self._customer.tenant_id),
            ("currency", failure.currency, self._currency),
        ):
            if theirs != ours:
                raise ActionRefused(
                    f"{field}: the failure has {theirs}, invoice {self._invoice_id} in "
                    f"collections has {ours}"
                )

    @workflow.signal
    def billing_failed(self, failure: BillingFailure) -> None:
        """How failures arrived before `add_failure` (signal-with-start); kept for the workflows
        started so: the first started us, repeats join."""
        if failure.invoice_id == self._invoice_id and not self._status.is_final:
            self._first_failure_first()
            self._take_failure(failure)

    def _first_failure_first(self) -> None:
        """A later failure that reaches a busy worker in the same task as the start is handled
        before the run method begins: the failure that started the workflow is taken first."""
        first_run = self._data.carried is None
        if not self._first_taken and first_run and workflow.patched(FIRST_FAILURE_FIRST):
            self._take_first_failure()

    def _take_first_failure(self) -> None:
        if self._first_taken:
            return
        self._first_taken = True
        self._take_failure(self._data.failure)
        if self._data.overridden:
            self._record(EventKind.POLICY_OVERRIDDEN, WORKFLOW, self._data.overridden)

    def _take_failure(self, failure: BillingFailure) -> None:
        if failure.failure_id in self._failures:
            return  # the same report twice (a re-run import, a retried webhook)
        self._failures.append(failure.failure_id)
        self._reason = failure.reason
        self._amount_due = max(self._amount_due, failure.amount_due)
        self._subscriptions = list(dict.fromkeys([*self._subscriptions, *failure.subscription_ids]))
        self._record(
            EventKind.BILLING_FAILED,
            "billing-system",
            failure.reason,
            failure_id=failure.failure_id,
            amount_due=str(failure.amount_due),
        )

    @workflow.update
    def payment_received(self, payment: PaymentReceived) -> CollectionsView:
        if payment.payment_id in self._payments:
            return without_timeline(self.view())  # already counted
        self._payments.add(payment.payment_id)
        self._paid += payment.amount
        self._record(
            EventKind.PAYMENT_RECEIVED,
            payment.by,
            f"payment {payment.payment_id}",
            amount=str(payment.amount),
            balance=str(self._balance),
        )
        if self._balance > 0:
            self._queue_email(CollectionsPaymentReceived(amount=payment.amount))
        else:
            self._settle(CollectionsStatus.PAID, "paid in full", amount=payment.amount)
        self._publish()
        return without_timeline(self.view())

    @payment_received.validator
    def _check_payment(self, payment: PaymentReceived) -> None:
        self._refuse_if_final("record a payment on")
        if payment.invoice_id != self._invoice_id:
            raise ActionRefused(
                f"invoice_id: payment is for {payment.invoice_id}, this is {self._invoice_id}"
            )
        if payment.currency != self._currency:
            raise ActionRefused(
                f"currency: payment in {payment.currency}, invoice in {self._currency}"
            )
        if payment.payment_id in self._payments:
            return  # already counted: answered, changes nothing
        if len(self._payments) >= MAX_REPORTS:
            raise ActionRefused(
                f"invoice {self._invoice_id} has taken {MAX_REPORTS} payments: ask a manager"
            )
        if self._paid + payment.amount > MONEY_MAX:
            raise ActionRefused(
                f"amount: the payments of invoice {self._invoice_id} would total more than "
                f"{MONEY_MAX}"
            )

    # ------------------------------------------------------------------ agents and managers

    @workflow.update
    def open_dispute(self, data: OpenDispute) -> CollectionsView:
        self._pause(CollectionsStatus.PAUSED_DISPUTE)
        if data.case_id:
            self._linked_case = data.case_id
            self._effects.append(LinkCase(case_workflow_id(data.case_id)))
        else:
            self._disputes += 1
            if self._current:  # no id a person could have taken
                self._linked_case = new_case_id(workflow.now(), workflow.random())
            else:
                self._linked_case = dispute_case_id(self._invoice_id, self._disputes)
            self._effects.append(StartDisputeCase(self._dispute_case(data, self._linked_case)))
        self._record(EventKind.DISPUTE_OPENED, data.by, data.description, case_id=self._linked_case)
        self._publish()
        return without_timeline(self.view())

    @open_dispute.validator
    def _check_dispute(self, data: OpenDispute) -> None:
        self._refuse_if_final("open a dispute on")
        if self._status is CollectionsStatus.PAUSED_DISPUTE:
            raise ActionRefused(
                f"invoice {self._invoice_id} is already disputed in case {self._linked_case}"
            )
        if data.disputed_amount is not None and data.disputed_amount > self._balance:
            raise ActionRefused(
                f"disputed_amount {data.disputed_amount} exceeds the balance {self._balance}"
            )

    @workflow.signal
    def dispute_resolved(self, outcome: DisputeOutcome) -> None:
        """From the linked BillingCaseWorkflow once its customer has been told the outcome."""
        if self._status.is_final or outcome.case_id != self._linked_case:
            return
        problem = outcome.problem(self._customer.tenant_id, self._currency)
        if problem is not None:  # checked here: a signal cannot be refused before it lands
            self._record(EventKind.DISPUTE_REFUSED, WORKFLOW, problem, case_id=outcome.case_id)
            self._flag(
                f"the outcome of dispute case {outcome.case_id} was refused ({problem}): the "
                "policy stays paused; resume it (resume --reason) or waive the invoice"
            )
            self._publish()
            return
        credit = outcome.credit_amount or ZERO
        if outcome.outcome not in UPHELD and credit > 0:
            self._credited += min(credit, self._balance)
        label = outcome.outcome.value if outcome.outcome else "withdrawn"
        self._record(
            EventKind.DISPUTE_RESOLVED,
            WORKFLOW,
            f"case {outcome.case_id}: {label}",
            credited=str(credit),
            balance=str(self._balance),
        )
        if self._balance <= 0:
            self._settle(CollectionsStatus.CREDITED, "credited in full")
        elif self._status is CollectionsStatus.PAUSED_DISPUTE:
            self._resume(f"dispute {outcome.case_id} ended: {label}")
        self._publish()

    @workflow.update
    def resume(self, data: ResumePolicy) -> CollectionsView:
        self._resume(f"resumed by {data.by}: {data.reason}")
        self._publish()
        return without_timeline(self.view())

    @resume.validator
    def _check_resume(self, data: ResumePolicy) -> None:
        self._refuse_if_final("resume")
        if self._status not in (CollectionsStatus.PAUSED_DISPUTE, CollectionsStatus.PAUSED_PROMISE):
            raise ActionRefused(
                f"invoice {self._invoice_id} is {self._status.value}: only a paused policy resumes"
            )

    @workflow.update
    def report_fraud(self, data: ReportFraud) -> CollectionsView:
        self._fraud = True
        self._record(EventKind.FRAUD_REPORTED, data.by, data.reason)
        self._queue_email(ManagerFraudReported(reason=data.reason, by=data.by))
        if self._handed_over or workflow.patched(ACCOUNT_HOLDS):
            # a fraud hold of its own, even on what non-payment holds already: paying the
            # invoice does not lift it, only a manager does (lift-fraud on the account)
            self._hand_over()
            self._hold_through_account(HoldReason.FRAUD, data.by)
            if self._suspended_at is None:
                self._suspended_now()
                self._queue_email(CollectionsFraudSuspended())
        elif self._suspended_at is None:
            self._suspend(CollectionsFraudSuspended())
        self._publish()
        return without_timeline(self.view())

    @report_fraud.validator
    def _check_fraud(self, data: ReportFraud) -> None:
        self._refuse_if_final("report fraud on")
        if self._fraud:
            raise ActionRefused(f"fraud is already reported on invoice {self._invoice_id}")

    @workflow.update
    def promise_to_pay(self, data: PromiseToPay) -> CollectionsView:
        self._promised_until = data.until
        self._pause(CollectionsStatus.PAUSED_PROMISE)
        self._record(EventKind.PROMISE_TO_PAY, data.by, f"until {data.until.isoformat()}")
        self._queue_email(CollectionsPromiseAccepted())
        self._publish()
        return without_timeline(self.view())

    @promise_to_pay.validator
    def _check_promise(self, data: PromiseToPay) -> None:
        self._refuse_if_final("record a promise to pay on")
        if self._status is not CollectionsStatus.ACTIVE:
            raise ActionRefused(f"invoice {self._invoice_id} is {self._status.value}")
        now = workflow.now()
        if data.until.tzinfo is None:
            raise ActionRefused("until: must include a timezone")
        if not now < data.until <= now + self._policy.promise_max:
            raise ActionRefused(f"until: must be in the next {self._policy.promise_max.days} days")

    @workflow.update
    def waive(self, data: Waive) -> CollectionsView:
        self._record(EventKind.WAIVED, data.by, data.reason)
        self._settle(CollectionsStatus.WAIVED, f"waived: {data.reason}")
        self._publish()
        return without_timeline(self.view())

    @waive.validator
    def _check_waive(self, data: Waive) -> None:
        self._refuse_if_final("waive")

    @workflow.signal
    def customer_replied(self, data: CollectionsReply) -> None:
        """The customer answered a notice: recorded, a person told, and the suspension waits
        for their triage (a dispute, a promise to pay, or no action) for the policy's time."""
        if not workflow.patched(EMAIL_EVENTS) or self._status.is_final:
            return
        self._record(EventKind.CUSTOMER_REPLIED, data.by, data.text)
        if self._suspended_at is None and self._hold is None:
            self._hold = "customer replied"
            self._hold_until = workflow.now() + self._policy.reply_triage_wait
        self._flag("the customer replied to a notice: triage it (dispute, promise or no action)")
        self._publish()

    @workflow.signal
    def email_undelivered(self, data: EmailUndelivered) -> None:
        """A notice bounced (or was dropped or blocked) after the provider took it: no
        suspension follows until a person confirms the contact."""
        if not workflow.patched(EMAIL_EVENTS) or self._status.is_final:
            return
        if self._from_account(data.key, "email_undelivered", data):
            return
        self._record(EventKind.NOTE, WORKFLOW, f"{data.template} was not delivered ({data.event})")
        if self._suspended_at is None:
            self._hold, self._hold_until = "notice undelivered", None
        self._flag("a notice was not delivered: confirm the customer's contact")
        self._publish()

    @workflow.signal
    def email_delivered(self, data: EmailDelivered) -> None:
        """The final notice reached the customer's mailbox (SendGrid's Event Webhook): the
        suspension may follow when it falls due."""
        if not self._rules or self._status.is_final:
            return
        self._from_account(data.key, "email_delivered", data)

    def _from_account(self, key: str, signal: str, data: EmailDelivered | EmailUndelivered) -> bool:
        """An event of a notice the customer's account sent (the email names this invoice
        first; others may be in it too): the account tells each of them (`notice_outcome`)."""
        if not self._rules or not key.startswith(account_workflow_id(self._customer.tenant_id)):
            return False
        self._effects.append(TellAccount(signal, data))
        self._publish()
        return True

    @workflow.signal
    def notice_outcome(self, data: NoticeOutcome) -> None:
        """From the customer's account: our notice went out (in its email), was delivered, or
        was not."""
        if not self._rules or self._status.is_final:
            return
        if data.template != EmailTemplate.COLLECTIONS_FINAL_NOTICE.value:
            if data.state is NoticeState.UNDELIVERED and self._suspended_at is None:
                self._hold, self._hold_until = "notice undelivered", None
                self._flag("a notice was not delivered: confirm the customer's contact")
                self._publish()
            return
        if data.state is NoticeState.SENT:
            if self._notice is None:
                self._notice, self._notice_at = NoticeState.SENT, workflow.now()
        elif data.state is NoticeState.DELIVERED:
            if self._notice is not NoticeState.DELIVERED:
                self._notice = NoticeState.DELIVERED
                self._record(EventKind.NOTICE_DELIVERED, WORKFLOW, data.template)
        else:
            self._notice = NoticeState.UNDELIVERED
            if self._suspended_at is None:
                self._hold, self._hold_until = "notice undelivered", None
            self._flag(
                "the final notice was not delivered: correct the contact (collections-contact) "
                "or confirm it (triage --decision contact-confirmed)"
            )
        self._publish()

    @workflow.signal
    def hand_over_holds(self, data: HandOverHolds | None = None) -> None:
        """After an upgrade: what this invoice suspended itself is held through its account
        from now on (`starter.py accounts hand-over` sends this to every such invoice). Sent
        without an argument, as the release before accounts did, it is refused (its sender is
        unknown: workflows/sealed.py); a recorded one replays."""
        if self._status.is_final or not self._suspended or self._handed_over:
            return
        if workflow.patched(HAND_OVER):
            self._hand_over()
            self._publish()

    @workflow.update
    def correct_contact(self, data: CorrectContact) -> CollectionsView:
        self._customer = self._customer.model_copy(update={"email": data.email})
        self._record(EventKind.CONTACT_CORRECTED, data.by, f"notices go to {data.email}")
        if self._hold == "notice undelivered":
            self._hold = self._hold_until = None
            self._unflag()
        if self._notice is NoticeState.UNDELIVERED:  # the final notice again, to the new address
            self._notice = None
            if (notice := self._step_email(EmailTemplate.COLLECTIONS_FINAL_NOTICE)) is not None:
                self._notify(notice)
        self._publish()
        return without_timeline(self.view())

    @correct_contact.validator
    def _check_contact(self, data: CorrectContact) -> None:
        self._refuse_if_final("correct the contact of")
        if str(data.email).lower() == str(self._customer.email).lower():
            raise ActionRefused(f"email: notices of invoice {self._invoice_id} go there already")

    @workflow.update
    def approve_suspension(self, data: DecideSuspension) -> CollectionsView:
        self._asked_at = None
        self._record(EventKind.SUSPENSION_APPROVED, data.by, data.reason)
        self._unflag()
        step = self._suspend_step()
        self._suspend((self._step_email(step.email) if step else None) or CollectionsSuspended())
        self._publish()
        return without_timeline(self.view())

    @workflow.update
    def refuse_suspension(self, data: DecideSuspension) -> CollectionsView:
        self._asked_at = None
        self._record(EventKind.SUSPENSION_REFUSED, data.by, data.reason)
        self._unflag()
        self._hand_off(None)  # no suspension: a manager takes the invoice over now
        self._publish()
        return without_timeline(self.view())

    @approve_suspension.validator
    def _check_approve(self, data: DecideSuspension) -> None:
        self._check_decision("approve")

    @refuse_suspension.validator
    def _check_refuse(self, data: DecideSuspension) -> None:
        self._check_decision("refuse")

    def _check_decision(self, verb: str) -> None:
        self._refuse_if_final(f"{verb} the suspension of")
        if self._asked_at is None:
            raise ActionRefused(
                f"invoice {self._invoice_id}: no suspension waits for a manager's approval"
            )
        if self._status is not CollectionsStatus.ACTIVE:
            raise ActionRefused(
                f"invoice {self._invoice_id} is {self._status.value}: the suspension waits "
                "until the policy runs again"
            )

    @workflow.update
    def triage_reply(self, data: TriageReply) -> CollectionsView:
        self._record(EventKind.NOTE, data.by, f"triage: {data.decision} ({self._hold})")
        if data.decision == "contact-confirmed" and self._notice is NoticeState.UNDELIVERED:
            self._notice = NoticeState.DELIVERED  # a person confirmed the contact
        self._hold = self._hold_until = None
        self._unflag()
        self._publish()
        return without_timeline(self.view())

    @triage_reply.validator
    def _check_triage(self, data: TriageReply) -> None:
        self._refuse_if_final("triage")
        if self._hold is None:
            raise ActionRefused(f"invoice {self._invoice_id}: nothing waits for triage")

    @workflow.query
    def view(self) -> CollectionsView:
        step = self._next_step()
        return CollectionsView(
            invoice_id=self._invoice_id,
            workflow_id=workflow.info().workflow_id,
            status=self._status,
            stage=self._stage,
            customer=self._customer,
            subscription_ids=self._subscriptions,
            currency=self._currency,
            amount_due=self._amount_due,
            paid=self._paid,
            credited=self._credited,
            balance=self._balance,
            first_failed_at=self._started_at,
            failures=list(self._failures),
            next_step=step[1].name if step and self._status is CollectionsStatus.ACTIVE else None,
            next_step_at=step[0] if step and self._status is CollectionsStatus.ACTIVE else None,
            suspended_subscriptions=list(self._suspended),
            suspended_at=self._suspended_at,
            data_deletion_at=self._deletion_at,
            fraud=self._fraud,
            linked_case_id=self._linked_case,
            promised_until=self._promised_until,
            approval_asked_at=self._asked_at,
            final_notice=self._notice,
            needs_attention=self._attention_line(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    # ------------------------------------------------------------------ the policy

    @property
    def _balance(self) -> Decimal:
        return max(self._amount_due - self._paid - self._credited, ZERO)

    @property
    def _deletion_at(self) -> datetime | None:
        if self._suspended_at is None or not self._suspended:
            return None
        return self._suspended_at + self._policy.data_deletion_after

    def _due(self, step: CollectionsStep) -> datetime | None:
        """Its day after its anchor, moved later by the pauses; with a calendar on a working day
        in opening hours (its days counted as working days, or as days and then the next
        opening)."""
        if step.after is StepAnchor.FAILURE:
            anchor = self._started_at + self._offset
        elif self._suspended_at is None:
            return None
        else:
            anchor = self._suspended_at + (self._offset - self._offset_at_suspension)
        if self._calendar is None:
            return anchor + timedelta(days=step.day)
        if self._policy.counts(step) is DayCount.BUSINESS:
            return self._calendar.add_business_days(anchor, step.day)
        return self._calendar.next_opening(anchor + timedelta(days=step.day))

    def _next_step(self) -> tuple[datetime, CollectionsStep] | None:
        pending = [
            (due, step)
            for step in self._policy.steps
            if step.name not in self._done and (due := self._held(step)) is not None
        ]
        return min(pending, key=lambda p: p[0]) if pending else None

    def _held(self, step: CollectionsStep) -> datetime | None:
        """When the step is due, a held suspension waiting for its person (or its time), or
        (since the suspension rules) for the final notice to be delivered."""
        due = self._due(step)
        if due is None or step.action is not CollectionsAction.SUSPEND:
            return due
        if self._rules and self._gives_final_notice():
            match self._notice:
                case None | NoticeState.UNDELIVERED:
                    return None  # not sent yet, or a person must look first
                case NoticeState.SENT if self._case_policy.told_when_delivered:
                    # no delivery event: delivered once the provider's bounce window passed
                    assert self._notice_at is not None
                    due = max(due, self._notice_at + self._case_policy.no_bounce_window)
        if self._hold is None:
            return due
        if self._hold_until is None:
            return None
        held = max(due, self._hold_until)
        return held if self._calendar is None else self._calendar.next_opening(held)

    def _alert_calendar(self) -> None:
        """The next step falls in a year the calendar does not cover: a manager is told."""
        if self._calendar is not None and (step := self._next_step()) is not None:
            self._calendar_alert(self._calendar, step[0])

    def _gives_final_notice(self) -> bool:
        return any(s.email is EmailTemplate.COLLECTIONS_FINAL_NOTICE for s in self._policy.steps)

    def _suspend_step(self) -> CollectionsStep | None:
        return next((s for s in self._policy.steps if s.action is CollectionsAction.SUSPEND), None)

    def _next_alarm(self) -> Alarm | None:
        self._rules = workflow.patched(SUSPENSION_RULES)  # once a run: the first answer holds
        alarm = self._policy_alarm()
        if self._calendar is None or not self._waiting:
            return alarm
        opening = self._calendar.next_opening(workflow.now())
        if alarm is not None and alarm.at <= opening:
            return alarm
        return Alarm(opening, "Customer emails: business hours", self._release_emails)

    def _release_emails(self) -> None:
        self._effects.extend(self._waiting)
        self._waiting.clear()

    def _policy_alarm(self) -> Alarm | None:
        if self._status is CollectionsStatus.PAUSED_PROMISE and self._promised_until:
            return Alarm(self._promised_until, "Promise to pay: due", self._promise_lapsed)
        if self._status is CollectionsStatus.HANDED_OFF and self._handed_off_at:
            at = self._handed_off_at + self._policy.close_after_hand_off
            return Alarm(at, "Hand-off: close", self._expire)
        step = self._next_step() if self._status is CollectionsStatus.ACTIVE else None
        remind = self._approval_reminder()
        if remind is not None and (step is None or remind <= step[0]):
            return Alarm(remind, "Suspension: remind the manager", self._remind_manager)
        if step is None:
            return None
        return Alarm(step[0], f"Collections: {step[1].name}", lambda: self._take_step(step[1]))

    def _approval_reminder(self) -> datetime | None:
        if self._asked_at is None or self._status is not CollectionsStatus.ACTIVE:
            return None
        if self._reminders >= self._policy.approval_reminders_max:
            return None
        return self._asked_at + self._policy.approval_reminder_every * (self._reminders + 1)

    def _remind_manager(self) -> None:
        self._reminders += 1
        self._record(
            EventKind.REMINDER, WORKFLOW, f"suspension approval, reminder {self._reminders}"
        )
        self._queue_email(ManagerNeedsAttention(step=self._approval_question(), error=""))
        self._publish()

    def _approval_question(self) -> str:
        return (
            f"invoice {self._invoice_id} is due for suspension: approve it "
            "(approve-suspension --reason) or refuse it (refuse-suspension --reason)"
        )

    def _take_step(self, step: CollectionsStep) -> None:
        self._done.add(step.name)
        self._stage = step.name
        self._record(EventKind.POLICY_STEP, WORKFLOW, step.name)
        if step.action is CollectionsAction.SUSPEND:
            if self._suspended_at is not None:
                pass  # fraud suspended already
            elif self._rules and step.approval is Approval.MANAGER:
                self._asked_at, self._reminders = workflow.now(), 0
                self._stage = "awaiting-approval"
                self._record(EventKind.SUSPENSION_ASKED, WORKFLOW, "a manager decides")
                self._flag(self._approval_question())
            else:
                self._suspend(self._step_email(step.email) or CollectionsSuspended())
        elif step.action is CollectionsAction.HAND_OFF:
            self._hand_off(self._step_email(step.email))
        elif step.email is not None and (data := self._step_email(step.email)) is not None:
            self._notify(data)
        self._publish()
        self._alert_calendar()

    def _step_email(self, template: EmailTemplate | None) -> EmailData | None:
        """A policy step's email, filled in from the state; None when it has nothing to say."""
        match template:
            case EmailTemplate.COLLECTIONS_PAYMENT_FAILED:
                return CollectionsPaymentFailed(failure=payment_failure(self._reason))
            case EmailTemplate.COLLECTIONS_REMINDER:
                return CollectionsReminder()
            case EmailTemplate.COLLECTIONS_SUSPENDED:
                return CollectionsSuspended()
            case EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF:
                return ManagerCollectionsHandOff()
            case EmailTemplate.COLLECTIONS_FINAL_NOTICE:
                suspension = next(
                    (s for s in self._policy.steps if s.action is CollectionsAction.SUSPEND), None
                )
                due = self._due(suspension) if suspension else None
                if due is None or self._suspended_at is not None:
                    return None  # nothing (more) will be suspended: no final notice to give
                return CollectionsFinalNotice(suspension_date=due)
            case EmailTemplate.COLLECTIONS_DELETION_WARNING:
                deletion = self._deletion_at
                if deletion is None or deletion <= workflow.now():
                    return None
                return CollectionsDeletionWarning(days_left=(deletion - workflow.now()).days)
        return None  # no step sends anything else (the policy refuses it when it loads)

    def _suspend(self, notice: EmailData) -> None:
        if workflow.patched(ACCOUNT_HOLDS):  # held through the account, its only writer
            self._hand_over()
            reason = HoldReason.FRAUD if self._fraud else HoldReason.NON_PAYMENT
            self._hold_through_account(reason, WORKFLOW)
            self._suspended_now()
            self._queue_email(notice)
            return
        self._suspended_now()
        why = "fraud or misuse" if self._fraud else "non-payment"
        self._effects.append(ChangeSubscriptions(SubscriptionStatus.SUSPENDED, why))
        self._queue_email(notice)

    def _notify(self, data: EmailData) -> None:
        """A policy notice. Since the suspension rules the customer's account sends it, with
        their other invoices' notices of the same kind (one conversation: never two of a kind
        the same day), and tells us what became of it (`notice_outcome`)."""
        if self._rules and data.template in CONSOLIDATED:  # type: ignore[attr-defined]
            notice = Notice.model_validate(
                {"data": data.model_dump(), "view": without_timeline(self.view()).model_dump()}
            )
            self._effects.append(TellAccount("notice", notice))
        else:
            self._queue_email(data)

    def _suspended_now(self) -> None:
        self._suspended_at = workflow.now()
        self._offset_at_suspension = self._offset
        self._done.update(
            s.name for s in self._policy.steps if s.action is CollectionsAction.SUSPEND
        )

    def _hold_through_account(self, reason: HoldReason, by: str) -> None:
        self._handed_over = True
        self._suspended = list(self._subscriptions)  # what this invoice holds
        self._place_holds(reason, self._subscriptions, by)

    def _place_holds(self, reason: HoldReason, subscription_ids: list[str], by: str) -> None:
        holds = PlaceHolds(
            invoice_id=self._invoice_id,
            reason=reason,
            subscription_ids=list(subscription_ids),
            customer=self._customer,
            by=by,
        )
        self._effects.append(TellAccount("place_holds", holds))

    def _hand_over(self) -> None:
        """What a run from before the account suspended itself becomes the account's holds."""
        if self._handed_over:
            return
        self._handed_over = True
        if self._suspended:
            self._record(EventKind.NOTE, WORKFLOW, "suspensions handed over to the account")
            reason = HoldReason.FRAUD if self._fraud else HoldReason.NON_PAYMENT
            self._place_holds(reason, self._suspended, WORKFLOW)

    def _hand_off(self, notice: EmailData | None) -> None:
        self._status = CollectionsStatus.HANDED_OFF
        self._handed_off_at = workflow.now()
        self._record(EventKind.HANDED_OFF, WORKFLOW, "a manager takes the account over")
        self._queue_email(notice or ManagerCollectionsHandOff())

    def _pause(self, status: CollectionsStatus) -> None:
        self._hold = self._hold_until = None  # a dispute or a promise is the triage
        if self._paused_at is None:
            self._paused_at = workflow.now()
        self._status = status

    def _resume(self, why: str) -> None:
        if self._paused_at is not None:
            self._offset += workflow.now() - self._paused_at
            self._paused_at = None
        self._status = CollectionsStatus.ACTIVE
        self._promised_until = None
        self._unflag()
        self._record(EventKind.RESUMED, WORKFLOW, why)

    def _promise_lapsed(self) -> None:
        self._record(EventKind.PROMISE_LAPSED, WORKFLOW, "no payment by the promised date")
        self._resume("promise to pay lapsed")
        self._publish()

    def _expire(self) -> None:
        self._status = CollectionsStatus.EXPIRED
        self._stage = "expired"
        self._record(EventKind.SETTLED, WORKFLOW, "handed off and closed without payment")
        self._publish()

    def _settle(self, status: CollectionsStatus, why: str, amount: Decimal = ZERO) -> None:
        """Paid, credited or waived: give back what we suspended (never after fraud), tell them."""
        self._status = status
        self._stage = status.value
        self._paused_at = None
        self._asked_at = None
        self._unflag()
        self._record(EventKind.SETTLED, WORKFLOW, why)
        if self._suspended and (self._handed_over or workflow.patched(HAND_OVER)):
            self._release(status, why, amount)
            return
        if self._suspended and not self._fraud:
            self._effects.append(ChangeSubscriptions(SubscriptionStatus.ACTIVE, why))
        if self._fraud and self._suspended:
            self._queue_email(ManagerFraudReported(reason=f"{why}; still suspended", by=WORKFLOW))
        if status is not CollectionsStatus.PAID:
            self._queue_email(CollectionsClosed())
        elif self._suspended and not self._fraud:
            self._queue_email(CollectionsReactivated(amount=amount))
        else:
            self._queue_email(CollectionsPaymentReceived(amount=amount))

    def _release(self, status: CollectionsStatus, why: str, amount: Decimal) -> None:
        """Through the account: this invoice's non-payment holds go (a fraud hold stays until a
        manager lifts it); what the customer is told of a payment depends on what else holds
        their subscriptions, so the account tells them."""
        self._hand_over()
        paid = status is CollectionsStatus.PAID
        self._effects.append(
            TellAccount(
                "release_holds",
                ReleaseHolds(
                    invoice_id=self._invoice_id,
                    why=status.value,  # not the free text: a waiver's reason stays here
                    paid=amount if paid else None,
                    view=without_timeline(self.view()) if paid else None,
                ),
            )
        )
        if not self._fraud:
            self._suspended = []  # this invoice holds nothing any more (fraud stays held)
        if self._fraud:
            self._queue_email(ManagerFraudReported(reason=f"{why}; still suspended", by=WORKFLOW))
        if not paid:
            self._queue_email(CollectionsClosed())

    def _dispute_case(self, data: OpenDispute, case_id: str) -> OpenCase:
        return OpenCase(
            case_id=case_id,
            details=CaseDetails(
                customer=self._customer,
                subscription_id=self._subscriptions[0],
                invoice_id=self._invoice_id,
                category=Category.INVOICE_DISPUTE,
                disputed_amount=data.disputed_amount or self._balance,
                currency=self._currency,
                description=data.description,
                priority=Priority.HIGH,
            ),
            opened_by=data.by,
            policy=self._case_policy,
            collections_workflow_id=workflow.info().workflow_id,
        )

    def _refuse_if_final(self, action: str) -> None:
        if self._status.is_final:
            raise ActionRefused(
                f"cannot {action} invoice {self._invoice_id}: collections is {self._status.value}"
            )

    def _address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.CUSTOMER:
                return str(self._customer.email)
            case Recipient.MANAGER:
                return str(self._policy.manager_email)
        raise ValueError(f"collections sends no email to {recipient.value}")

    def _attributes(self) -> TypedSearchAttributes:
        return search.collections_attributes(
            invoice_id=self._invoice_id,
            tenant_id=self._customer.tenant_id,
            stage=self._status.value
            if self._status is not CollectionsStatus.ACTIVE
            else self._stage,
            balance=self._balance,
            suspended=bool(self._suspended),
        )

    def _publish_details(self) -> None:
        """Markdown for the UI's current details: what it waits for, the next step, suspensions."""
        lines = [
            f"**{self._status.value}** · waiting for {self._waiting_for()}",
            "",
            f"- Balance: {money(self._balance, self._currency)} of "
            f"{money(self._amount_due, self._currency)} (paid {money(self._paid, self._currency)},"
            f" credited {money(self._credited, self._currency)})",
            f"- Stage: {self._stage} · failures reported: {len(self._failures)}",
        ]
        if self._suspended:
            deletion = self._deletion_at
            lines.append(
                f"- Suspended: {len(self._suspended)} subscription(s)"
                + (f", data deletion {deletion:%Y-%m-%d}" if deletion else "")
            )
        if self._fraud:
            lines.append("- Fraud or misuse reported")
        if self._linked_case:
            lines.append(f"- Dispute case: {self._linked_case}")
        lines.append(f"- Owner: {self._owner()}")
        if attention := self._attention_line():
            lines[:0] = [f"**{attention}**", ""]
        workflow.set_current_details("\n".join(lines))

    def _waiting_for(self) -> str:
        if self._asked_at is not None and self._status is CollectionsStatus.ACTIVE:
            return (
                f"a manager to approve or refuse the suspension (asked {self._asked_at:%Y-%m-%d})"
            )
        match self._status:
            case CollectionsStatus.ACTIVE:
                step = self._next_step()
                return (
                    f"payment; next step {step[1].name} on {step[0]:%Y-%m-%d %H:%M} UTC"
                    if step
                    else "payment (policy finished)"
                )
            case CollectionsStatus.PAUSED_DISPUTE:
                return f"the dispute case {self._linked_case} (policy paused)"
            case CollectionsStatus.PAUSED_PROMISE:
                until = self._promised_until
                return f"the promised payment by {until:%Y-%m-%d %H:%M} UTC" if until else "payment"
            case CollectionsStatus.HANDED_OFF:
                alarm = self._next_alarm()
                closes = f"; closes {alarm.at:%Y-%m-%d}" if alarm else ""
                return f"a manager (handed off){closes}"
            case _:
                return "nothing (collections ended)"

    def _owner(self) -> str:
        manager = self._status is CollectionsStatus.HANDED_OFF or self._fraud
        return str(self._policy.manager_email if manager else self._policy.team_email)

    # ------------------------------------------------------------------ effects

    async def _carry_out(self, effect: CollectionsEffect) -> None:
        match effect:
            case SendEmail() if self._held_for_opening(effect):
                self._waiting.append(effect)
            case SendEmail():
                await self._send(effect)
            case ChangeSubscriptions():
                await self._change_subscriptions(effect)
            case StartDisputeCase():
                try:
                    await workflow.start_child_workflow(
                        BillingCaseWorkflow.run,
                        effect.data,
                        id=case_workflow_id(effect.data.case_id),
                        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                        static_summary=case_summary(effect.data),
                        static_details=case_details(effect.data),
                        search_attributes=search.case_attributes(effect.data.details),
                    )
                except CancelledError:
                    raise
                except FailureError as err:  # its id was taken: the dispute has no case
                    self._dispute_not_linked(effect.data.case_id, failure_reason(err))
            case TellAccount():
                await self._tell_account(effect)
            case LinkCase():
                try:
                    await workflow.get_external_workflow_handle(effect.case_workflow_id).signal(
                        BillingCaseWorkflow.link_collections, workflow.info().workflow_id
                    )
                except CancelledError:
                    raise
                except FailureError as err:  # no such case (any more)
                    self._dispute_not_linked(effect.case_workflow_id, failure_reason(err))

    async def _tell_account(self, effect: TellAccount) -> None:
        """Signal the customer's account, starting it first if no invoice of theirs has."""
        account_id = account_workflow_id(self._customer.tenant_id)
        if not self._account_started:
            with suppress(WorkflowAlreadyStartedError):  # another invoice of theirs did
                await workflow.start_child_workflow(
                    AccountWorkflow.run,
                    StartAccount(
                        customer=self._customer,
                        policy=self._policy,
                        told_when_delivered=self._case_policy.told_when_delivered,
                    ),
                    id=account_id,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=f"Account of tenant {self._customer.tenant_id}",
                    search_attributes=search.account_attributes(tenant_id=self._customer.tenant_id),
                )
            self._account_started = True
        try:
            await workflow.get_external_workflow_handle(account_id).signal(
                effect.signal, effect.arg
            )
        except FailureError:
            self._account_started = False  # ended by hand? a retry starts it again
            raise

    def _held_for_opening(self, email: SendEmail) -> bool:
        """A customer reads us in business hours: an email queued at night or on a holiday (a
        payment, a promise, a dispute's end) waits for the next opening, the effects after it do
        not; staff's go at once."""
        if self._calendar is None or email.recipient is not Recipient.CUSTOMER:
            return False
        now = workflow.now()
        return self._calendar.next_opening(now - SEND_GRACE) > now

    def _dispute_not_linked(self, case: str, reason: str) -> None:
        """The dispute has no case to end it: say so and go on with the policy."""
        self._record(EventKind.NOTE, WORKFLOW, f"dispute case {case} not linked: {reason}")
        if self._status is CollectionsStatus.PAUSED_DISPUTE:
            self._linked_case = None
            self._resume("the dispute has no case")
        self._publish()

    def _send_locale(self) -> Locale:
        return self._customer.locale

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), collections=self.view())

    async def _change_subscriptions(self, change: ChangeSubscriptions) -> None:
        suspending = change.status is SubscriptionStatus.SUSPENDED
        # a retried step goes on where it stopped: what changed already is not changed again
        targets = (
            [s for s in self._subscriptions if s not in self._suspended]
            if suspending
            else list(self._suspended)
        )
        verb = "Suspend" if change.status is SubscriptionStatus.SUSPENDED else "Reactivate"
        for subscription_id in targets:
            key = self._key(f"{verb.lower()}/{subscription_id}")
            try:
                done = await run(
                    CHANGE_SUBSCRIPTION,
                    ChangeSubscription(
                        key=key,
                        tenant_id=self._customer.tenant_id,
                        subscription_id=subscription_id,
                        status=change.status,
                        invoice_id=self._invoice_id,
                        reason=change.reason,
                    ),
                    f"Partner Center: {verb.lower()} subscription "
                    f"{subscription_id[:8]}… ({change.reason})",
                )
            except ActivityError as err:
                refused = business_error(err)
                if refused is None:
                    raise
                self._record(EventKind.PARTNER_CENTER_ERROR, WORKFLOW, refused.message)
                self._queue_email(
                    ManagerPartnerCenterError(
                        subscription_id=subscription_id,
                        error=refused.message,
                        action="suspend" if verb == "Suspend" else "reactivate",
                    )
                )
                continue
            kind = (
                EventKind.SUSPENDED
                if change.status is SubscriptionStatus.SUSPENDED
                else (EventKind.REACTIVATED)
            )
            self._record(kind, WORKFLOW, subscription_id, backend=done.backend)
            if change.status is SubscriptionStatus.SUSPENDED:
                self._suspended.append(subscription_id)
            else:
                self._suspended.remove(subscription_id)
        if change.status is SubscriptionStatus.SUSPENDED and not self._suspended:
            # nothing could be suspended: no deletion clock runs, a manager takes over now
            self._suspended_at = None
            if not self._status.is_final:
                self._hand_off(None)
        self._publish()

    async def _persist(self, events: list[CaseEvent]) -> None:
        await self._write(
            PERSIST_COLLECTIONS,
            PersistCollections(view=self.view().model_copy(update={"timeline": []}), events=events),
            f"Save collections: {self._stage}, balance {self._balance:,.2f}",
        )

"""The rules of one unpaid invoice in collections, as a plain state machine (no Temporal here).

`Collections` is the state (`CollectionsState`, also what continue-as-new carries) with its
transitions: each takes what happened and `now`, changes the state, and answers the effects the
Temporal shell (workflow.py) carries out, in order. Validators ask `refuse_*`: a reason to refuse,
or None. Money is Decimal in the invoice's one currency: what the failures reported is paid,
credited (a dispute), waived, or still due; a payment above the balance leaves the customer a
credit, never silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import PrivateAttr

from core.formatting import money
from core.ids import account_workflow_id, collections_workflow_id
from core.models import (
    Approval,
    Attention,
    BillingFailure,
    CaseDetails,
    Category,
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
    EmailTemplate,
    EventKind,
    HoldReason,
    NoticeOutcome,
    NoticeState,
    OpenCase,
    OpenDispute,
    Outcome,
    Overpayment,
    PaymentReceived,
    PlaceHolds,
    Priority,
    PromiseToPay,
    ReleaseHolds,
    ReportFraud,
    ResumePolicy,
    StartCollections,
    Triage,
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
    CollectionsReminder,
    CollectionsSuspended,
    ManagerCollectionsHandOff,
    ManagerFraudReported,
    ManagerNeedsAttention,
)
from core.models.ledger import CreditApplication, CreditKept, CreditSettled
from core.models.messages import EmailDelivered, EmailUndelivered
from core.models.shared import MONEY_MAX, CaseEvent
from workflows.account.ledger import another_amount
from workflows.collections.clock import PolicyClock
from workflows.collections.gate import SuspensionGate
from workflows.effects import WORKFLOW, Flag, Record

UPHELD = (Outcome.CHARGE_UPHELD, Outcome.EXPLAINED)
# the notices the customer's account sends, one email a kind a day for all their invoices
CONSOLIDATED = frozenset(
    {
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED,
        EmailTemplate.COLLECTIONS_REMINDER,
        EmailTemplate.COLLECTIONS_FINAL_NOTICE,
    }
)
AWAITING_APPROVAL = "awaiting-approval"
REPLIED = "the customer replied to a notice: triage it (dispute, promise or no action)"
UNDELIVERED = "a notice was not delivered: confirm the customer's contact"


# ---------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Letter:
    """An email to the customer or a manager, queued now."""

    data: EmailData


@dataclass(frozen=True)
class Unflag:
    """What a manager had to look at is settled."""


@dataclass(frozen=True)
class StartDisputeCase:
    """Open the case that works the customer's dispute (it outlives the invoice)."""

    data: OpenCase


@dataclass(frozen=True)
class LinkCase:
    """Tell an existing case that it disputes this invoice (LINK_COLLECTIONS)."""

    case_id: str


@dataclass(frozen=True)
class HoldSubscriptions:
    """Ask the customer's account to hold the subscriptions (PLACE_HOLDS)."""

    holds: PlaceHolds


@dataclass(frozen=True)
class ReleaseSubscriptions:
    """Tell the account this invoice is settled (RELEASE_HOLDS); a payment goes with the view,
    which shows what the invoice held until now (`held`)."""

    release: ReleaseHolds
    held: tuple[str, ...]


@dataclass(frozen=True)
class SendNotice:
    """A policy notice the account sends with the customer's other notices of its kind (NOTICE)."""

    data: EmailData


@dataclass(frozen=True)
class PassOn:
    """SendGrid's event of a notice the account sent: the account tells each invoice in it."""

    event: EmailDelivered | EmailUndelivered


@dataclass(frozen=True)
class CheckCalendar:
    """The next step falls at `at`: a manager is told once if the calendar does not cover it."""

    at: datetime


@dataclass(frozen=True)
class KeepCredit:
    """Tell the customer's account what a payment left beyond the balance (CREDIT_KEPT)."""

    credit: CreditKept


@dataclass(frozen=True)
class SettleCredit:
    """Answer the account what this invoice took of its credit (CREDIT_SETTLED)."""

    settled: CreditSettled


Effect = (
    Record
    | KeepCredit
    | SettleCredit
    | Letter
    | Flag
    | Unflag
    | StartDisputeCase
    | LinkCase
    | HoldSubscriptions
    | ReleaseSubscriptions
    | SendNotice
    | PassOn
    | CheckCalendar
)


class Wake(StrEnum):
    STEP = "step"
    REMIND = "remind"  # the manager asked to approve the suspension
    PROMISE = "promise"  # the promised date passed
    CLOSE = "close"  # the hand-off's wait ran out


@dataclass(frozen=True)
class Due:
    """What the invoice waits for next, and when."""

    at: datetime
    label: str
    wake: Wake
    step: str | None = None


# ---------------------------------------------------------------------------- the state machine


class Collections(CollectionsState):
    _dues: dict[tuple[datetime, int, DayCount], datetime] = PrivateAttr(default_factory=dict)

    @classmethod
    def open(cls, data: StartCollections, now: datetime) -> tuple[Collections, list[Effect]]:
        """The first run takes its failure (and says how the customer's overrides shaped the
        policy); a continued run goes on from the state it carries."""
        if data.carried is not None:
            return cls.model_validate(data.carried, from_attributes=True), []
        failure = data.failure
        state = cls(
            invoice_id=failure.invoice_id,
            policy=data.policy,
            case_policy=data.case_policy,
            customer=failure.customer,
            currency=failure.currency,
            subscription_ids=list(dict.fromkeys(failure.subscription_ids)),
            amount_due=failure.amount_due,
            reason=failure.reason,
            started_at=now,
        )
        effects = state.add_failure(failure, now)
        if data.overridden:
            effects.append(Record(EventKind.POLICY_OVERRIDDEN, WORKFLOW, data.overridden))
        effects += state._check_calendar()
        # what is due at once (the day-0 notice, in business hours) goes in the starting task,
        # before any update of the same moment (a dispute) can pause it
        for _ in state.policy.steps:  # each step at most once: the loop always ends
            due = state.next_due()
            if due is None or due.at > now:
                break
            effects += state.fire(due, now)
        return state, effects

    # -- what it shows

    @property
    def balance(self) -> Decimal:
        return self.amount_due - self.paid - self.credited - self.waived - self.credit_applied

    @property
    def stage(self) -> str:
        """The one word the database, the search attribute and the workspace show."""
        if self.status is not CollectionsStatus.ACTIVE:
            return self.status.value
        if self.approval_asked_at is not None:
            return AWAITING_APPROVAL
        return self.last_step or "opened"

    @property
    def clock(self) -> PolicyClock:
        return PolicyClock(
            self.policy,
            self.started_at,
            self.offset,
            self.suspended_at,
            self.offset_at_suspension,
            self._dues,
        )

    @property
    def gate(self) -> SuspensionGate:
        notices = any(s.email is EmailTemplate.COLLECTIONS_FINAL_NOTICE for s in self.policy.steps)
        return SuspensionGate(self, needs_notice=notices)

    @property
    def deletion_at(self) -> datetime | None:
        if self.suspended_at is None or not self.held:
            return None
        return self.suspended_at + self.policy.data_deletion_after

    def next_step(self) -> tuple[datetime, CollectionsStep] | None:
        clock, gate = self.clock, self.gate
        pending = []
        for step in self.policy.steps:
            if step.name in self.steps_done or (due := clock.due(step)) is None:
                continue
            if step.action is CollectionsAction.SUSPEND and (due := gate.opens(due)) is None:
                continue
            pending.append((due, step))
        return min(pending, key=lambda p: p[0]) if pending else None

    def next_due(self) -> Due | None:
        """The next thing the invoice does of its own accord."""
        if self.status is CollectionsStatus.PAUSED_PROMISE and self.promised_until:
            return Due(self.promised_until, "Promise to pay: due", Wake.PROMISE)
        if self.status is CollectionsStatus.HANDED_OFF and self.handed_off_at:
            at = self.handed_off_at + self.policy.close_after_hand_off
            return Due(at, "Hand-off: close", Wake.CLOSE)
        if self.status is not CollectionsStatus.ACTIVE:
            return None
        step = self.next_step()
        remind = self.gate.reminder_due()
        if remind is not None and (step is None or remind <= step[0]):
            return Due(remind, "Suspension: remind the manager", Wake.REMIND)
        if step is None:
            return None
        return Due(step[0], f"Collections: {step[1].name}", Wake.STEP, step[1].name)

    def view(
        self, *, workflow_id: str, needs_attention: str | None, event_count: int,
        attention: Attention | None = None,
        timeline: list[CaseEvent],
    ) -> CollectionsView:  # fmt: skip
        step = self.next_step() if self.status is CollectionsStatus.ACTIVE else None
        return CollectionsView(
            invoice_id=self.invoice_id,
            workflow_id=workflow_id,
            status=self.status,
            stage=self.stage,
            customer=self.customer,
            subscription_ids=list(self.subscription_ids),
            currency=self.currency,
            amount_due=self.amount_due,
            paid=self.paid,
            credited=self.credited,
            balance=self.balance,
            first_failed_at=self.started_at,
            policy=self.policy.model_copy(update={"calendar": None}),
            waived=self.waived,
            credit=self.credit,
            overpayment=self.overpayment,
            credit_applied=self.credit_applied,
            failures=list(self.failures),
            next_step=step[1].name if step else None,
            next_step_at=step[0] if step else None,
            suspended_subscriptions=list(self.held),
            suspended_at=self.suspended_at,
            data_deletion_at=self.deletion_at,
            fraud=self.fraud,
            linked_case_id=self.linked_case,
            promised_until=self.promised_until,
            approval_asked_at=self.approval_asked_at,
            final_notice=self.notice,
            needs_attention=needs_attention,
            attention=attention,
            event_count=event_count,
            timeline=timeline,
        )

    def details(self, attention: str | None) -> str:
        """Markdown for the UI's current details: what it waits for, the next step, holds."""
        currency = self.currency
        lines = [
            f"**{self.status.value}** · waiting for {self._waiting_for()}",
            "",
            f"- Balance: {money(self.balance, currency)} of {money(self.amount_due, currency)}"
            f" (paid {money(self.paid, currency)}, credited {money(self.credited, currency)})",
            f"- Stage: {self.stage} · failures reported: {len(self.failures)}",
        ]
        if self.credit:
            lines.append(f"- Customer's credit, for finance: {money(self.credit, currency)}")
        if self.credit_applied:
            lines.append(
                f"- Paid with the customer's credit: {money(self.credit_applied, currency)}"
            )
        if self.held:
            deletion = self.deletion_at
            lines.append(
                f"- Suspended: {len(self.held)} subscription(s)"
                + (f", data deletion {deletion:%Y-%m-%d}" if deletion else "")
            )
        if self.fraud:
            lines.append("- Fraud or misuse reported")
        if self.linked_case:
            lines.append(f"- Dispute case: {self.linked_case}")
        manager = self.status is CollectionsStatus.HANDED_OFF or self.fraud
        lines.append(f"- Owner: {self.policy.manager_email if manager else self.policy.team_email}")
        if attention:
            lines[:0] = [f"**{attention}**", ""]
        return "\n".join(lines)

    def _waiting_for(self) -> str:
        if self.approval_asked_at is not None and self.status is CollectionsStatus.ACTIVE:
            asked = f"{self.approval_asked_at:%Y-%m-%d}"
            return f"a manager to approve or refuse the suspension (asked {asked})"
        match self.status:
            case CollectionsStatus.ACTIVE:
                step = self.next_step()
                if step is None:
                    return "payment (policy finished)"
                return f"payment; next step {step[1].name} on {step[0]:%Y-%m-%d %H:%M} UTC"
            case CollectionsStatus.PAUSED_DISPUTE:
                return f"the dispute case {self.linked_case} (policy paused)"
            case CollectionsStatus.PAUSED_PROMISE:
                until = self.promised_until
                return f"the promised payment by {until:%Y-%m-%d %H:%M} UTC" if until else "payment"
            case CollectionsStatus.HANDED_OFF:
                due = self.next_due()
                return f"a manager (handed off){f'; closes {due.at:%Y-%m-%d}' if due else ''}"
        return "nothing (collections ended)"

    # -- the billing system

    def refuse_failure(self, failure: BillingFailure) -> str | None:
        if refused := self.refuse_if_final("add a billing failure to"):
            return refused
        if failure.failure_id not in self.failures and len(self.failures) >= MAX_REPORTS:
            return f"invoice {self.invoice_id} has taken {MAX_REPORTS} failures: ask a manager"
        for name, theirs, ours in (
            ("invoice_id", failure.invoice_id, self.invoice_id),
            ("customer.tenant_id", failure.customer.tenant_id, self.customer.tenant_id),
            ("currency", failure.currency, self.currency),
        ):
            if theirs != ours:
                return (
                    f"{name}: the failure has {theirs}, invoice {self.invoice_id} in "
                    f"collections has {ours}"
                )
        return None

    def add_failure(self, failure: BillingFailure, now: datetime) -> list[Effect]:
        """A later failure of this invoice joins (the same failure id again changes nothing)."""
        if failure.failure_id in self.failures:
            return []
        self.failures.append(failure.failure_id)
        self.reason = failure.reason
        self.amount_due = max(self.amount_due, failure.amount_due)
        self.subscription_ids = list(
            dict.fromkeys([*self.subscription_ids, *failure.subscription_ids])
        )
        data = {"failure_id": failure.failure_id, "amount_due": str(failure.amount_due)}
        return [Record(EventKind.BILLING_FAILED, "billing-system", failure.reason, data)]

    def refuse_payment(self, payment: PaymentReceived) -> str | None:
        recorded = self.payments.get(payment.payment_id)
        if recorded is not None and recorded != payment.amount:
            return another_amount(payment.payment_id, recorded, payment.amount, self.currency)
        if recorded is not None:
            return None  # already counted: answered, changes nothing
        if refused := self.refuse_if_final("record a payment on"):
            return refused
        if payment.invoice_id != self.invoice_id:
            return f"invoice_id: payment is for {payment.invoice_id}, this is {self.invoice_id}"
        if payment.currency != self.currency:
            return f"currency: payment in {payment.currency}, invoice in {self.currency}"
        if len(self.payments) >= MAX_REPORTS:
            return f"invoice {self.invoice_id} has taken {MAX_REPORTS} payments: ask a manager"
        if sum(self.payments.values(), ZERO) + payment.amount > MONEY_MAX:
            return (
                f"amount: the payments of invoice {self.invoice_id} would total more than "
                f"{MONEY_MAX}"
            )
        return None

    def pay(self, payment: PaymentReceived, now: datetime) -> list[Effect]:
        """The invoice takes what it owes; the rest is the customer's credit, recorded and told."""
        if payment.payment_id in self.payments:
            return []  # the same payment again
        applied = min(payment.amount, self.balance)
        over = payment.amount - applied
        self.payments[payment.payment_id] = payment.amount
        self.paid += applied
        effects: list[Effect] = [
            Record(
                EventKind.PAYMENT_RECEIVED,
                payment.by,
                f"payment {payment.payment_id}",
                {
                    "payment_id": payment.payment_id,
                    "amount": str(payment.amount),
                    "applied": str(applied),
                    "balance": str(self.balance),
                },
            )
        ]
        if over > 0:
            effects += self._keep_credit(payment, applied, over)
        if self.balance > 0:
            return [*effects, Letter(CollectionsPaymentReceived(amount=payment.amount))]
        return [*effects, *self._settle(CollectionsStatus.PAID, "paid in full", payment.amount)]

    def _keep_credit(
        self, payment: PaymentReceived, applied: Decimal, over: Decimal
    ) -> list[Effect]:
        self.credit += over
        self.overpayment = Overpayment(
            payment_id=payment.payment_id, received=payment.amount, applied=applied, credit=over
        )
        said = (
            f"payment {payment.payment_id} of {money(payment.amount, self.currency)} exceeds the "
            f"balance of {money(applied, self.currency)}: {money(over, self.currency)} is kept as "
            f"the customer's credit for finance to apply to another invoice or refund"
        )
        data = {"payment_id": payment.payment_id, "applied": str(applied), "credit": str(over)}
        kept = CreditKept(
            invoice_id=self.invoice_id,
            tenant_id=self.customer.tenant_id,
            payment_id=payment.payment_id,
            currency=self.currency,
            amount=over,
        )
        return [
            Record(EventKind.CREDIT_KEPT, WORKFLOW, said, data),
            KeepCredit(kept),
            Letter(ManagerNeedsAttention(step=f"invoice {self.invoice_id}: {said}", error="")),
        ]

    def take_credit(self, data: CreditApplication, now: datetime) -> list[Effect]:
        """The customer's account applies their credit: the invoice takes what it owes of it
        and answers what it took (the rest goes back to the credit balance)."""
        if data.application_id in self.applications:
            return []  # the same application again
        problem = None
        if self.status.is_final:
            problem = f"collections is {self.status.value}"
        elif data.tenant_id != self.customer.tenant_id:
            problem = f"the credit is tenant {data.tenant_id}'s"
        elif data.currency != self.currency:
            problem = f"the credit is in {data.currency}, the invoice in {self.currency}"
        taken = ZERO if problem else min(data.amount, self.balance)
        self.applications[data.application_id] = taken
        self.credit_applied += taken
        settled = SettleCredit(
            CreditSettled(
                application_id=data.application_id,
                invoice_id=self.invoice_id,
                applied=taken,
                returned=data.amount - taken,
                balance=self.balance,
            )
        )
        if problem is not None:
            why = f"credit {data.application_id} not applied: {problem}"
            return [Record(EventKind.NOTE, WORKFLOW, why), settled]
        record = Record(
            EventKind.CREDIT_APPLIED,
            WORKFLOW,
            f"the customer's credit ({data.application_id})",
            {"amount": str(taken), "balance": str(self.balance)},
        )
        if self.balance > 0 or taken == 0:
            return [record, settled]
        why = "paid in full with the customer's credit"
        return [record, settled, *self._settle(CollectionsStatus.PAID, why, taken, tell=False)]

    # -- agents and managers

    def refuse_if_final(self, action: str) -> str | None:
        if self.status.is_final:
            return f"cannot {action} invoice {self.invoice_id}: collections is {self.status.value}"
        return None

    def refuse_dispute(self, data: OpenDispute) -> str | None:
        if refused := self.refuse_if_final("open a dispute on"):
            return refused
        if self.status is CollectionsStatus.PAUSED_DISPUTE:
            return f"invoice {self.invoice_id} is already disputed in case {self.linked_case}"
        if data.disputed_amount is not None and data.disputed_amount > self.balance:
            return f"disputed_amount {data.disputed_amount} exceeds the balance {self.balance}"
        return None

    def open_dispute(self, data: OpenDispute, new_case: str, now: datetime) -> list[Effect]:
        """Link the case named, or open one as `new_case`: the policy waits for its outcome."""
        self._pause(CollectionsStatus.PAUSED_DISPUTE, now)
        effects: list[Effect]
        if data.case_id:
            self.linked_case = data.case_id
            effects = [LinkCase(data.case_id)]
        else:
            self.linked_case = new_case
            effects = [StartDisputeCase(self._dispute_case(data, new_case))]
        opened = Record(
            EventKind.DISPUTE_OPENED, data.by, data.description, {"case_id": self.linked_case}
        )
        return [*effects, opened, Unflag()]  # the dispute is the triage; nothing is suspended

    def dispute_resolved(self, outcome: DisputeOutcome, now: datetime) -> list[Effect]:
        """From the linked case once its customer has been told the outcome."""
        if self.status.is_final or outcome.case_id != self.linked_case:
            return []
        problem = outcome.problem(self.customer.tenant_id, self.currency)
        if problem is not None:  # a signal cannot be refused before it lands
            return [
                Record(EventKind.DISPUTE_REFUSED, WORKFLOW, problem, {"case_id": outcome.case_id}),
                Flag(
                    f"the outcome of dispute case {outcome.case_id} was refused ({problem}): the "
                    "policy stays paused; resume it or waive the invoice",
                    Attention.DISPUTE_REFUSED,
                ),
            ]
        credit = outcome.credit_amount or ZERO
        if outcome.outcome not in UPHELD and credit > 0:
            self.credited += min(credit, self.balance)
        label = outcome.outcome.value if outcome.outcome else "withdrawn"
        effects: list[Effect] = [
            Record(
                EventKind.DISPUTE_RESOLVED,
                WORKFLOW,
                f"case {outcome.case_id}: {label}",
                {"credited": str(credit), "balance": str(self.balance)},
            )
        ]
        if self.balance <= 0:
            return [*effects, *self._settle(CollectionsStatus.CREDITED, "credited in full")]
        if self.status is CollectionsStatus.PAUSED_DISPUTE:
            effects += self._resume(f"dispute {outcome.case_id} ended: {label}", now)
        return effects

    def dispute_not_linked(self, case: str, reason: str, now: datetime) -> list[Effect]:
        """The dispute has no case to end it: say so and go on with the policy."""
        effects: list[Effect] = [
            Record(EventKind.NOTE, WORKFLOW, f"dispute case {case} not linked: {reason}")
        ]
        if self.status is CollectionsStatus.PAUSED_DISPUTE:
            self.linked_case = None
            effects += self._resume("the dispute has no case", now)
        return effects

    def refuse_resume(self, data: ResumePolicy) -> str | None:
        if refused := self.refuse_if_final("resume"):
            return refused
        if self.status not in (CollectionsStatus.PAUSED_DISPUTE, CollectionsStatus.PAUSED_PROMISE):
            return f"invoice {self.invoice_id} is {self.status.value}: only a paused policy resumes"
        return None

    def resume(self, data: ResumePolicy, now: datetime) -> list[Effect]:
        return self._resume(f"resumed by {data.by}: {data.reason}", now)

    def refuse_fraud(self, data: ReportFraud) -> str | None:
        if refused := self.refuse_if_final("report fraud on"):
            return refused
        if self.fraud:
            return f"fraud is already reported on invoice {self.invoice_id}"
        return None

    def report_fraud(self, data: ReportFraud, now: datetime) -> list[Effect]:
        """A fraud hold of the invoice's own, even on what non-payment holds already: paying
        does not lift it, only a manager does (lift-fraud on the account)."""
        self.fraud = True
        effects: list[Effect] = [
            Record(EventKind.FRAUD_REPORTED, data.by, data.reason),
            Letter(ManagerFraudReported(reason=data.reason, by=data.by)),
            self._hold(HoldReason.FRAUD, data.by),
        ]
        if self.approval_asked_at is not None:  # suspended now: nothing left to approve
            self.approval_asked_at = None
            effects.append(Unflag())
        if self.suspended_at is None:
            self._suspended_now(now)
            effects.append(Letter(CollectionsFraudSuspended()))
        return effects

    def refuse_promise(self, data: PromiseToPay, now: datetime) -> str | None:
        if refused := self.refuse_if_final("record a promise to pay on"):
            return refused
        if self.status is not CollectionsStatus.ACTIVE:
            return f"invoice {self.invoice_id} is {self.status.value}"
        if data.until.tzinfo is None:
            return "until: must include a timezone"
        if not now < data.until <= now + self.policy.promise_max:
            return f"until: must be in the next {self.policy.promise_max.days} days"
        return None

    def promise(self, data: PromiseToPay, now: datetime) -> list[Effect]:
        self.promised_until = data.until
        self._pause(CollectionsStatus.PAUSED_PROMISE, now)
        return [
            Record(EventKind.PROMISE_TO_PAY, data.by, f"until {data.until.isoformat()}"),
            Letter(CollectionsPromiseAccepted()),
            Unflag(),  # the promise is the triage; nothing is suspended while it holds
        ]

    def refuse_waive(self, data: Waive) -> str | None:
        return self.refuse_if_final("waive")

    def waive(self, data: Waive, now: datetime) -> list[Effect]:
        waived = Record(EventKind.WAIVED, data.by, data.reason)
        return [waived, *self._settle(CollectionsStatus.WAIVED, f"waived: {data.reason}")]

    def refuse_contact(self, data: CorrectContact) -> str | None:
        if refused := self.refuse_if_final("correct the contact of"):
            return refused
        if str(data.email).lower() == str(self.customer.email).lower():
            return f"email: notices of invoice {self.invoice_id} go there already"
        return None

    def correct_contact(self, data: CorrectContact, now: datetime) -> list[Effect]:
        self.customer = self.customer.model_copy(update={"email": data.email})
        effects: list[Effect] = [
            Record(EventKind.CONTACT_CORRECTED, data.by, f"notices go to {data.email}")
        ]
        if self.triage is Triage.UNDELIVERED:
            self.triage = self.triage_until = None
            effects.append(Unflag())
        if self.notice is NoticeState.UNDELIVERED:  # the final notice again, to the new address
            self.notice = None
            if (
                notice := self._step_email(EmailTemplate.COLLECTIONS_FINAL_NOTICE, now)
            ) is not None:
                effects.append(self._notify(notice))
        return effects

    def refuse_decision(self, verb: str) -> str | None:
        if refused := self.refuse_if_final(f"{verb} the suspension of"):
            return refused
        if self.approval_asked_at is None:
            return f"invoice {self.invoice_id}: no suspension waits for a manager's approval"
        if self.status is not CollectionsStatus.ACTIVE:
            return (
                f"invoice {self.invoice_id} is {self.status.value}: the suspension waits "
                "until the policy runs again"
            )
        return None

    def approve(self, data: DecideSuspension, now: datetime) -> list[Effect]:
        self.approval_asked_at = None
        step = self._suspend_step()
        notice = (self._step_email(step.email, now) if step else None) or CollectionsSuspended()
        approved = Record(EventKind.SUSPENSION_APPROVED, data.by, data.reason)
        return [approved, Unflag(), *self._suspend(notice, now)]

    def refuse(self, data: DecideSuspension, now: datetime) -> list[Effect]:
        """No suspension: a manager takes the invoice over now."""
        self.approval_asked_at = None
        refused = Record(EventKind.SUSPENSION_REFUSED, data.by, data.reason)
        return [refused, Unflag(), *self._hand_off(None, now)]

    def refuse_triage(self, data: TriageReply) -> str | None:
        if refused := self.refuse_if_final("triage"):
            return refused
        if self.triage is None:
            return f"invoice {self.invoice_id}: nothing waits for triage"
        return None

    def triage_done(self, data: TriageReply) -> list[Effect]:
        what = self.triage.value if self.triage else "nothing"
        if data.decision == "contact-confirmed" and self.notice is NoticeState.UNDELIVERED:
            self.notice = NoticeState.DELIVERED  # a person confirmed the contact
        self.triage = self.triage_until = None
        return [Record(EventKind.NOTE, data.by, f"triage: {data.decision} ({what})"), Unflag()]

    # -- the customer and their mail

    def customer_replied(self, data: CollectionsReply, now: datetime) -> list[Effect]:
        """Recorded, a person told, and the suspension waits for their triage for a while."""
        if self.status.is_final:
            return []
        if self.suspended_at is None and self.triage is None:
            self.triage = Triage.REPLY
            self.triage_until = now + self.policy.reply_triage_wait
        return [
            Record(EventKind.CUSTOMER_REPLIED, data.by, data.text),
            Flag(REPLIED, Attention.REPLY_TRIAGE),
        ]

    def _from_account(self, key: str) -> bool:
        """An email the customer's account sent (a notice naming this invoice first)."""
        return key.startswith(account_workflow_id(self.customer.tenant_id))

    def email_undelivered(self, data: EmailUndelivered, now: datetime) -> list[Effect]:
        """A notice bounced after the provider took it: no suspension until a person looks."""
        if self.status.is_final:
            return []
        if self._from_account(data.key):
            return [PassOn(data)]
        if self.suspended_at is None:
            self.triage, self.triage_until = Triage.UNDELIVERED, None
        return [
            Record(EventKind.NOTE, WORKFLOW, f"{data.template} was not delivered ({data.event})"),
            Flag(UNDELIVERED, Attention.NOTICE_UNDELIVERED),
        ]

    def email_delivered(self, data: EmailDelivered, now: datetime) -> list[Effect]:
        if self.status.is_final or not self._from_account(data.key):
            return []
        return [PassOn(data)]

    def notice_outcome(self, data: NoticeOutcome, now: datetime) -> list[Effect]:
        """From the account: our notice went out (in its email), was delivered, or was not."""
        if self.status.is_final:
            return []
        if data.template is not EmailTemplate.COLLECTIONS_FINAL_NOTICE:
            if data.state is NoticeState.UNDELIVERED and self.suspended_at is None:
                self.triage, self.triage_until = Triage.UNDELIVERED, None
                return [Flag(UNDELIVERED, Attention.NOTICE_UNDELIVERED)]
            return []
        if data.state is NoticeState.SENT:
            if self.notice is None:
                self.notice, self.notice_at = NoticeState.SENT, now
            return []
        if data.state is NoticeState.DELIVERED:
            if self.notice is NoticeState.DELIVERED:
                return []
            self.notice = NoticeState.DELIVERED
            return [Record(EventKind.NOTICE_DELIVERED, WORKFLOW, data.template.value)]
        self.notice = NoticeState.UNDELIVERED
        if self.suspended_at is None:
            self.triage, self.triage_until = Triage.UNDELIVERED, None
        return [
            Flag(
                "the final notice was not delivered: correct the customer's contact or confirm it",
                Attention.NOTICE_UNDELIVERED,
            )
        ]

    # -- the policy's clock

    def fire(self, due: Due, now: datetime) -> list[Effect]:
        """What was due at `due.at` happens."""
        match due.wake:
            case Wake.PROMISE:
                lapsed = Record(
                    EventKind.PROMISE_LAPSED, WORKFLOW, "no payment by the promised date"
                )
                return [lapsed, *self._resume("promise to pay lapsed", now)]
            case Wake.CLOSE:
                self.status = CollectionsStatus.EXPIRED
                return [
                    Record(EventKind.SETTLED, WORKFLOW, "handed off and closed without payment")
                ]
            case Wake.REMIND:
                self.approval_reminders += 1
                return [
                    Record(
                        EventKind.REMINDER,
                        WORKFLOW,
                        f"suspension approval, reminder {self.approval_reminders}",
                    ),
                    Letter(
                        ManagerNeedsAttention(
                            step=self._approval_question(),
                            error="",
                            reason=Attention.SUSPENSION_APPROVAL,
                        )
                    ),
                ]
        step = next(s for s in self.policy.steps if s.name == due.step)
        return self._take_step(step, now)

    def _take_step(self, step: CollectionsStep, now: datetime) -> list[Effect]:
        self.steps_done.append(step.name)
        self.last_step = step.name
        effects: list[Effect] = [Record(EventKind.POLICY_STEP, WORKFLOW, step.name)]
        if step.action is CollectionsAction.SUSPEND:
            if self.suspended_at is not None:
                pass  # fraud suspended already
            elif step.approval is Approval.MANAGER:
                self.approval_asked_at, self.approval_reminders = now, 0
                effects += [
                    Record(EventKind.SUSPENSION_ASKED, WORKFLOW, "a manager decides"),
                    Flag(self._approval_question(), Attention.SUSPENSION_APPROVAL),
                ]
            else:
                effects += self._suspend(
                    self._step_email(step.email, now) or CollectionsSuspended(), now
                )
        elif step.action is CollectionsAction.HAND_OFF:
            effects += self._hand_off(self._step_email(step.email, now), now)
        elif (data := self._step_email(step.email, now)) is not None:
            effects.append(self._notify(data))
        return [*effects, *self._check_calendar()]

    def _approval_question(self) -> str:
        return f"invoice {self.invoice_id} is due for suspension: a manager approves or refuses it"

    def waiting_on_a_person(self) -> Flag | None:
        """What still waits for a person once a flag cleared (the queue and the attribute say
        it again, nobody is emailed again): a suspension to approve, a reply or a bounced
        notice to see to. Nothing while the policy is paused or over."""
        if self.status is not CollectionsStatus.ACTIVE:
            return None
        if self.approval_asked_at is not None:
            return Flag(self._approval_question(), Attention.SUSPENSION_APPROVAL)
        if self.triage is Triage.REPLY:
            return Flag(REPLIED, Attention.REPLY_TRIAGE)
        if self.triage is Triage.UNDELIVERED:
            return Flag(UNDELIVERED, Attention.NOTICE_UNDELIVERED)
        return None

    def _check_calendar(self) -> list[Effect]:
        if self.policy.calendar is None or (step := self.next_step()) is None:
            return []
        return [CheckCalendar(step[0])]

    def _step_email(self, template: EmailTemplate | None, now: datetime) -> EmailData | None:
        """A policy step's email, filled in from the state; None when it has nothing to say."""
        match template:
            case EmailTemplate.COLLECTIONS_PAYMENT_FAILED:
                return CollectionsPaymentFailed(failure=payment_failure(self.reason))
            case EmailTemplate.COLLECTIONS_REMINDER:
                return CollectionsReminder()
            case EmailTemplate.COLLECTIONS_SUSPENDED:
                return CollectionsSuspended()
            case EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF:
                return ManagerCollectionsHandOff()
            case EmailTemplate.COLLECTIONS_FINAL_NOTICE:
                suspension = self._suspend_step()
                due = self.clock.due(suspension) if suspension else None
                if due is None or self.suspended_at is not None:
                    return None  # nothing (more) will be suspended: no final notice to give
                return CollectionsFinalNotice(suspension_date=due)
            case EmailTemplate.COLLECTIONS_DELETION_WARNING:
                deletion = self.deletion_at
                if deletion is None or deletion <= now:
                    return None
                # in the policy's days: a demo policy's day is shorter than the calendar's
                days_left = (deletion - now) // self.policy.day_length
                return CollectionsDeletionWarning(days_left=days_left)
        return None  # no step sends anything else (the policy refuses it when it loads)

    def _suspend_step(self) -> CollectionsStep | None:
        return next((s for s in self.policy.steps if s.action is CollectionsAction.SUSPEND), None)

    # -- what the transitions share

    def _notify(self, data: EmailData) -> Effect:
        """A policy notice: the kinds the account consolidates go through it."""
        if data.template in CONSOLIDATED:  # type: ignore[attr-defined]
            return SendNotice(data)
        return Letter(data)

    def _hold(self, reason: HoldReason, by: str) -> HoldSubscriptions:
        self.held = list(self.subscription_ids)
        return HoldSubscriptions(
            PlaceHolds(
                invoice_id=self.invoice_id,
                reason=reason,
                subscription_ids=list(self.subscription_ids),
                customer=self.customer,
                by=by,
            )
        )

    def _suspend(self, notice: EmailData, now: datetime) -> list[Effect]:
        """Held through the account, the only writer of the subscriptions."""
        held = self._hold(HoldReason.FRAUD if self.fraud else HoldReason.NON_PAYMENT, WORKFLOW)
        self._suspended_now(now)
        return [held, Letter(notice)]

    def _suspended_now(self, now: datetime) -> None:
        self.suspended_at = now
        self.offset_at_suspension = self.offset
        for step in self.policy.steps:
            if step.action is CollectionsAction.SUSPEND and step.name not in self.steps_done:
                self.steps_done.append(step.name)

    def _hand_off(self, notice: EmailData | None, now: datetime) -> list[Effect]:
        self.status = CollectionsStatus.HANDED_OFF
        self.handed_off_at = now
        return [
            Record(EventKind.HANDED_OFF, WORKFLOW, "a manager takes the account over"),
            Letter(notice or ManagerCollectionsHandOff()),
        ]

    def _pause(self, status: CollectionsStatus, now: datetime) -> None:
        self.triage = self.triage_until = None  # a dispute or a promise is the triage
        if self.paused_at is None:
            self.paused_at = now
        self.status = status

    def _resume(self, why: str, now: datetime) -> list[Effect]:
        if self.paused_at is not None:
            self.offset += now - self.paused_at
            self.paused_at = None
        self.status = CollectionsStatus.ACTIVE
        self.promised_until = None
        return [Unflag(), Record(EventKind.RESUMED, WORKFLOW, why)]

    def _settle(
        self, status: CollectionsStatus, why: str, paid: Decimal | None = None, tell: bool = True
    ) -> list[Effect]:
        """Paid, credited or waived: what the invoice held goes (a fraud hold stays until a
        manager lifts it); what a payment changed is told by the account when something was
        held (it knows what else holds the subscriptions), else here (unless `tell` is False:
        the account's credit letter tells it)."""
        if status is CollectionsStatus.WAIVED:
            self.waived = self.balance
        self.status = status
        self.paused_at = None
        self.approval_asked_at = None
        effects: list[Effect] = [Unflag(), Record(EventKind.SETTLED, WORKFLOW, why)]
        if not self.held:
            letter = CollectionsPaymentReceived(amount=paid) if paid else CollectionsClosed()
            return [*effects, Letter(letter)] if tell else effects
        release = ReleaseHolds(invoice_id=self.invoice_id, why=status.value, paid=paid)
        effects.append(ReleaseSubscriptions(release, tuple(self.held)))
        if self.fraud:
            effects.append(
                Letter(ManagerFraudReported(reason=f"{why}; still suspended", by=WORKFLOW))
            )
        else:
            self.held = []  # this invoice holds nothing any more
        if paid is None:
            effects.append(Letter(CollectionsClosed()))
        return effects

    def _dispute_case(self, data: OpenDispute, case_id: str) -> OpenCase:
        return OpenCase(
            case_id=case_id,
            details=CaseDetails(
                customer=self.customer,
                subscription_id=self.subscription_ids[0],
                invoice_id=self.invoice_id,
                category=Category.INVOICE_DISPUTE,
                disputed_amount=data.disputed_amount or self.balance,
                currency=self.currency,
                description=data.description,
                priority=Priority.HIGH,
            ),
            opened_by=data.by,
            policy=self.case_policy,
            collections_workflow_id=collections_workflow_id(self.invoice_id),
        )

"""The account's rules: one customer tenant, the only writer of its subscriptions in Partner
Center, as a plain state machine (no Temporal here).

Holds arrive from each invoice's collections (non-payment) and from fraud reports, one per
(subscription, reason, invoice). A subscription is suspended while a hold that suspends is left
and reactivated when none is: paying invoice A never reactivates what invoice B, or fraud, still
holds; a fraud hold goes only by a manager's lift. The account alone tells a payer what their
payment changed, once Partner Center has answered. Notices go one email of a kind a day,
listing every invoice. Each transition takes `now` and returns the effects the shell carries out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.contracts import CREDIT_KEPT, CREDIT_SETTLED, NOTICE, PLACE_HOLDS, RELEASE_HOLDS
from core.formatting import money
from core.models import (
    AccountOverrides,
    AccountState,
    Attention,
    CollectionsView,
    EventKind,
    Hold,
    HoldReason,
    LiftFraud,
    Notice,
    NoticeOutcome,
    NoticeState,
    PaymentLetter,
    PlaceHolds,
    ReleaseHolds,
    SetOverrides,
    StartAccount,
    SubscriptionStatus,
)
from core.models.account import MAX_HOLDS
from core.models.email_credit import CreditApplied, CreditReceived, CreditRefunded
from core.models.ledger import (
    ApplyCredit,
    CreditApplication,
    CreditKept,
    CreditSettled,
    DecideRefund,
    Refund,
    RefundStatus,
    RequestRefund,
    UnappliedPayment,
)
from workflows.account.holds import in_order, may_suspend_now, wanted
from workflows.account.ledger import Ledger
from workflows.account.letters import Letter, write
from workflows.account.notices import notice_day, notice_due
from workflows.effects import WORKFLOW, Flag, Record

# the emails whose delivery the account remembers, to tell their invoices
SENT_NOTICES_KEPT = 200


class Refused(ValueError):
    """A manager's action that would change nothing: refused, and nothing changes."""


# ---------------------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class TellManager:
    """A step a manager must see to (Partner Center refused a change)."""

    step: str
    error: str


@dataclass(frozen=True)
class Reconcile:
    """Bring Partner Center in line with the holds: one change (`next_change`) at a time."""

    why: str


@dataclass(frozen=True)
class SendNotices:
    """One email of one kind for every invoice listed (the first is what it is about)."""

    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class TellInvoices:
    """Tell each invoice's collections what became of its notice."""

    invoices: tuple[str, ...]
    outcome: NoticeOutcome


@dataclass(frozen=True)
class SendLetter:
    """A letter to the payer about an invoice, as the state stands when it is written."""

    data: Letter
    view: CollectionsView


@dataclass(frozen=True)
class Change:
    """One change asked of Partner Center; its key is the subscription's `number`th change."""

    subscription_id: str
    status: SubscriptionStatus
    number: int
    invoice_id: str


@dataclass(frozen=True)
class Due:
    at: datetime
    label: str


@dataclass(frozen=True)
class ApplyToInvoice:
    """Credit on its way to an invoice's collections (APPLY_CREDIT); it answers CREDIT_SETTLED."""

    invoice_id: str
    application: CreditApplication


@dataclass(frozen=True)
class SendCreditLetter:
    """A letter to the customer about their credit balance (rendered with the account)."""

    data: CreditReceived | CreditApplied | CreditRefunded


Effect = (
    Record
    | Flag
    | TellManager
    | Reconcile
    | SendNotices
    | TellInvoices
    | SendLetter
    | ApplyToInvoice
    | SendCreditLetter
)


# ---------------------------------------------------------------------------------------- rules


class Account(AccountState):
    """The account's state with its transitions."""

    @classmethod
    def opened(cls, start: StartAccount) -> Account:
        if start.carried is not None:
            return cls.model_validate(start.carried.model_dump())
        return cls(
            customer=start.customer,
            calendar=start.policy.calendar,
            told_when_delivered=start.told_when_delivered,
        )

    # -- what the state says
    def wanted(self) -> list[str]:
        return wanted(self.holds, self.overrides)

    def holds_in_order(self) -> list[Hold]:
        return in_order(self.holds)

    def is_open(self, now: datetime) -> bool:
        return self.calendar is None or self.calendar.is_open(now)

    def _due_change(self, subscription_id: str, now: datetime) -> SubscriptionStatus | None:
        """The change Partner Center is to be asked for this subscription now, if any."""
        if subscription_id in self.changing or subscription_id in self.refused:
            return None
        held = subscription_id in self.wanted()
        if subscription_id in self.suspended:
            return None if held else SubscriptionStatus.ACTIVE
        if held and may_suspend_now(subscription_id, self.holds, self.calendar, now):
            return SubscriptionStatus.SUSPENDED
        return None

    def _waiting_for_hours(self, now: datetime) -> bool:
        """A non-payment suspension waits for the next opening."""
        return any(
            s not in self.suspended and not may_suspend_now(s, self.holds, self.calendar, now)
            for s in self.wanted()
        )

    def _candidates(self) -> list[str]:
        return list(dict.fromkeys([*self.wanted(), *self.suspended]))

    # -- collections workflows
    def place_holds(self, data: PlaceHolds, now: datetime) -> list[Effect]:
        """An invoice's collections suspends for non-payment, or fraud was reported on it."""
        problem = self._hold_problem(data)
        if problem is not None:  # a signal cannot be refused before it lands: recorded only
            return [
                Record(EventKind.SIGNAL_REFUSED, WORKFLOW, problem, {"signal": PLACE_HOLDS.name})
            ]
        self.customer = data.customer  # the latest contact the collections has
        keys = {h.key for h in self.holds}
        placed = []
        for subscription_id in dict.fromkeys(data.subscription_ids):
            hold = Hold(
                subscription_id=subscription_id,
                reason=data.reason,
                invoice_id=data.invoice_id,
                placed_at=now,
                by=data.by,
            )
            if hold.key not in keys:
                self.holds.append(hold)
                placed.append(subscription_id)
        if not placed:
            return []  # the same holds again (a retried step): nothing changes
        effects: list[Effect] = [
            Record(
                EventKind.HOLD_PLACED,
                data.by,
                f"{data.reason.value} hold on {len(placed)} subscription(s) for invoice "
                f"{data.invoice_id}",
                {
                    "invoice_id": data.invoice_id,
                    "reason": data.reason.value,
                    "subscriptions": ",".join(placed),
                },
            )
        ]
        if data.reason is HoldReason.NON_PAYMENT and self.overrides.exempt_from_suspension:
            effects.append(
                Flag(
                    f"invoice {data.invoice_id} asked to suspend, but this customer is exempt "
                    "from suspension: its holds are recorded and nothing is suspended",
                    Attention.EXEMPT_SUSPENSION,
                )
            )
        return self._changed(effects, f"{data.reason.value}, invoice {data.invoice_id}", now)

    def _hold_problem(self, data: PlaceHolds) -> str | None:
        if data.customer.tenant_id != self.customer.tenant_id:
            return (
                f"customer.tenant_id: the holds are for tenant {data.customer.tenant_id}, this "
                f"account is {self.customer.tenant_id}"
            )
        if len(self.holds) + len(data.subscription_ids) > MAX_HOLDS:
            return f"the account has {len(self.holds)} holds: at most {MAX_HOLDS}"
        return None

    def release_holds(self, data: ReleaseHolds, now: datetime) -> list[Effect]:
        """An invoice was paid, credited or waived: its non-payment holds go (fraud stays). Paid,
        its payer is owed a letter on what the payment changed, once Partner Center answered."""
        view = data.view
        if view is not None and (
            view.invoice_id != data.invoice_id or view.customer.tenant_id != self.customer.tenant_id
        ):
            why = f"view: invoice {view.invoice_id} of tenant {view.customer.tenant_id}"
            return [Record(EventKind.SIGNAL_REFUSED, WORKFLOW, why, {"signal": RELEASE_HOLDS.name})]
        released = [
            h
            for h in self.holds
            if h.invoice_id == data.invoice_id and h.reason is HoldReason.NON_PAYMENT
        ]
        effects: list[Effect] = []
        if data.paid is not None and view is not None:
            were = [
                s
                for s in dict.fromkeys(view.subscription_ids)
                if s in self.suspended or self.changing.get(s) is SubscriptionStatus.SUSPENDED
            ]
            self.letters.append(PaymentLetter(view=view, amount=data.paid, subscriptions=were))
        if not released:
            return effects + self._letters_due(now)
        self.holds = [h for h in self.holds if h not in released]
        effects.append(
            Record(
                EventKind.HOLD_RELEASED,
                WORKFLOW,
                f"invoice {data.invoice_id}: {data.why}",
                {
                    "invoice_id": data.invoice_id,
                    "subscriptions": ",".join(h.subscription_id for h in released),
                },
            )
        )
        return self._changed(effects, f"invoice {data.invoice_id}: {data.why}", now)

    def notice(self, data: Notice, now: datetime) -> list[Effect]:
        """An invoice's policy notice: the first of its kind today goes now; later ones wait for
        the next day's opening and go out together, in one email listing them."""
        if data.view.customer.tenant_id != self.customer.tenant_id:
            why = f"customer.tenant_id: the notice is for tenant {data.view.customer.tenant_id}"
            return [Record(EventKind.SIGNAL_REFUSED, WORKFLOW, why, {"signal": NOTICE.name})]
        same = (data.data.template, data.view.invoice_id)
        self.pending = [n for n in self.pending if (n.data.template, n.view.invoice_id) != same] + [
            data
        ]
        return self.wake(now)

    def notices_sent(
        self, template: str, invoices: tuple[str, ...], key: str | None
    ) -> list[Effect]:
        """The consolidated email went (`key`), or its address was refused (None)."""
        if key is None:
            state = NoticeState.UNDELIVERED
        else:
            # kept either way: a bounce after the provider took it still reaches a person
            self.sent_notices[key] = [template, *invoices]
            while len(self.sent_notices) > SENT_NOTICES_KEPT:
                del self.sent_notices[next(iter(self.sent_notices))]
            state = NoticeState.SENT if self.told_when_delivered else NoticeState.DELIVERED
        return [TellInvoices(invoices, NoticeOutcome(template=template, state=state))]

    def email_event(self, key: str, state: NoticeState) -> list[Effect]:
        """SendGrid says what became of an email: if it was a notice, each invoice in it is
        told, once (the event's own words are not trusted: the notice as it was sent)."""
        sent = self.sent_notices.pop(key, None)
        if not sent:
            return []  # not a notice (a letter), told already, or one too old to remember
        if state is NoticeState.DELIVERED and not self.told_when_delivered:
            return []  # the invoices counted it delivered when it went
        template, invoices = sent[0], tuple(sent[1:])
        return [
            Record(EventKind.NOTE, WORKFLOW, f"{template} {state.value}: {', '.join(invoices)}"),
            TellInvoices(invoices, NoticeOutcome(template=template, state=state)),
        ]

    # -- the customer's credit balance (the arithmetic is ledger.py's)
    @property
    def books(self) -> Ledger:
        return Ledger(self.ledger)

    def credit_kept(self, data: CreditKept, now: datetime) -> list[Effect]:
        """An invoice's payment beyond its balance (that invoice's letter told the customer)."""
        if data.tenant_id != self.customer.tenant_id:
            why = f"tenant_id: the credit is tenant {data.tenant_id}'s"
            return [Record(EventKind.SIGNAL_REFUSED, WORKFLOW, why, {"signal": CREDIT_KEPT.name})]
        if not self.books.keep(data):
            return []
        said = (
            f"{money(data.amount, data.currency)} beyond invoice {data.invoice_id}'s balance "
            f"(payment {data.payment_id}) is the customer's credit"
        )
        return [Record(EventKind.CREDIT_KEPT, WORKFLOW, said, self._moved(data.currency, data))]

    def check_payment(self, data: UnappliedPayment) -> None:
        if (refused := self.books.refuse_payment(data)) is not None:
            raise Refused(refused)

    def take_payment(self, data: UnappliedPayment, now: datetime) -> list[Effect]:
        """A payment for an invoice whose collections ended: all of it is the customer's credit,
        and they are told so."""
        self.check_payment(data)
        if not self.books.take(data):
            return []  # the same payment again
        said = (
            f"payment {data.payment_id} of {money(data.amount, data.currency)} for invoice "
            f"{data.invoice_id}, whose collections ended, is the customer's credit"
        )
        letter = CreditReceived(
            amount=data.amount,
            currency=data.currency,
            remaining=self.books.peek(data.currency).balance,
            invoice_id=data.invoice_id,
        )
        record = Record(EventKind.CREDIT_RECEIVED, data.by, said, self._moved(data.currency, data))
        return [record, SendCreditLetter(letter)]

    def check_application(self, data: ApplyCredit) -> None:
        if (refused := self.books.refuse_application(data)) is not None:
            raise Refused(refused)

    def apply_credit(self, data: ApplyCredit, application_id: str, now: datetime) -> list[Effect]:
        """Finance applies credit to an open invoice: debited now, the invoice answers."""
        self.check_application(data)
        self.books.apply(data, application_id, now)
        said = (
            f"{money(data.amount, data.currency)} of the credit to invoice {data.invoice_id} "
            f"({application_id})"
        )
        application = CreditApplication(
            application_id=application_id,
            tenant_id=self.customer.tenant_id,
            currency=data.currency,
            amount=data.amount,
        )
        return [
            Record(EventKind.CREDIT_APPLIED, data.by, said, self._moved(data.currency, data)),
            ApplyToInvoice(data.invoice_id, application),
        ]

    def credit_settled(self, data: CreditSettled, now: datetime) -> list[Effect]:
        """The invoice took what it could: the rest is credit again; the customer is told what
        was applied and what remains."""
        pending = self.books.application(data.application_id)
        if pending is None or pending.invoice_id != data.invoice_id:
            why = f"application {data.application_id} is not on its way to {data.invoice_id}"
            return [
                Record(EventKind.SIGNAL_REFUSED, WORKFLOW, why, {"signal": CREDIT_SETTLED.name})
            ]
        application = self.books.settle(pending, data.returned)
        currency = application.currency
        effects: list[Effect] = []
        if data.returned > 0:
            said = (
                f"invoice {data.invoice_id} took {money(data.applied, currency)} of "
                f"{money(application.amount, currency)}: {money(data.returned, currency)} is the "
                "customer's credit again"
            )
            effects += [
                Record(EventKind.CREDIT_RETURNED, WORKFLOW, said, self._moved(currency, data)),
                TellManager(f"tenant {self.customer.tenant_id}: {said}", ""),
            ]
        if data.applied > 0:
            letter = CreditApplied(
                amount=data.applied,
                currency=currency,
                remaining=self.books.peek(currency).balance,
                invoice_id=data.invoice_id,
                invoice_balance=data.balance,
            )
            effects.append(SendCreditLetter(letter))
        return effects

    def check_refund(self, data: RequestRefund) -> None:
        if (refused := self.books.refuse_refund(data)) is not None:
            raise Refused(refused)

    def request_refund(self, data: RequestRefund, refund_id: str, now: datetime) -> list[Effect]:
        """Refunded at once, or (above the threshold) held back until a manager decides."""
        self.check_refund(data)
        refund = self.books.request_refund(data, refund_id, now)
        said = f"{refund_id}: {money(data.amount, data.currency)}, {data.reason}"
        record = Record(
            EventKind.REFUND_REQUESTED, data.by, said, self._moved(data.currency, refund)
        )
        if refund.status is RefundStatus.REFUNDED:
            return [record, *self._refunded(refund, data.by)]
        ask = (
            f"refund {refund_id} of {money(data.amount, data.currency)} to tenant "
            f"{self.customer.tenant_id} awaits a manager's approval (the refunds page)"
        )
        return [record, TellManager(ask, "")]

    def check_decision(self, data: DecideRefund) -> None:
        if (refused := self.books.refuse_decision(data)) is not None:
            raise Refused(refused)

    def decide_refund(self, data: DecideRefund, approve: bool, now: datetime) -> list[Effect]:
        self.check_decision(data)
        refund = self.books.decide(data, approve, now)
        kind = EventKind.REFUND_APPROVED if approve else EventKind.REFUND_REFUSED
        said = f"{refund.refund_id}: {data.reason}"
        record = Record(kind, data.by, said, self._moved(refund.currency, refund))
        return [record, *self._refunded(refund, WORKFLOW)] if approve else [record]

    def _refunded(self, refund: Refund, by: str) -> list[Effect]:
        balance = self.books.peek(refund.currency)
        letter = CreditRefunded(
            amount=refund.amount, currency=refund.currency, remaining=balance.balance
        )
        said = f"{refund.refund_id}: {money(refund.amount, refund.currency)} refunded"
        return [
            Record(EventKind.REFUNDED, by, said, self._moved(refund.currency, refund)),
            SendCreditLetter(letter),
        ]

    def _moved(self, currency: str, data: object) -> dict[str, str]:
        """An event's data: the amount that moved, and the balance after it."""
        balance = self.books.peek(currency)
        amount = getattr(data, "amount", None)
        moved = {"currency": currency, "balance": str(balance.balance)}
        if isinstance(data, CreditSettled):
            moved["applied"], moved["returned"] = str(data.applied), str(data.returned)
        elif amount is not None:
            moved["amount"] = str(amount)
        for name in ("payment_id", "invoice_id", "refund_id"):
            if (value := getattr(data, name, None)) is not None:
                moved[name] = str(value)
        return moved

    # -- managers
    def check_lift(self, data: LiftFraud) -> None:
        if not self._fraud_holds(data.invoice_id):
            where = f" for invoice {data.invoice_id}" if data.invoice_id else ""
            raise Refused(f"tenant {self.customer.tenant_id} has no fraud hold{where} to lift")

    def lift_fraud(self, data: LiftFraud, now: datetime) -> list[Effect]:
        self.check_lift(data)
        lifted = self._fraud_holds(data.invoice_id)
        self.holds = [h for h in self.holds if h not in lifted]
        record = Record(
            EventKind.FRAUD_LIFTED,
            data.by,
            data.reason,
            {
                "invoice_id": data.invoice_id or "",
                "subscriptions": ",".join(h.subscription_id for h in lifted),
            },
        )
        return self._changed([record], "fraud hold lifted", now)

    def _fraud_holds(self, invoice_id: str | None) -> list[Hold]:
        return [
            h
            for h in self.holds
            if h.reason is HoldReason.FRAUD and invoice_id in (None, h.invoice_id)
        ]

    def check_overrides(self, data: SetOverrides) -> None:
        if data.overrides == self.overrides:
            raise Refused(
                f"tenant {self.customer.tenant_id} already has these overrides: nothing changes"
            )

    def set_overrides(self, data: SetOverrides, now: datetime) -> list[Effect]:
        self.check_overrides(data)
        before, self.overrides = self.overrides, data.overrides
        changed = {
            name: str(value)
            for name, value in data.overrides.model_dump().items()
            if getattr(before, name) != value
        }
        record = Record(EventKind.POLICY_OVERRIDDEN, data.by, data.reason, changed)
        return self._changed([record], "overrides changed", now)

    # -- Partner Center
    def next_change(self, now: datetime) -> Change | None:
        """The next change to ask Partner Center for (it is then under way), if any."""
        for subscription_id in self._candidates():
            status = self._due_change(subscription_id, now)
            if status is None:
                continue
            self.changing[subscription_id] = status
            invoice = next(
                (h.invoice_id for h in self.holds if h.subscription_id == subscription_id),
                "account",
            )
            number = self.changes.get(subscription_id, 0) + 1
            return Change(subscription_id, status, number, invoice)
        return None

    def subscription_changed(self, change: Change, backend: str, now: datetime) -> list[Effect]:
        """Partner Center carried the change out."""
        sub = change.subscription_id
        self._answered(change)
        if sub in self.refused:
            self.refused.remove(sub)
        suspending = change.status is SubscriptionStatus.SUSPENDED
        if suspending and sub not in self.suspended:
            self.suspended.append(sub)
        if not suspending and sub in self.suspended:
            self.suspended.remove(sub)
            self.letters = [
                letter.model_copy(update={"reactivated": [*letter.reactivated, sub]})
                if sub in letter.subscriptions
                else letter
                for letter in self.letters
            ]
        kind = EventKind.SUSPENDED if suspending else EventKind.REACTIVATED
        effects: list[Effect] = [Record(kind, WORKFLOW, sub, {"backend": backend})]
        return self._after_answer(effects, now)

    def change_refused(self, change: Change, error: str, now: datetime) -> list[Effect]:
        """Partner Center refused the change (4xx): a manager is told; the next event tries it
        again."""
        self._answered(change)
        if change.subscription_id not in self.refused:
            self.refused.append(change.subscription_id)
        verb = "suspend" if change.status is SubscriptionStatus.SUSPENDED else "reactivate"
        effects: list[Effect] = [
            Record(
                EventKind.PARTNER_CENTER_ERROR,
                WORKFLOW,
                error,
                {"subscription": change.subscription_id},
            ),
            TellManager(f"Partner Center: {verb} subscription {change.subscription_id}", error),
        ]
        return self._after_answer(effects, now)

    def change_failed(self, change: Change) -> None:
        """Partner Center did not answer (the step waits for an operator): the same change, under
        the same key, is asked again when the step is retried."""
        self.changing.pop(change.subscription_id, None)

    def _answered(self, change: Change) -> None:
        self.changing.pop(change.subscription_id, None)
        self.changes[change.subscription_id] = change.number

    def _after_answer(self, effects: list[Effect], now: datetime) -> list[Effect]:
        if any(self._due_change(s, now) for s in self._candidates()):
            effects.append(Reconcile("the holds changed while Partner Center worked"))
        return effects + self._letters_due(now)

    def _changed(self, effects: list[Effect], why: str, now: datetime) -> list[Effect]:
        """Holds or overrides changed: what Partner Center refused is tried again, and every
        subscription is brought in line."""
        self.refused.clear()
        return [*effects, Reconcile(why), *self._letters_due(now)]

    # -- time
    def next_due(self, now: datetime) -> Due | None:
        """The next time something is due: a kind of notice, or business hours (a suspension
        or a letter waiting for them)."""
        due = [
            Due(notice_due(kind, now, self.calendar, self.last_sent), f"Notices: {kind}")
            for kind in sorted({n.data.template for n in self.pending})
        ]
        calendar = self.calendar
        if (
            calendar is not None
            and not calendar.is_open(now)
            and (self._waiting_for_hours(now) or any(self._ready(x, now) for x in self.letters))
        ):
            due.append(Due(calendar.next_opening(now), "Business hours: suspensions and letters"))
        return min(due, key=lambda d: d.at) if due else None

    def wake(self, now: datetime) -> list[Effect]:
        """Whatever is due at `now`: notices of a kind, suspensions and letters at the opening."""
        effects: list[Effect] = []
        for kind in sorted({n.data.template for n in self.pending}):
            if notice_due(kind, now, self.calendar, self.last_sent) <= now:
                sending = tuple(n for n in self.pending if n.data.template == kind)
                effects.append(SendNotices(sending))
                self.pending = [n for n in self.pending if n.data.template != kind]
                self.last_sent[kind] = notice_day(now, self.calendar).isoformat()
        if self.is_open(now) and any(self._due_change(s, now) for s in self._candidates()):
            effects.append(Reconcile("business hours"))
        return effects + self._letters_due(now)

    # -- letters
    def _ready(self, letter: PaymentLetter, now: datetime) -> bool:
        """Partner Center has answered for every subscription the letter is about."""
        return not any(s in self.changing or self._due_change(s, now) for s in letter.subscriptions)

    def _letters_due(self, now: datetime) -> list[Effect]:
        """The letters Partner Center has answered for, written as the state stands, in the
        customer's business hours."""
        if not self.is_open(now):
            return []
        effects: list[Effect] = []
        waiting: list[PaymentLetter] = []
        wanted, follow_ups = set(self.wanted()), []
        for letter in self.letters:
            written = write(letter, self.suspended, wanted) if self._ready(letter, now) else None
            if written is None:
                waiting.append(letter)
                continue
            if written.data is not None:
                effects.append(SendLetter(written.data, letter.view))
            if written.follow_up is not None:
                follow_ups.append(written.follow_up)
        self.letters = waiting + follow_ups
        return effects

    def details(self) -> str:
        """What the UI's details say of the account (no customer data)."""
        fraud = sum(1 for h in self.holds if h.reason is HoldReason.FRAUD)
        invoices = sorted({h.invoice_id for h in self.holds if h.reason is HoldReason.NON_PAYMENT})
        lines = [
            f"**{len(self.suspended)} subscription(s) suspended** · {len(self.holds)} hold(s)",
            "",
            f"- Non-payment holds from {len(invoices)} invoice(s)"
            + (f": {', '.join(invoices[:10])}" if invoices else ""),
            f"- Fraud holds: {fraud}" + (" (lift-fraud --reason, a manager)" if fraud else ""),
        ]
        if self.overrides != AccountOverrides():
            lines.append(
                f"- Overrides: exempt={self.overrides.exempt_from_suspension}, "
                f"extra grace {self.overrides.extra_grace_days} day(s), "
                f"policy {self.overrides.policy_file or 'the partner default'}"
            )
        return "\n".join(lines)

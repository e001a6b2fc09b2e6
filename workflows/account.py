"""AccountWorkflow: one customer tenant, the only writer of its subscriptions in Partner Center.

Holds arrive from each invoice's collections (non-payment) and from fraud reports. A
subscription is suspended when its first hold arrives and reactivated only when none is left:
paying invoice A never reactivates what invoice B, or fraud, still holds. A fraud hold is lifted
only by a manager. The account lives as long as the customer: it continues as new whenever its
history grows, and carries its holds, overrides and log along.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from core import search
    from core.contracts import CHANGE_SUBSCRIPTION, NOTICE_OUTCOME, PERSIST_ACCOUNT
    from core.formatting import CHINA_STANDARD_TIME, china_day
    from core.ids import collections_workflow_id
    from core.models import (
        AccountOverrides,
        AccountState,
        AccountView,
        CaseEvent,
        ChangeSubscription,
        EmailDelivered,
        EmailSent,
        EmailUndelivered,
        EventKind,
        HeldLetter,
        Hold,
        HoldReason,
        LiftFraud,
        Locale,
        Notice,
        NoticeOutcome,
        NoticeState,
        PersistAccount,
        PlaceHolds,
        Recipient,
        ReleaseHolds,
        SetOverrides,
        StartAccount,
        SubscriptionStatus,
    )
    from core.models.account import MAX_HOLDS
    from core.models.email import (
        CollectionsPaymentReceived,
        CollectionsReactivated,
        ManagerNeedsAttention,
        OtherInvoice,
    )
    from workflows.base import (
        LIVE_RECONCILE,
        WORKFLOW,
        ActionRefused,
        Alarm,
        EffectLoop,
        SendEmail,
        business_error,
        run,
        send,
        without_timeline,
    )


@dataclass(frozen=True)
class Reconcile:
    """Effect: bring Partner Center in line with the holds (suspend what is held and active,
    reactivate what we suspended and nothing holds any more)."""

    why: str


@dataclass(frozen=True)
class TellPayer:
    """Effect, after a Reconcile: tell the customer what their payment of an invoice changed
    (its subscriptions reactivated, or still held by another invoice or by fraud)."""

    release: ReleaseHolds
    were_suspended: tuple[str, ...]  # the invoice's subscriptions suspended when it was paid


@dataclass(frozen=True)
class SendNotices:
    """Effect: one email of one kind for every invoice listed (the first is what it is about)."""

    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class TellInvoices:
    """Effect: tell each invoice's collections what became of its notice."""

    invoices: tuple[str, ...]
    outcome: NoticeOutcome


@dataclass(frozen=True)
class SendLetter:
    """Effect: a held letter about an invoice, now that the customer's business hours began."""

    letter: HeldLetter


AccountEffect = SendEmail | Reconcile | TellPayer | SendNotices | TellInvoices | SendLetter
# notices after the first of a kind on a day go out together at the next day's opening
OPENING = time(9, 0)
# the emails whose delivery the account remembers, to tell their invoices
SENT_NOTICES_KEPT = 200


@workflow.defn
class AccountWorkflow(EffectLoop[AccountEffect]):
    @workflow.init
    def __init__(self, data: StartAccount) -> None:
        self._data = data
        carried = data.carried
        self._start_log(carried.log if carried else None)
        self._customer = carried.customer if carried else data.customer
        self._holds: dict[tuple[str, HoldReason, str], Hold] = {
            hold.key: hold for hold in (carried.holds if carried else [])
        }
        self._suspended: list[str] = list(carried.suspended) if carried else []
        self._changes: dict[str, int] = dict(carried.changes) if carried else {}
        self._overrides = carried.overrides if carried else AccountOverrides()
        self._refused: list[str] = list(carried.refused) if carried else []
        # kind -> invoice -> its notice, waiting for the kind's next day
        self._pending: dict[str, dict[str, Notice]] = {}
        for notice in carried.pending if carried else []:
            self._pending.setdefault(notice.data.template, {})[notice.view.invoice_id] = notice
        self._last_sent: dict[str, str] = dict(carried.last_sent) if carried else {}
        self._sent_notices: dict[str, list[str]] = dict(carried.sent_notices) if carried else {}
        # letters to the customer held until business hours (with a calendar)
        self._letters: list[HeldLetter] = list(carried.letters) if carried else []
        # the subscription whose suspension Partner Center is carrying out now, if any
        self._suspending: str | None = None

    @workflow.run
    async def run(self, data: StartAccount) -> AccountView:
        if data.carried is None:
            self._record(EventKind.OPENED, WORKFLOW, "account opened")
            self._publish()
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return False  # an account lasts as long as its customer (it continues as new)

    def _continue_as_new(self) -> None:
        state = AccountState(
            customer=self._customer,
            holds=list(self._holds.values()),
            suspended=self._suspended,
            changes=self._changes,
            overrides=self._overrides,
            refused=self._refused,
            pending=[n for kind in self._pending.values() for n in kind.values()],
            last_sent=self._last_sent,
            sent_notices=self._sent_notices,
            letters=self._letters,
            log=self._log_state(),
        )
        workflow.continue_as_new(self._data.model_copy(update={"carried": state}))

    # ------------------------------------------------------------------ collections workflows

    @workflow.signal
    def place_holds(self, data: PlaceHolds) -> None:
        """An invoice's collections suspends for non-payment, or fraud was reported on it."""
        problem = self._problem(data)
        if problem is not None:  # a signal cannot be refused before it lands: recorded only
            self._record(EventKind.SIGNAL_REFUSED, WORKFLOW, problem, signal="place_holds")
            self._publish()
            return
        self._customer = data.customer  # the latest contact the collections has
        placed = []
        for subscription_id in dict.fromkeys(data.subscription_ids):
            hold = Hold(
                subscription_id=subscription_id,
                reason=data.reason,
                invoice_id=data.invoice_id,
                placed_at=workflow.now(),
                by=data.by,
            )
            if hold.key not in self._holds:
                self._holds[hold.key] = hold
                placed.append(subscription_id)
        if not placed:
            return  # the same holds again (a retried step): nothing changes
        self._record(
            EventKind.HOLD_PLACED,
            data.by,
            f"{data.reason.value} hold on {len(placed)} subscription(s) for invoice "
            f"{data.invoice_id}",
            invoice_id=data.invoice_id,
            reason=data.reason.value,
            subscriptions=",".join(placed),
        )
        if data.reason is HoldReason.NON_PAYMENT and self._overrides.exempt_from_suspension:
            self._flag(
                f"invoice {data.invoice_id} asked to suspend, but this customer is exempt from "
                "suspension: its holds are recorded and nothing is suspended"
            )
        self._effects.append(Reconcile(f"{data.reason.value}, invoice {data.invoice_id}"))
        self._publish()

    def _problem(self, data: PlaceHolds) -> str | None:
        if data.customer.tenant_id != self._customer.tenant_id:
            return (
                f"customer.tenant_id: the holds are for tenant {data.customer.tenant_id}, this "
                f"account is {self._customer.tenant_id}"
            )
        if len(self._holds) + len(data.subscription_ids) > MAX_HOLDS:
            return f"the account has {len(self._holds)} holds: at most {MAX_HOLDS}"
        return None

    @workflow.signal
    def release_holds(self, data: ReleaseHolds) -> None:
        """An invoice was paid, credited or waived: its non-payment holds go (fraud stays)."""
        released = [
            key
            for key in self._holds
            if key[2] == data.invoice_id and key[1] is HoldReason.NON_PAYMENT
        ]
        for key in released:
            del self._holds[key]
        if released:
            self._record(
                EventKind.HOLD_RELEASED,
                WORKFLOW,
                f"invoice {data.invoice_id}: {data.why}",
                invoice_id=data.invoice_id,
                subscriptions=",".join(key[0] for key in released),
            )
            self._effects.append(Reconcile(f"invoice {data.invoice_id}: {data.why}"))
        if data.paid is not None and data.view is not None:
            were = tuple(s for s in data.view.subscription_ids if s in self._suspended)
            # paid while one of its subscriptions is being suspended: that one counts as
            # suspended (the reconcile below reactivates it, and the customer is told so)
            if self._suspending in data.view.subscription_ids and workflow.patched(LIVE_RECONCILE):
                were = (*were, self._suspending)
            self._effects.append(TellPayer(data, were))
        self._publish()

    @workflow.signal
    def notice(self, data: Notice) -> None:
        """An invoice's policy notice: the first of its kind today goes now; later ones wait for
        the next day's opening and go out together, in one email listing them."""
        if data.view.customer.tenant_id != self._customer.tenant_id:
            self._record(
                EventKind.SIGNAL_REFUSED,
                WORKFLOW,
                f"customer.tenant_id: the notice is for tenant {data.view.customer.tenant_id}",
                signal="notice",
            )
            self._publish()
            return
        self._pending.setdefault(data.data.template, {})[data.view.invoice_id] = data
        self._publish()

    @workflow.signal
    def email_delivered(self, data: EmailDelivered) -> None:
        """A consolidated notice reached the mailbox (SendGrid): each invoice in it is told."""
        self._forward(data.key, data.template, NoticeState.DELIVERED)

    @workflow.signal
    def email_undelivered(self, data: EmailUndelivered) -> None:
        self._forward(data.key, data.template, NoticeState.UNDELIVERED)

    def _forward(self, key: str, template: str, state: NoticeState) -> None:
        sent = self._sent_notices.get(key)
        if not sent:
            return  # not a notice (a letter), or one too old to remember
        # as it was sent: the kind, then the invoices (the event's own words are not trusted)
        template, invoices = sent[0], sent[1:]
        self._record(EventKind.NOTE, WORKFLOW, f"{template} {state.value}: {', '.join(invoices)}")
        self._effects.append(
            TellInvoices(tuple(invoices), NoticeOutcome(template=template, state=state))
        )
        self._publish()

    # ------------------------------------------------------------------ managers

    @workflow.update
    def lift_fraud(self, data: LiftFraud) -> AccountView:
        lifted = [key for key in self._fraud_holds(data.invoice_id)]
        for key in lifted:
            del self._holds[key]
        self._record(
            EventKind.FRAUD_LIFTED,
            data.by,
            data.reason,
            invoice_id=data.invoice_id or "",
            subscriptions=",".join(key[0] for key in lifted),
        )
        self._effects.append(Reconcile("fraud hold lifted"))
        self._publish()
        return without_timeline(self.view())

    @lift_fraud.validator
    def _check_lift(self, data: LiftFraud) -> None:
        if not self._fraud_holds(data.invoice_id):
            where = f" for invoice {data.invoice_id}" if data.invoice_id else ""
            raise ActionRefused(
                f"tenant {self._customer.tenant_id} has no fraud hold{where} to lift"
            )

    def _fraud_holds(self, invoice_id: str | None) -> list[tuple[str, HoldReason, str]]:
        return [
            key
            for key in self._holds
            if key[1] is HoldReason.FRAUD and invoice_id in (None, key[2])
        ]

    @workflow.update
    def set_overrides(self, data: SetOverrides) -> AccountView:
        before, self._overrides = self._overrides, data.overrides
        self._record(
            EventKind.POLICY_OVERRIDDEN,
            data.by,
            data.reason,
            **{
                name: str(value)
                for name, value in data.overrides.model_dump().items()
                if getattr(before, name) != value
            },
        )
        self._effects.append(Reconcile("overrides changed"))
        self._publish()
        return without_timeline(self.view())

    @set_overrides.validator
    def _check_overrides(self, data: SetOverrides) -> None:
        if data.overrides == self._overrides:
            raise ActionRefused(
                f"tenant {self._customer.tenant_id} already has these overrides: nothing changes"
            )

    @workflow.query
    def view(self) -> AccountView:
        return AccountView(
            tenant_id=self._customer.tenant_id,
            workflow_id=workflow.info().workflow_id,
            customer=self._customer,
            holds=sorted(self._holds.values(), key=lambda h: (h.placed_at, h.key)),
            suspended_subscriptions=list(self._suspended),
            overrides=self._overrides,
            needs_attention=self._attention_line(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    # ------------------------------------------------------------------ the holds

    def _wanted(self) -> list[str]:
        """The subscriptions that must stay (or be) suspended, in the order their holds came."""
        exempt = self._overrides.exempt_from_suspension
        held = sorted(self._holds.values(), key=lambda h: (h.placed_at, h.key))
        return list(
            dict.fromkeys(
                hold.subscription_id
                for hold in held
                if hold.reason is HoldReason.FRAUD or not exempt
            )
        )

    def _may_suspend(self, subscription_id: str) -> bool:
        """Fraud suspends at once; non-payment only on a working day in business hours."""
        calendar = self._data.policy.calendar
        if calendar is None or calendar.is_open(workflow.now()):
            return True
        return any(key[0] == subscription_id and key[1] is HoldReason.FRAUD for key in self._holds)

    def _waiting_for_hours(self) -> bool:
        """A non-payment suspension waits for the next opening."""
        return any(s not in self._suspended and not self._may_suspend(s) for s in self._wanted())

    def _next_alarm(self) -> Alarm | None:
        """The next kind of notice due to go out (the invoices keep the policy's clocks)."""
        due = [(self._notice_due(kind), kind) for kind in sorted(self._pending)]
        calendar = self._data.policy.calendar
        if self._letters or self._waiting_for_hours():
            at = workflow.now() if calendar is None else calendar.next_opening(workflow.now())
            due.append((at, ""))
        if not due:
            return None
        at, kind = min(due)
        if not kind:
            return Alarm(at, "Business hours: suspensions and letters", self._release_letters)
        return Alarm(at, f"Notices: {kind}", lambda: self._send_notices(kind))

    def _release_letters(self) -> None:
        """Business hours began: what waited for them goes now."""
        if any(s not in self._suspended for s in self._wanted()):
            self._effects.append(Reconcile("business hours"))
        self._effects.extend(SendLetter(letter) for letter in self._letters)
        self._letters.clear()

    def _notice_due(self, kind: str) -> datetime:
        """The first notice of a kind on a day goes now (in business hours, with a calendar);
        once one went, the others wait for the next day's opening."""
        now, calendar = workflow.now(), self._data.policy.calendar
        if self._last_sent.get(kind) != self._today():
            return now if calendar is None else calendar.next_opening(now)
        if calendar is None:
            tomorrow = china_day(now) + timedelta(days=1)
            return datetime.combine(tomorrow, OPENING, tzinfo=CHINA_STANDARD_TIME)
        local = calendar.local(now).date()
        return calendar.next_opening(
            datetime.combine(local + timedelta(days=1), time(0), tzinfo=calendar.tz)
        )

    def _today(self) -> str:
        """The day notices are counted by: the calendar's, else China's."""
        now, calendar = workflow.now(), self._data.policy.calendar
        return (calendar.local(now).date() if calendar else china_day(now)).isoformat()

    def _send_notices(self, kind: str) -> None:
        notices = tuple(self._pending.pop(kind).values())
        self._last_sent[kind] = self._today()
        self._effects.append(SendNotices(notices))
        self._publish()

    def _address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.CUSTOMER:
                return str(self._customer.email)
            case Recipient.MANAGER:
                return str(self._data.policy.manager_email)
        raise ValueError(f"an account sends no email to {recipient.value}")

    def _attributes(self) -> TypedSearchAttributes:
        return search.account_attributes(tenant_id=self._customer.tenant_id)

    def _publish_details(self) -> None:
        fraud = sum(1 for key in self._holds if key[1] is HoldReason.FRAUD)
        invoices = sorted({key[2] for key in self._holds if key[1] is HoldReason.NON_PAYMENT})
        lines = [
            f"**{len(self._suspended)} subscription(s) suspended** · {len(self._holds)} hold(s)",
            "",
            f"- Non-payment holds from {len(invoices)} invoice(s)"
            + (f": {', '.join(invoices[:10])}" if invoices else ""),
            f"- Fraud holds: {fraud}" + (" (lift-fraud --reason, a manager)" if fraud else ""),
        ]
        overrides = self._overrides
        if overrides != AccountOverrides():
            lines.append(
                f"- Overrides: exempt={overrides.exempt_from_suspension}, "
                f"extra grace {overrides.extra_grace_days} day(s), "
                f"policy {overrides.policy_file or 'the partner default'}"
            )
        if attention := self._attention_line():
            lines[:0] = [f"**{attention}**", ""]
        workflow.set_current_details("\n".join(lines))

    def _send_locale(self) -> Locale:
        return self._customer.locale

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), account=self.view())

    async def _carry_out(self, effect: AccountEffect) -> None:
        match effect:
            case SendEmail():
                await self._send(effect)
            case Reconcile():
                await self._reconcile(effect.why)
            case TellPayer():
                await self._tell_payer(effect)
            case SendNotices():
                await self._carry_out_notices(effect.notices)
            case TellInvoices():
                await self._tell_invoices(effect.invoices, effect.outcome)
            case SendLetter():
                await self._send_letter(effect.letter)

    async def _reconcile(self, why: str) -> None:
        wanted = self._wanted()
        for subscription_id in [
            s for s in wanted if s not in self._suspended and self._may_suspend(s)
        ]:
            # its holds may have gone while an earlier change ran (the invoice was paid): a
            # subscription nothing holds any more is not suspended
            if subscription_id not in self._wanted() and workflow.patched(LIVE_RECONCILE):
                continue
            self._suspending = subscription_id
            try:
                await self._change(subscription_id, SubscriptionStatus.SUSPENDED, why)
            finally:
                self._suspending = None
        for subscription_id in [s for s in self._suspended if s not in wanted]:
            # held again while an earlier reactivation ran (fraud reported): it stays suspended
            if subscription_id in self._wanted() and workflow.patched(LIVE_RECONCILE):
                continue
            await self._change(subscription_id, SubscriptionStatus.ACTIVE, why)
        self._publish()

    async def _change(self, subscription_id: str, status: SubscriptionStatus, why: str) -> None:
        suspending = status is SubscriptionStatus.SUSPENDED
        verb = "suspend" if suspending else "reactivate"
        # one key per change of this subscription: suspended again later is a new change
        number = self._changes.get(subscription_id, 0) + 1
        invoice = next((key[2] for key in self._holds if key[0] == subscription_id), "account")
        try:
            done = await run(
                CHANGE_SUBSCRIPTION,
                ChangeSubscription(
                    key=self._key(f"{verb}/{subscription_id}/{number}"),
                    tenant_id=self._customer.tenant_id,
                    subscription_id=subscription_id,
                    status=status,
                    invoice_id=invoice,
                    reason=why[:500],
                ),
                f"Partner Center: {verb} subscription {subscription_id[:8]}… ({why[:80]})",
            )
        except ActivityError as err:
            refused = business_error(err)
            if refused is None:
                raise
            self._changes[subscription_id] = number
            self._record(
                EventKind.PARTNER_CENTER_ERROR,
                WORKFLOW,
                refused.message,
                subscription=subscription_id,
            )
            if subscription_id not in self._refused:
                self._refused.append(subscription_id)
            self._queue_email(
                ManagerNeedsAttention(
                    step=f"Partner Center: {verb} subscription {subscription_id}",
                    error=refused.message,
                )
            )
            return
        self._changes[subscription_id] = number
        if subscription_id in self._refused:
            self._refused.remove(subscription_id)
        self._record(
            EventKind.SUSPENDED if suspending else EventKind.REACTIVATED,
            WORKFLOW,
            subscription_id,
            backend=done.backend,
        )
        if suspending:
            self._suspended.append(subscription_id)
        else:
            self._suspended.remove(subscription_id)

    async def _tell_payer(self, effect: TellPayer) -> None:
        """The invoice is paid: "reactivated" when its subscriptions were suspended and none is
        held any more; else the payment is acknowledged (what still holds them stays internal)."""
        release = effect.release
        assert release.view is not None and release.paid is not None
        still = [s for s in effect.were_suspended if s in self._suspended]
        data = (
            CollectionsReactivated(amount=release.paid)
            if effect.were_suspended and not still
            else CollectionsPaymentReceived(amount=release.paid)
        )
        letter = HeldLetter(data=data, view=release.view)
        calendar = self._data.policy.calendar
        if calendar is not None and not calendar.is_open(workflow.now()):
            self._letters.append(letter)  # the customer reads us in business hours
            return
        await self._send_letter(letter)

    async def _send_letter(self, letter: HeldLetter) -> None:
        email = SendEmail(letter.data, str(letter.view.customer.email))
        await self._send_email(email, self._send_locale(), collections=letter.view)

    async def _carry_out_notices(self, notices: tuple[Notice, ...]) -> None:
        first, others = notices[0], notices[1:]
        also = [
            OtherInvoice(
                invoice_id=n.view.invoice_id,
                balance=n.view.balance,
                currency=n.view.currency,
                suspension_date=getattr(n.data, "suspension_date", None),
            )
            for n in others
        ]
        data = first.data.model_copy(update={"also": also})
        # to the address the invoice has now (an agent may have corrected it there)
        email = SendEmail(data, str(first.view.customer.email))
        sent = await self._send_email(email, self._send_locale(), collections=first.view)
        invoices = tuple(n.view.invoice_id for n in notices)
        if isinstance(sent, ApplicationError):
            state = NoticeState.UNDELIVERED
        else:
            self._sent_notices[sent.key] = [data.template, *invoices]
            while len(self._sent_notices) > SENT_NOTICES_KEPT:
                del self._sent_notices[next(iter(self._sent_notices))]
            state = NoticeState.SENT if self._data.told_when_delivered else NoticeState.DELIVERED
        await self._tell_invoices(invoices, NoticeOutcome(template=data.template, state=state))

    async def _tell_invoices(self, invoices: tuple[str, ...], outcome: NoticeOutcome) -> None:
        for invoice_id in invoices:
            try:
                await send(collections_workflow_id(invoice_id), NOTICE_OUTCOME, outcome)
            except CancelledError:
                raise
            except FailureError:
                pass  # its collections ended meanwhile (paid): nobody waits for the notice

    async def _persist(self, events: list[CaseEvent]) -> None:
        await self._write(
            PERSIST_ACCOUNT,
            PersistAccount(view=self.view().model_copy(update={"timeline": []}), events=events),
            f"Save account: {len(self._holds)} hold(s), {len(self._suspended)} suspended",
        )

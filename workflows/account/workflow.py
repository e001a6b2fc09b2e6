"""AccountWorkflow: the Temporal shell of a customer's account (its rules are `rules.py`).

Handlers validate, call the rules and queue the effects they return; the main loop carries them
out (Partner Center, emails, signals to the invoices' collections) and wakes when the rules say
something is due. An account lasts as long as its customer: it continues as new whenever its
history grows, carrying its state whole, onto the build that is current then.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import TypedSearchAttributes, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from core import search
    from core.contracts import CHANGE_SUBSCRIPTION, NOTICE_OUTCOME, PERSIST_ACCOUNT
    from core.ids import collections_workflow_id
    from core.models import (
        AccountView,
        CaseEvent,
        ChangeSubscription,
        EmailDelivered,
        EmailSent,
        EmailUndelivered,
        EventKind,
        LiftFraud,
        Locale,
        Notice,
        NoticeState,
        PersistAccount,
        PlaceHolds,
        Recipient,
        ReleaseHolds,
        SetOverrides,
        StartAccount,
        SubscriptionStatus,
    )
    from core.models.email import ManagerNeedsAttention
    from core.models.email_data import OtherInvoice
    from workflows.account.handlers import CreditHandlers, refuse_when
    from workflows.account.rules import (
        Account,
        ApplyToInvoice,
        Effect,
        Reconcile,
        SendCreditLetter,
        SendLetter,
        SendNotices,
        TellInvoices,
        TellManager,
    )
    from workflows.base import (
        Alarm,
        EffectLoop,
        SendEmail,
        business_error,
        run,
        send,
        without_timeline,
    )
    from workflows.effects import WORKFLOW, Flag, Record

Queued = SendEmail | Reconcile | SendNotices | TellInvoices | SendLetter | ApplyToInvoice


@workflow.defn(versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AccountWorkflow(CreditHandlers, EffectLoop[Queued]):
    @workflow.init
    def __init__(self, data: StartAccount) -> None:
        self._data = data
        self._state = Account.opened(data)
        self._start_log(self._state.log if data.carried else None)

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
        self._carry_on(self._data, self._state)

    def _apply(self, effects: list[Effect]) -> None:
        """What the rules decided: events recorded at once, the rest carried out in order."""
        for effect in effects:
            match effect:
                case Record():
                    self._record(effect.kind, effect.actor, effect.text, **effect.data)
                case Flag():
                    self._flag(effect.why, effect.reason)
                case TellManager():
                    self._queue_email(ManagerNeedsAttention(step=effect.step, error=effect.error))
                case SendCreditLetter():
                    self._queue_email(effect.data)
                case _:
                    self._effects.append(effect)
        self._publish()

    # ------------------------------------------------------------------ collections workflows

    @workflow.signal
    def place_holds(self, data: PlaceHolds) -> None:
        """An invoice's collections suspends for non-payment, or fraud was reported on it."""
        self._apply(self._state.place_holds(data, workflow.now()))

    @workflow.signal
    def release_holds(self, data: ReleaseHolds) -> None:
        """An invoice was paid, credited or waived: its non-payment holds go (fraud stays)."""
        self._apply(self._state.release_holds(data, workflow.now()))

    @workflow.signal
    def notice(self, data: Notice) -> None:
        """An invoice's policy notice, consolidated with the customer's others of its kind."""
        self._apply(self._state.notice(data, workflow.now()))

    @workflow.signal
    def email_delivered(self, data: EmailDelivered) -> None:
        """A consolidated notice reached the mailbox (SendGrid): each invoice in it is told."""
        self._apply(self._state.email_event(data.key, NoticeState.DELIVERED))

    @workflow.signal
    def email_undelivered(self, data: EmailUndelivered) -> None:
        self._apply(self._state.email_event(data.key, NoticeState.UNDELIVERED))

    # ------------------------------------------------------------------ managers

    @workflow.update
    def lift_fraud(self, data: LiftFraud) -> AccountView:
        self._apply(self._state.lift_fraud(data, workflow.now()))
        return without_timeline(self.view())

    @lift_fraud.validator
    def _check_lift(self, data: LiftFraud) -> None:
        refuse_when(self._state.check_lift, data)

    @workflow.update
    def set_overrides(self, data: SetOverrides) -> AccountView:
        self._apply(self._state.set_overrides(data, workflow.now()))
        return without_timeline(self.view())

    @set_overrides.validator
    def _check_overrides(self, data: SetOverrides) -> None:
        refuse_when(self._state.check_overrides, data)

    @workflow.query
    def view(self) -> AccountView:
        state = self._state
        return AccountView(
            tenant_id=state.customer.tenant_id,
            workflow_id=workflow.info().workflow_id,
            customer=state.customer,
            holds=state.holds_in_order(),
            suspended_subscriptions=list(state.suspended),
            overrides=state.overrides,
            ledger=state.books.view(),
            needs_attention=self._attention_line(),
            attention=self._attention_reason(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    # ------------------------------------------------------------------ the loop's hooks

    def _next_alarm(self) -> Alarm | None:
        due = self._state.next_due(workflow.now())
        if due is None:
            return None
        return Alarm(due.at, due.label, lambda: self._apply(self._state.wake(workflow.now())))

    def _address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.CUSTOMER:
                return str(self._state.customer.email)
            case Recipient.MANAGER:
                return str(self._data.policy.manager_email)
        raise ValueError(f"an account sends no email to {recipient.value}")

    def _attributes(self) -> TypedSearchAttributes:
        return search.account_attributes(tenant_id=self._state.customer.tenant_id)

    def _publish_details(self) -> None:
        details = self._state.details()
        if attention := self._attention_line():
            details = f"**{attention}**\n\n{details}"
        workflow.set_current_details(details)

    def _send_locale(self) -> Locale:
        return self._state.customer.locale

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), account=self.view())

    async def _carry_out(self, effect: Queued) -> None:
        match effect:
            case SendEmail():
                await self._send(effect)
            case Reconcile():
                await self._reconcile(effect.why)
            case SendNotices():
                await self._send_notices(effect.notices)
            case TellInvoices():
                await self._tell_invoices(effect)
            case SendLetter():
                email = SendEmail(effect.data, str(effect.view.customer.email))
                await self._send_email(email, self._send_locale(), collections=effect.view)
            case ApplyToInvoice():
                await self._apply_to_invoice(effect)

    async def _reconcile(self, why: str) -> None:
        """One change Partner Center is asked for; the rules queue the next when it answered."""
        change = self._state.next_change(workflow.now())
        if change is None:
            return
        verb = "suspend" if change.status is SubscriptionStatus.SUSPENDED else "reactivate"
        sub = change.subscription_id
        try:
            done = await run(
                CHANGE_SUBSCRIPTION,
                ChangeSubscription(
                    # one key per change of this subscription: suspended again later is a new one
                    key=self._key(f"{verb}/{sub}/{change.number}"),
                    tenant_id=self._state.customer.tenant_id,
                    subscription_id=sub,
                    status=change.status,
                    invoice_id=change.invoice_id,
                    reason=why[:500],
                ),
                f"Partner Center: {verb} subscription {sub[:8]}… ({why[:80]})",
            )
        except ActivityError as err:
            refused = business_error(err)
            if refused is None:
                self._state.change_failed(change)
                raise
            self._apply(self._state.change_refused(change, refused.message, workflow.now()))
            return
        except BaseException:
            self._state.change_failed(change)  # cancelled: nothing is known of the change
            raise
        self._apply(self._state.subscription_changed(change, done.backend, workflow.now()))

    async def _send_notices(self, notices: tuple[Notice, ...]) -> None:
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
        key = None if isinstance(sent, ApplicationError) else sent.key
        invoices = tuple(n.view.invoice_id for n in notices)
        self._apply(self._state.notices_sent(data.template, invoices, key))

    async def _tell_invoices(self, effect: TellInvoices) -> None:
        for invoice_id in effect.invoices:
            try:
                await send(collections_workflow_id(invoice_id), NOTICE_OUTCOME, effect.outcome)
            except CancelledError:
                raise
            except FailureError:
                pass  # its collections ended meanwhile (paid): nobody waits for the notice

    async def _persist(self, events: list[CaseEvent]) -> None:
        state = self._state
        await self._write(
            PERSIST_ACCOUNT,
            PersistAccount(view=without_timeline(self.view()), events=events),
            f"Save account: {len(state.holds)} hold(s), {len(state.suspended)} suspended",
        )

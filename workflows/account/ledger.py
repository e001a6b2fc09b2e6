"""The customer's credit balance, per currency: what each movement refuses and what it changes.
Pure; the account's rules (rules.py) turn it into records, letters and signals.

Per currency, always: received = applied + balance + refunded, and 0 <= reserved <= balance
(a refund awaiting approval holds its amount back from what finance may apply or refund)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from core.formatting import money
from core.models.ledger import (
    DECIDED_KEPT,
    MAX_DIRECT_PAYMENTS,
    Application,
    ApplyCredit,
    CreditBalance,
    CreditKept,
    DecideRefund,
    LedgerState,
    LedgerView,
    Refund,
    RefundStatus,
    RequestRefund,
    UnappliedPayment,
)
from core.models.shared import MONEY_MAX


def another_amount(payment_id: str, recorded: Decimal, amount: Decimal, currency: str) -> str:
    """The refusal of a payment id sent again with another amount: both amounts named."""
    return (
        f"payment_id: payment {payment_id} was recorded as {money(recorded, currency)}; this "
        f"report says {money(amount, currency)}: another payment needs its own id"
    )


class Ledger:
    """Acts on the account's `LedgerState` in place."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state

    def balance(self, currency: str) -> CreditBalance:
        """The currency's balance, opened if it has none (only transitions call this)."""
        return self.state.balances.setdefault(currency, CreditBalance(currency=currency))

    def peek(self, currency: str) -> CreditBalance:
        """The currency's balance as it is, for a validator (which changes nothing)."""
        return self.state.balances.get(currency) or CreditBalance(currency=currency)

    def view(self) -> LedgerView:
        return LedgerView(
            balances=[b.model_copy() for _, b in sorted(self.state.balances.items())],
            refunds=list(self.state.refunds),
            applications=list(self.state.applications),
        )

    # -- money in
    def keep(self, data: CreditKept) -> bool:
        """An invoice's overpayment; False when this one was taken already (a repeated signal)."""
        key = f"{data.invoice_id}/{data.payment_id}"
        if key in self.state.payments:
            return False
        self.state.payments[key] = data.amount
        self.balance(data.currency).received += data.amount
        return True

    def refuse_payment(self, data: UnappliedPayment) -> str | None:
        recorded = self.state.payments.get(data.payment_id)
        if recorded is not None:
            if recorded == data.amount:
                return None  # counted already: answered, changes nothing
            return another_amount(data.payment_id, recorded, data.amount, data.currency)
        if len(self.state.payments) >= MAX_DIRECT_PAYMENTS:
            return f"the account has taken {MAX_DIRECT_PAYMENTS} payments: ask a manager"
        if self.peek(data.currency).received + data.amount > MONEY_MAX:
            return f"amount: the customer's credit would total more than {MONEY_MAX}"
        return None

    def take(self, data: UnappliedPayment) -> bool:
        """A payment after its invoice ended; False when it was counted already."""
        if data.payment_id in self.state.payments:
            return False
        self.state.payments[data.payment_id] = data.amount
        self.balance(data.currency).received += data.amount
        return True

    # -- money out
    def _refuse_amount(self, currency: str, amount: Decimal) -> str | None:
        available = self.peek(currency).available
        if amount > available:
            return (
                f"amount: {money(amount, currency)} exceeds the customer's available credit of "
                f"{money(available, currency)}"
            )
        return None

    def refuse_application(self, data: ApplyCredit) -> str | None:
        return self._refuse_amount(data.currency, data.amount)

    def apply(self, data: ApplyCredit, application_id: str, now: datetime) -> Application:
        """Debited now; the invoice answers what it took (`settle`)."""
        self.balance(data.currency).applied += data.amount
        application = Application(
            application_id=application_id,
            invoice_id=data.invoice_id,
            currency=data.currency,
            amount=data.amount,
            by=data.by,
            at=now,
        )
        self.state.applications.append(application)
        return application

    def application(self, application_id: str) -> Application | None:
        return next(
            (a for a in self.state.applications if a.application_id == application_id), None
        )

    def settle(self, application: Application, returned: Decimal) -> Application:
        """The invoice took the application less `returned` (its balance was lower, or it had
        ended): that much is the customer's credit again."""
        self.state.applications.remove(application)
        back = min(max(returned, Decimal("0.00")), application.amount)
        self.balance(application.currency).applied -= back
        return application

    def refuse_refund(self, data: RequestRefund) -> str | None:
        return self._refuse_amount(data.currency, data.amount)

    def request_refund(self, data: RequestRefund, refund_id: str, now: datetime) -> Refund:
        """Refunded at once, or held back until a manager decides (above the threshold)."""
        above = data.approval_above is not None and data.amount > data.approval_above
        status = RefundStatus.AWAITING_APPROVAL if above else RefundStatus.REFUNDED
        refund = Refund(
            refund_id=refund_id,
            currency=data.currency,
            amount=data.amount,
            reason=data.reason,
            requested_by=data.by,
            requested_at=now,
            status=status,
        )
        balance = self.balance(data.currency)
        if above:
            balance.reserved += data.amount
        else:
            balance.refunded += data.amount
        self._keep(refund)
        return refund

    def refuse_decision(self, data: DecideRefund) -> str | None:
        refund = self.refund(data.refund_id)
        if refund is None:
            return f"refund_id: no refund {data.refund_id} on this account"
        if refund.status is not RefundStatus.AWAITING_APPROVAL:
            return f"refund {data.refund_id} is {refund.status.value}: nothing waits for a decision"
        if refund.requested_by == data.by:
            return f"refund {data.refund_id} was requested by {data.by}: another manager decides"
        return None

    def decide(self, data: DecideRefund, approve: bool, now: datetime) -> Refund:
        refund = self.refund(data.refund_id)
        assert refund is not None  # the validator refused anything else
        balance = self.balance(refund.currency)
        balance.reserved -= refund.amount
        if approve:
            balance.refunded += refund.amount
        decided = refund.model_copy(
            update={
                "status": RefundStatus.REFUNDED if approve else RefundStatus.REFUSED,
                "decided_by": data.by,
                "decided_at": now,
                "decision": data.reason,
            }
        )
        self._keep(decided)
        return decided

    def refund(self, refund_id: str) -> Refund | None:
        return next((r for r in self.state.refunds if r.refund_id == refund_id), None)

    def _keep(self, refund: Refund) -> None:
        """The refund, new or decided, last; only the last decided ones stay in the state."""
        refunds = [r for r in self.state.refunds if r.refund_id != refund.refund_id] + [refund]
        decided = [r for r in refunds if r.status is not RefundStatus.AWAITING_APPROVAL]
        dropped = {r.refund_id for r in decided[: max(0, len(decided) - DECIDED_KEPT)]}
        self.state.refunds = [r for r in refunds if r.refund_id not in dropped]

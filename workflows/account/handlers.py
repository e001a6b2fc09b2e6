"""The account's handlers of the customer's credit balance (its rules are `rules.py`, the
arithmetic `ledger.py`): an invoice's overpayment, a payment after its invoice ended, finance
applying credit to an invoice or refunding it, a manager deciding a refund. Mixed into
AccountWorkflow, which carries the effects out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from core.contracts import APPLY_CREDIT
    from core.ids import collections_workflow_id, ulid
    from core.models import AccountView
    from core.models.collections import ZERO
    from core.models.ledger import (
        ApplyCredit,
        CreditKept,
        CreditSettled,
        DecideRefund,
        RequestRefund,
        UnappliedPayment,
    )
    from workflows.account.rules import Account, ApplyToInvoice, Effect, Refused
    from workflows.base import ActionRefused, send, without_timeline

A = TypeVar("A")


def refuse_when(check: Callable[[A], None], data: A) -> None:
    """A validator: what the rules refuse is refused to the caller, and nothing changes."""
    try:
        check(data)
    except Refused as refused:
        raise ActionRefused(str(refused)) from None


def _number(prefix: str) -> str:
    """A refund's or an application's id: the workflow's clock and random source (replayed)."""
    return f"{prefix}-{ulid(workflow.now(), workflow.random().getrandbits(80))}"


class CreditHandlers(ABC):
    """What the workflow that mixes these in provides: its rules' state, carrying effects out, and
    its view."""

    _state: Account

    @abstractmethod
    def _apply(self, effects: list[Effect]) -> None: ...

    @abstractmethod
    def view(self) -> AccountView: ...

    def _answer(self, effects: list[Effect]) -> AccountView:
        self._apply(effects)
        return without_timeline(self.view())

    @workflow.signal
    def credit_kept(self, data: CreditKept) -> None:
        """An invoice's payment beyond its balance is the customer's credit."""
        self._apply(self._state.credit_kept(data, workflow.now()))

    @workflow.signal
    def credit_settled(self, data: CreditSettled) -> None:
        """An invoice took (some of) the credit applied to it."""
        self._apply(self._state.credit_settled(data, workflow.now()))

    @workflow.update
    def take_payment(self, data: UnappliedPayment) -> AccountView:
        """A payment for an invoice whose collections ended: the customer's credit."""
        return self._answer(self._state.take_payment(data, workflow.now()))

    @take_payment.validator
    def _check_payment(self, data: UnappliedPayment) -> None:
        refuse_when(self._state.check_payment, data)

    @workflow.update
    def apply_credit(self, data: ApplyCredit) -> AccountView:
        return self._answer(self._state.apply_credit(data, _number("CA"), workflow.now()))

    @apply_credit.validator
    def _check_application(self, data: ApplyCredit) -> None:
        refuse_when(self._state.check_application, data)

    @workflow.update
    def request_refund(self, data: RequestRefund) -> AccountView:
        return self._answer(self._state.request_refund(data, _number("RF"), workflow.now()))

    @request_refund.validator
    def _check_refund(self, data: RequestRefund) -> None:
        refuse_when(self._state.check_refund, data)

    @workflow.update
    def approve_refund(self, data: DecideRefund) -> AccountView:
        return self._answer(self._state.decide_refund(data, True, workflow.now()))

    @approve_refund.validator
    def _check_approval(self, data: DecideRefund) -> None:
        refuse_when(self._state.check_decision, data)

    @workflow.update
    def refuse_refund(self, data: DecideRefund) -> AccountView:
        return self._answer(self._state.decide_refund(data, False, workflow.now()))

    @refuse_refund.validator
    def _check_refusal(self, data: DecideRefund) -> None:
        refuse_when(self._state.check_decision, data)

    async def _apply_to_invoice(self, effect: ApplyToInvoice) -> None:
        """The invoice's collections takes the credit and answers; ended meanwhile, it takes
        nothing and all of it is the customer's credit again."""
        try:
            await send(collections_workflow_id(effect.invoice_id), APPLY_CREDIT, effect.application)
        except CancelledError:
            raise
        except FailureError:
            application = effect.application
            returned = CreditSettled(
                application_id=application.application_id,
                invoice_id=effect.invoice_id,
                applied=ZERO,
                returned=application.amount,
                balance=ZERO,
            )
            self._apply(self._state.credit_settled(returned, workflow.now()))

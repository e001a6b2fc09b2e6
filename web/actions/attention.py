"""What a person does about a workflow waiting for them, from its page's 需要处理 panel: retry or
skip a failed step, or mark a flag handled. The labels of why a workflow waits (`Attention`) and
of what it is about, as the queue and the panels show them."""

from __future__ import annotations

from functools import partial
from typing import Any

from core.models import About, Attention, HandleAttention, RetryStep, SkipStep
from service import KIND_OF, Service
from web.actions.base import MANAGERS, Action, Field, Kind
from web.i18n import _

REASONS: dict[Attention, str] = {
    Attention.FAILED_STEP: _(
        "A step failed and is no longer retried: retry it once the cause is fixed, or skip it "
        "with a reason."
    ),
    Attention.STALLED: _("A wait ran out: a manager decides what happens next."),
    Attention.SUSPENSION_APPROVAL: _(
        "The suspension of the customer's subscriptions waits for a manager to approve or "
        "refuse it."
    ),
    Attention.REPLY_TRIAGE: _(
        "The customer replied to a notice: triage it (open a dispute, record a promise to pay, "
        "or decide that nothing is needed)."
    ),
    Attention.NOTICE_UNDELIVERED: _(
        "A notice was not delivered: correct the customer's contact or confirm it."
    ),
    Attention.DISPUTE_REFUSED: _(
        "The outcome of the dispute could not be taken: resume the policy or waive the invoice."
    ),
    Attention.EXEMPT_SUSPENSION: _(
        "The customer is exempt from suspension, but an invoice asked to suspend: nothing was "
        "suspended. Check the exemption and mark this handled."
    ),
    Attention.TICKET_NOT_FILED: _(
        "The 21Vianet request is still not filed: file it and record the ticket number, or "
        "reassign the case."
    ),
    Attention.VIANET_SILENT: _(
        "21Vianet has not answered the ticket: follow it up with 21Vianet, or record its answer."
    ),
    Attention.PAYABLE_OVERDUE: _(
        "The 21Vianet invoice is past its due date: pay it and mark it paid."
    ),
}
SUBJECTS: dict[About, str] = {
    About.CASE: _("Case"),
    About.COLLECTIONS: _("Invoice in collections"),
    About.ACCOUNT: _("Customer account"),
    About.VIANET_INVOICE: _("21Vianet invoice (payable)"),
}
# the reasons a person settles by saying what they did (the others have their page's own action)
HANDLED_BY_A_NOTE = frozenset(
    {
        Attention.STALLED,
        Attention.EXEMPT_SUSPENSION,
        Attention.TICKET_NOT_FILED,
        Attention.VIANET_SILENT,
    }
)


async def _retry(about: About, service: Service, key: str, model: Any) -> Any:
    return await service.retry_step(KIND_OF[about], key, model)


async def _skip(about: About, service: Service, key: str, model: Any) -> Any:
    return await service.skip_step(KIND_OF[about], key, model)


async def _handled(about: About, service: Service, key: str, model: Any) -> Any:
    return await service.clear_attention(KIND_OF[about], key, model)


def attention_actions(about: About) -> dict[str, Action]:
    """The panel's actions on a workflow about `about` (a manager's: operators of the product)."""
    return {
        action.name: action
        for action in (
            Action(
                "attention-retry",
                _("Retry the failed step"),
                MANAGERS,
                RetryStep,
                call=partial(_retry, about),
                hint=_("Once its cause is fixed: the workflow runs the step again."),
            ),
            Action(
                "attention-skip",
                _("Skip the failed step"),
                MANAGERS,
                SkipStep,
                (Field("reason", _("Reason"), Kind.TEXTAREA),),
                call=partial(_skip, about),
                danger=True,
                hint=_("The workflow goes on without it."),
            ),
            Action(
                "attention-handled",
                _("Mark as handled"),
                MANAGERS,
                HandleAttention,
                (Field("note", _("What was done"), Kind.TEXTAREA),),
                call=partial(_handled, about),
            ),
        )
    }


def offered(attention: Attention | None) -> tuple[str, ...]:
    """The panel's actions for why a workflow waits (none: its page's own actions settle it)."""
    if attention is Attention.FAILED_STEP:
        return ("attention-retry", "attention-skip")
    if attention in HANDLED_BY_A_NOTE:
        return ("attention-handled",)
    return ()

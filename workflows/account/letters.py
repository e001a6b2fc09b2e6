"""What a payment letter says, written from the account's state once Partner Center has answered
for every subscription it is about: what was reactivated (only what Partner Center reactivated
and nothing holds), what is still suspended (why stays internal), and what is still being
reactivated, with a follow-up letter queued to confirm it. Pure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from core.models import PaymentLetter
from core.models.email import CollectionsPaymentReceived, CollectionsReactivated

Letter = CollectionsPaymentReceived | CollectionsReactivated


@dataclass(frozen=True)
class Written:
    data: Letter | None  # None: nothing left to say (a follow-up overtaken by a new hold)
    follow_up: PaymentLetter | None = None  # to confirm what is still being reactivated


def write(
    letter: PaymentLetter, suspended: Collection[str], wanted: Collection[str]
) -> Written | None:
    """The letter as the state stands; None while a follow-up waits for Partner Center."""
    reactivated = [
        s for s in dict.fromkeys(letter.reactivated) if s not in suspended and s not in wanted
    ]
    still = [s for s in letter.subscriptions if s in suspended and s in wanted]
    # nothing holds them, yet Partner Center has not reactivated them (it refused): confirmed later
    reactivating = [s for s in letter.subscriptions if s in suspended and s not in wanted]
    if letter.follow_up:
        if reactivating:
            return None
        if not reactivated:
            return Written(None)
        return Written(
            CollectionsReactivated(amount=letter.amount, reactivated=reactivated, follow_up=True)
        )
    follow_up = (
        PaymentLetter(
            view=letter.view, amount=letter.amount, subscriptions=reactivating, follow_up=True
        )
        if reactivating
        else None
    )
    if reactivated:
        data: Letter = CollectionsReactivated(
            amount=letter.amount,
            reactivated=reactivated,
            still_suspended=still,
            reactivating=reactivating,
        )
    else:
        data = CollectionsPaymentReceived(
            amount=letter.amount, still_suspended=still, reactivating=reactivating
        )
    return Written(data, follow_up)

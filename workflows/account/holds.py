"""Which subscriptions an account wants suspended: pure, from its holds and overrides.

One hold per (subscription, reason, invoice): a subscription is wanted suspended while any hold
that suspends is left. Fraud always suspends; non-payment does not for a customer exempt from
suspension, and waits for business hours where the customer has a calendar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from core.calendar import BusinessCalendar
from core.models import AccountOverrides, Hold, HoldReason


def in_order(holds: Iterable[Hold]) -> list[Hold]:
    """The holds in the order they came (then by key: the same instant in one workflow task)."""
    return sorted(holds, key=lambda h: (h.placed_at, h.key))


def suspends(hold: Hold, overrides: AccountOverrides) -> bool:
    return hold.reason is HoldReason.FRAUD or not overrides.exempt_from_suspension


def wanted(holds: Iterable[Hold], overrides: AccountOverrides) -> list[str]:
    """The subscriptions that must stay (or be) suspended, in the order their holds came."""
    return list(dict.fromkeys(h.subscription_id for h in in_order(holds) if suspends(h, overrides)))


def may_suspend_now(
    subscription_id: str, holds: Iterable[Hold], calendar: BusinessCalendar | None, now: datetime
) -> bool:
    """Fraud suspends at once; non-payment only in the customer's business hours."""
    if calendar is None or calendar.is_open(now):
        return True
    return any(h.subscription_id == subscription_id and h.reason is HoldReason.FRAUD for h in holds)

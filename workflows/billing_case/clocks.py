"""A case's waits besides its SLA: when the customer is reminded, when the owner is reminded to file
a 21Vianet request, when 21Vianet is followed up (by the request's severity), and the reopen
window. Pure: an instant and the policy in, an instant out."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.calendar import BusinessCalendar
from core.models import CasePolicy, EscalationView


def later(calendar: BusinessCalendar | None, at: datetime, duration: timedelta) -> datetime:
    """`duration` after `at`: with a calendar in business time (customers and staff are reminded,
    21Vianet followed up, on working days in opening hours), else around the clock."""
    return at + duration if calendar is None else calendar.add(at, duration)


def working_days_after(policy: CasePolicy, at: datetime, days: int) -> datetime:
    """`days` working days after `at` on the policy's calendar (China's holidays and 调休 make-up
    days), at the same hour of opening time; without a calendar, calendar days."""
    if policy.calendar is None:
        return at + timedelta(days=days)
    return policy.calendar.add_business_days(at, days)


def customer_reminder_at(policy: CasePolicy, waiting_since: datetime, sent: int) -> datetime:
    """When the customer's reminder number `sent + 1` (or, past the last one, the owner's word
    that the customer is silent) falls due."""
    return later(policy.calendar, waiting_since, policy.customer_reminder_after * (sent + 1))


def ticket_reminder_at(policy: CasePolicy, escalation: EscalationView, sent: int) -> datetime:
    """When the owner is reminded, again, to file the request and record its ticket number."""
    return later(
        policy.calendar, escalation.escalated_at, policy.ticket_reminder_every * (sent + 1)
    )


def vianet_follow_up_at(policy: CasePolicy, escalation: EscalationView, sent: int) -> datetime:
    """21Vianet's response target for the request's severity, then a follow-up every period."""
    assert escalation.ticket_recorded_at is not None
    target = policy.vianet_response_targets[escalation.severity]
    at = later(policy.calendar, escalation.ticket_recorded_at, target)
    return later(policy.calendar, at, policy.vianet_follow_up_every * sent)


def reopen_window_ends(policy: CasePolicy, told_at: datetime) -> datetime:
    """The customer may reopen a resolution until then (around the clock: it is their time)."""
    return told_at + policy.reopen_window

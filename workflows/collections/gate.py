"""The suspension gate: whether, and from when, a suspension that fell due may go ahead (pure).

Notices are delivered before any consequence: with a final notice in the policy the suspension
waits until it was delivered (or, when delivery is told by the provider, its bounce window passed
without a bounce). A customer's reply holds it for triage for a while; a notice that did not
arrive holds it until a person looks. Where the policy says so, a manager approves or refuses it
(asked when it falls due, reminded until they decide)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.models import CollectionsState, NoticeState


@dataclass(frozen=True)
class SuspensionGate:
    state: CollectionsState
    needs_notice: bool  # the policy gives a final notice

    def opens(self, due: datetime) -> datetime | None:
        """When a suspension due at `due` may go ahead; None while it waits for a person or for
        the final notice to go out."""
        state = self.state
        if self.needs_notice:
            match state.notice:
                case None | NoticeState.UNDELIVERED:
                    return None
                case NoticeState.SENT if state.case_policy.told_when_delivered:
                    assert state.notice_at is not None
                    due = max(due, state.notice_at + state.case_policy.no_bounce_window)
        if state.triage is None:
            return due
        if state.triage_until is None:
            return None
        held = max(due, state.triage_until)
        calendar = state.policy.calendar
        return held if calendar is None else calendar.next_opening(held)

    @property
    def awaiting_approval(self) -> bool:
        return self.state.approval_asked_at is not None

    def reminder_due(self) -> datetime | None:
        """When the manager who was asked to approve is reminded next (None: not asked, or
        reminded the policy's most times)."""
        state, policy = self.state, self.state.policy
        if state.approval_asked_at is None:
            return None
        if state.approval_reminders >= policy.approval_reminders_max:
            return None
        every: timedelta = policy.approval_reminder_every
        return state.approval_asked_at + every * (state.approval_reminders + 1)

"""The policy clock: when each step of an invoice's collections policy falls due (pure, no I/O).

Day 0 is when the failure reached us. Pauses (a dispute, a promise to pay) stop the clock: the
remaining steps move later by the length of the pause, so nothing fires in a burst on resume.
With China's business calendar a step falls on a working day in opening hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.models import CollectionsPolicy, CollectionsStep, DayCount, StepAnchor


@dataclass(frozen=True)
class PolicyClock:
    policy: CollectionsPolicy
    started_at: datetime
    offset: timedelta  # total paused time
    suspended_at: datetime | None
    offset_at_suspension: timedelta
    # (anchor, days, count) -> due: the calendar's arithmetic is pure, and asked again and again
    memo: dict[tuple[datetime, int, DayCount], datetime]

    def due(self, step: CollectionsStep) -> datetime | None:
        """Its day after its anchor, moved later by the pauses; None while its anchor (the
        suspension) has not happened."""
        if step.after is StepAnchor.FAILURE:
            anchor = self.started_at + self.offset
        elif self.suspended_at is None:
            return None
        else:
            anchor = self.suspended_at + (self.offset - self.offset_at_suspension)
        key = (anchor, step.day, self.policy.counts(step))
        if key not in self.memo:
            self.memo[key] = self._on_calendar(*key)
        return self.memo[key]

    def _on_calendar(self, anchor: datetime, days: int, counts: DayCount) -> datetime:
        calendar = self.policy.calendar
        if calendar is None:
            return anchor + days * self.policy.day_length
        if counts is DayCount.BUSINESS:
            return calendar.add_business_days(anchor, days)
        return calendar.next_opening(anchor + timedelta(days=days))

    def opening(self, at: datetime) -> datetime:
        """`at`, or the next opening after it when the policy keeps business hours."""
        calendar = self.policy.calendar
        return at if calendar is None else calendar.next_opening(at)

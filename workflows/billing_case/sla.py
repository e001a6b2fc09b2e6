"""SLA clocks: deterministic bookkeeping only (no I/O), driven by the workflow's clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.models import SlaClockState, SlaClockView


class SlaClock(SlaClockState):
    """A target that counts only while running; it pauses (waiting on others) and stops (met).

    With a calendar it counts opening hours only: `elapsed` is opening time, the target is
    opening time too (each day of it one working day's hours), and the instants it is due at
    fall in opening hours (or at closing time, when the target ends with the day)."""

    @property
    def done(self) -> bool:
        return self.met_at is not None

    def run(self, now: datetime) -> None:
        if not self.done and self.running_since is None:
            self.running_since = now

    def pause(self, now: datetime) -> None:
        if self.running_since is not None:
            if self.calendar is None:
                self.elapsed += now - self.running_since
            else:
                self.elapsed += self.calendar.business_time(self.running_since, now)
            self.running_since = None

    def meet(self, now: datetime) -> None:
        if not self.done:
            self.pause(now)
            self.met_at = now

    def restart(self, now: datetime, target: timedelta) -> None:
        """A reopened case owes a fresh resolution target; an earlier breach stays on record."""
        self.target, self.elapsed, self.running_since = target, timedelta(0), None
        self.met_at, self.reminded = None, False
        self.run(now)

    def _at(self, fraction: float) -> datetime | None:
        if self.running_since is None:
            return None
        if self.calendar is None:
            return self.running_since + self.target * fraction - self.elapsed
        left = self.calendar.business_length(self.target) * fraction - self.elapsed
        return self.calendar.add_business_hours(self.running_since, left)

    @property
    def reminder_due(self) -> datetime | None:
        return None if self.reminded or self.breached else self._at(self.reminder_at)

    @property
    def breach_due(self) -> datetime | None:
        return None if self.breached else self._at(1.0)

    def view(self) -> SlaClockView:
        return SlaClockView(
            name=self.name,
            target=self.target,
            due_at=self._at(1.0),
            paused=self.running_since is None and not self.done,
            met_at=self.met_at,
            breached=self.breached,
        )

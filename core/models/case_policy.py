"""A case's priorities, 21Vianet's severities and the case policy (SLA targets, 21Vianet's
response targets): what the policy file says (config/case_policy.toml)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import EmailStr, Field, model_validator

from core.calendar import BusinessCalendar
from core.models.shared import Strict


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Severity(StrEnum):
    """21Vianet service-request severities (initial response targets A 2 h, B 4 h, C 8 h)."""

    A = "A"
    B = "B"
    C = "C"


# --------------------------------------------------------------------------- policy


class SlaTargets(Strict):
    first_response: timedelta
    resolution: timedelta
    # counted in the business calendar's opening hours (a day = one working day's hours), not
    # around the clock; without a calendar in the policy, around the clock all the same
    business_hours: bool = False

    @model_validator(mode="after")
    def _positive(self) -> SlaTargets:
        if self.first_response <= timedelta(0) or self.resolution <= timedelta(0):
            raise ValueError("SLA targets must be positive durations")
        if self.first_response > self.resolution:
            raise ValueError("first_response must not exceed resolution")
        return self


def _default_sla() -> dict[Priority, SlaTargets]:
    hours, days = timedelta(hours=1), timedelta(days=1)
    return {
        Priority.URGENT: SlaTargets(first_response=hours, resolution=8 * hours),
        Priority.HIGH: SlaTargets(first_response=4 * hours, resolution=days),
        Priority.NORMAL: SlaTargets(first_response=8 * hours, resolution=3 * days),
        Priority.LOW: SlaTargets(first_response=days, resolution=5 * days),
    }


def _default_vianet_targets() -> dict[Severity, timedelta]:
    return {
        Severity.A: timedelta(hours=2),
        Severity.B: timedelta(hours=4),
        Severity.C: timedelta(hours=8),
    }


class CasePolicy(Strict):
    """How a case is run: read from ``config/case_policy.toml`` when the case opens.

    It travels inside the workflow input so a running case keeps the rules it started with.
    """

    sla: dict[Priority, SlaTargets] = Field(default_factory=_default_sla)
    # the owner is reminded when this fraction of an SLA target has elapsed
    sla_reminder_at: float = Field(default=0.75, gt=0, lt=1)
    customer_reminder_after: timedelta = timedelta(days=3)
    customer_reminders_max: int = Field(default=2, ge=0, le=10)
    ticket_reminder_every: timedelta = timedelta(hours=1)
    # then the manager is told, once, and the reminders stop: every repeating reminder has a cap
    ticket_reminders_max: int = Field(default=24, ge=1, le=500)
    vianet_response_targets: dict[Severity, timedelta] = Field(
        default_factory=_default_vianet_targets
    )
    vianet_follow_up_every: timedelta = timedelta(days=1)
    vianet_follow_ups_max: int = Field(default=14, ge=1, le=100)
    reopen_window: timedelta = timedelta(days=7)
    # the buyer is reminded to confirm red-letter information every this many working days, at
    # most this often (the tax system voids it unconfirmed after 72 hours: docs/fapiao.md)
    fapiao_buyer_reminder_days: int = Field(default=1, ge=1, le=10)
    fapiao_buyer_reminders_max: int = Field(default=2, ge=0, le=10)
    # a manager is told when finance has not recorded the fapiao after this many working days
    fapiao_finance_days: int = Field(default=2, ge=1, le=30)
    # a provider that reports delivery later (SendGrid): the customer counts as told of the
    # resolution when it is delivered, or when it was accepted and no bounce came within the
    # window (the Event Webhook off, or late). Set from EMAIL_BACKEND when the case opens.
    told_when_delivered: bool = False
    # the task queue a case runs on (people's work apart from a billing run's: core/settings.py
    # `cases_task_queue`); a dispute's case started by its invoice goes there. None: the
    # starter's own. Set from TASK_QUEUE when the case opens.
    task_queue: str | None = None
    no_bounce_window: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    team_email: EmailStr = "billing-support@partner.example.cn"
    manager_email: EmailStr = "billing-manager@partner.example.cn"
    # China's working days and hours, set when the case opens (core/calendar.py); None: every
    # clock runs around the clock, as before the calendar
    calendar: BusinessCalendar | None = None

    @model_validator(mode="after")
    def _complete(self) -> CasePolicy:
        missing = [p.value for p in Priority if p not in self.sla]
        if missing:
            raise ValueError(f"sla: no targets for priority {', '.join(missing)}")
        missing = [s.value for s in Severity if s not in self.vianet_response_targets]
        if missing:
            raise ValueError(
                f"vianet_response_targets: no target for severity {', '.join(missing)}"
            )
        for name in (
            "customer_reminder_after",
            "ticket_reminder_every",
            "vianet_follow_up_every",
            "reopen_window",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be a positive duration")
        return self

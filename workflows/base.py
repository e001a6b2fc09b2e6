"""What both workflows share: an event log, a queue of side effects carried out in order by the
main loop, the loop itself (effects first, then the earliest alarm), and sending email by key."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.models import CaseEvent, EmailMessage, EmailSent, EmailTemplate, EventKind, Locale

# Nothing is dropped: transient failures (database down, 429/5xx) retry until they succeed.
BUSINESS_ERRORS = (
    "EmailRejected",
    "PartnerCenterNotFound",
    "PartnerCenterForbidden",
    "PartnerCenterRejected",
)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=list(BUSINESS_ERRORS),
)
ACTIVITY_TIMEOUT = timedelta(seconds=60)


class ActionRefused(ApplicationError):
    """Raised by validators: the update is rejected and nothing changes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="ActionRefused", non_retryable=True)


@dataclass
class Email:
    template: EmailTemplate
    to: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Alarm:
    at: datetime
    label: str
    fire: Callable[[], None]


View = TypeVar("View", bound=BaseModel)


def without_timeline(view: View) -> View:
    """What an update answers, and what most emails get: the view without its timeline (the
    `view` query has it). Temporal stores each in the history: a whole timeline in every one
    would grow a long case's history with the square of its events."""
    return view.model_copy(update={"timeline": []})


def email_summary(template: EmailTemplate, locale: Locale) -> str:
    """The history's line for an email, e.g. `Email customer: case resolved (zh-CN)`."""
    if template.to_customer:
        role, what = "customer", template.value
    else:
        role, _, what = template.value.partition("_")  # owner_…, manager_…, finance_…
    return f"Email {role}: {what.replace('_', ' ')} ({locale.value})"


def business_error(err: ActivityError) -> ApplicationError | None:
    """The non-retryable error an activity gave up with, if that is why it failed."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in BUSINESS_ERRORS:
        return cause
    return None


class EffectLoop(ABC):
    """Base of both workflows: handlers change state and queue effects; `serve` carries them out."""

    def _start_log(self) -> None:
        self._events: list[CaseEvent] = []
        self._persisted = 0
        self._effects: deque[Any] = deque()
        self._emails = 0

    # -- provided by each workflow
    @abstractmethod
    def _finished(self) -> bool: ...

    @abstractmethod
    def _next_alarm(self) -> Alarm | None: ...

    @abstractmethod
    async def _persist(self, events: list[CaseEvent]) -> None: ...

    @abstractmethod
    async def _carry_out(self, effect: Any) -> None: ...

    @abstractmethod
    def _publish_details(self) -> None:
        """Set the UI's current details (a query answer, not a command: replay is unaffected)."""

    # -- shared
    async def _serve(self) -> None:
        while True:
            await self._carry_out_effects()
            self._publish_details()  # whatever changed, the UI shows it before we wait or end
            if self._finished():
                break
            alarm = self._next_alarm()
            if alarm is None:
                await workflow.wait_condition(self._has_work)
                continue
            remaining = alarm.at - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        self._has_work, timeout=remaining, timeout_summary=alarm.label
                    )
                    continue
                except TimeoutError:
                    pass
            alarm.fire()
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _has_work(self) -> bool:
        return bool(self._effects) or self._persisted < len(self._events)

    async def _carry_out_effects(self) -> None:
        while self._has_work():
            if self._persisted < len(self._events):
                upto = len(self._events)
                await self._persist(self._events[self._persisted : upto])
                self._persisted = max(self._persisted, upto)
            elif self._effects:
                await self._carry_out(self._effects.popleft())

    def _record(self, kind: EventKind, actor: str, text: str = "", **data: str) -> None:
        self._events.append(
            CaseEvent(
                seq=len(self._events) + 1,
                at=workflow.now(),
                kind=kind,
                actor=actor,
                text=text,
                data=data,
            )
        )

    async def _send_email(
        self, email: Email, locale: Locale, **about: Any
    ) -> EmailSent | ApplicationError:
        """Send once per stable key; a rejected address comes back as the error, not raised."""
        self._emails += 1
        key = f"{workflow.info().workflow_id}/{self._emails}-{email.template.value}"
        if not email.template.reads_timeline:
            about = {name: without_timeline(view) for name, view in about.items()}
        who = "customer" if email.template.to_customer else "staff"
        try:
            sent: EmailSent = await workflow.execute_activity(
                "send_email",
                EmailMessage(
                    key=key,
                    template=email.template,
                    to=email.to,
                    locale=locale,
                    extra=email.extra,
                    **about,
                ),
                result_type=EmailSent,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
                summary=email_summary(email.template, locale),
            )
        except ActivityError as err:
            rejected = business_error(err)
            if rejected is None:
                raise
            self._record(
                EventKind.EMAIL_BOUNCED, "workflow", rejected.message, template=email.template.value
            )
            return rejected
        self._record(
            EventKind.EMAIL_SENT,
            "workflow",
            email.template.value,
            to=who,
            message_id=sent.provider_message_id,
        )
        return sent

"""What every workflow shares: an event log, a queue of typed side effects carried out in order by
the main loop, the loop itself (effects first, then the earliest alarm), and sending email by key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.models import (
        CaseEvent,
        EmailData,
        EmailMessage,
        EmailSent,
        EmailTemplate,
        EventKind,
        Locale,
        Recipient,
    )

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


@dataclass(frozen=True)
class SendEmail:
    """Effect: one email, its data checked when it was queued, to the address its recipient had
    then."""

    data: EmailData
    address: str

    @property
    def template(self) -> EmailTemplate:
        return EmailTemplate(self.data.template)  # type: ignore[attr-defined]

    @property
    def recipient(self) -> Recipient:
        return self.data.recipient


@dataclass
class Alarm:
    at: datetime
    label: str
    fire: Callable[[], None]


View = TypeVar("View", bound=BaseModel)
Effect = TypeVar("Effect")


def without_timeline(view: View) -> View:
    """What an update answers, and what most emails get: the view without its timeline (the
    `view` query has it). Temporal stores each in the history: a whole timeline in every one
    would grow a long case's history with the square of its events."""
    return view.model_copy(update={"timeline": []})


def email_summary(email: SendEmail, locale: Locale) -> str:
    """The history's line for an email, e.g. `Email customer: case resolved (zh-CN)`."""
    what = email.template.value
    if email.recipient is not Recipient.CUSTOMER:
        what = what.partition("_")[2]  # owner_new_case -> new case
    return f"Email {email.recipient.value}: {what.replace('_', ' ')} ({locale.value})"


def business_error(err: ActivityError) -> ApplicationError | None:
    """The non-retryable error an activity gave up with, if that is why it failed."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in BUSINESS_ERRORS:
        return cause
    return None


class EffectLoop(ABC, Generic[Effect]):
    """Base of every workflow: handlers change state and queue effects; `serve` carries them out."""

    def _start_log(self) -> None:
        self._events: list[CaseEvent] = []
        self._persisted = 0
        self._effects: deque[Effect] = deque()
        self._emails = 0

    # -- provided by each workflow
    @abstractmethod
    def _finished(self) -> bool: ...

    @abstractmethod
    def _next_alarm(self) -> Alarm | None: ...

    @abstractmethod
    async def _persist(self, events: list[CaseEvent]) -> None: ...

    @abstractmethod
    async def _carry_out(self, effect: Effect) -> None: ...

    @abstractmethod
    def _address(self, recipient: Recipient) -> str:
        """Where an email to `recipient` goes now."""

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

    def _email(self, data: EmailData) -> SendEmail:
        """The email to its recipient's address as of now (queue it, or deliver it as a step)."""
        return SendEmail(data, self._address(data.recipient))

    def _queue_email(self, data: EmailData) -> None:
        # every workflow's effects include SendEmail
        self._effects.append(cast(Effect, self._email(data)))

    async def _send_email(
        self, email: SendEmail, locale: Locale, **about: Any
    ) -> EmailSent | ApplicationError:
        """Send once per stable key; a rejected address comes back as the error, not raised."""
        self._emails += 1
        key = f"{workflow.info().workflow_id}/{self._emails}-{email.template.value}"
        if not email.data.reads_timeline:
            about = {name: without_timeline(view) for name, view in about.items()}
        who = "customer" if email.recipient is Recipient.CUSTOMER else "staff"
        try:
            sent: EmailSent = await workflow.execute_activity(
                "send_email",
                EmailMessage(
                    key=key,
                    to=email.address,
                    locale=locale,
                    data=email.data,
                    **about,
                ),
                result_type=EmailSent,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
                summary=email_summary(email, locale),
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

"""What every workflow shares: an event log, a queue of typed side effects carried out in order by
the main loop, the loop itself (effects first, then the earliest alarm), sending email by key, and
the rule that data never wedges a workflow.

That rule: an activity retries a transient failure (a database or a provider down) with backoff,
for ACTIVITY_RETRY_BUDGET; a permanent one (data refused, a template that cannot render, input
that does not validate) fails at once. Either way the step that failed does not fail the
workflow: it is recorded in the timeline, the workflow sets NeedsAttention, tells a manager once
and waits for an operator to retry the step (after a fix) or skip it. Everything else a workflow
does keeps working meanwhile: updates, queries, the database row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from core import search
    from core.calendar import BusinessCalendar
    from core.contracts import SEND_EMAIL, ActivityContract, SignalContract
    from core.models import (
        Attention,
        CaseEvent,
        EmailData,
        EmailMessage,
        EmailSent,
        EmailTemplate,
        EventKind,
        HandleAttention,
        Locale,
        LogState,
        Recipient,
        RetryStep,
        SkipStep,
        StepAnswer,
    )
    from core.models.email import ManagerNeedsAttention
    from workflows.effects import WORKFLOW, Flag

# Permanent answers a workflow handles itself: a bounced address, Partner Center's 4xx.
BUSINESS_ERRORS = (
    "EmailRejected",
    "PartnerCenterNotFound",
    "PartnerCenterForbidden",
    "PartnerCenterRejected",
)
# Permanent failures of a step: retrying the same input cannot help; an operator looks.
PERMANENT_ERRORS = ("DataRefused", "RenderFailed", "ValidationError", "PartnerCenterKeyReused")
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[*BUSINESS_ERRORS, *PERMANENT_ERRORS],
)
ACTIVITY_TIMEOUT = timedelta(seconds=60)
# how long a transient failure is retried (about 80 attempts) before a person is asked
ACTIVITY_RETRY_BUDGET = timedelta(hours=6)
REASON_CHARS = 500
# the events a workflow keeps (all are in the database), and how much of each text
TAIL_EVENTS = 20
TAIL_TEXT_CHARS = 1_000
# a run continues as new past either (or when the server suggests it): every history stays small;
# never before MIN_RUN_EVENTS, so a run that starts with a large state cannot loop
HISTORY_EVENTS_BUDGET = 2_000
HISTORY_BYTES_BUDGET = 3 * 1024 * 1024
MIN_RUN_EVENTS = 100


def activity_options(summary: str) -> dict[str, Any]:
    """The timeouts and retries of every activity a workflow runs, with its line in the history."""
    return {
        "start_to_close_timeout": ACTIVITY_TIMEOUT,
        "schedule_to_close_timeout": ACTIVITY_RETRY_BUDGET,
        "retry_policy": RETRY,
        "summary": summary,
    }


A = TypeVar("A")
R = TypeVar("R")


async def run(contract: ActivityContract[A, R], arg: A, summary: str, *, local: bool = False) -> R:
    """Run an activity named in `core.contracts`, with every activity's timeouts and retries: a
    local one (a database write) runs inside the workflow task that asked for it."""
    execute = workflow.execute_local_activity if local else workflow.execute_activity
    result = await execute(
        contract.name, arg, result_type=contract.result, **activity_options(summary)
    )
    return cast(R, result)


async def send(workflow_id: str, contract: SignalContract[A], arg: A) -> None:
    """Signal another workflow through a signal named in `core.contracts`."""
    await workflow.get_external_workflow_handle(workflow_id).signal(contract.name, arg)


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
    # the dedup key of an email sent once whichever workflow sends it (else one of this workflow)
    key: str | None = None

    @property
    def template(self) -> EmailTemplate:
        return EmailTemplate(self.data.template)  # type: ignore[attr-defined]

    @property
    def recipient(self) -> Recipient:
        return self.data.recipient


@dataclass
class Stuck:
    """A step that failed and waits for an operator."""

    step: str
    error: str
    since: datetime


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


def cut(text: str, chars: int = TAIL_TEXT_CHARS) -> str:
    """A long free text as an answer or a tail keeps it (the database and the query have it)."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def email_summary(email: SendEmail, locale: Locale) -> str:
    """The history's line for an email, e.g. `Email customer: case resolved (zh-CN)`."""
    what = email.template.value
    if email.recipient is not Recipient.CUSTOMER:
        what = what.partition("_")[2]  # owner_new_case -> new case
    return f"Email {email.recipient.value}: {what.replace('_', ' ')} ({locale.value})"


def _shortened(event: CaseEvent) -> CaseEvent:
    """An event as the workflow keeps it once it is saved: a long text cut (the database has it)."""
    if len(event.text) <= TAIL_TEXT_CHARS:
        return event
    return event.model_copy(update={"text": cut(event.text)})


def failure_reason(err: BaseException) -> str:
    """What went wrong, for the timeline and the manager: the innermost message, bounded."""
    while isinstance(err, FailureError) and err.cause is not None:
        err = err.cause
    text = err.message if isinstance(err, FailureError) else str(err)
    kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
    reason = f"{kind}: {text}" if text else kind
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"


def business_error(err: ActivityError) -> ApplicationError | None:
    """The non-retryable error an activity gave up with, if that is why it failed."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in BUSINESS_ERRORS:
        return cause
    return None


class RecentActions:
    """The action ids a workflow took (ULIDs: they sort by when they were made), the newest KEEP
    of them; an id at or before the newest one forgotten counts as taken."""

    KEEP = 256

    def __init__(self, kept: list[str], forgotten: str = "") -> None:
        self._kept = set(kept)
        self.forgotten = forgotten

    @property
    def kept(self) -> list[str]:
        return sorted(self._kept)

    def knows(self, action_id: str) -> bool:
        return action_id in self._kept or action_id <= self.forgotten

    def remember(self, action_id: str) -> None:
        self._kept.add(action_id)
        if len(self._kept) > self.KEEP:
            oldest = min(self._kept)
            self._kept.remove(oldest)
            self.forgotten = max(self.forgotten, oldest)


# refused signals a run records one by one, and then one in how many
REFUSALS_RECORDED, REFUSALS_COUNTED = 20, 1000


class EffectLoop(ABC, Generic[Effect]):
    """Base of every workflow: handlers change state and queue effects; `serve` carries them out."""

    def _start_log(self, carried: LogState | None = None) -> None:
        log = carried or LogState(last_seq=0, emails_sent=0)
        self._tail: deque[CaseEvent] = deque(log.tail, maxlen=TAIL_EVENTS)
        self._unsaved: list[CaseEvent] = list(log.unsaved)  # not yet in the database: whole
        self._seq = log.last_seq
        self._refused = 0  # signals refused in this run (a flood is counted, not recorded each)
        self._effects: deque[Effect] = deque()
        self._emails = log.emails_sent
        self._stuck: Stuck | None = None
        self._decision: Literal["retry", "skip"] | None = None
        self._flagged: str | None = log.flagged  # why a manager must look, besides a failed step
        self._flag_reason: Attention | None = log.flag_reason
        self._attention_shown: str | None = log.attention  # what NeedsAttention says now
        self._calendar_alerted: set[int] = set()  # uncovered years a manager was told of
        self._actions = RecentActions(log.actions, log.actions_forgotten)
        # what the search attributes say (as the workflow started, or its last run left them)
        self._shown = {
            pair.key.name: pair.value for pair in workflow.info().typed_search_attributes
        }
        # a new run compares them once (Temporal carries them over: normally nothing to write)
        self._attributes_changed = carried is not None

    def _log_state(self) -> LogState:
        return LogState(
            tail=list(self._tail),
            unsaved=list(self._unsaved),
            last_seq=self._seq,
            emails_sent=self._emails,
            flagged=self._flagged,
            flag_reason=self._flag_reason,
            attention=self._attention_shown,
            actions=self._actions.kept,
            actions_forgotten=self._actions.forgotten,
        )

    def _timeline(self) -> list[CaseEvent]:
        """The recent events (the database has them all), the unsaved ones whole."""
        return [*self._tail, *self._unsaved]

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
    def _attributes(self) -> TypedSearchAttributes:
        """What the workflow's search attributes should say now (no customer data)."""

    @abstractmethod
    def _publish_details(self) -> None:
        """Set the UI's current details (a query answer, not a command: replay is unaffected)."""

    @abstractmethod
    def _continue_as_new(self) -> None:
        """Continue as a new run with everything the next one needs (raises, never returns)."""

    def _carry_on(self, start: BaseModel, state: BaseModel) -> None:
        """Continue as new: the workflow's input again, carrying its one state model whole, with
        the shell's log (raises, never returns)."""
        carried = state.model_copy(update={"log": self._log_state()})
        workflow.continue_as_new(start.model_copy(update={"carried": carried}))

    @abstractmethod
    def _send_locale(self) -> Locale:
        """The language of this workflow's emails."""

    @abstractmethod
    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        """Send with this workflow's view; a rejected address comes back, not raised."""

    # -- operators: a step that failed is retried or skipped
    @workflow.update
    def retry_step(self, data: RetryStep) -> StepAnswer:
        stuck = self._stuck
        assert stuck is not None  # the validator saw to it
        self._record(EventKind.STEP_RETRIED, data.by, stuck.step)
        self._decision = "retry"
        return StepAnswer(
            workflow_id=workflow.info().workflow_id, step=stuck.step, decision="retry"
        )

    @retry_step.validator
    def _check_retry(self, data: RetryStep) -> None:
        self._refuse_unless_stuck()

    @workflow.update
    def skip_step(self, data: SkipStep) -> StepAnswer:
        stuck = self._stuck
        assert stuck is not None
        self._record(EventKind.STEP_SKIPPED, data.by, data.reason, step=stuck.step)
        self._decision = "skip"
        return StepAnswer(workflow_id=workflow.info().workflow_id, step=stuck.step, decision="skip")

    @skip_step.validator
    def _check_skip(self, data: SkipStep) -> None:
        self._refuse_unless_stuck()

    # -- a person saw to what a flag asked (an exempt customer asked to suspend, a wait that ran
    # out): the flag clears, unless the workflow still waits for something (then it says that)
    @workflow.update
    def clear_attention(self, data: HandleAttention) -> StepAnswer:
        why = self._flagged or ""
        self._record(EventKind.ATTENTION_HANDLED, data.by, data.note, about=why)
        self._unflag()
        self._publish()
        return StepAnswer(workflow_id=workflow.info().workflow_id, step=why, decision="handled")

    @clear_attention.validator
    def _check_clear(self, data: HandleAttention) -> None:
        if self._stuck is not None:
            raise ActionRefused(
                f"{workflow.info().workflow_id}: a failed step waits: retry it or skip it"
            )
        if self._flagged is None:
            raise ActionRefused(f"{workflow.info().workflow_id} waits for nobody")

    def _refuse_unless_stuck(self) -> None:
        if self._stuck is None or self._decision is not None:
            raise ActionRefused(
                f"{workflow.info().workflow_id} has no failed step waiting for an operator"
            )

    # -- shared
    async def _serve(self) -> None:
        while True:
            await self._carry_out_effects()
            self._flush_attributes()
            self._publish_details()  # whatever changed, the UI shows it before we wait or end
            if self._finished():
                break
            if self._history_full():
                # no handler half done; events not saved yet go along, effects are carried out
                # first (a steady stream of actions only records events: it never holds this up)
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._effects and self._stuck is None:
                    self._continue_as_new()
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
        # what the last handlers recorded is saved too
        if self._has_steps():
            await self._carry_out_effects()
        self._flush_attributes()

    def _history_full(self) -> bool:
        info = workflow.info()
        if info.get_current_history_length() < MIN_RUN_EVENTS:
            return False
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= HISTORY_EVENTS_BUDGET
            or info.get_current_history_size() >= HISTORY_BYTES_BUDGET
        )

    def _has_steps(self) -> bool:
        return bool(self._effects) or bool(self._unsaved)

    def _has_work(self) -> bool:
        return self._has_steps() or self._attributes_changed

    async def _carry_out_effects(self) -> None:
        """Save what happened, then carry out one effect, and again until nothing is left.

        One effect between two saves: a steady stream of actions (notes, say) keeps adding events
        to save, and must not hold the emails back. A full history stops here too (the events
        go along unsaved into the next run), so such a stream cannot keep a run going either."""
        while self._has_steps() and not (
            self._history_full() and not self._effects and not self._finished()
        ):
            if self._unsaved and self._save_first():
                saving = list(self._unsaved)
                await self._step("save to the database", self._persist, saving)
                del self._unsaved[: len(saving)]
                self._tail.extend(_shortened(event) for event in saving)
            if self._effects:
                effect = self._effects[0]
                await self._step(self._describe(effect), self._carry_out, effect)
                self._effects.popleft()

    def _save_first(self) -> bool:
        """Whether the events not saved yet are written before the next effect. What a person
        did (and whatever a run records first) is in the database before the workflow acts on
        it. The workflow's own events (an email sent, a reminder due) wait for the save after
        the next effect: a run of effects costs one write, not one each."""
        if not self._effects or not self._tail:
            return True
        return any(event.actor != WORKFLOW for event in self._unsaved)

    async def _write(self, contract: ActivityContract[A, None], arg: A, summary: str) -> None:
        """A database write, as a local activity: the worker runs it inside the workflow task
        that asked for it, so it costs no task-queue round trip and no activity events, only a
        marker that keeps the summary for the UI. Same timeouts, retries and failed-step
        handling as any step."""
        await run(contract, arg, summary, local=True)

    def _describe(self, effect: Effect) -> str:
        """An effect as the timeline and the manager read it."""
        if isinstance(effect, SendEmail):
            return email_summary(effect, self._send_locale())
        return type(effect).__name__

    async def _step(self, label: str, run: Callable[[Any], Any], arg: Any) -> None:
        """Run one step; when it fails, wait for an operator to retry or skip it."""
        while True:
            try:
                await run(arg)
                return
            except CancelledError:
                raise
            except FailureError as err:
                if await self._operator_decides(label, failure_reason(err)) == "skip":
                    return

    async def _operator_decides(self, label: str, reason: str) -> Literal["retry", "skip"]:
        self._stuck = Stuck(label, reason, workflow.now())
        self._record(EventKind.STEP_FAILED, WORKFLOW, reason, step=label)
        self._flush_attributes()
        self._show_attention()
        self._publish_details()
        await self._tell_manager(label, reason)
        while self._decision is None:  # what handlers change meanwhile is shown meanwhile
            await workflow.wait_condition(
                lambda: self._decision is not None or self._attributes_changed
            )
            self._flush_attributes()
        decision = self._decision
        assert decision is not None
        self._stuck, self._decision = None, None
        self._show_attention()
        return decision

    async def _tell_manager(self, step: str, reason: str) -> None:
        """Once per failed step or flag; if even this email fails, the timeline has it."""
        email = self._email(
            ManagerNeedsAttention(step=step, error=reason, reason=Attention.FAILED_STEP)
        )
        try:
            await self._send(email)
        except CancelledError:
            raise
        except FailureError as err:
            self._record(
                EventKind.EMAIL_BOUNCED,
                WORKFLOW,
                failure_reason(err),
                template=email.template.value,
            )

    def _flag(self, why: str, reason: Attention = Attention.STALLED, *, tell: bool = True) -> None:
        """A manager must look (a reminder ran out, a signal was refused); told once, until the
        flag is cleared (`tell` False: an email of the workflow's own says it already)."""
        if self._flagged == why and self._flag_reason is reason:
            return
        told = self._flagged is not None
        self._flagged, self._flag_reason = why, reason
        self._record(EventKind.NEEDS_ATTENTION, WORKFLOW, why)
        if tell and not told:  # one email until a person clears the flag; the timeline has all
            self._queue_email(ManagerNeedsAttention(step=why, error="", reason=reason))
        self._show_attention()

    def knows_action(self, action_id: str) -> bool:
        return self._actions.knows(action_id)

    def remember_action(self, action_id: str) -> None:
        self._actions.remember(action_id)

    def refuse_signal(self, signal: str, why: str) -> bool:
        """A signal sent in clear (workflows/sealed.py): in the timeline, and nothing changes.
        A flood is counted: the first REFUSALS_RECORDED of a run are recorded each, then every
        REFUSALS_COUNTED-th with the count so far (10,000 refused signals are not 10,000 rows
        and log lines). True when this one was recorded."""
        self._refused += 1
        n = self._refused
        if n > REFUSALS_RECORDED and n % REFUSALS_COUNTED:
            return False
        text = why if n <= REFUSALS_RECORDED else f"{why} ({n} refused in this run so far)"
        self._record(EventKind.SIGNAL_REFUSED, WORKFLOW, text, signal=signal, refused=str(n))
        return True

    def _unflag(self) -> None:
        if self._flagged is None:
            return
        self._flagged = self._flag_reason = None
        if (pending := self._still_waiting()) is not None:  # shown again, not told again
            self._flagged, self._flag_reason = pending.why, pending.reason
        self._show_attention()

    def _still_waiting(self) -> Flag | None:
        """What the workflow still waits for a person to do once a flag cleared (its rules
        know: an invoice's suspension still waiting for approval); None: nothing."""
        return None

    def _publish(self) -> None:
        """Keep what a manager filters and reads in the UI current (no customer data in either):
        the details now, the search attributes once the main loop gets to them (one upsert for
        all that changed since, and none when nothing did)."""
        self._attributes_changed = True
        self._publish_details()

    def _flush_attributes(self) -> None:
        if not self._attributes_changed:
            return
        self._attributes_changed = False
        changed = [p for p in self._attributes() if self._shown.get(p.key.name) != p.value]
        if changed:
            workflow.upsert_search_attributes([p.key.value_set(p.value) for p in changed])
            self._shown.update((p.key.name, p.value) for p in changed)

    def _show_attention(self) -> None:
        reason = self._attention_reason()
        wanted = reason.value if reason is not None else None
        if wanted != self._attention_shown:  # the attribute is written only when it changes
            self._attention_shown = wanted
            key = search.NEEDS_ATTENTION
            workflow.upsert_search_attributes(
                [key.value_set(wanted) if wanted else key.value_unset()]
            )

    def _attention_reason(self) -> Attention | None:
        """Why a person must act now, if one must (the NeedsAttention attribute's value)."""
        if self._stuck is not None:
            return Attention.FAILED_STEP
        if self._flagged is not None:
            return self._flag_reason or Attention.STALLED
        return None

    def _attention_line(self) -> str | None:
        """The line the UI's details and the views give a manager, if one must look."""
        if self._stuck is not None:
            return (
                f"NEEDS ATTENTION: {self._stuck.step} failed: {self._stuck.error} "
                "(retry it after a fix, or skip it with a reason)"
            )
        if self._flagged is not None:
            return f"NEEDS ATTENTION: {self._flagged}"
        return None

    def _record(self, kind: EventKind, actor: str, text: str = "", **data: str) -> None:
        self._seq += 1
        self._unsaved.append(
            CaseEvent(
                seq=self._seq, at=workflow.now(), kind=kind, actor=actor, text=text, data=data
            )
        )

    def _email_view(self, view: View) -> View:
        """What an email gets of its view: no timeline (the database's), and what else the
        workflow leaves out to keep an email's input small."""
        return without_timeline(view)

    def _key(self, name: str) -> str:
        """A dedup key unique for ever: the workflow id and its first run's id (an id used again
        after retention starts another chain of runs)."""
        info = workflow.info()
        return f"{info.workflow_id}/{info.first_execution_run_id}/{name}"

    def _email(self, data: EmailData) -> SendEmail:
        """The email to its recipient's address as of now (queue it, or deliver it as a step)."""
        return SendEmail(data, self._address(data.recipient))

    def _queue_email(self, data: EmailData) -> None:
        # every workflow's effects include SendEmail
        self._effects.append(cast(Effect, self._email(data)))

    def _calendar_alert(self, calendar: BusinessCalendar, *instants: datetime | None) -> None:
        """A time this workflow keeps falls in a year the calendar's package does not cover:
        one email to a manager for that year, from whichever workflow comes first (its key is
        the year's, so the email log sends it once)."""
        year = calendar.first_uncovered(*instants)
        if year is None or year in self._calendar_alerted:
            return
        self._calendar_alerted.add(year)
        why = (
            f"China business calendar: {calendar.source} has no official holidays or 调休 "
            f"make-up days for {year}, so {year} counts Monday to Friday as working days until "
            "an operator updates the chinesecalendar package and restarts the worker, the API "
            "and the CLI (docs/email-and-calendar.md)"
        )
        email = self._email(ManagerNeedsAttention(step=why, error=""))
        key = f"business-calendar/{year}-not-covered"
        self._effects.append(cast(Effect, SendEmail(email.data, email.address, key)))

    async def _send_email(
        self, email: SendEmail, locale: Locale, **about: Any
    ) -> EmailSent | ApplicationError:
        """Send once per stable key; a rejected address comes back as the error, not raised."""
        self._emails += 1
        locale = email.data.language() or locale  # an agent's reply written in the other one
        key = email.key or self._key(f"{self._emails}-{email.template.value}")
        about = {name: self._email_view(view) for name, view in about.items()}
        who = "customer" if email.recipient is Recipient.CUSTOMER else "staff"
        try:
            sent = await run(
                SEND_EMAIL,
                EmailMessage(key=key, to=email.address, locale=locale, data=email.data, **about),
                email_summary(email, locale),
            )
        except ActivityError as err:
            rejected = business_error(err)
            if rejected is None:
                raise
            self._record(
                EventKind.EMAIL_BOUNCED, WORKFLOW, rejected.message, template=email.template.value
            )
            return rejected
        self._record(
            EventKind.EMAIL_SENT,
            WORKFLOW,
            email.template.value,
            to=who,
            message_id=sent.provider_message_id,
        )
        return sent

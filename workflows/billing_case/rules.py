"""A billing case's rules, as a plain state machine: `Case` is the case's one state (the fields of
`core.models.CaseState`, which a run carries whole into the next), and each transition takes its
input and `now`, changes the case and answers the typed effects the shell carries out (an event
for the timeline, an email, a step such as rendering the 21Vianet request). `refusal` says, before
any transition, why an action cannot be taken now; transitions assume it said nothing.

No Temporal here: the shell (workflow.py) calls these, and tests/test_case_rules.py drives them
over random weeks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.ids import is_collections_workflow_id
from core.models import (
    FAPIAO_WAITS,
    MERGEABLE_STATUSES,
    WORKING_STATUSES,
    AddNote,
    Assign,
    Attention,
    BuyerMustConfirm,
    CaseState,
    CaseStatus,
    Confirm,
    CustomerReply,
    DisputeOutcome,
    Escalate,
    EscalationView,
    EventKind,
    FapiaoKind,
    FapiaoRecorded,
    FapiaoTask,
    FapiaoTaskKind,
    LinkCase,
    Merge,
    MergedIn,
    OpenCase,
    Recipient,
    RecordedFapiao,
    Reopen,
    Reply,
    RequestFapiao,
    RequestInfo,
    ResolutionView,
    Resolve,
    UnlinkCase,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from core.models.email import (
    CaseAcknowledged,
    CaseClosed,
    CaseEscalated,
    CaseMerged,
    CaseReopened,
    CaseReply,
    CaseResolved,
    CaseWithdrawn,
    CustomerReminder,
    FapiaoConfirmRedLetter,
    InfoRequested,
    ManagerSlaBreach,
    OwnerCaseUpdate,
    OwnerCustomerSilent,
    OwnerEmailBounced,
    OwnerEscalationReminder,
    OwnerFileEscalation,
    OwnerNewCase,
    OwnerSlaReminder,
)
from core.models.email_data import EmailData, EmailTemplate
from core.models.messages import EmailDelivered, EmailUndelivered
from workflows.billing_case.clocks import (
    customer_reminder_at,
    reopen_window_ends,
    ticket_reminder_at,
    vianet_follow_up_at,
    working_days_after,
)
from workflows.billing_case.sla import SlaClock
from workflows.effects import WORKFLOW, Email, Flag, Record

# The statuses in which each SLA clock counts; elsewhere (waiting on the customer or 21Vianet,
# resolving, after) it is paused.
FIRST_RESPONSE_RUNS = frozenset({CaseStatus.OPEN})
# (finance is the partner's own team: its fapiao counts toward the resolution)
RESOLUTION_RUNS = frozenset(
    {CaseStatus.OPEN, CaseStatus.ESCALATION_PENDING, CaseStatus.WAITING_ON_FINANCE}
)
# escalations of one case: what it carries stays well inside a payload (each may hold 64 KiB of
# reason, request and answer)
MAX_ESCALATIONS = 5
_TEMPLATES = frozenset(t.value for t in EmailTemplate)

CaseAction = (
    Assign
    | AddNote
    | UpdateContact
    | Reply
    | RequestInfo
    | CustomerReply
    | Resolve
    | Escalate
    | VianetTicket
    | VianetResponse
    | Confirm
    | Reopen
    | Withdraw
    | RequestFapiao
    | BuyerMustConfirm
    | FapiaoRecorded
    | Merge
    | MergedIn
    | LinkCase
    | UnlinkCase
)


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class DeliverResolution:
    """Effect: the resolution email; the case is resolved only once it reached the customer."""

    email: Email


@dataclass(frozen=True)
class PrepareRequest:
    """Effect: render 21Vianet request `number` (1-based) for the agent to file in the portal."""

    number: int


@dataclass(frozen=True)
class SaveEscalation:
    """Effect: keep 21Vianet escalation `number` (1-based) current in the database."""

    number: int


@dataclass(frozen=True)
class ReportOutcome:
    """Effect: tell the collections workflow of the disputed invoice how the case ended."""

    workflow_id: str
    outcome: DisputeOutcome


@dataclass(frozen=True)
class Unflag:
    """Effect: the status changed, so what ran out (a wait in the status left) no longer holds."""


Effect = (
    Record
    | Email
    | DeliverResolution
    | PrepareRequest
    | SaveEscalation
    | ReportOutcome
    | Flag
    | Unflag
)


class Timer(StrEnum):
    FIRST_RESPONSE_REMINDER = "first-response-reminder"
    FIRST_RESPONSE_BREACH = "first-response-breach"
    RESOLUTION_REMINDER = "resolution-reminder"
    RESOLUTION_BREACH = "resolution-breach"
    CUSTOMER_REMINDER = "customer-reminder"
    CUSTOMER_SILENT = "customer-silent"
    TICKET_REMINDER = "ticket-reminder"
    VIANET_FOLLOW_UP = "vianet-follow-up"
    NO_BOUNCE = "no-bounce"
    REOPEN_WINDOW = "reopen-window"
    FAPIAO_BUYER_REMINDER = "fapiao-buyer-reminder"
    FAPIAO_FINANCE_OVERDUE = "fapiao-finance-overdue"


@dataclass(frozen=True)
class Due:
    """A timer the case waits for: when, what the UI calls it, which."""

    at: datetime
    label: str
    timer: Timer


# --------------------------------------------------------------------------- the case


class Case(CaseState):
    """The case's state (no field of its own: `CaseState` declares them) and its transitions."""

    first_response_sla: SlaClock
    resolution_sla: SlaClock

    @classmethod
    def open(cls, data: OpenCase, now: datetime) -> tuple[Case, list[Effect]]:
        """A new case: acknowledged to the customer, announced to the owner, its clocks running."""
        policy = data.policy
        targets = policy.sla[data.details.priority]
        calendar = policy.calendar if targets.business_hours else None

        def clock(name: str, target: timedelta) -> SlaClock:
            return SlaClock(
                name=name, target=target, reminder_at=policy.sla_reminder_at, calendar=calendar
            )

        case = cls(
            case_id=data.case_id,
            opened_by=data.opened_by,
            policy=policy,
            details=data.details,
            owner=data.owner,
            opened_at=now,
            first_response_sla=clock("first response", targets.first_response),
            resolution_sla=clock("resolution", targets.resolution),
            collections_workflow_id=data.collections_workflow_id,
        )
        case._sync_clocks(now)
        opened = Record(EventKind.OPENED, data.opened_by, data.details.description)
        return case, [opened, case._email(CaseAcknowledged()), case._email(OwnerNewCase())]

    @classmethod
    def carried(cls, state: CaseState) -> Case:
        return cls.model_validate(state.model_dump())

    # ------------------------------------------------------------------ what may be done

    def refusal(self, action: CaseAction, now: datetime) -> str | None:
        """Why `action` cannot be taken now (the update is refused and nothing changes)."""
        match action:
            case Assign():
                return self._unless_final("assign")
            case AddNote():
                return self._unless_final("add a note to")
            case UpdateContact():
                return self._unless_final("change the contact of")
            case Reply():
                if self.status.is_final:
                    return (
                        f"cannot reply on case {self.case_id}: it is {self.status.value}; "
                        "the customer's next email opens a new case"
                    )
                return None
            case RequestInfo():
                asking = {CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}
                return self._needs(asking, "request information")
            case CustomerReply():
                return self._needs(WORKING_STATUSES | FAPIAO_WAITS, "record a customer reply on")
            case Resolve():
                return self._resolve_refusal(action)
            case Escalate():
                if len(self.escalations) >= MAX_ESCALATIONS:
                    return (
                        f"case {self.case_id} was escalated to 21Vianet {MAX_ESCALATIONS} times: "
                        "a manager decides what happens next"
                    )
                return self._needs({CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}, "escalate")
            case VianetTicket():
                if self.status is CaseStatus.WAITING_ON_VIANET:
                    return (
                        f"case {self.case_id} already has 21Vianet ticket "
                        f"{self.escalations[-1].ticket_number}"
                    )
                return self._needs(
                    {CaseStatus.ESCALATION_PENDING}, "record a 21Vianet ticket number on"
                )
            case VianetResponse():
                if self.status is CaseStatus.ESCALATION_PENDING:
                    return (
                        f"case {self.case_id} has no 21Vianet ticket number yet: "
                        "record it with vianet-ticket first"
                    )
                return self._needs({CaseStatus.WAITING_ON_VIANET}, "record a 21Vianet response on")
            case Confirm():
                return self._needs({CaseStatus.RESOLVED}, "confirm")
            case Reopen():
                ends = self.reopen_window_ends()
                if ends is not None and now >= ends:
                    return (
                        f"cannot reopen case {self.case_id}: its reopen window ended at "
                        f"{ends:%Y-%m-%d %H:%M} UTC (open a new case)"
                    )
                return self._needs({CaseStatus.RESOLVED}, "reopen")
            case Withdraw():
                if self.fapiao_task is not None and self.fapiao_task.for_credit:
                    return (
                        f"cannot withdraw case {self.case_id}: its credit waits for the "
                        "red-letter fapiao"
                    )
                return self._needs(WORKING_STATUSES | FAPIAO_WAITS, "withdraw")
            case RequestFapiao() | BuyerMustConfirm() | FapiaoRecorded():
                return self._fapiao_refusal(action)
            case Merge():
                return self._merge_refusal(action)
            case MergedIn():
                if action.case_id == self.case_id:
                    return "case_id: a case cannot merge into itself"
                return self._unless_final("merge a case into")
            case LinkCase():  # and UnlinkCase
                if action.other == self.case_id:
                    return "other: a case cannot be linked to itself"
                return self._unless_final("link")

    def _fapiao_refusal(
        self, action: RequestFapiao | BuyerMustConfirm | FapiaoRecorded
    ) -> str | None:
        task = self.fapiao_task
        if isinstance(action, RequestFapiao):
            if task is not None:
                return (
                    f"case {self.case_id} already waits for finance's fapiao "
                    f"({task.kind.value}): record it on the fapiao tasks page first"
                )
            if action.kind.reverses and not action.blue_numbers:
                return (
                    f"no issued fapiao is recorded for bill {self.details.invoice_id or '(none)'} "
                    "of this case: finance records the bill's fapiao first"
                )
            return self._needs(
                {CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}, "ask for a fapiao on"
            )
        if task is None:
            return f"case {self.case_id} has no fapiao task open"
        if isinstance(action, BuyerMustConfirm):
            if not task.kind.reverses:
                return f"case {self.case_id}: a fapiao to issue needs no buyer confirmation"
            return None
        if task.kind is FapiaoTaskKind.REISSUE and action.red_fapiao_number is None:
            return (
                "red_fapiao_number: a reissue records the red-letter fapiao that reversed the "
                "old one as well as the new one"
            )
        if task.kind is not FapiaoTaskKind.REISSUE and action.red_fapiao_number is not None:
            return (
                f"red_fapiao_number: only a reissue records two fapiao (this is {task.kind.value})"
            )
        numbers = {n for n in (action.fapiao_number, action.red_fapiao_number) if n}
        if action.red_fapiao_number == action.fapiao_number:
            return "red_fapiao_number: the red-letter fapiao and the new one differ"
        known = numbers & ({f.number for f in self.fapiao} | set(task.blue_numbers))
        if known:
            return f"fapiao_number: {min(known)} is already recorded"
        return None

    def _merge_refusal(self, action: Merge) -> str | None:
        """A duplicate merges into another open case of the same customer, never into itself
        (the target's facts come with the action: the service read them)."""
        into, tenant = action.into, self.details.customer.tenant_id
        if into == self.case_id:
            return "into: a case cannot merge into itself"
        if self.status.is_final:
            return f"cannot merge case {self.case_id}: it is {self.status.value}"
        if self.status not in MERGEABLE_STATUSES:
            return (
                f"cannot merge case {self.case_id}: it is {self.status.value}, with work of its "
                "own; merge the other case into this one instead"
            )
        if self.collections_workflow_id is not None:
            return (
                f"cannot merge case {self.case_id}: it disputes an invoice in collections "
                f"({self.collections_workflow_id}), which waits for its outcome; resolve or "
                "withdraw it instead"
            )
        if action.into_status.is_final:
            return (
                f"into: case {into} is {action.into_status.value}; a case merges only into "
                "one still open"
            )
        if action.into_tenant_id != tenant:
            return (
                f"into: case {into} is another customer's (tenant {action.into_tenant_id}, "
                f"not {tenant}); a case merges only into one of the same customer"
            )
        return None

    def _resolve_refusal(self, action: Resolve) -> str | None:
        if self.status in (CaseStatus.ESCALATION_PENDING, CaseStatus.WAITING_ON_VIANET):
            return (
                f"case {self.case_id} is escalated to 21Vianet ({self.status.value}): "
                "record 21Vianet's answer with vianet-response before resolving"
            )
        wrong = self._needs({CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER}, "resolve")
        credit = action.credit_amount
        if wrong is None and credit is not None and credit > self.details.disputed_amount:
            return (
                f"credit_amount {credit} exceeds the disputed amount "
                f"{self.details.disputed_amount} {self.details.currency}"
            )
        return wrong

    def _unless_final(self, action: str) -> str | None:
        if self.status.is_final:
            return f"cannot {action} case {self.case_id}: it is {self.status.value}"
        return None

    def _needs(self, allowed: frozenset[CaseStatus] | set[CaseStatus], action: str) -> str | None:
        if self.status in allowed:
            return None
        wanted = " or ".join(sorted(s.value for s in allowed))
        return f"cannot {action} case {self.case_id}: it is {self.status.value} (needs {wanted})"

    # ------------------------------------------------------------------ the agents' actions

    def assign(self, action: Assign, now: datetime) -> list[Effect]:
        self.owner = str(action.agent)
        recorded = Record(EventKind.ASSIGNED, action.by, f"assigned to {action.agent}")
        return [recorded, self._email(OwnerNewCase())]

    def note(self, action: AddNote, now: datetime) -> list[Effect]:
        return [Record(EventKind.NOTE, action.by, action.text)]

    def update_contact(self, action: UpdateContact, now: datetime) -> list[Effect]:
        customer = self.details.customer.model_copy(
            update={"email": action.email, "locale": action.locale or self.details.customer.locale}
        )
        self.details = self.details.model_copy(update={"customer": customer})
        return [Record(EventKind.NOTE, action.by, f"customer contact changed to {action.email}")]

    def reply(self, action: Reply, now: datetime) -> list[Effect]:
        """A public reply: the customer's first response if none was given yet, and no pause
        (the clocks stop only when the agent asks the customer for something: request_info)."""
        self.first_response_sla.meet(now)
        shown = {"subject": action.subject} if action.subject else {}
        if action.locale:
            shown["locale"] = action.locale.value
        if action.attachments:
            shown["attachments"] = ", ".join(file.name for file in action.attachments)
        letter = CaseReply(
            text=action.text,
            subject=action.subject,
            locale=action.locale,
            attachments=action.attachments,
        )
        return [Record(EventKind.REPLIED, action.by, action.text, shown), self._email(letter)]

    def request_info(self, action: RequestInfo, now: datetime) -> list[Effect]:
        self.first_response_sla.meet(now)
        effects = self._set_status(CaseStatus.WAITING_ON_CUSTOMER, now)
        self.waiting_since, self.customer_reminders = now, 0
        self.customer_silence_reported = False
        self.last_question = action.question
        return [
            *effects,
            Record(EventKind.INFO_REQUESTED, action.by, action.question),
            self._email(InfoRequested(question=action.question)),
        ]

    def customer_reply(self, action: CustomerReply, now: datetime) -> list[Effect]:
        effects: list[Effect] = [Record(EventKind.CUSTOMER_REPLIED, action.by, action.text)]
        if self.status is CaseStatus.WAITING_ON_CUSTOMER:
            self.waiting_since = None
            effects += self._set_status(CaseStatus.OPEN, now)
        return [*effects, self._email(OwnerCaseUpdate(text=action.text))]

    def resolve(self, action: Resolve, now: datetime) -> list[Effect]:
        self.first_response_sla.meet(now)
        self.resolution_sla.meet(now)
        self.resolution = ResolutionView(
            outcome=action.outcome,
            summary=action.summary,
            credit_amount=action.credit_amount,
            resolved_by=action.by,
            resolved_at=now,
        )
        self.reported_to = []
        amount = {"credit_amount": str(action.credit_amount)} if action.credit_amount else {}
        resolved = Record(
            EventKind.RESOLVED,
            action.by,
            action.summary,
            {"outcome": action.outcome.value, **amount},
        )
        if action.credit_amount and action.blue_fapiao:
            # the bill's fapiao is reversed in red before the customer hears of the credit
            self.resolution = self.resolution.model_copy(
                update={"fapiao_to_reverse": list(action.blue_fapiao)}
            )
            task = FapiaoTask(
                kind=FapiaoTaskKind.RED_LETTER,
                invoice_id=self.details.invoice_id,
                blue_numbers=list(action.blue_fapiao),
                for_credit=True,
                requested_by=action.by,
                requested_at=now,
            )
            return [resolved, *self._ask_finance(task, now)]
        return [
            *self._set_status(CaseStatus.RESOLVING, now),
            resolved,
            DeliverResolution(self._resolution_letter()),
        ]

    def _resolution_letter(self) -> Email:
        red = self.resolution.red_fapiao_number if self.resolution else None
        days = self.policy.reopen_window.days
        return self._email(CaseResolved(reopen_days=days, red_fapiao_number=red))

    # ------------------------------------------------------------------ fapiao

    def request_fapiao(self, action: RequestFapiao, now: datetime) -> list[Effect]:
        task = FapiaoTask(
            kind=action.kind,
            invoice_id=self.details.invoice_id,
            buyer=action.buyer(),
            blue_numbers=list(action.blue_numbers),
            requested_by=action.by,
            requested_at=now,
        )
        self.waiting_since = None
        return self._ask_finance(task, now)

    def _ask_finance(self, task: FapiaoTask, now: datetime) -> list[Effect]:
        self.fapiao_task = task
        data = {"task": task.kind.value}
        if task.blue_numbers:
            data["blue"] = ", ".join(task.blue_numbers)
        asked = Record(EventKind.FAPIAO_REQUESTED, task.requested_by, task.kind.value, data)
        return [*self._set_status(CaseStatus.WAITING_ON_FINANCE, now), asked]

    def buyer_must_confirm(self, action: BuyerMustConfirm, now: datetime) -> list[Effect]:
        """The red-letter information waits for the buyer in the tax system (again, when the last
        one lapsed): the customer is asked, and reminded on working days."""
        task = self.fapiao_task
        assert task is not None
        self.fapiao_task = task.model_copy(
            update={"buyer_confirms_since": now, "buyer_reminders": 0}
        )
        again = self.status is CaseStatus.WAITING_ON_BUYER
        effects = self._set_status(CaseStatus.WAITING_ON_BUYER, now)
        if again:
            self.gave_up = False
            effects.append(Unflag())
        text = ", ".join(task.blue_numbers)
        return [
            *effects,
            Record(EventKind.FAPIAO_BUYER_CONFIRMS, action.by, text),
            self._email(FapiaoConfirmRedLetter(blue_numbers=task.blue_numbers)),
        ]

    def fapiao_recorded(self, action: FapiaoRecorded, now: datetime) -> list[Effect]:
        task = self.fapiao_task
        assert task is not None
        self.fapiao_task = None
        kind = FapiaoKind.RED if task.kind is FapiaoTaskKind.RED_LETTER else FapiaoKind.BLUE
        if action.red_fapiao_number is not None:
            self.fapiao.append(
                RecordedFapiao(
                    number=action.red_fapiao_number, kind=FapiaoKind.RED, recorded_at=now
                )
            )
        self.fapiao.append(RecordedFapiao(number=action.fapiao_number, kind=kind, recorded_at=now))
        numbers = ", ".join(n for n in (action.red_fapiao_number, action.fapiao_number) if n)
        recorded = Record(EventKind.FAPIAO_RECORDED, action.by, numbers, {"task": task.kind.value})
        if task.for_credit and self.resolution is not None:
            self.resolution = self.resolution.model_copy(
                update={"red_fapiao_number": action.fapiao_number}
            )
            return [
                *self._set_status(CaseStatus.RESOLVING, now),
                recorded,
                DeliverResolution(self._resolution_letter()),
            ]
        update = OwnerCaseUpdate(text=f"fapiao recorded by finance: {numbers}")
        return [*self._set_status(CaseStatus.OPEN, now), recorded, self._email(update)]

    def escalate(self, action: Escalate, now: datetime) -> list[Effect]:
        self.first_response_sla.meet(now)
        self.waiting_since = None
        self.ticket_reminders = 0
        self.escalations.append(
            EscalationView(severity=action.severity, reason=action.reason, escalated_at=now)
        )
        return [
            *self._set_status(CaseStatus.ESCALATION_PENDING, now),
            Record(
                EventKind.ESCALATED, action.by, action.reason, {"severity": action.severity.value}
            ),
            PrepareRequest(len(self.escalations)),
        ]

    def request_prepared(self, number: int, title: str, body: str) -> list[Effect]:
        """The request is ready to file: the owner gets it, the customer hears of the escalation."""
        self.escalations[number - 1] = self.escalations[number - 1].model_copy(
            update={"request_title": title, "request_body": body}
        )
        return [
            self._email(OwnerFileEscalation(request_title=title, request_body=body)),
            self._email(CaseEscalated()),
        ]

    def vianet_ticket(self, action: VianetTicket, now: datetime) -> list[Effect]:
        self.escalations[-1] = self.escalations[-1].model_copy(
            update={"ticket_number": action.ticket_number, "ticket_recorded_at": now}
        )
        self.vianet_follow_ups = 0
        return [
            *self._set_status(CaseStatus.WAITING_ON_VIANET, now),
            Record(EventKind.VIANET_TICKET, action.by, action.ticket_number),
            SaveEscalation(len(self.escalations)),
        ]

    def vianet_response(self, action: VianetResponse, now: datetime) -> list[Effect]:
        self.escalations[-1] = self.escalations[-1].model_copy(
            update={"response": action.text, "responded_at": now}
        )
        return [
            *self._set_status(CaseStatus.OPEN, now),
            Record(EventKind.VIANET_RESPONSE, action.by, action.text),
            SaveEscalation(len(self.escalations)),
        ]

    def confirm(self, action: Confirm, now: datetime) -> list[Effect]:
        recorded = Record(EventKind.CONFIRMED, action.by, "customer confirmed the resolution")
        return [recorded, *self._close(now)]

    def reopen(self, action: Reopen, now: datetime) -> list[Effect]:
        self.reopen_count += 1
        self.resolution, self.reported_to = None, []
        effects = self._set_status(CaseStatus.OPEN, now)
        self.resolution_sla.restart(now, self.policy.sla[self.details.priority].resolution)
        return [
            *effects,
            Record(EventKind.REOPENED, action.by, action.reason, {"count": str(self.reopen_count)}),
            self._email(CaseReopened(reason=action.reason)),
            self._email(OwnerCaseUpdate(text=f"Reopened: {action.reason}")),
        ]

    def withdraw(self, action: Withdraw, now: datetime) -> list[Effect]:
        self.fapiao_task = None  # a fapiao the customer no longer wants (never a credit's)
        recorded = Record(EventKind.WITHDRAWN, action.by, action.reason)
        effects = self._set_status(CaseStatus.WITHDRAWN, now)
        self.closed_at = now
        return [recorded, *effects, self._email(CaseWithdrawn()), *self._report_outcome()]

    def merge(self, action: Merge, now: datetime) -> list[Effect]:
        """A duplicate ends here: its clocks stop (nothing of its money or SLA goes to the
        target), the customer gets one letter naming the case the request continues under."""
        self.merged_into = action.into
        effects = self._set_status(CaseStatus.MERGED, now)
        self.closed_at = now
        recorded = Record(
            EventKind.MERGED, action.by, f"merged into case {action.into}", {"into": action.into}
        )
        return [*effects, recorded, self._email(CaseMerged(into_case_id=action.into))]

    def merged_in(self, action: MergedIn, now: datetime) -> list[Effect]:
        """A duplicate merged into this case: referenced (its emails, files and timeline stay
        its own), once however often told; no letter (the duplicate's told the customer)."""
        if action.case_id in self.merged_cases:
            return []
        self.merged_cases.append(action.case_id)
        text = f"case {action.case_id} merged into this one"
        return [Record(EventKind.MERGED_IN, action.by, text, {"case": action.case_id})]

    def link(self, action: LinkCase, now: datetime) -> list[Effect]:
        """A related case linked or unlinked (the link itself is kept in the database, both
        ways): a line on the timeline, no letter."""
        if isinstance(action, UnlinkCase):
            text = f"no longer linked to case {action.other}"
            return [Record(EventKind.CASE_UNLINKED, action.by, text, {"case": action.other})]
        text = f"linked to case {action.other}"
        return [Record(EventKind.CASE_LINKED, action.by, text, {"case": action.other})]

    def take(self, action: CaseAction, now: datetime) -> list[Effect]:
        """Any action by its type (the transition of that name)."""
        match action:
            case Assign():
                return self.assign(action, now)
            case AddNote():
                return self.note(action, now)
            case UpdateContact():
                return self.update_contact(action, now)
            case Reply():
                return self.reply(action, now)
            case RequestInfo():
                return self.request_info(action, now)
            case CustomerReply():
                return self.customer_reply(action, now)
            case Resolve():
                return self.resolve(action, now)
            case Escalate():
                return self.escalate(action, now)
            case VianetTicket():
                return self.vianet_ticket(action, now)
            case VianetResponse():
                return self.vianet_response(action, now)
            case Confirm():
                return self.confirm(action, now)
            case Reopen():
                return self.reopen(action, now)
            case Withdraw():
                return self.withdraw(action, now)
            case RequestFapiao():
                return self.request_fapiao(action, now)
            case BuyerMustConfirm():
                return self.buyer_must_confirm(action, now)
            case FapiaoRecorded():
                return self.fapiao_recorded(action, now)
            case Merge():
                return self.merge(action, now)
            case MergedIn():
                return self.merged_in(action, now)
            case LinkCase():
                return self.link(action, now)

    # ------------------------------------------------------------------ what happens to emails

    def resolution_sent(self, accepted: bool, now: datetime) -> list[Effect]:
        """The resolution email went out (`accepted`), or its address refused it."""
        if self.status is not CaseStatus.RESOLVING:
            return []
        if not accepted:
            return self._resolution_bounced(now)
        if self.policy.told_when_delivered:
            # accepted is not delivered: told once the provider reports the delivery, or once the
            # window passed without a bounce; a bounce meanwhile sends the case back
            self.accepted_at = now
            note = "resolution accepted by SendGrid: waiting for delivery"
            return [Record(EventKind.NOTE, WORKFLOW, note)]
        return self._resolution_delivered(now)

    def email_rejected(self, data: EmailData, address: str, error: str) -> list[Effect]:
        """An address refused an email as it was sent: the owner hears of a customer's."""
        if data.recipient is not Recipient.CUSTOMER:
            return []  # a staff address bounced: the event log and the UI show it
        template = EmailTemplate(data.template)  # type: ignore[attr-defined]
        bounced = OwnerEmailBounced(bounced_address=address, bounced_template=template, error=error)
        return [self._email(bounced)]

    def email_undelivered(self, event: EmailUndelivered, now: datetime) -> list[Effect]:
        """An email the provider had taken did not reach its address: the owner is told, and a
        resolution that bounced sends the case back to the agent (correct the contact, resolve
        again), as a bounce at sending does."""
        if self.status.is_final or event.template not in _TEMPLATES:
            return []
        template = EmailTemplate(event.template)
        if not template.to_customer:
            return []  # a staff address: the email log shows it
        note = f"{template.value} was not delivered ({event.event})"
        effects: list[Effect] = [Record(EventKind.NOTE, WORKFLOW, note)]
        if template is EmailTemplate.CASE_RESOLVED and (
            self.status is CaseStatus.RESOLVED or self.awaiting_delivery
        ):
            effects += self._resolution_bounced(now)
        bounced = OwnerEmailBounced(
            bounced_address=event.address,
            bounced_template=template,
            error=f"{event.event}: {event.reason}"[:500],
        )
        return [*effects, self._email(bounced)]

    def email_delivered(self, event: EmailDelivered, now: datetime) -> list[Effect]:
        """The provider delivered an email: the resolution waiting for it reached the customer."""
        if self.awaiting_delivery and event.template == EmailTemplate.CASE_RESOLVED.value:
            return self._resolution_delivered(now)
        return []

    @property
    def awaiting_delivery(self) -> bool:
        return self.status is CaseStatus.RESOLVING and self.accepted_at is not None

    def _resolution_delivered(self, now: datetime) -> list[Effect]:
        assert self.resolution is not None
        self.accepted_at = None
        self.resolution = self.resolution.model_copy(update={"customer_told_at": now})
        return [
            *self._set_status(CaseStatus.RESOLVED, now),
            Record(EventKind.CUSTOMER_TOLD, WORKFLOW, "resolution sent to the customer"),
            *self._report_outcome(),
        ]

    def _resolution_bounced(self, now: datetime) -> list[Effect]:
        # the loop is not closed until the customer hears the resolution: back to the agent
        self.resolution, self.accepted_at, self.reported_to = None, None, []
        note = "resolution email bounced: correct the contact and resolve again"
        return [*self._set_status(CaseStatus.OPEN, now), Record(EventKind.NOTE, WORKFLOW, note)]

    # ------------------------------------------------------------------ the dispute

    def link_collections(self, workflow_id: str, now: datetime) -> list[Effect]:
        """The invoice this case disputes is in collections: report the outcome there (at once,
        when the customer has been told it already)."""
        if self.status.is_final or not is_collections_workflow_id(workflow_id):
            return []
        self.collections_workflow_id = workflow_id
        effects: list[Effect] = [Record(EventKind.LINKED, WORKFLOW, workflow_id)]
        if self.status is CaseStatus.RESOLVED:
            effects += self._report_outcome()
        return effects

    def _report_outcome(self) -> list[Effect]:
        """The outcome to the linked collections: once per resolution (or withdrawal)."""
        linked = self.collections_workflow_id
        if linked is None or linked in self.reported_to:
            return []
        self.reported_to.append(linked)
        resolution = self.resolution if self.status is not CaseStatus.WITHDRAWN else None
        outcome = DisputeOutcome(
            case_id=self.case_id,
            outcome=resolution.outcome if resolution else None,
            credit_amount=resolution.credit_amount if resolution else None,
            tenant_id=self.details.customer.tenant_id,
            currency=self.details.currency,
        )
        return [ReportOutcome(linked, outcome)]

    # ------------------------------------------------------------------ time

    def timers(self) -> list[Due]:
        """Every timer the case waits for now."""
        due: list[Due] = []
        for clock, remind, breach in (
            (self.first_response_sla, Timer.FIRST_RESPONSE_REMINDER, Timer.FIRST_RESPONSE_BREACH),
            (self.resolution_sla, Timer.RESOLUTION_REMINDER, Timer.RESOLUTION_BREACH),
        ):
            if clock.reminder_due:
                due.append(Due(clock.reminder_due, f"SLA: {clock.name} reminder", remind))
            if clock.breach_due:
                due.append(Due(clock.breach_due, f"SLA: {clock.name} due", breach))
        policy = self.policy
        if self.status is CaseStatus.WAITING_ON_CUSTOMER and self.waiting_since:
            at = customer_reminder_at(policy, self.waiting_since, self.customer_reminders)
            if self.customer_reminders < policy.customer_reminders_max:
                label = f"Customer silent: reminder {self.customer_reminders + 1}"
                due.append(Due(at, label, Timer.CUSTOMER_REMINDER))
            elif not self.customer_silence_reported:
                due.append(Due(at, "Customer silent: tell the owner", Timer.CUSTOMER_SILENT))
        if self.status is CaseStatus.ESCALATION_PENDING and not self.gave_up:
            at = ticket_reminder_at(policy, self.escalations[-1], self.ticket_reminders)
            due.append(Due(at, "21Vianet: ticket number missing", Timer.TICKET_REMINDER))
        if self.status is CaseStatus.WAITING_ON_VIANET and not self.gave_up:
            at = vianet_follow_up_at(policy, self.escalations[-1], self.vianet_follow_ups)
            label = "21Vianet: follow up" if self.vianet_follow_ups else "21Vianet: response target"
            due.append(Due(at, label, Timer.VIANET_FOLLOW_UP))
        task = self.fapiao_task
        if task is not None and not self.gave_up:
            if self.status is CaseStatus.WAITING_ON_BUYER and task.buyer_confirms_since:
                every = policy.fapiao_buyer_reminder_days * (task.buyer_reminders + 1)
                at = working_days_after(policy, task.buyer_confirms_since, every)
                label = "Fapiao: buyer confirmation " + (
                    f"reminder {task.buyer_reminders + 1}"
                    if task.buyer_reminders < policy.fapiao_buyer_reminders_max
                    else "overdue"
                )
                due.append(Due(at, label, Timer.FAPIAO_BUYER_REMINDER))
            if self.status is CaseStatus.WAITING_ON_FINANCE:
                at = working_days_after(policy, task.requested_at, policy.fapiao_finance_days)
                due.append(Due(at, "Fapiao: finance to record it", Timer.FAPIAO_FINANCE_OVERDUE))
        if self.awaiting_delivery and self.accepted_at is not None:
            at = self.accepted_at + policy.no_bounce_window
            due.append(Due(at, "Resolution: no bounce", Timer.NO_BOUNCE))
        ends = self.reopen_window_ends()
        if ends is not None:
            due.append(Due(ends, "Reopen window ends", Timer.REOPEN_WINDOW))
        return due

    def next_due(self) -> Due | None:
        return min(self.timers(), key=lambda d: d.at, default=None)

    def reopen_window_ends(self) -> datetime | None:
        told = self.resolution.customer_told_at if self.resolution else None
        if self.status is not CaseStatus.RESOLVED or told is None:
            return None
        return reopen_window_ends(self.policy, told)

    def fire(self, timer: Timer, now: datetime) -> list[Effect]:
        """A timer fell due."""
        match timer:
            case Timer.FIRST_RESPONSE_REMINDER:
                return self._sla_reminder(self.first_response_sla, now)
            case Timer.RESOLUTION_REMINDER:
                return self._sla_reminder(self.resolution_sla, now)
            case Timer.FIRST_RESPONSE_BREACH:
                return self._sla_breach(self.first_response_sla, now)
            case Timer.RESOLUTION_BREACH:
                return self._sla_breach(self.resolution_sla, now)
            case Timer.CUSTOMER_REMINDER:
                self.customer_reminders += 1
                text = f"reminder {self.customer_reminders}"
                return [
                    Record(EventKind.CUSTOMER_REMINDED, WORKFLOW, text),
                    self._email(CustomerReminder(question=self.last_question)),
                ]
            case Timer.CUSTOMER_SILENT:
                self.customer_silence_reported = True
                text = "customer has not replied; owner told"
                return [
                    Record(EventKind.REMINDER, WORKFLOW, text),
                    self._email(OwnerCustomerSilent(question=self.last_question)),
                ]
            case Timer.TICKET_REMINDER:
                return self._ticket_reminder()
            case Timer.VIANET_FOLLOW_UP:
                return self._vianet_follow_up()
            case Timer.NO_BOUNCE:
                return self._resolution_delivered(now)
            case Timer.REOPEN_WINDOW:
                note = Record(EventKind.NOTE, WORKFLOW, "reopen window ended without a reopen")
                return [note, *self._close(now)]
            case Timer.FAPIAO_BUYER_REMINDER:
                return self._buyer_reminder()
            case Timer.FAPIAO_FINANCE_OVERDUE:
                self.gave_up = True
                kind = self.fapiao_task.kind.value if self.fapiao_task else "fapiao"
                return [
                    Flag(
                        f"finance has not recorded the {kind} fapiao of case {self.case_id} "
                        f"after {self.policy.fapiao_finance_days} working days: see the "
                        "fapiao tasks page"
                    )
                ]

    def _buyer_reminder(self) -> list[Effect]:
        task = self.fapiao_task
        assert task is not None
        if task.buyer_reminders >= self.policy.fapiao_buyer_reminders_max:
            self.gave_up = True
            return [
                Flag(
                    f"the buyer has not confirmed the red-letter information of fapiao "
                    f"{', '.join(task.blue_numbers)} after {task.buyer_reminders} reminders (the "
                    "tax system voids it unconfirmed after 72 hours): finance starts it again "
                    "(buyer must confirm) or records the red-letter fapiao"
                )
            ]
        sent = task.buyer_reminders + 1
        self.fapiao_task = task.model_copy(update={"buyer_reminders": sent})
        letter = FapiaoConfirmRedLetter(blue_numbers=task.blue_numbers, reminder=sent)
        text = f"reminder {sent}"
        return [Record(EventKind.FAPIAO_BUYER_REMINDED, WORKFLOW, text), self._email(letter)]

    def _sla_reminder(self, clock: SlaClock, now: datetime) -> list[Effect]:
        clock.reminded = True
        due_at = clock.breach_due or now
        return [
            Record(EventKind.SLA_REMINDER, WORKFLOW, f"{clock.name} SLA reminder"),
            self._email(OwnerSlaReminder(clock=clock.name, due_at=due_at)),
        ]

    def _sla_breach(self, clock: SlaClock, now: datetime) -> list[Effect]:
        due_at = clock.breach_due or now
        clock.breached = True
        return [
            Record(EventKind.SLA_BREACHED, WORKFLOW, f"{clock.name} SLA breached"),
            self._email(ManagerSlaBreach(clock=clock.name, due_at=due_at)),
        ]

    def _ticket_reminder(self) -> list[Effect]:
        escalation = self.escalations[-1]
        if self.ticket_reminders >= self.policy.ticket_reminders_max:
            self.gave_up = True
            return [
                Flag(
                    f"21Vianet request #{len(self.escalations)} is still not filed after "
                    f"{self.ticket_reminders} reminders to the owner: file it in the portal "
                    "and record the ticket number, or reassign the case",
                    Attention.TICKET_NOT_FILED,
                )
            ]
        self.ticket_reminders += 1
        reminder = OwnerEscalationReminder(
            request_title=escalation.request_title, request_body=escalation.request_body
        )
        text = "21Vianet ticket number not recorded yet"
        return [Record(EventKind.REMINDER, WORKFLOW, text), self._email(reminder)]

    def _vianet_follow_up(self) -> list[Effect]:
        ticket = self.escalations[-1].ticket_number or ""
        if self.vianet_follow_ups >= self.policy.vianet_follow_ups_max:
            self.gave_up = True
            return [
                Flag(
                    f"21Vianet has not answered ticket {ticket} after {self.vianet_follow_ups} "
                    "follow-ups: escalate with 21Vianet, or record its answer",
                    Attention.VIANET_SILENT,
                )
            ]
        self.vianet_follow_ups += 1
        reminder = OwnerEscalationReminder(ticket_number=ticket, follow_up=self.vianet_follow_ups)
        text = f"check 21Vianet ticket {ticket}"
        return [Record(EventKind.VIANET_FOLLOW_UP, WORKFLOW, text), self._email(reminder)]

    # ------------------------------------------------------------------ the rest

    @property
    def sla_breached(self) -> bool:
        return self.first_response_sla.breached or self.resolution_sla.breached

    def address(self, recipient: Recipient) -> str:
        """Where an email to `recipient` goes now."""
        match recipient:
            case Recipient.CUSTOMER:
                return str(self.details.customer.email)
            case Recipient.MANAGER:
                return str(self.policy.manager_email)
            case Recipient.OWNER:
                return str(self.owner or self.policy.team_email)
        raise ValueError(f"a case sends no email to {recipient.value}")

    def _email(self, data: EmailData) -> Email:
        return Email(data, self.address(data.recipient))

    def _set_status(self, status: CaseStatus, now: datetime) -> list[Effect]:
        changed = status is not self.status
        self.status = status
        if changed:
            self.gave_up = False  # what ran out was a wait in the status it leaves
        self._sync_clocks(now)
        return [Unflag()] if changed else []

    def _sync_clocks(self, now: datetime) -> None:
        for clock, runs_in in (
            (self.first_response_sla, FIRST_RESPONSE_RUNS),
            (self.resolution_sla, RESOLUTION_RUNS),
        ):
            if self.status in runs_in:
                clock.run(now)
            else:
                clock.pause(now)

    def _close(self, now: datetime) -> list[Effect]:
        effects = self._set_status(CaseStatus.CLOSED, now)
        self.closed_at = now
        closed = Record(EventKind.CLOSED, WORKFLOW, "case closed")
        return [*effects, closed, self._email(CaseClosed())]

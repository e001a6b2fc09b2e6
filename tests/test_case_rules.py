"""The billing case's rules (workflows/billing_case/rules.py), proved over random weeks with no
server: agents, customers, 21Vianet, the email provider and collections act in any order while
time passes across China's 2026 holidays (core/calendar's real data); each invariant below holds
after every step. Then the rules the end-to-end tests once walked through a server, one by one."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from core.models import (
    AddNote,
    Assign,
    CasePolicy,
    CaseStatus,
    Confirm,
    CustomerReply,
    EmailTemplate,
    Escalate,
    EventKind,
    Locale,
    Outcome,
    Priority,
    Reopen,
    Reply,
    RequestInfo,
    Resolve,
    Severity,
    SlaTargets,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from core.models.email import CaseReply, CaseResolved
from core.models.messages import EmailDelivered, EmailUndelivered
from tests.rules_support import RULES
from tests.test_calendar import CAL, cst
from tests.workflow_support import open_case
from workflows.billing_case import views
from workflows.billing_case.rules import (
    Case,
    CaseAction,
    DeliverResolution,
    Effect,
    PrepareRequest,
    ReportOutcome,
    SaveEscalation,
    Unflag,
)
from workflows.effects import Email, Flag, Record

AGENT = "agent.li@partner.example.cn"
ROOT = Path(__file__).resolve().parent.parent
# each story starts before a holiday, a weekend or at night (China Standard Time)
STARTS = [
    cst(2026, 2, 13, 17),  # the Friday before the Spring Festival (and its 调休 Saturday)
    cst(2026, 4, 30, 20),  # the evening before Labour Day
    cst(2026, 6, 18, 10),  # the morning before the Dragon Boat Festival
    cst(2026, 9, 30, 16),  # the afternoon before National Day
    cst(2026, 12, 31, 3),  # a night at the end of the covered year
]
AMOUNT = Decimal("12340.00")
# every action an agent or a customer may try: a closed or withdrawn case refuses each one
ANY_ACTION: list[CaseAction] = [
    Assign(agent=AGENT, by=AGENT),
    AddNote(text="x", by=AGENT),
    UpdateContact(email="ap@customer.example.cn", by=AGENT),
    Reply(text="x", by=AGENT),
    RequestInfo(question="?", by=AGENT),
    CustomerReply(text="x"),
    Resolve(outcome=Outcome.EXPLAINED, summary="x", by=AGENT),
    Escalate(reason="x", severity=Severity.A, by=AGENT),
    VianetTicket(ticket_number="VN-0001", by=AGENT),
    VianetResponse(text="x", by=AGENT),
    Confirm(),
    Reopen(reason="x"),
    Withdraw(reason="x", by=AGENT),
]
RESOLVED_LETTER = EmailTemplate.CASE_RESOLVED.value


def policy(business_hours: bool, told_when_delivered: bool) -> CasePolicy:
    default = CasePolicy()
    sla = {
        p: SlaTargets(
            first_response=t.first_response, resolution=t.resolution, business_hours=business_hours
        )
        for p, t in default.sla.items()
    }
    return CasePolicy(
        sla=sla,
        calendar=CAL,
        told_when_delivered=told_when_delivered,
        customer_reminders_max=1,
        ticket_reminders_max=3,
        vianet_follow_ups_max=2,
    )


class CaseMachine(RuleBasedStateMachine):
    """One case, its shell simulated: effects queue in order and a step carries the next out."""

    case: Case

    @initialize(
        start=st.sampled_from(STARTS),
        priority=st.sampled_from(Priority),
        business_hours=st.booleans(),
        told_when_delivered=st.booleans(),
        linked=st.booleans(),
    )
    def open(
        self,
        start: datetime,
        priority: Priority,
        business_hours: bool,
        told_when_delivered: bool,
        linked: bool,
    ) -> None:
        self.now = start
        self.timeline: list[tuple[datetime, Record]] = []
        self.steps: list[Effect] = []  # queued for the main loop, in order
        self.flagged = False
        self.resolutions = 0  # resolutions decided so far: the current one's number
        self.letters: Counter[int] = Counter()  # resolution letters sent, per resolution
        self.reported: Counter[tuple[int, str]] = Counter()  # outcomes, per resolution and id
        self.replies = 0  # public replies taken
        self.reply_letters = 0  # their emails carried out
        data = open_case(priority=priority, policy=policy(business_hours, told_when_delivered))
        if linked:
            data = data.model_copy(update={"collections_workflow_id": "collections-G000123456"})
        self.case, effects = Case.open(data, self.now)
        self.apply(effects)

    # ------------------------------------------------------------------ the simulated shell

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Record():
                    self.timeline.append((self.now, effect))
                case Flag():
                    self.flagged = True
                case Unflag():
                    self.flagged = False
                case ReportOutcome():
                    withdrawn = effect.outcome.outcome is None
                    key = (0 if withdrawn else self.resolutions, effect.workflow_id)
                    self.reported[key] += 1
                    assert self.reported[key] == 1, "an outcome reported twice"
                    amount = effect.outcome.credit_amount
                    assert amount is None or (isinstance(amount, Decimal) and amount > 0)
                case _:
                    self.steps.append(effect)

    def act(self, action: CaseAction) -> None:
        if self.case.refusal(action, self.now) is not None:
            return  # refused: the update changes nothing (a refusal only reads the case)
        assert not self.case.status.is_final, f"a final case took {type(action).__name__}"
        if isinstance(action, Resolve):
            self.resolutions += 1
        self.apply(self.case.take(action, self.now))

    # ------------------------------------------------------------------ agents and customers

    @rule(agent=st.sampled_from([AGENT, "agent.wu@partner.example.cn"]))
    def assign(self, agent: str) -> None:
        self.act(Assign(agent=agent, by=AGENT))

    @rule()
    def note(self) -> None:
        self.act(AddNote(text="checked the meter", by=AGENT))

    @rule(email=st.sampled_from(["ap@customer.example.cn", "finance@customer.example.cn"]))
    def update_contact(self, email: str) -> None:
        self.act(UpdateContact(email=email, by=AGENT))

    @rule(locale=st.sampled_from([None, *Locale]), subject=st.sampled_from([None, "贷项通知单"]))
    def reply(self, locale: Locale | None, subject: str | None) -> None:
        """A public reply never pauses a clock nor changes the status; it is a first response."""
        case = self.case
        before = (case.status, case.resolution_sla.running_since, case.first_response_sla.met_at)
        reply = Reply(text="已开具贷项通知单。", subject=subject, locale=locale, by=AGENT)
        if case.refusal(reply, self.now) is not None:
            assert case.status.is_final, "a reply refused on a case still in work"
            return
        self.replies += 1
        self.act(reply)
        status, resolution_running, met = before
        assert case.status is status
        assert case.resolution_sla.running_since == resolution_running
        assert case.first_response_sla.met_at == (met or self.now)
        assert case.first_response_sla.running_since is None

    @rule()
    def request_info(self) -> None:
        self.act(RequestInfo(question="Please send the deletion receipt.", by=AGENT))

    @rule()
    def customer_reply(self) -> None:
        self.act(CustomerReply(text="Attached."))

    @rule(
        outcome=st.sampled_from(Outcome),
        amount=st.decimals(min_value=Decimal("0.01"), max_value=2 * AMOUNT, places=2),
    )
    def resolve(self, outcome: Outcome, amount: Decimal) -> None:
        credit = amount if outcome.needs_amount else None
        self.act(Resolve(outcome=outcome, summary="Credit note", credit_amount=credit, by=AGENT))

    @rule(severity=st.sampled_from(Severity))
    def escalate(self, severity: Severity) -> None:
        self.act(Escalate(reason="Meter after deletion", severity=severity, by=AGENT))

    @rule()
    def vianet_ticket(self) -> None:
        self.act(VianetTicket(ticket_number="VN-2611240042", by=AGENT))

    @rule()
    def vianet_response(self) -> None:
        self.act(VianetResponse(text="Credit note CN-1 issued", by=AGENT))

    @rule()
    def confirm(self) -> None:
        self.act(Confirm())

    @rule()
    def reopen(self) -> None:
        self.act(Reopen(reason="The backup was deleted too."))

    @rule()
    def withdraw(self) -> None:
        self.act(Withdraw(reason="paid in full", by=AGENT))

    # ------------------------------------------------------------------ the email provider

    @precondition(lambda self: bool(self.steps))
    @rule(accepted=st.booleans())
    def carry_out(self, accepted: bool) -> None:
        """The main loop carries out the next effect; an email's address takes it or refuses."""
        step = self.steps.pop(0)
        match step:
            case DeliverResolution():
                assert self.case.status is CaseStatus.RESOLVING, "a letter for a case not resolved"
                assert isinstance(step.email.data, CaseResolved)
                self.letters[self.resolutions] += 1
                assert self.letters[self.resolutions] == 1, "two letters for one resolution"
                if not accepted:
                    self.apply(self.case.email_rejected(step.email.data, step.email.to, "550"))
                self.apply(self.case.resolution_sent(accepted, self.now))
            case Email():
                if isinstance(step.data, CaseReply):
                    self.reply_letters += 1
                if not accepted:
                    self.apply(self.case.email_rejected(step.data, step.to, "550"))
            case PrepareRequest():
                self.apply(self.case.request_prepared(step.number, "[B] request", "body"))
            case SaveEscalation():
                assert step.number <= len(self.case.escalations)

    @rule(template=st.sampled_from([RESOLVED_LETTER, "case_acknowledged", "owner_new_case", "x"]))
    def bounce(self, template: str) -> None:
        event = EmailUndelivered(key="k", event="bounce", address="a@b.cn", template=template)
        self.apply(self.case.email_undelivered(event, self.now))

    @rule(template=st.sampled_from([RESOLVED_LETTER, "case_acknowledged"]))
    def delivered(self, template: str) -> None:
        self.apply(self.case.email_delivered(EmailDelivered(key="k", template=template), self.now))

    # ------------------------------------------------------------------ collections, time

    @rule(workflow_id=st.sampled_from(["collections-G000123456", "collections-G9", "case-T1"]))
    def link(self, workflow_id: str) -> None:
        self.apply(self.case.link_collections(workflow_id, self.now))

    @rule(hours=st.integers(min_value=0, max_value=24 * 12), minutes=st.integers(0, 59))
    def time_passes(self, hours: int, minutes: int) -> None:
        """The shell's loop: each timer fires at its time, the earliest first."""
        until = self.now + timedelta(hours=hours, minutes=minutes)
        for _ in range(1_000):
            due = self.case.next_due()
            if due is None or due.at > until or self.case.status.is_final:
                break
            self.now = max(self.now, due.at)
            self.apply(self.case.fire(due.timer, self.now))
        else:
            raise AssertionError("a timer keeps falling due")
        self.now = until

    # ------------------------------------------------------------------ invariants

    @invariant()
    def status_and_attributes_match_the_state(self) -> None:
        """The status, the row, the view and the search attributes all say what the state says."""
        case = self.case
        shown = {pair.key.name: pair.value for pair in views.attributes(case)}
        assert shown["CaseStatus"] == case.status.value
        assert shown["AssignedAgent"] == (case.owner or "unassigned")
        assert shown["SlaBreached"] == (
            case.first_response_sla.breached or case.resolution_sla.breached
        )
        assert shown["EscalatedToVianet"] == bool(case.escalations)
        assert views.record(case).status is case.status
        told = case.resolution.customer_told_at if case.resolution else None
        match case.status:
            case CaseStatus.RESOLVING:
                assert case.resolution is not None and told is None
            case CaseStatus.RESOLVED:
                assert told is not None and case.accepted_at is None
            case CaseStatus.WAITING_ON_VIANET:
                assert case.escalations[-1].ticket_number is not None
            case CaseStatus.ESCALATION_PENDING:
                assert case.escalations[-1].ticket_number is None
            case CaseStatus.OPEN | CaseStatus.WAITING_ON_CUSTOMER:
                assert case.resolution is None
        assert (case.closed_at is not None) == case.status.is_final
        assert self.flagged or not case.gave_up

    @invariant()
    def the_timeline_is_in_the_order_things_happened(self) -> None:
        """The timeline is in the order things happened: "opened" first, nothing after the end."""
        kinds = [record.kind for _, record in self.timeline]
        assert kinds[0] is EventKind.OPENED and kinds.count(EventKind.OPENED) == 1
        moments = [at for at, _ in self.timeline]
        assert moments == sorted(moments)
        ends = [
            i for i, kind in enumerate(kinds) if kind in (EventKind.CLOSED, EventKind.WITHDRAWN)
        ]
        assert len(ends) <= 1 and (not ends or ends[0] >= len(kinds) - 1)

    @invariant()
    def resolution_letters_only_for_a_resolution(self) -> None:
        """A resolution letter goes only for a resolution being delivered, once per resolution."""
        assert all(count == 1 for count in self.letters.values())
        assert set(self.letters) <= set(range(1, self.resolutions + 1))

    @invariant()
    def the_sla_clock_never_runs_while_waiting_on_others(self) -> None:
        """No SLA clock runs while the case waits on the customer or 21Vianet (or is resolved)."""
        if self.case.status not in (CaseStatus.OPEN, CaseStatus.ESCALATION_PENDING):
            assert self.case.first_response_sla.running_since is None
            assert self.case.resolution_sla.running_since is None
        if self.case.status is CaseStatus.ESCALATION_PENDING:
            assert self.case.first_response_sla.running_since is None

    @invariant()
    def each_reply_is_one_email_to_the_customer(self) -> None:
        """Every public reply is one email to the customer, queued or sent; nothing else is."""
        queued = [s for s in self.steps if isinstance(s, Email) and isinstance(s.data, CaseReply)]
        assert self.reply_letters + len(queued) == self.replies
        replied = [r for _, r in self.timeline if r.kind is EventKind.REPLIED]
        assert len(replied) == self.replies

    @invariant()
    def a_final_case_takes_no_action(self) -> None:
        """A closed or withdrawn case refuses every action and ignores every signal."""
        if not self.case.status.is_final:
            return
        assert all(self.case.refusal(action, self.now) for action in ANY_ACTION)
        assert self.case.next_due() is None
        event = EmailUndelivered(
            key="k", event="bounce", address="a@b.cn", template=RESOLVED_LETTER
        )
        assert self.case.email_undelivered(event, self.now) == []
        assert self.case.link_collections("collections-G000123456", self.now) == []

    @invariant()
    def a_resolved_case_may_be_reopened_only_within_its_window(self) -> None:
        """A resolved case may be reopened until its window ends, never after."""
        ends = self.case.reopen_window_ends()
        if ends is None:
            return
        assert self.case.refusal(Reopen(reason="x"), self.now) is None
        assert self.case.refusal(Reopen(reason="x"), ends) is not None

    @invariant()
    def the_outcome_reaches_collections_once_per_resolution(self) -> None:
        """A linked case's outcome reaches its collections once per resolution (or withdrawal)."""
        case, linked = self.case, self.case.collections_workflow_id
        if linked is None:
            return
        told = case.resolution is not None and case.resolution.customer_told_at is not None
        if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED) and told:
            assert self.reported[(self.resolutions, linked)] == 1
        if case.status is CaseStatus.WITHDRAWN:
            assert self.reported[(0, linked)] == 1

    @invariant()
    def money_is_decimal_and_never_negative(self) -> None:
        """A credit or adjustment is a Decimal, above zero and at most the disputed amount."""
        resolution = self.case.resolution
        if resolution is None or resolution.credit_amount is None:
            return
        assert isinstance(resolution.credit_amount, Decimal)
        assert Decimal(0) < resolution.credit_amount <= self.case.details.disputed_amount


TestCaseRules = CaseMachine.TestCase
TestCaseRules.settings = RULES


# --------------------------------------------------------------------------- rules, one by one


def opened(**policy_fields: object) -> Case:
    data = open_case(policy=CasePolicy.model_validate(policy_fields))
    return Case.open(data, cst(2026, 11, 24, 10))[0]


def test_a_withdrawn_case_reports_no_outcome_but_withdrawn() -> None:
    case = opened()
    case.link_collections("collections-G000123456", case.opened_at)
    effects = case.withdraw(Withdraw(reason="x", by=AGENT), case.opened_at)
    [report] = [e for e in effects if isinstance(e, ReportOutcome)]
    assert report.outcome.outcome is None and report.workflow_id == "collections-G000123456"


@pytest.mark.parametrize("ticket", [False, True])
def test_an_escalated_case_is_resolved_only_after_21vianet_answered(ticket: bool) -> None:
    case = opened()
    now = case.opened_at
    case.escalate(Escalate(reason="x", severity=Severity.B, by=AGENT), now)
    if ticket:
        case.vianet_ticket(VianetTicket(ticket_number="VN-1234", by=AGENT), now)
    why = case.refusal(Resolve(outcome=Outcome.EXPLAINED, summary="x", by=AGENT), now)
    assert why is not None and "vianet-response" in why


def test_a_reply_meets_the_first_response_and_pauses_nothing() -> None:
    case = opened()
    now = case.opened_at + timedelta(hours=1)
    effects = case.reply(Reply(text="您好", by=AGENT), now)
    assert case.status is CaseStatus.OPEN
    assert case.first_response_sla.met_at == now
    assert case.resolution_sla.running_since is not None  # still counting: nothing was asked
    [recorded] = [e for e in effects if isinstance(e, Record)]
    assert recorded.kind is EventKind.REPLIED and recorded.text == "您好"
    [email] = [e for e in effects if isinstance(e, Email)]
    assert isinstance(email.data, CaseReply) and email.to == str(case.details.customer.email)


def test_a_reply_on_a_closed_case_is_refused_saying_a_new_email_opens_a_new_case() -> None:
    case = opened()
    case.withdraw(Withdraw(reason="x", by=AGENT), case.opened_at)
    why = case.refusal(Reply(text="x", by=AGENT), case.opened_at)
    assert why is not None and "new case" in why and case.case_id in why

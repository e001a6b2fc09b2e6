"""The fapiao rules of a billing case (workflows/billing_case/rules.py), with no server: an agent
resolves with a credit on a bill that may have an issued fapiao, finance records red-letter and
blue fapiao or says the buyer must confirm, the customer replies, the email provider delivers, and
time passes across China's 2026 holidays (core/calendar's real data). Invariant: the customer is
never told of a credit on a bill with an issued fapiao before its red-letter number is recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pydantic import ValidationError

from core.models import (
    FAPIAO_WAITS,
    BuyerMustConfirm,
    CasePolicy,
    CaseStatus,
    CustomerReply,
    EventKind,
    FapiaoRecorded,
    FapiaoTaskKind,
    Outcome,
    RecordFapiao,
    RequestFapiao,
    Resolve,
    Withdraw,
)
from core.models.email import CaseResolved, FapiaoConfirmRedLetter
from tests.rules_support import RULES, RULES_EXAMPLES
from tests.test_calendar import CAL, cst
from tests.workflow_support import open_case
from workflows.billing_case import views
from workflows.billing_case.rules import (
    Case,
    CaseAction,
    DeliverResolution,
    Effect,
    Timer,
)
from workflows.effects import Email, Flag

AGENT = "agent.li@partner.example.cn"
FINANCE = "finance.zhao@partner.example.cn"
BLUE = "26312000000012345678"
STARTS = [
    cst(2026, 2, 13, 17),  # the Friday before the Spring Festival
    cst(2026, 4, 30, 20),  # the evening before Labour Day
    cst(2026, 9, 30, 16),  # the afternoon before National Day
]


def numbers() -> st.SearchStrategy[str]:
    return st.integers(min_value=10**19, max_value=10**20 - 1).map(str)


class FapiaoMachine(RuleBasedStateMachine):
    case: Case

    @initialize(start=st.sampled_from(STARTS), issued=st.booleans())
    def open(self, start: datetime, issued: bool) -> None:
        self.now = start
        self.issued = [BLUE] if issued else []  # the bill's blue fapiao, as the service finds it
        self.told_credit = 0
        policy = CasePolicy(calendar=CAL, fapiao_buyer_reminders_max=2)
        self.case, effects = Case.open(open_case(policy=policy), self.now)
        self.apply(effects)

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case DeliverResolution():
                    letter = effect.email.data
                    assert isinstance(letter, CaseResolved)
                    resolution = self.case.resolution
                    assert resolution is not None
                    if resolution.fapiao_to_reverse:
                        assert resolution.red_fapiao_number is not None, "credit before red-letter"
                        assert letter.red_fapiao_number == resolution.red_fapiao_number
                    if resolution.credit_amount:
                        self.told_credit += 1
                    self.apply(self.case.resolution_sent(True, self.now))
                case Email() if isinstance(effect.data, FapiaoConfirmRedLetter):
                    assert effect.data.blue_numbers == [BLUE]
                    if effect.data.reminder:  # timed by the case: a working day, in hours
                        assert CAL.is_open(self.now), self.now

    def act(self, action: CaseAction) -> None:
        if self.case.refusal(action, self.now) is None:
            self.apply(self.case.take(action, self.now))

    @rule(credit=st.sampled_from(["100.00", "12340.00", None]))
    def resolve(self, credit: str | None) -> None:
        outcome = Outcome.CREDIT_ISSUED if credit else Outcome.EXPLAINED
        amount = Decimal(credit) if credit else None
        blue = self.issued if amount else []
        self.act(
            Resolve(outcome=outcome, summary="x", credit_amount=amount, blue_fapiao=blue, by=AGENT)
        )

    @rule(kind=st.sampled_from(FapiaoTaskKind))
    def request(self, kind: FapiaoTaskKind) -> None:
        blue = self.issued if kind.reverses else []
        self.act(
            RequestFapiao(
                kind=kind,
                buyer_name="上海示例科技有限公司",
                buyer_tax_id="91310000MA1FL8XQ3C",
                blue_numbers=blue,
                by=AGENT,
            )
        )

    @rule()
    def buyer_must_confirm(self) -> None:
        self.act(BuyerMustConfirm(by=FINANCE))

    @rule(number=numbers(), red=st.one_of(st.none(), numbers()))
    def finance_records(self, number: str, red: str | None) -> None:
        self.act(FapiaoRecorded(fapiao_number=number, red_fapiao_number=red, by=FINANCE))

    @rule()
    def customer_replies(self) -> None:
        self.act(CustomerReply(text="已在电子税务局确认。"))

    @rule()
    def withdraw(self) -> None:
        self.act(Withdraw(reason="x", by=AGENT))

    @rule(hours=st.sampled_from([1, 9, 30, 80]))
    def time_passes(self, hours: int) -> None:
        until = self.now + timedelta(hours=hours)
        while (due := self.case.next_due()) is not None and due.at <= until:
            self.now = max(self.now, due.at)
            self.apply(self.case.fire(due.timer, self.now))
        self.now = until

    @invariant()
    def never_credited_before_the_red_letter(self) -> None:
        resolution = self.case.resolution
        if resolution is not None and resolution.customer_told_at is not None:
            assert not resolution.fapiao_to_reverse or resolution.red_fapiao_number

    @invariant()
    def a_task_is_what_the_case_waits_for(self) -> None:
        assert (self.case.status in FAPIAO_WAITS) == (self.case.fapiao_task is not None)
        if self.case.status is CaseStatus.WAITING_ON_BUYER:
            assert "tax system" in views.waiting_for(self.case)

    @invariant()
    def buyer_reminders_capped(self) -> None:
        task = self.case.fapiao_task
        if task is not None:
            assert task.buyer_reminders <= self.case.policy.fapiao_buyer_reminders_max


# a fifth of the case machine's weeks: this machine is a corner of the case's rules
FapiaoMachine.TestCase.settings = settings(RULES, max_examples=max(50, RULES_EXAMPLES // 5))
TestFapiaoRules = FapiaoMachine.TestCase


def _credit_waiting(start: datetime) -> tuple[Case, list[Effect]]:
    case, _ = Case.open(open_case(policy=CasePolicy(calendar=CAL)), start)
    resolve = Resolve(
        outcome=Outcome.CREDIT_ISSUED,
        summary="多计费用已贷记。",
        credit_amount=Decimal("100.00"),
        blue_fapiao=[BLUE],
        by=AGENT,
    )
    assert case.refusal(resolve, start) is None
    return case, case.take(resolve, start)


def test_a_credit_on_a_bill_with_a_fapiao_waits_for_the_red_letter_number() -> None:
    start = cst(2026, 3, 2, 10)
    case, effects = _credit_waiting(start)
    assert case.status is CaseStatus.WAITING_ON_FINANCE
    assert not any(isinstance(e, DeliverResolution) for e in effects)
    assert "finance: record the red-letter fapiao" in views.waiting_for(case)
    red = "26312000000099999999"
    done = case.take(FapiaoRecorded(fapiao_number=red, by=FINANCE), start + timedelta(hours=3))
    (deliver,) = [e for e in done if isinstance(e, DeliverResolution)]
    assert isinstance(deliver.email.data, CaseResolved)
    assert deliver.email.data.red_fapiao_number == red
    after = views.record(case)  # (the case changed under mypy's narrowing)
    assert after.status is CaseStatus.RESOLVING and after.fapiao_task is None


def test_the_buyer_is_reminded_on_working_days_then_a_manager_told() -> None:
    # Wednesday 30 September 2026: National Day follows (1-7 October off, Saturday 10 October a
    # 调休 working day)
    start = cst(2026, 9, 30, 11)
    case, _ = _credit_waiting(start)
    asked = case.take(BuyerMustConfirm(by=FINANCE), start)
    assert case.status is CaseStatus.WAITING_ON_BUYER
    assert any(isinstance(e, Email) and isinstance(e.data, FapiaoConfirmRedLetter) for e in asked)
    record = views.record(case)
    assert record.fapiao_task == "red-letter"
    assert record.fapiao_task_data and record.fapiao_task_data["buyer_confirms_since"]
    reminders = []
    for _ in range(case.policy.fapiao_buyer_reminders_max + 1):
        due = case.next_due()
        assert due is not None and due.timer is Timer.FAPIAO_BUYER_REMINDER
        assert CAL.is_working_day(CAL.local(due.at).date())
        reminders.append(CAL.local(due.at).date().isoformat())
        fired = case.fire(due.timer, due.at)
    assert reminders == ["2026-10-08", "2026-10-09", "2026-10-10"]
    assert any(isinstance(e, Flag) for e in fired)
    # finance starts the confirmation again once it lapsed: the reminders start again
    again = case.take(BuyerMustConfirm(by=FINANCE), cst(2026, 10, 13, 9))
    assert case.fapiao_task is not None and case.fapiao_task.buyer_reminders == 0
    assert case.next_due() is not None
    assert any(isinstance(e, Email) for e in again)


def test_a_reissue_records_the_red_letter_and_the_new_fapiao() -> None:
    start = cst(2026, 3, 2, 10)
    case, _ = Case.open(open_case(policy=CasePolicy(calendar=CAL)), start)
    ask = RequestFapiao(
        kind=FapiaoTaskKind.REISSUE,
        buyer_name="上海示例科技有限公司",
        buyer_tax_id="91310000ma1fl8xq3c",
        buyer_address_phone="上海市浦东新区 021-00000000",
        buyer_bank_account="招商银行上海分行 1219 0000 0000",
        blue_numbers=[BLUE],
        by=AGENT,
    )
    assert case.refusal(ask, start) is None
    effects = case.take(ask, start)
    assert any(getattr(e, "kind", None) is EventKind.FAPIAO_REQUESTED for e in effects)
    assert case.fapiao_task is not None and case.fapiao_task.buyer is not None
    assert case.fapiao_task.buyer.tax_id == "91310000MA1FL8XQ3C"
    new = "26312000000012340001"
    without_red = FapiaoRecorded(fapiao_number=new, by=FINANCE)
    assert "red_fapiao_number" in (case.refusal(without_red, start) or "")
    again = FapiaoRecorded(fapiao_number=BLUE, red_fapiao_number=new, by=FINANCE)
    assert "already recorded" in (case.refusal(again, start) or "")
    recorded = FapiaoRecorded(
        fapiao_number=new, red_fapiao_number="26312000000012340002", by=FINANCE
    )
    assert case.refusal(recorded, start) is None
    case.take(recorded, start)
    assert case.status is CaseStatus.OPEN
    assert [(f.number, f.kind.value) for f in case.fapiao] == [
        ("26312000000012340002", "red"),
        (new, "blue"),
    ]


def test_what_finance_and_agents_give_is_checked_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="fapiao_number"):
        FapiaoRecorded(fapiao_number="2631200000001234567", by=FINANCE)  # 19 digits
    with pytest.raises(ValidationError, match="buyer_name, buyer_tax_id"):
        RequestFapiao(kind=FapiaoTaskKind.ISSUE, by=AGENT)
    with pytest.raises(ValidationError, match="buyer_tax_id"):
        RequestFapiao(kind=FapiaoTaskKind.ISSUE, buyer_name="x", buyer_tax_id="12-34", by=AGENT)
    with pytest.raises(ValidationError, match="reverses"):
        RecordFapiao(
            fapiao_number=BLUE,
            invoice_id="G000123456",
            kind="red",
            issued_on="2026-03-02",
            buyer_name="x",
            buyer_tax_id="91310000MA1FL8XQ3C",
            recorded_by=FINANCE,
        )
    case, _ = Case.open(open_case(), cst(2026, 3, 2, 10))
    red = RequestFapiao(kind=FapiaoTaskKind.RED_LETTER, by=AGENT)
    assert "no issued fapiao is recorded for bill G000123456" in (
        case.refusal(red, case.opened_at) or ""
    )
    assert "no fapiao task" in (case.refusal(BuyerMustConfirm(by=FINANCE), case.opened_at) or "")


def test_a_manager_is_told_once_when_finance_has_not_recorded_the_fapiao() -> None:
    start = cst(2026, 4, 30, 17)  # the afternoon before Labour Day (1-5 May off)
    case, _ = _credit_waiting(start)
    due = case.next_due()
    assert due is not None and due.timer is Timer.FAPIAO_FINANCE_OVERDUE
    assert CAL.local(due.at).date().isoformat() == "2026-05-07"  # two working days on
    fired = case.fire(due.timer, due.at)
    (flag,) = fired
    assert isinstance(flag, Flag) and "fapiao tasks page" in flag.why
    assert all(d.timer is not Timer.FAPIAO_FINANCE_OVERDUE for d in case.timers())

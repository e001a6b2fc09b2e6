"""The 21Vianet invoice's rules (workflows/vianet_invoice/rules.py), proved over random weeks with
no server: an invoice recorded any day before or after its due date, time passing, payments
(also ones dated in the future) in any order; each invariant below holds after every step."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core.formatting import china_day
from core.models import (
    Attention,
    EventKind,
    MarkVianetPaid,
    RecordVianetInvoice,
    VianetInvoiceStatus,
)
from core.models.email import FinanceVianetInvoiceDue, ManagerVianetInvoiceOverdue
from tests.rules_support import RULES
from tests.test_calendar import cst
from workflows.effects import Email, Flag, Record
from workflows.vianet_invoice.rules import Effect, VianetInvoice

CLERK = "zhao.min@partner.example.cn"


class VianetInvoiceMachine(RuleBasedStateMachine):
    invoice: VianetInvoice

    @initialize(
        recorded=st.integers(min_value=0, max_value=24 * 30),
        due_in_days=st.integers(min_value=-5, max_value=20),
        remind_days_before=st.integers(min_value=1, max_value=10),
    )
    def record(self, recorded: int, due_in_days: int, remind_days_before: int) -> None:
        self.now = cst(2026, 9, 20, 0) + timedelta(hours=recorded)
        data = RecordVianetInvoice(
            invoice_number="VN2609300042",
            amount=Decimal("1286400.00"),
            due_date=china_day(self.now) + timedelta(days=due_in_days),
            recorded_by=CLERK,
            finance_email="finance@partner.example.cn",
            manager_email="billing-manager@partner.example.cn",
            remind_days_before=remind_days_before,
        )
        self.timeline: list[tuple[datetime, Record]] = []
        self.emails: list[tuple[datetime, Email]] = []
        self.flags: list[Attention] = []
        self.invoice, effects = VianetInvoice.record(data, self.now)
        self.apply(effects)

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Record():
                    self.timeline.append((self.now, effect))
                case Email():
                    self.emails.append((self.now, effect))
                case Flag():
                    self.flags.append(effect.reason)

    @rule(hours=st.integers(min_value=0, max_value=24 * 10))
    def time_passes(self, hours: int) -> None:
        until = self.now + timedelta(hours=hours)
        for _ in range(10):
            stage = self.invoice.next_stage()
            if stage is None or stage.at > until:
                break
            self.now = max(self.now, stage.at)
            self.apply(self.invoice.fire(self.now))
        else:
            raise AssertionError("a stage keeps falling due")
        self.now = until

    @rule(ahead=st.sampled_from([timedelta(0), timedelta(minutes=4), timedelta(days=1)]))
    def mark_paid(self, ahead: timedelta) -> None:
        paid = MarkVianetPaid(paid_at=self.now + ahead, reference="CMB-1", by=CLERK)
        if self.invoice.refusal(paid, self.now) is None:
            assert ahead <= timedelta(minutes=5) and not self.invoice.finished
            self.apply(self.invoice.mark_paid(paid, self.now))

    @invariant()
    def the_status_matches_the_state(self) -> None:
        """Paid exactly when a payment is recorded; overdue exactly when a manager was told."""
        invoice = self.invoice
        assert (invoice.status is VianetInvoiceStatus.PAID) == (invoice.payment is not None)
        told = any(isinstance(e.data, ManagerVianetInvoiceOverdue) for _, e in self.emails)
        if invoice.status is not VianetInvoiceStatus.PAID:
            assert (invoice.status is VianetInvoiceStatus.OVERDUE) == told
        assert told == (invoice.escalated_at is not None)
        # a person is asked (需要处理) exactly when a manager was told
        assert self.flags == ([Attention.PAYABLE_OVERDUE] if told else [])

    @invariant()
    def each_notice_once_in_order_and_none_after_payment(self) -> None:
        """Finance is reminded at most twice and a manager at most once, never after payment."""
        reminders = [e for _, e in self.emails if isinstance(e.data, FinanceVianetInvoiceDue)]
        overdue = [e for _, e in self.emails if isinstance(e.data, ManagerVianetInvoiceOverdue)]
        assert len(reminders) == self.invoice.reminders <= 2 and len(overdue) <= 1
        paid = self.invoice.payment
        paid_seen = [at for at, r in self.timeline if r.kind is EventKind.VIANET_INVOICE_PAID]
        if paid is not None:
            assert all(at <= paid_seen[0] for at, _ in self.emails)
        # none before the first notice's day, 09:00 in China (one recorded late goes at once)
        first = self.invoice.stages()[0].at
        assert all(at >= first for at, _ in self.emails)

    @invariant()
    def the_timeline_is_in_the_order_things_happened(self) -> None:
        """The timeline is in the order things happened: "recorded" first, nothing after paid."""
        kinds = [r.kind for _, r in self.timeline]
        assert kinds[0] is EventKind.VIANET_INVOICE_RECORDED
        assert [at for at, _ in self.timeline] == sorted(at for at, _ in self.timeline)
        if EventKind.VIANET_INVOICE_PAID in kinds:
            assert kinds[-1] is EventKind.VIANET_INVOICE_PAID

    @invariant()
    def the_amount_is_positive_decimal(self) -> None:
        """The amount owed is a positive Decimal in renminbi."""
        amount = self.invoice.invoice.amount
        assert isinstance(amount, Decimal) and amount > 0
        assert self.invoice.invoice.currency == "CNY"


TestVianetInvoiceRules = VianetInvoiceMachine.TestCase
TestVianetInvoiceRules.settings = RULES


def test_recorded_the_night_after_its_due_date_waits_for_the_overdue_notice() -> None:
    """Found by the machine above: recorded at 00:00 the day after its due date, the invoice sent
    finance a reminder "due in -1 days" (which the email's model refuses: the workflow task
    failed); it now waits for the manager's notice at 09:00."""
    now = cst(2026, 9, 20, 0)
    data = RecordVianetInvoice(
        invoice_number="VN1",
        amount=Decimal("10.00"),
        due_date=china_day(now) - timedelta(days=1),
        recorded_by=CLERK,
        finance_email="finance@partner.example.cn",
        manager_email="billing-manager@partner.example.cn",
    )
    invoice, _ = VianetInvoice.record(data, now)
    assert invoice.fire(now) == []
    stage = invoice.next_stage()
    assert stage is not None and stage.name == "overdue" and stage.at == cst(2026, 9, 20, 9)
    [_, email, flag] = invoice.fire(stage.at)
    assert isinstance(email, Email) and isinstance(email.data, ManagerVianetInvoiceOverdue)
    # and it waits in 需要处理 until it is marked paid (the workflow ends then)
    assert isinstance(flag, Flag) and flag.reason is Attention.PAYABLE_OVERDUE

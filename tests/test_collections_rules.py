"""The collections rules (workflows/collections/rules.py) without a server: the bugs of issue 23 as
plain tests, then random weeks of an invoice (failures, payments, disputes, promises, approvals,
bounces, fraud, overrides, continue-as-new) across China's 2026 holidays, every invariant checked
after every step."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from core import search
from core.calendar import china
from core.formatting import money
from core.ids import account_workflow_id
from core.models import (
    BillingFailure,
    CasePolicy,
    CollectionsReply,
    CollectionsState,
    CollectionsStatus,
    CollectionsView,
    CorrectContact,
    Customer,
    DecideSuspension,
    DisputeOutcome,
    EmailMessage,
    EmailTemplate,
    EventKind,
    HoldReason,
    Locale,
    NoticeOutcome,
    NoticeState,
    OpenDispute,
    Outcome,
    PaymentReceived,
    PromiseToPay,
    ReportFraud,
    ResumePolicy,
    StartCollections,
    TriageReply,
    Waive,
)
from core.models.messages import EmailDelivered, EmailUndelivered
from core.settings import ROOT, load_collections_policy
from tests.rules_support import RULES
from tests.workflow_support import auto_approval
from workflows.collections.rules import (
    AWAITING_APPROVAL,
    CONSOLIDATED,
    Collections,
    Effect,
    HoldSubscriptions,
    Letter,
    PassOn,
    ReleaseSubscriptions,
    SendNotice,
)
from workflows.effects import Flag, Record

SHIPPED = load_collections_policy(ROOT / "config" / "collections_policy.toml")
CALENDAR = china(date(2026, 1, 1))  # 2026 and 2027 as published: the Spring Festival, 调休 days
# the policies a run may follow: the shipped one (a manager approves), on the calendar or not,
# and as a customer's overrides shape it
POLICIES = {
    "shipped": SHIPPED.model_copy(update={"calendar": CALENDAR}),
    "24x7": SHIPPED,
    "auto": auto_approval(SHIPPED).model_copy(update={"calendar": CALENDAR}),
    "exempt": SHIPPED.for_customer(True, 0).model_copy(update={"calendar": CALENDAR}),
    "grace": SHIPPED.for_customer(False, 15).model_copy(update={"calendar": CALENDAR}),
}
START = datetime(2026, 2, 9, 1, 30, tzinfo=UTC)  # the week before the Spring Festival
CUSTOMER = Customer(
    tenant_id=str(uuid.UUID(int=7)), name="北京示例贸易有限公司", email="ap@customer.example.cn"
)


def failure(amount: str = "56780.00", failure_id: str = "F1") -> BillingFailure:
    return BillingFailure(
        failure_id=failure_id,
        invoice_id="G000123456",
        customer=CUSTOMER,
        subscription_ids=[str(uuid.UUID(int=1)), str(uuid.UUID(int=2))],
        amount_due=Decimal(amount),
        failed_at=START,
    )


def payment(amount: str, payment_id: str = "P1") -> PaymentReceived:
    return PaymentReceived(
        payment_id=payment_id, invoice_id="G000123456", amount=Decimal(amount), received_at=START
    )


def opened(policy: str = "auto", amount: str = "56780.00") -> Collections:
    data = StartCollections(failure=failure(amount), policy=POLICIES[policy])
    return Collections.open(data, START)[0]


def view(state: Collections) -> CollectionsView:
    return state.view(workflow_id="collections-G000123456", needs_attention=None, event_count=0,
                      timeline=[])  # fmt: skip


def carried(state: Collections) -> Collections:
    """Through continue-as-new: the one state model, as JSON and back."""
    data = StartCollections(failure=failure(), policy=state.policy, carried=state)
    again = StartCollections.model_validate_json(data.model_dump_json())
    return Collections.open(again, START)[0]


def letters(effects: list[Effect]) -> list[EmailTemplate]:
    return [e.data.template for e in effects if isinstance(e, Letter | SendNotice)]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- the bugs


def test_an_overpayment_is_kept_as_credit_recorded_and_told() -> None:
    """Issue 23 #2: ¥99,999,999.00 against ¥56,780.00 closes the invoice with ¥56,780.00 applied;
    the rest is the customer's credit, in the state, the view, the timeline and the letters."""
    state = opened()
    effects = state.pay(payment("99999999.00"), START)
    assert state.status is CollectionsStatus.PAID and state.balance == 0
    assert state.paid == Decimal("56780.00") and state.credit == Decimal("99943219.00")
    shown = view(state)
    assert shown.credit == Decimal("99943219.00") and shown.paid == Decimal("56780.00")
    assert shown.overpayment is not None and shown.overpayment.applied == Decimal("56780.00")
    [kept] = [e for e in effects if isinstance(e, Record) and e.kind is EventKind.CREDIT_KEPT]
    assert kept.data == {"payment_id": "P1", "applied": "56780.00", "credit": "99943219.00"}
    assert letters(effects) == [
        EmailTemplate.MANAGER_NEEDS_ATTENTION,  # the manager (finance) told
        EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED,
    ]


def test_the_payment_letter_says_what_was_applied_and_what_is_kept() -> None:
    from activities.rendering import TemplateRenderer

    state = opened()
    effects = state.pay(payment("99999999.00"), START)
    [letter] = [
        e for e in effects if isinstance(e, Letter) and e.data.recipient.value == "customer"
    ]
    for locale, applied, kept in (
        (Locale.ZH_CN, "¥56,780.00", "¥99,943,219.00"),
        (Locale.EN_US, "¥56,780.00", "¥99,943,219.00"),
    ):
        message = EmailMessage(
            key="k", to="ap@customer.example.cn", locale=locale, data=letter.data,
            collections=view(state),
        )  # fmt: skip
        rendered = TemplateRenderer(ROOT / "templates").render_message(message)
        for text in (rendered.text, rendered.html):
            assert applied in text and kept in text, text
        if locale is Locale.ZH_CN:
            assert "credit" not in rendered.text.lower() and "贷记余额" in rendered.text


def test_the_same_payment_id_with_another_amount_is_refused_naming_both() -> None:
    state = opened()
    state.pay(payment("1200.50"), START)
    assert state.refuse_payment(payment("1200.50")) is None  # the same payment: done, again
    assert state.pay(payment("1200.50"), START) == []
    refused = state.refuse_payment(payment("1300.00"))
    assert refused is not None and "¥1,200.50" in refused and "¥1,300.00" in refused
    assert state.paid == Decimal("1200.50")


def test_the_stage_follows_the_approval_and_the_suspension() -> None:
    """Issue 23 #3: approved and suspended, the stage is the suspension, not awaiting-approval."""
    state = opened("shipped")
    state.notice = NoticeState.DELIVERED  # the account delivered the final notice
    now = START
    while (due := state.next_due()) is not None and due.step != "suspension":
        now = due.at
        state.fire(due, now)
    assert due is not None
    state.fire(due, due.at)
    assert state.stage == AWAITING_APPROVAL
    effects = state.approve(DecideSuspension(reason="多次催缴未果", by="manager"), due.at)
    assert any(isinstance(e, HoldSubscriptions) for e in effects)
    assert state.stage == "suspension" == view(state).stage
    refused = opened("shipped")
    refused.approval_asked_at = due.at
    refused.refuse(DecideSuspension(reason="大客户", by="manager"), due.at)
    assert refused.stage == "handed-off"


def test_the_view_shows_the_policy_the_run_follows() -> None:
    """Issue 23 #4: a customer's override is the policy shown, not the default."""
    state = opened("grace")
    shown = view(state).policy
    assert shown is not None and shown.steps == POLICIES["grace"].steps
    assert [s.day for s in shown.steps if s.name == "suspension"] == [25]


def test_notice_events_right_after_continue_as_new_are_taken() -> None:
    """The hazard of issue 23: a continued run takes a delivery and a notice's outcome at once
    (no flag waits for the first alarm)."""
    state = carried(opened())
    outcome = NoticeOutcome(template=EmailTemplate.COLLECTIONS_FINAL_NOTICE, state=NoticeState.SENT)
    state.notice_outcome(outcome, START)
    assert state.notice is NoticeState.SENT
    key = f"{account_workflow_id(CUSTOMER.tenant_id)}/run/3-collections_final_notice"
    delivered = EmailDelivered(key=key, template="collections_final_notice")
    assert state.email_delivered(delivered, START) == [PassOn(delivered)]


# ---------------------------------------------------------------------------- random weeks

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("200000.00"), places=2)


class InvoiceWeeks(RuleBasedStateMachine):
    """One invoice, with what its account holds for it, driven by random events over weeks."""

    @initialize(policy=st.sampled_from(sorted(POLICIES)), amount=AMOUNTS)
    def open(self, policy: str, amount: Decimal) -> None:
        self.now = START
        self.policy = POLICIES[policy]
        data = StartCollections(
            failure=failure(str(amount)), policy=self.policy, case_policy=CasePolicy()
        )
        self._shown: CollectionsView | None = None
        self.timeline: list[tuple[int, datetime]] = []
        self.holds: set[HoldReason] = set()  # what the account holds for this invoice
        self.overs = Decimal("0.00")  # paid beyond the balance, so far
        self.credit_events = 0
        self.refusals: list[tuple[Decimal, Decimal, str | None]] = []
        self.payment_ids: list[str] = []
        self.state, effects = Collections.open(data, self.now)
        self.take(effects)

    def shown(self) -> CollectionsView:
        """The view as the state is now (built once a step: every invariant reads it)."""
        if self._shown is None:
            self._shown = view(self.state)
        return self._shown

    def take(self, effects: list[Effect]) -> None:
        self._shown = None
        for effect in effects:
            match effect:
                case Record():
                    self.timeline.append((len(self.timeline) + 1, self.now))
                    self.credit_events += effect.kind is EventKind.CREDIT_KEPT
                case Letter() | SendNotice():
                    self.check_letter(effect.data.template)  # type: ignore[attr-defined]
                case HoldSubscriptions():
                    assert not self.state.status.is_final, "a hold asked for a settled invoice"
                    self.holds.add(effect.holds.reason)
                case ReleaseSubscriptions():
                    self.holds.discard(HoldReason.NON_PAYMENT)

    def check_letter(self, template: EmailTemplate) -> None:
        shown = self.shown()
        if template in (
            EmailTemplate.COLLECTIONS_SUSPENDED,
            EmailTemplate.COLLECTIONS_DELETION_WARNING,
        ):
            assert shown.suspended_subscriptions, f"{template.value} with no subscription to list"
        if template is EmailTemplate.COLLECTIONS_FINAL_NOTICE:
            assert shown.subscription_ids and shown.suspended_at is None

    def act(self, refused: str | None, then: object) -> None:
        """An update: refused (nothing changes), or its effects taken."""
        if refused is None:
            self.take(then())  # type: ignore[operator]

    # -- the billing system

    @rule(amount=AMOUNTS, n=st.integers(2, 4))
    def fails_again(self, amount: Decimal, n: int) -> None:
        again = failure(str(amount), f"F{n}")
        self.act(self.state.refuse_failure(again), lambda: self.state.add_failure(again, self.now))

    @rule(kind=st.sampled_from(["partial", "exact", "over"]), amount=AMOUNTS)
    def pays(self, kind: str, amount: Decimal) -> None:
        balance = self.state.balance
        value = {"partial": min(amount, balance), "exact": balance, "over": balance + amount}[kind]
        assume(value > 0)
        paid = payment(str(value), f"P{len(self.payment_ids) + 1}")
        refused = self.state.refuse_payment(paid)
        if refused is None:
            self.payment_ids.append(paid.payment_id)
            self.overs += max(value - balance, Decimal("0.00"))
        self.act(refused, lambda: self.state.pay(paid, self.now))

    @precondition(lambda self: self.payment_ids)
    @rule(other=st.booleans(), extra=AMOUNTS)
    def pays_again(self, other: bool, extra: Decimal) -> None:
        payment_id = self.payment_ids[-1]
        recorded = self.state.payments[payment_id]
        amount = recorded + extra if other else recorded
        refused = self.state.refuse_payment(payment(str(amount), payment_id))
        self.refusals.append((recorded, amount, refused))
        effects = [] if refused else self.state.pay(payment(str(amount), payment_id), self.now)
        assert effects == []
        self.take(effects)

    # -- agents and managers

    @rule()
    def disputes(self) -> None:
        data = OpenDispute(description="重复计费", by="agent")
        self.act(
            self.state.refuse_dispute(data),
            lambda: self.state.open_dispute(data, f"BC-{len(self.timeline)}", self.now),
        )

    @rule(outcome=st.sampled_from([*Outcome, None]), credit=st.none() | AMOUNTS)
    def dispute_ends(self, outcome: Outcome | None, credit: Decimal | None) -> None:
        case = self.state.linked_case or "BC-other"
        ended = DisputeOutcome(case_id=case, outcome=outcome, credit_amount=credit)
        self.take(self.state.dispute_resolved(ended, self.now))

    @rule(days=st.integers(1, 40))
    def promises(self, days: int) -> None:
        data = PromiseToPay(until=self.now + timedelta(days=days), by="agent")
        self.act(
            self.state.refuse_promise(data, self.now), lambda: self.state.promise(data, self.now)
        )

    @rule()
    def resumes(self) -> None:
        data = ResumePolicy(reason="客户未回复", by="manager")
        self.act(self.state.refuse_resume(data), lambda: self.state.resume(data, self.now))

    @rule(approve=st.booleans())
    def decides(self, approve: bool) -> None:
        data = DecideSuspension(reason="审批", by="manager")
        decide = self.state.approve if approve else self.state.refuse
        verb = "approve" if approve else "refuse"
        self.act(self.state.refuse_decision(verb), lambda: decide(data, self.now))

    @rule()
    def fraud(self) -> None:
        data = ReportFraud(reason="被盗卡挖矿", by="risk")
        self.act(self.state.refuse_fraud(data), lambda: self.state.report_fraud(data, self.now))

    @rule()
    def waives(self) -> None:
        data = Waive(reason="goodwill", by="manager")
        self.act(self.state.refuse_waive(data), lambda: self.state.waive(data, self.now))

    @rule(decision=st.sampled_from(["no-action", "contact-confirmed"]))
    def triages(self, decision: str) -> None:
        data = TriageReply(decision=decision, by="agent")
        self.act(self.state.refuse_triage(data), lambda: self.state.triage_done(data))

    @rule(n=st.integers(1, 3))
    def corrects_contact(self, n: int) -> None:
        data = CorrectContact(email=f"ap{n}@customer.example.cn", by="agent")
        self.act(
            self.state.refuse_contact(data), lambda: self.state.correct_contact(data, self.now)
        )

    # -- the customer's mail

    @rule()
    def replies(self) -> None:
        self.take(self.state.customer_replied(CollectionsReply(text="金额不对", by="c"), self.now))

    @rule(template=st.sampled_from(sorted(CONSOLIDATED)), state=st.sampled_from(NoticeState))
    def notice_outcome(self, template: EmailTemplate, state: NoticeState) -> None:
        outcome = NoticeOutcome(template=template, state=state)
        self.take(self.state.notice_outcome(outcome, self.now))

    @rule(ours=st.booleans(), bounced=st.booleans())
    def sendgrid_event(self, ours: bool, bounced: bool) -> None:
        key = f"{account_workflow_id(CUSTOMER.tenant_id) if ours else 'collections-x'}/k"
        if bounced:
            event = EmailUndelivered(key=key, event="bounce", address="a@b.cn", template="x")
            self.take(self.state.email_undelivered(event, self.now))
        else:
            delivered = EmailDelivered(key=key, template="collections_final_notice")
            self.take(self.state.email_delivered(delivered, self.now))

    # -- time

    @rule(hours=st.integers(1, 24 * 20))
    def time_passes(self, hours: int) -> None:
        """Everything due by then happens, in order, at the time it was due."""
        until = self.now + timedelta(hours=hours)
        for _ in range(60):
            due = self.state.next_due()
            if due is None or due.at > until:
                break
            self.now = max(self.now, due.at)
            self.take(self.state.fire(due, self.now))
        self.now = until

    @rule()
    def continues_as_new(self) -> None:
        """The state as continue-as-new carries it, through JSON (`carried` wraps it too)."""
        self.state = Collections.model_validate_json(self.state.model_dump_json())
        self.take([])

    # -- invariants

    @invariant()
    def money_adds_up(self) -> None:
        """Paid + credited + waived + balance is what is due, the payments are paid + credit."""
        s = self.state
        assert s.paid + s.credited + s.waived + s.balance == s.amount_due and s.balance >= 0
        assert sum(s.payments.values(), Decimal("0.00")) == s.paid + s.credit
        assert all(v.as_tuple().exponent == -2 for v in (s.paid, s.credited, s.waived, s.credit))
        settled = (CollectionsStatus.PAID, CollectionsStatus.CREDITED, CollectionsStatus.WAIVED)
        assert s.status not in settled or s.balance == 0

    @invariant()
    def overpayment_is_never_silent(self) -> None:
        """Every amount paid beyond the balance is the customer's credit, recorded and shown."""
        assert self.state.credit == self.overs == self.shown().credit
        assert self.credit_events == (1 if self.overs else 0)

    @invariant()
    def a_repeated_payment_id_with_another_amount_is_refused_naming_both(self) -> None:
        """The same payment id: done when the amount is the same, else refused naming both."""
        for recorded, amount, refused in self.refusals:
            if amount == recorded or self.state.status.is_final:
                assert refused is None or self.state.status.is_final
            else:
                assert refused and money(recorded) in refused and money(amount) in refused

    @invariant()
    def stage_and_search_attributes_match_the_state(self) -> None:
        """The stage stored, shown and searched is the state's: never awaiting after a decision."""
        s, shown = self.state, self.shown()
        attributes = search.collections_attributes(
            invoice_id=shown.invoice_id, tenant_id=CUSTOMER.tenant_id, stage=shown.stage,
            balance=shown.balance, suspended=bool(shown.suspended_subscriptions),
        )  # fmt: skip
        assert attributes.get(search.COLLECTIONS_STAGE) == shown.stage == s.stage
        assert attributes.get(search.AMOUNT_DUE) == float(s.balance)
        assert (shown.stage == AWAITING_APPROVAL) == (
            s.approval_asked_at is not None and s.status is CollectionsStatus.ACTIVE
        )
        assert s.status is CollectionsStatus.ACTIVE or shown.stage == s.status.value

    @invariant()
    def the_policy_shown_is_the_policy_run(self) -> None:
        """The view's policy is the one the run follows (a customer's override included)."""
        shown = self.shown().policy
        assert shown is not None and shown.steps == self.state.policy.steps == self.policy.steps

    @invariant()
    def the_timeline_is_in_the_order_things_happened(self) -> None:
        """Events are numbered in the order they happened, and never go back in time."""
        times = [at for _, at in self.timeline]
        assert times == sorted(times)

    @invariant()
    def holds_only_while_unpaid(self) -> None:
        """A hold is asked only while something unpaid (or fraud) justifies it, and released when
        settled (an invoice closed unpaid after its hand-off stays held)."""
        s = self.state
        if HoldReason.NON_PAYMENT in self.holds:
            assert s.balance > 0 and s.suspended_at is not None
        if s.held:
            assert self.holds, "the invoice shows holds the account was never asked for"
        if s.balance == 0 and not s.fraud:
            assert not s.held and not self.holds

    @invariant()
    def the_flag_is_raised_for_what_waits_for_a_person(self) -> None:
        """A suspension waiting for a manager or for triage is never silent."""
        s = self.state
        if s.approval_asked_at is not None:
            assert s.status is not CollectionsStatus.ACTIVE or s.stage == AWAITING_APPROVAL


InvoiceWeeks.TestCase.settings = RULES
TestInvoiceWeeks = InvoiceWeeks.TestCase


def test_flag_effects_name_what_to_do() -> None:
    state = opened()
    effects = state.customer_replied(CollectionsReply(text="?", by="c"), START)
    assert any(isinstance(e, Flag) and "triage" in e.why for e in effects)
    assert isinstance(CollectionsState.model_validate(state.model_dump()), CollectionsState)

"""The account's rules (workflows/account/rules.py) with no server: scripted cases, the letters
rendered in both languages, and a Hypothesis state machine over random weeks of holds, payments,
fraud and lifts, Partner Center's answers, notices across China's holidays, SendGrid's events,
overrides and continue-as-new."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from activities.rendering import TemplateRenderer
from core.calendar import china
from core.models import (
    AccountOverrides,
    AccountState,
    CollectionsPolicy,
    CollectionsView,
    EmailMessage,
    EventKind,
    HoldReason,
    LiftFraud,
    Locale,
    Notice,
    NoticeState,
    PlaceHolds,
    ReleaseHolds,
    SetOverrides,
    StartAccount,
)
from core.models.email import (
    CollectionsFinalNotice,
    CollectionsPaymentFailed,
    CollectionsPaymentReceived,
    CollectionsReactivated,
    CollectionsReminder,
)
from core.settings import ROOT
from tests.factories import make_collections_view, make_customer
from tests.rules_support import RULES
from workflows.account.holds import may_suspend_now
from workflows.account.rules import (
    Account,
    Change,
    Effect,
    Reconcile,
    Refused,
    SendLetter,
    SendNotices,
    TellInvoices,
    TellManager,
)
from workflows.effects import Flag, Record

CUSTOMER = make_customer()
CALENDAR = china(date(2026, 1, 1))
# 08:30 in Beijing on the Tuesday before the National Day holidays (1 to 7 October 2026)
START = datetime(2026, 9, 29, 0, 30, tzinfo=UTC)
SUBSCRIPTIONS = [str(uuid.UUID(int=n + 1)) for n in range(4)]
# three invoices of one customer, sharing subscriptions
INVOICES = {
    "G000000001": SUBSCRIPTIONS[0:2],
    "G000000002": SUBSCRIPTIONS[1:3],
    "G000000003": SUBSCRIPTIONS[2:4],
}
PAID = Decimal("5000.00")
STEP = {"name": "reminder", "day": 3, "email": "collections_reminder"}
RENDERER = TemplateRenderer(ROOT / "templates")


# the payloads are immutable: made once (validating an address costs more than a transition)
@functools.cache
def view_of(invoice_id: str) -> CollectionsView:
    return make_collections_view(
        invoice_id=invoice_id,
        workflow_id=f"collections-{invoice_id}",
        customer=CUSTOMER,
        subscription_ids=INVOICES[invoice_id],
        paid=PAID,
        balance=Decimal("0.00"),
    )


@functools.cache
def hold(invoice_id: str, reason: HoldReason, subs: tuple[str, ...] = ()) -> PlaceHolds:
    return PlaceHolds(
        invoice_id=invoice_id,
        reason=reason,
        subscription_ids=list(subs) or INVOICES[invoice_id],
        customer=CUSTOMER,
        by="collections",
    )


@functools.cache
def paid(invoice_id: str) -> ReleaseHolds:
    return ReleaseHolds(invoice_id=invoice_id, why="paid", paid=PAID, view=view_of(invoice_id))


def account(calendar: bool = False, told_when_delivered: bool = False) -> Account:
    policy = CollectionsPolicy.model_validate(
        {"steps": [STEP], "calendar": CALENDAR if calendar else None}
    )
    start = StartAccount(customer=CUSTOMER, policy=policy, told_when_delivered=told_when_delivered)
    return Account.opened(start)


def settle(state: Account, now: datetime, refuse: frozenset[str] = frozenset()) -> list[Effect]:
    """Partner Center answers every change the rules ask for (refusing those in `refuse`); the
    effects besides the changes come back."""
    out: list[Effect] = []
    while (change := state.next_change(now)) is not None:
        if change.subscription_id in refuse:
            effects = state.change_refused(change, "409 Conflict", now)
        else:
            effects = state.subscription_changed(change, "dry-run", now)
        out += [e for e in effects if not isinstance(e, Reconcile)]
    return out


def letters(effects: list[Effect]) -> list[SendLetter]:
    return [e for e in effects if isinstance(e, SendLetter)]


def rendered(letter: SendLetter, locale: Locale) -> str:
    message = EmailMessage(
        key="account-x/1", to=CUSTOMER.email, locale=locale, data=letter.data,
        collections=letter.view,
    )  # fmt: skip
    return RENDERER.render_message(message).text


# --------------------------------------------------------------------------- scripted cases


def test_paying_one_invoice_reactivates_only_what_nothing_else_holds() -> None:
    state, now = account(), START
    a, b = "G000000001", "G000000002"
    state.place_holds(hold(a, HoldReason.NON_PAYMENT), now)
    state.place_holds(hold(b, HoldReason.NON_PAYMENT), now)
    settle(state, now)
    assert state.suspended == SUBSCRIPTIONS[0:3]
    told = letters(state.release_holds(paid(a), now) + settle(state, now))
    [letter] = told
    assert isinstance(letter.data, CollectionsReactivated)
    assert letter.data.reactivated == [SUBSCRIPTIONS[0]]
    assert letter.data.still_suspended == [SUBSCRIPTIONS[1]] and not letter.data.reactivating
    zh, en = rendered(letter, Locale.ZH_CN), rendered(letter, Locale.EN_US)
    assert "以下订阅目前仍处于暂停状态" in zh and "仍在恢复中" not in zh
    assert "These subscriptions are still suspended" in en and "will confirm" not in en
    assert "invoice" not in zh.lower() and "subscription" not in zh.lower()


def test_a_refused_reactivation_is_promised_and_then_confirmed() -> None:
    """Partner Center refuses one reactivation: the letter says it is still being reactivated
    because a follow-up is queued, and the follow-up goes when the next event brings it back."""
    state, now = account(), START
    a = "G000000001"
    state.place_holds(hold(a, HoldReason.NON_PAYMENT), now)
    settle(state, now)
    effects = state.release_holds(paid(a), now) + settle(state, now, frozenset({SUBSCRIPTIONS[1]}))
    [letter] = letters(effects)
    assert any(isinstance(e, TellManager) for e in effects)
    assert isinstance(letter.data, CollectionsReactivated)
    assert letter.data.reactivated == [SUBSCRIPTIONS[0]]
    assert letter.data.reactivating == [SUBSCRIPTIONS[1]]
    assert [x.follow_up for x in state.letters] == [True]
    zh, en = rendered(letter, Locale.ZH_CN), rendered(letter, Locale.EN_US)
    assert "仍在恢复中" in zh and SUBSCRIPTIONS[1] in zh.partition("仍在恢复中")[2]
    assert "We are still reactivating" in en
    # an unrelated event tries the refused change again: the follow-up confirms it
    grace = SetOverrides(overrides=AccountOverrides(extra_grace_days=2), reason="r", by="m")
    state.set_overrides(grace, now)
    [follow_up] = letters(settle(state, now))
    assert isinstance(follow_up.data, CollectionsReactivated) and follow_up.data.follow_up
    assert follow_up.data.reactivated == [SUBSCRIPTIONS[1]] and state.letters == []
    zh, en = rendered(follow_up, Locale.ZH_CN), rendered(follow_up, Locale.EN_US)
    assert "我们曾告知您仍在恢复中的以下订阅现已恢复" in zh and "感谢您的付款" not in zh
    assert "They are active again now" in en


def test_fraud_holds_survive_payment_and_go_only_by_a_manager() -> None:
    state, now = account(), START
    a = "G000000001"
    state.place_holds(hold(a, HoldReason.FRAUD), now)
    settle(state, now)
    [letter] = letters(state.release_holds(paid(a), now) + settle(state, now))
    assert isinstance(letter.data, CollectionsPaymentReceived)
    assert letter.data.still_suspended == INVOICES[a]
    assert "核查期间仍将保持暂停" not in rendered(
        letter, Locale.ZH_CN
    )  # the invoice's view: no fraud
    with pytest.raises(Refused, match="no fraud hold for invoice G000000002"):
        state.check_lift(LiftFraud(reason="x", by="m", invoice_id="G000000002"))
    state.lift_fraud(LiftFraud(reason="风控复核：误报", by="manager.wang"), now)
    settle(state, now)
    assert state.suspended == [] and state.holds == []


def test_overrides_are_recorded_and_an_exempt_customer_is_never_suspended() -> None:
    """Ported from the server test: fraud still suspends an exempt customer; a non-payment hold
    suspends nothing, and a manager hears."""
    state, now = account(), START
    state.place_holds(hold("G000000001", HoldReason.FRAUD), now)
    settle(state, now)
    exempt = SetOverrides(
        overrides=AccountOverrides(exempt_from_suspension=True, extra_grace_days=5),
        reason="政府客户，合同约定不停服",
        by="manager.wang@partner.cn",
    )
    [record, *_] = state.set_overrides(exempt, now)
    assert isinstance(record, Record) and record.kind is EventKind.POLICY_OVERRIDDEN
    assert record.data == {"exempt_from_suspension": "True", "extra_grace_days": "5"}
    with pytest.raises(Refused, match="already has these overrides"):
        state.check_overrides(exempt)
    settle(state, now)
    assert state.suspended == INVOICES["G000000001"]  # fraud holds them
    state.lift_fraud(LiftFraud(reason="ok", by="m"), now)
    settle(state, now)
    effects = state.place_holds(hold("G000000003", HoldReason.NON_PAYMENT), now)
    assert any(isinstance(e, Flag) and "exempt" in e.why for e in effects)
    settle(state, now)
    assert state.suspended == []


def test_non_payment_waits_for_business_hours_fraud_does_not() -> None:
    state = account(calendar=True)
    night = datetime(2026, 9, 30, 14, 0, tzinfo=UTC)  # 22:00 in Beijing, a working day
    state.place_holds(hold("G000000001", HoldReason.NON_PAYMENT), night)
    assert state.next_change(night) is None
    due = state.next_due(night)
    assert due is not None and due.at == datetime(2026, 10, 8, 1, 0, tzinfo=UTC)  # after 国庆
    state.place_holds(hold("G000000003", HoldReason.FRAUD), night)
    settle(state, night)
    assert state.suspended == INVOICES["G000000003"]


def test_one_notice_of_a_kind_a_day_listing_every_invoice() -> None:
    state, now = account(), START
    sent = [e for e in state.notice(notice("G000000001", 0), now) if isinstance(e, SendNotices)]
    assert [len(e.notices) for e in sent] == [1]
    assert not state.notice(notice("G000000002", 0), now)
    assert not state.notice(notice("G000000003", 0), now)
    due = state.next_due(now)
    assert due is not None and due.at == datetime(2026, 9, 30, 1, 0, tzinfo=UTC)  # 09:00 next day
    [together] = [e for e in state.wake(due.at) if isinstance(e, SendNotices)]
    assert [n.view.invoice_id for n in together.notices] == ["G000000002", "G000000003"]


@functools.cache
def notice(invoice_id: str, kind: int) -> Notice:
    data = (
        CollectionsPaymentFailed(),
        CollectionsReminder(),
        CollectionsFinalNotice(suspension_date=START + timedelta(days=10)),
    )[kind]
    return Notice(data=data, view=view_of(invoice_id))


# --------------------------------------------------------------------------- the state machine

invoices = st.sampled_from(sorted(INVOICES))


class AccountMachine(RuleBasedStateMachine):
    """Random weeks of one account; the shell's part (carrying out effects) done by the test."""

    @initialize(calendar=st.booleans(), told_when_delivered=st.booleans())
    def open(self, calendar: bool, told_when_delivered: bool) -> None:
        self.state = account(calendar, told_when_delivered)
        self.now = START
        self.reconciles = 0
        self.in_flight: list[Change] = []
        self.emails: list[SendNotices] = []  # consolidated notices to send
        self.keys: list[str] = []  # emails sent, for SendGrid's events
        # (email, invoice) -> the outcomes told, in order
        self.told: dict[tuple[str, str], list[NoticeState]] = {}
        self.sent_to: dict[str, tuple[str, ...]] = {}  # email -> its invoices
        self.fraud: set[tuple[str, HoldReason, str]] = set()
        self.letters: list[SendLetter] = []  # written in the last step
        self.payments = 0
        self.payer_letters = 0
        self.steps = 0

    # -- carrying out what the rules decided
    def apply(self, effects: list[Effect], email: str = "") -> None:
        for effect in effects:
            match effect:
                case Reconcile():
                    self.reconciles += 1
                case SendNotices():
                    self.emails.append(effect)
                case TellInvoices():
                    for invoice in effect.invoices:
                        self.told.setdefault((email, invoice), []).append(effect.outcome.state)
                case SendLetter():
                    self.letters.append(effect)
                    self.payer_letters += not getattr(effect.data, "follow_up", False)

    def step(self, effects: list[Effect], email: str = "") -> None:
        self.letters = []
        self.apply(effects, email)

    # -- collections
    @rule(
        invoice=invoices,
        fraud=st.booleans(),
        subs=st.lists(st.integers(0, 1), min_size=1, max_size=2, unique=True),
    )
    def place_holds(self, invoice: str, fraud: bool, subs: list[int]) -> None:
        reason = HoldReason.FRAUD if fraud else HoldReason.NON_PAYMENT
        chosen = tuple(INVOICES[invoice][i] for i in subs)
        self.step(self.state.place_holds(hold(invoice, reason, chosen), self.now))
        if fraud:
            self.fraud |= {(s, reason, invoice) for s in chosen}

    @rule(invoice=invoices, was_paid=st.booleans())
    def release_holds(self, invoice: str, was_paid: bool) -> None:
        release = paid(invoice) if was_paid else ReleaseHolds(invoice_id=invoice, why="waived")
        self.payments += was_paid
        self.step(self.state.release_holds(release, self.now))

    @rule(invoice=invoices, kind=st.integers(0, 2))
    def notice(self, invoice: str, kind: int) -> None:
        self.step(self.state.notice(notice(invoice, kind), self.now))

    # -- managers
    @rule(invoice=st.none() | invoices)
    def lift_fraud(self, invoice: str | None) -> None:
        lift = LiftFraud(reason="风控复核", by="manager", invoice_id=invoice)
        try:
            self.state.check_lift(lift)
        except Refused:
            assert not any(key[2] == invoice or invoice is None for key in self.fraud)
            return
        self.step(self.state.lift_fraud(lift, self.now))
        self.fraud = {key for key in self.fraud if invoice not in (None, key[2])}

    @rule(exempt=st.booleans(), grace=st.integers(0, 2))
    def set_overrides(self, exempt: bool, grace: int) -> None:
        overrides = AccountOverrides(exempt_from_suspension=exempt, extra_grace_days=grace)
        data = SetOverrides(overrides=overrides, reason="合同约定", by="manager")
        if overrides == self.state.overrides:
            with pytest.raises(Refused):
                self.state.check_overrides(data)
            return
        self.step(self.state.set_overrides(data, self.now))

    # -- Partner Center
    @precondition(lambda self: self.reconciles > 0)
    @rule()
    def ask_partner_center(self) -> None:
        self.letters = []
        change = self.state.next_change(self.now)
        if change is None:  # the shell runs the queued reconciles that find nothing at once
            self.reconciles = 0
        else:
            self.reconciles -= 1
            self.in_flight.append(change)

    @precondition(lambda self: self.in_flight)
    @rule(which=st.integers(0, 10), answer=st.sampled_from(["done", "refused", "failed"]))
    def partner_center_answers(self, which: int, answer: str) -> None:
        change = self.in_flight.pop(which % len(self.in_flight))  # in any order
        if answer == "failed":  # the step waits for an operator, who retries it
            self.state.change_failed(change)
            self.step([Reconcile("retried")])
        elif answer == "refused":
            self.step(self.state.change_refused(change, "409 Conflict", self.now))
        else:
            self.step(self.state.subscription_changed(change, "dry-run", self.now))

    # -- email
    @precondition(lambda self: self.emails)
    @rule(bounced=st.booleans())
    def send_notices(self, bounced: bool) -> None:
        effect = self.emails.pop(0)
        key = None if bounced else f"account-x/{len(self.keys) + 1}"
        email = key or f"bounced-{len(self.keys) + 1}"
        self.keys.append(email)
        invoices = tuple(n.view.invoice_id for n in effect.notices)
        self.sent_to[email] = invoices
        template = effect.notices[0].data.template
        self.step(self.state.notices_sent(template, invoices, key), email)

    @precondition(lambda self: self.keys)
    @rule(which=st.integers(0, 10), delivered=st.booleans())
    def sendgrid_event(self, which: int, delivered: bool) -> None:
        key = self.keys[which % len(self.keys)]
        state = NoticeState.DELIVERED if delivered else NoticeState.UNDELIVERED
        self.step(self.state.email_event(key, state), key)

    # -- time and runs
    @rule(minutes=st.integers(1, 3 * 24 * 60))
    def time_passes(self, minutes: int) -> None:
        self.letters = []
        self.advance(self.now + timedelta(minutes=minutes))

    def advance(self, until: datetime) -> None:
        for _ in range(100):  # as the shell's alarms fire, each when due
            due = self.state.next_due(self.now)
            if due is None or due.at > until:
                break
            self.now = max(self.now, due.at)
            self.apply(self.state.wake(self.now))
            self.check_letters()  # as they are written, before time moves on
            self.letters = []
        else:
            raise AssertionError(f"an alarm keeps firing at {self.now}")
        self.now = until

    @rule()
    def continue_as_new(self) -> None:
        carried = AccountState.model_validate_json(self.state.model_dump_json())
        policy = CollectionsPolicy.model_validate({"steps": [STEP]})
        start = StartAccount(customer=CUSTOMER, policy=policy, carried=carried)
        after = Account.opened(start)
        assert after == self.state
        self.state = after

    # -- invariants
    def _wanted(self) -> set[str]:
        return set(self.state.wanted())

    @invariant()
    def suspended_exactly_while_held(self) -> None:
        """Once Partner Center answered all it was asked (nothing refused), no subscription is
        suspended while nothing holds it, nor active while something does (bar business hours)."""
        state = self.state
        if self.reconciles or self.in_flight or state.refused:
            return
        assert set(state.suspended) <= self._wanted()
        for s in self._wanted() - set(state.suspended):
            assert not may_suspend_now(s, state.holds, state.calendar, self.now), s

    @invariant()
    def letters_never_contradict_the_state(self) -> None:
        """A letter's "reactivated" ⇔ nothing holds it and Partner Center reactivated it; its
        announced lists are never empty; "still being reactivated" only with a follow-up queued."""
        self.check_letters()

    def check_letters(self) -> None:
        state, wanted = self.state, self._wanted()
        queued = {s for x in state.letters if x.follow_up for s in x.subscriptions}
        for letter in self.letters:
            data = letter.data
            assert state.is_open(self.now)  # the customer reads us in business hours
            if isinstance(data, CollectionsReactivated):
                assert data.reactivated
                for s in data.reactivated:
                    assert s not in state.suspended and s not in wanted
                    assert s not in state.changing
            for s in data.still_suspended:
                assert s in state.suspended and s in wanted
            for s in data.reactivating:
                assert s in state.suspended and s not in wanted and s in queued

    @invariant()
    def each_notice_told_once(self) -> None:
        """Each invoice of a notice email is told each outcome at most once, in the order sent <
        delivered < undelivered (a bounce after the provider took it still reaches a person)."""
        order = list(NoticeState)
        for told in self.told.values():
            ranks = [order.index(state) for state in told]
            assert ranks == sorted(set(ranks)), told

    @invariant()
    def fraud_goes_only_by_a_lift(self) -> None:
        """A fraud hold goes only by a manager's lift."""
        held = {h.key for h in self.state.holds if h.reason is HoldReason.FRAUD}
        assert held == self.fraud

    @invariant()
    def changes_asked_are_under_way(self) -> None:
        """Under way is what Partner Center was asked and has not answered."""
        assert set(self.state.changing) == {c.subscription_id for c in self.in_flight}

    def teardown(self) -> None:
        """Everything settles: every notice and every payment is told, once."""
        if not hasattr(self, "state"):
            return
        for _ in range(200):
            if self.in_flight:
                self.partner_center_answers(0, "done")
            elif self.reconciles:
                self.ask_partner_center()
            elif self.emails:
                self.send_notices(bounced=False)
            elif (due := self.state.next_due(self.now)) is not None:
                self.advance(max(due.at, self.now))  # to the alarm: the shell acts on it then
            else:
                break
        for key in list(self.state.sent_notices):
            self.step(self.state.email_event(key, NoticeState.DELIVERED), key)
        expected = {(email, i) for email, sent in self.sent_to.items() for i in sent}
        assert set(self.told) == expected
        assert all(told[-1] is not NoticeState.SENT for told in self.told.values())
        assert self.payer_letters == self.payments


AccountMachine.TestCase.settings = RULES
TestAccountRules = AccountMachine.TestCase

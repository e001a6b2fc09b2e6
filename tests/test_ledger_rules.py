"""The customer's credit balance (workflows/account/ledger.py through the account's rules, with the
invoices' collections rules it talks to), without a server: scripted cases, then a Hypothesis
state machine of random weeks (payments partial, exact, over, repeated and after the invoice
ended, in two currencies; credit applied to invoices, its answer arriving late or never; refunds
below and above the threshold, approved or refused) with the ledger's invariants: no money is
created or lost, per currency: payments in = applied to bills + credit balance + refunded."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from core.models import (
    AccountState,
    AccountView,
    BillingFailure,
    CollectionsPolicy,
    Customer,
    EmailMessage,
    EventKind,
    Locale,
    PaymentReceived,
    StartAccount,
    StartCollections,
    Waive,
)
from core.models.email_credit import CreditApplied, CreditReceived, CreditRefunded
from core.models.ledger import (
    ApplyCredit,
    CreditApplication,
    CreditSettled,
    DecideRefund,
    RefundStatus,
    RequestRefund,
    UnappliedPayment,
)
from core.settings import ROOT, load_collections_policy
from tests.rules_support import RULES, RULES_EXAMPLES
from tests.workflow_support import auto_approval
from workflows.account.rules import (
    Account,
    ApplyToInvoice,
    Refused,
    SendCreditLetter,
    TellManager,
)
from workflows.collections.rules import Collections, KeepCredit, SettleCredit
from workflows.collections.rules import Effect as InvoiceEffect
from workflows.effects import Record

POLICY: CollectionsPolicy = auto_approval(
    load_collections_policy(ROOT / "config" / "collections_policy.toml")
)
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
CUSTOMER = Customer(
    tenant_id=str(uuid.UUID(int=11)), name="上海示例科技有限公司", email="ap@customer.example.cn"
)
ZERO = Decimal("0.00")
CURRENCIES = ("CNY", "USD")
APPROVAL_ABOVE = {"CNY": Decimal("5000.00"), "USD": Decimal("700.00")}


def invoice(invoice_id: str, amount: Decimal, currency: str = "CNY") -> Collections:
    failure = BillingFailure(
        failure_id=f"F-{invoice_id}",
        invoice_id=invoice_id,
        customer=CUSTOMER,
        subscription_ids=[str(uuid.UUID(int=1))],
        amount_due=amount,
        currency=currency,
        failed_at=START,
    )
    return Collections.open(StartCollections(failure=failure, policy=POLICY), START)[0]


def account() -> Account:
    return Account.opened(StartAccount(customer=CUSTOMER, policy=POLICY))


def pay(invoice_id: str, amount: str, payment_id: str, currency: str = "CNY") -> PaymentReceived:
    return PaymentReceived(
        payment_id=payment_id,
        invoice_id=invoice_id,
        amount=Decimal(amount),
        currency=currency,
        received_at=START,
    )


@dataclass
class Books:
    """An account and its invoices, wired as the shells wire them (signals delivered at once,
    or an application's answer held back to arrive later)."""

    account: Account = field(default_factory=account)
    invoices: dict[str, Collections] = field(default_factory=dict)
    in_flight: list[ApplyToInvoice] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # invoices whose workflow closed
    letters: list[SendCreditLetter] = field(default_factory=list)
    told: list[TellManager] = field(default_factory=list)
    now: datetime = START

    def to_account(self, effects: list[InvoiceEffect]) -> None:
        for effect in effects:
            if isinstance(effect, KeepCredit):
                self.take(self.account.credit_kept(effect.credit, self.now))
            elif isinstance(effect, SettleCredit):
                self.take(self.account.credit_settled(effect.settled, self.now))

    def take(self, effects: Sequence[object]) -> None:
        for effect in effects:
            if isinstance(effect, ApplyToInvoice):
                self.in_flight.append(effect)
            elif isinstance(effect, SendCreditLetter):
                # a letter says what remains as the ledger stands when it is written
                assert (
                    effect.data.remaining == self.account.books.peek(effect.data.currency).balance
                )
                assert effect.data.amount > 0
                self.letters.append(effect)
            elif isinstance(effect, TellManager):
                self.told.append(effect)

    def deliver(self, effect: ApplyToInvoice) -> None:
        """The application reaches its invoice (or, ended and gone, comes back whole)."""
        self.in_flight.remove(effect)
        if effect.invoice_id in self.gone:  # the workflow was gone: the shell answers for it
            back = CreditSettled(
                application_id=effect.application.application_id,
                invoice_id=effect.invoice_id,
                applied=ZERO,
                returned=effect.application.amount,
                balance=ZERO,
            )
            self.take(self.account.credit_settled(back, self.now))
            return
        target = self.invoices[effect.invoice_id]
        self.to_account(target.take_credit(effect.application, self.now))

    def pay(self, payment: PaymentReceived) -> str | None:
        """As the service does: the invoice if it runs, the account once it ended."""
        target = self.invoices[payment.invoice_id]
        refused = target.refuse_payment(payment)
        if refused is None:
            self.to_account(target.pay(payment, self.now))
            return None
        if not target.status.is_final or payment.payment_id in target.payments:
            return refused
        direct = UnappliedPayment(
            payment_id=payment.payment_id,
            invoice_id=payment.invoice_id,
            currency=payment.currency,
            amount=payment.amount,
            by="billing-system",
        )
        try:
            self.account.check_payment(direct)
        except Refused as why:
            return str(why)
        self.take(self.account.take_payment(direct, self.now))
        return None


# ---------------------------------------------------------------------------- scripted


def test_an_overpayment_becomes_the_credit_balance_and_applies_to_another_invoice() -> None:
    books = Books()
    books.invoices["G1"] = invoice("G1", Decimal("1000.00"))
    books.invoices["G2"] = invoice("G2", Decimal("300.00"))
    assert books.pay(pay("G1", "1500.00", "P1")) is None
    balance = books.account.books.peek("CNY")
    assert balance.received == Decimal("500.00") and balance.balance == Decimal("500.00")

    books.take(books.account.apply_credit(apply("G2", "400.00"), "CA-1", books.now))
    assert books.account.books.peek("CNY").balance == Decimal("100.00")  # debited at once
    books.deliver(books.in_flight[0])
    # G2 owed 300: it took 300, 100 came back; the customer is told what was applied, what remains
    assert books.invoices["G2"].status.is_final and books.invoices["G2"].credit_applied == 300
    assert books.account.books.peek("CNY").balance == Decimal("200.00")
    [letter] = [x.data for x in books.letters]
    assert isinstance(letter, CreditApplied)
    assert (letter.amount, letter.remaining, letter.invoice_balance) == tuple(
        map(Decimal, ("300.00", "200.00", "0.00"))
    )
    assert any("100.00" in t.step for t in books.told)  # what came back is told to a manager


def test_a_payment_after_the_invoice_ended_is_credit_once_and_another_amount_is_refused() -> None:
    books = Books()
    books.invoices["G1"] = invoice("G1", Decimal("800.00"))
    assert books.pay(pay("G1", "800.00", "P1")) is None
    assert books.invoices["G1"].status.is_final
    assert books.pay(pay("G1", "800.00", "P2")) is None  # a duplicate transfer
    assert books.pay(pay("G1", "800.00", "P2")) is None  # told again: counted once
    assert books.account.books.peek("CNY").balance == Decimal("800.00")
    [letter] = [x.data for x in books.letters]
    assert isinstance(letter, CreditReceived) and letter.remaining == Decimal("800.00")
    refused = books.pay(pay("G1", "80.00", "P2"))
    assert refused is not None and "¥800.00" in refused and "¥80.00" in refused
    refused = books.pay(pay("G1", "8.00", "P1"))  # the invoice's own payment, another amount
    assert refused is not None and "¥800.00" in refused and "¥8.00" in refused


def test_a_refund_above_the_threshold_waits_for_another_manager() -> None:
    books = Books()
    books.invoices["G1"] = invoice("G1", Decimal("100.00"))
    books.pay(pay("G1", "9100.00", "P1"))
    with pytest.raises(Refused, match="exceeds the customer's available credit"):
        books.account.check_refund(refund("9000.01"))
    books.take(books.account.request_refund(refund("6000.00"), "RF-1", books.now))
    [pending] = books.account.ledger.refunds
    assert pending.status is RefundStatus.AWAITING_APPROVAL and not books.letters
    assert books.account.books.peek("CNY").available == Decimal("3000.00")
    with pytest.raises(Refused, match="another manager decides"):
        books.account.check_decision(decide("RF-1", by="finance.qian"))
    books.take(books.account.decide_refund(decide("RF-1"), True, books.now))
    [letter] = [x.data for x in books.letters]
    assert isinstance(letter, CreditRefunded)
    assert (letter.amount, letter.remaining) == (Decimal("6000.00"), Decimal("3000.00"))
    with pytest.raises(Refused, match="is refunded"):
        books.account.check_decision(decide("RF-1"))
    books.take(books.account.request_refund(refund("100.00"), "RF-2", books.now))  # at once
    assert books.account.books.peek("CNY").refunded == Decimal("6100.00")


def test_the_ledger_survives_continue_as_new() -> None:
    books = Books()
    books.invoices["G1"] = invoice("G1", Decimal("100.00"))
    books.pay(pay("G1", "9100.00", "P1"))
    books.take(books.account.request_refund(refund("6000.00"), "RF-1", books.now))
    start = StartAccount(customer=CUSTOMER, policy=POLICY, carried=books.account)
    again = Account.opened(StartAccount.model_validate_json(start.model_dump_json()))
    assert again.ledger == books.account.ledger
    assert AccountState.model_validate(again.model_dump()) == AccountState.model_validate(
        books.account.model_dump()
    )


def apply(invoice_id: str, amount: str, currency: str = "CNY") -> ApplyCredit:
    return ApplyCredit(
        invoice_id=invoice_id, currency=currency, amount=Decimal(amount), by="finance.qian"
    )


def refund(amount: str, currency: str = "CNY") -> RequestRefund:
    return RequestRefund(
        currency=currency,
        amount=Decimal(amount),
        reason="客户要求退回多付款项",
        by="finance.qian",
        approval_above=APPROVAL_ABOVE[currency],
    )


def decide(refund_id: str, by: str = "manager.zhao") -> DecideRefund:
    return DecideRefund(refund_id=refund_id, reason="已核对银行流水", by=by)


# ---------------------------------------------------------------------------- random weeks

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9000.00"), places=2)


class LedgerWeeks(RuleBasedStateMachine):
    @initialize()
    def open(self) -> None:
        self.books = Books()
        self.cash_in = {c: ZERO for c in CURRENCIES}  # every payment taken, invoice or account
        self.payments: dict[str, tuple[str, Decimal]] = {}  # id -> its invoice, its amount
        self.count = 0

    def _new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    @precondition(lambda self: len(self.books.invoices) < 6)
    @rule(amount=AMOUNTS, usd=st.booleans())
    def invoice_fails(self, amount: Decimal, usd: bool) -> None:
        invoice_id = self._new_id("G")
        currency = "USD" if usd else "CNY"
        self.books.invoices[invoice_id] = invoice(invoice_id, amount, currency)

    @precondition(lambda self: self.books.invoices)
    @rule(data=st.data(), amount=AMOUNTS)
    def pays(self, data: st.DataObject, amount: Decimal) -> None:
        invoice_id = data.draw(st.sampled_from(sorted(self.books.invoices)))
        target = self.books.invoices[invoice_id]
        payment_id = self._new_id("P")
        if self.books.pay(pay(invoice_id, str(amount), payment_id, target.currency)) is None:
            self.cash_in[target.currency] += amount
            self.payments[payment_id] = (invoice_id, amount)

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), other=st.booleans(), extra=AMOUNTS)
    def pays_again(self, data: st.DataObject, other: bool, extra: Decimal) -> None:
        """The same payment id again: counted once; with another amount refused naming both."""
        payment_id = data.draw(st.sampled_from(sorted(self.payments)))
        invoice_id, recorded = self.payments[payment_id]
        target = self.books.invoices[invoice_id]
        amount = recorded + extra if other else recorded
        before = self.books.account.books.view()
        refused = self.books.pay(pay(target.invoice_id, str(amount), payment_id, target.currency))
        if other:
            assert refused is not None and str(recorded) in refused.replace(",", "")
            assert str(amount) in refused.replace(",", "")
        else:
            assert refused is None
        assert self.books.account.books.view() == before

    @precondition(lambda self: self.books.invoices)
    @rule(data=st.data())
    def waives(self, data: st.DataObject) -> None:
        target = self.books.invoices[data.draw(st.sampled_from(sorted(self.books.invoices)))]
        if target.refuse_waive(Waive(reason="goodwill", by="manager.zhao")) is None:
            target.waive(Waive(reason="goodwill", by="manager.zhao"), self.books.now)

    @precondition(lambda self: self.books.invoices)
    @rule(data=st.data(), amount=AMOUNTS, usd=st.booleans())
    def applies_credit(self, data: st.DataObject, amount: Decimal, usd: bool) -> None:
        invoice_id = data.draw(st.sampled_from(sorted(self.books.invoices)))
        currency = "USD" if usd else "CNY"
        asked = ApplyCredit(invoice_id=invoice_id, currency=currency, amount=amount, by="fin")
        try:
            self.books.account.check_application(asked)
        except Refused:
            assert amount > self.books.account.books.peek(currency).available
            return
        self.books.take(self.books.account.apply_credit(asked, self._new_id("CA-"), self.now))

    @property
    def now(self) -> datetime:
        return self.books.now

    @precondition(lambda self: self.books.in_flight)
    @rule(data=st.data(), gone=st.booleans())
    def an_application_arrives(self, data: st.DataObject, gone: bool) -> None:
        effect = data.draw(st.sampled_from(self.books.in_flight))
        if gone and self.books.invoices[effect.invoice_id].status.is_final:
            self.books.gone.add(effect.invoice_id)  # its workflow closed meanwhile
        self.books.deliver(effect)

    @rule(amount=AMOUNTS, usd=st.booleans())
    def refunds(self, amount: Decimal, usd: bool) -> None:
        asked = refund(str(amount), "USD" if usd else "CNY")
        try:
            self.books.account.check_refund(asked)
        except Refused:
            assert amount > self.books.account.books.peek(asked.currency).available
            return
        self.books.take(self.books.account.request_refund(asked, self._new_id("RF-"), self.now))

    @precondition(
        lambda self: any(
            r.status is RefundStatus.AWAITING_APPROVAL for r in self.books.account.ledger.refunds
        )
    )
    @rule(data=st.data(), approve=st.booleans())
    def a_manager_decides(self, data: st.DataObject, approve: bool) -> None:
        waiting = [
            r
            for r in self.books.account.ledger.refunds
            if r.status is RefundStatus.AWAITING_APPROVAL
        ]
        chosen = data.draw(st.sampled_from(waiting))
        self.books.take(
            self.books.account.decide_refund(decide(chosen.refund_id), approve, self.now)
        )

    @rule()
    def continues_as_new(self) -> None:
        start = StartAccount(customer=CUSTOMER, policy=POLICY, carried=self.books.account)
        self.books.account = Account.opened(
            StartAccount.model_validate_json(start.model_dump_json())
        )

    # -- invariants

    @invariant()
    def no_money_is_created_or_lost(self) -> None:
        """Per currency: payments in = applied to bills + credit balance + refunded (credit on
        its way to an invoice counts as applied)."""
        ledger = self.books.account.ledger
        for currency in CURRENCIES:
            balance = self.books.account.books.peek(currency)
            invoices = [i for i in self.books.invoices.values() if i.currency == currency]
            in_flight = sum(
                (e.application.amount for e in self.books.in_flight
                 if e.application.currency == currency),
                ZERO,
            )  # fmt: skip
            to_bills = sum((i.paid for i in invoices), ZERO)
            assert balance.applied == sum((i.credit_applied for i in invoices), ZERO) + in_flight
            assert self.cash_in[currency] == to_bills + balance.applied + balance.balance + (
                balance.refunded
            )
            assert balance.balance >= 0 and 0 <= balance.reserved <= balance.balance
            awaiting = [
                r.amount
                for r in ledger.refunds
                if r.currency == currency and r.status is RefundStatus.AWAITING_APPROVAL
            ]
            assert balance.reserved == sum(awaiting, ZERO)

    @invariant()
    def a_bill_never_takes_more_than_it_owes(self) -> None:
        for i in self.books.invoices.values():
            assert i.balance >= 0
            assert i.paid + i.credited + i.waived + i.credit_applied + i.balance == i.amount_due


TestLedgerWeeks = LedgerWeeks.TestCase
# each step runs several invoices' rules and the account's: a seventh of the weeks, same steps
TestLedgerWeeks.settings = settings(RULES, max_examples=max(50, RULES_EXAMPLES // 7))


def test_credit_letters_name_no_internal_text() -> None:
    """What the customer reads is amounts and invoice numbers: no reason, no actor."""
    for model in (CreditReceived, CreditApplied, CreditRefunded):
        assert not {"reason", "by", "decision"} & set(model.model_fields)


def test_a_refused_credit_signal_changes_nothing() -> None:
    books = Books()
    before = books.account.ledger.model_copy(deep=True)
    other = CreditApplication(
        application_id="CA-X", tenant_id=CUSTOMER.tenant_id, currency="CNY", amount=Decimal("1")
    )
    effects = books.account.credit_settled(
        CreditSettled(
            application_id=other.application_id,
            invoice_id="G9",
            applied=Decimal("1.00"),
            returned=ZERO,
            balance=ZERO,
        ),
        START + timedelta(days=1),
    )
    assert [e.kind for e in effects if isinstance(e, Record)] == [EventKind.SIGNAL_REFUSED]
    assert books.account.ledger == before


@pytest.mark.parametrize("locale", [Locale.ZH_CN, Locale.EN_US])
def test_the_letters_say_what_moved_and_what_remains_in_the_customers_language(
    locale: Locale,
) -> None:
    from activities.rendering import TemplateRenderer

    renderer = TemplateRenderer(ROOT / "templates")
    customer = CUSTOMER.model_copy(update={"locale": locale})
    books = Books(account=Account.opened(StartAccount(customer=customer, policy=POLICY)))
    books.invoices["G1"] = invoice("G1", Decimal("1000.00"))
    books.invoices["G2"] = invoice("G2", Decimal("3000.00"))
    books.pay(pay("G1", "9000.00", "P1"))  # 8,000 credit
    books.take(books.account.apply_credit(apply("G2", "1200.00"), "CA-1", books.now))
    books.deliver(books.in_flight[0])
    books.take(books.account.request_refund(refund("1500.00"), "RF-1", books.now))
    books.pay(pay("G1", "250.00", "P2"))  # G1 ended: all of it credit
    view = AccountView(tenant_id=customer.tenant_id, workflow_id="account-x", customer=customer)
    said = {
        CreditApplied: ("¥1,200.00", "¥6,800.00", "¥1,800.00"),
        CreditRefunded: ("¥1,500.00", "¥5,300.00"),
        CreditReceived: ("¥250.00", "¥5,550.00", "G1"),
    }
    assert [type(x.data) for x in books.letters] == list(said)
    for sent in books.letters:
        message = EmailMessage(
            key="k", to=customer.email, locale=locale, data=sent.data, account=view
        )
        rendered = renderer.render_message(message)
        for text in (rendered.subject + rendered.text, rendered.html):
            for expected in said[type(sent.data)]:
                assert expected in text, text
            assert customer.name in rendered.text
        if locale is Locale.ZH_CN:  # no English word in a Chinese letter
            assert not re.search(r"[A-Za-z]{3,}", rendered.text.replace(customer.tenant_id, "")), (
                rendered.text
            )

"""The matching of a statement's credit lines to open bills (intake/matching.py), without a server:
the scripted cases finance meets, and invariants over random ledgers and lines (money adds up, no
bill takes more than it owes, no allocation in another currency)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from intake.matching import Ledger, OpenBill, Verdict, Why, match, normal_name

T0 = datetime(2026, 11, 1, tzinfo=UTC)
YUNFAN = "上海云帆信息科技有限公司"
XINGHE = "北京星河数据有限公司"


def bill(invoice: str, tenant: str, name: str, balance: str, days: int = 0) -> OpenBill:
    return OpenBill(invoice, tenant, name, "CNY", Decimal(balance), T0 + timedelta(days=days))


def ledger() -> Ledger:
    return Ledger.of(
        [
            bill("G2026110001", "t-yunfan", YUNFAN, "1000.00", 0),
            bill("G2026110002", "t-yunfan", YUNFAN, "2500.00", 1),
            bill("G2026110003", "t-yunfan", YUNFAN, "700.00", 2),
            bill("G2026110010", "t-xinghe", XINGHE, "1000.00", 0),
        ],
        {"6222000011112222": "t-xinghe"},
    )


def test_the_remark_lists_the_bills_a_transfer_pays_in_its_order() -> None:
    found = match(Decimal("3200.00"), "CNY", "", "", "货款 G2026110003 G2026110002", ledger())
    assert found.verdict is Verdict.MATCHED and found.why is Why.BILL_IN_REMARK
    assert [(a.invoice_id, a.amount) for a in found.allocations] == [
        ("G2026110003", Decimal("700.00")),
        ("G2026110002", Decimal("2500.00")),
    ]


def test_the_payer_and_the_amount_oldest_first() -> None:
    one = match(Decimal("2500.00"), "CNY", "上海云帆信息科技有限公司 ", "", "", ledger())
    assert [a.invoice_id for a in one.allocations] == ["G2026110002"]  # the bill of that amount
    two = match(Decimal("3500.00"), "CNY", YUNFAN, "", "", ledger())  # the two oldest add up
    assert [a.invoice_id for a in two.allocations] == ["G2026110001", "G2026110002"]
    assert two.why is Why.PAYER_NAME and two.rest == 0


def test_less_than_the_bill_is_a_partial_payment_more_leaves_the_rest() -> None:
    partial = match(Decimal("900.00"), "CNY", "", "", "G2026110010", ledger())
    assert partial.verdict is Verdict.MATCHED and partial.allocations[0].amount == Decimal("900")
    over = match(Decimal("1200.00"), "CNY", "", "", "G2026110010", ledger())
    assert over.verdict is Verdict.OVERPAID and over.rest == Decimal("200.00")
    assert over.allocations[0].amount == Decimal("1000.00")


def test_a_known_payer_account_names_the_customer_whatever_the_name() -> None:
    found = match(Decimal("1000.00"), "CNY", "星河集团财务公司", "6222000011112222", "", ledger())
    assert found.why is Why.PAYER_ACCOUNT and found.tenant_id == "t-xinghe"


def test_a_mistyped_bill_number_waits_unless_the_payer_confirms_it() -> None:
    # a digit missing, from a payer nobody knows: finance is shown the bill
    unknown = match(Decimal("700.00"), "CNY", "某某代付公司", "", "付G202611003", ledger())
    assert unknown.verdict is Verdict.AMBIGUOUS and unknown.why is Why.BILL_CLOSE
    assert [c.invoice_id for c in unknown.candidates] == ["G2026110003"]
    # two digits swapped, from the customer itself: taken
    known = match(Decimal("700.00"), "CNY", YUNFAN, "", "付G2026111003", ledger())
    assert known.why is Why.BILL_CLOSE_CONFIRMED
    assert [a.invoice_id for a in known.allocations] == ["G2026110003"]


def test_what_nothing_names_waits_with_the_bills_of_its_amount() -> None:
    found = match(Decimal("1000.00"), "CNY", "无名公司", "", "", ledger())
    assert found.verdict is Verdict.UNMATCHED and found.rest == Decimal("1000.00")
    assert {c.invoice_id for c in found.candidates} == {"G2026110001", "G2026110010"}
    several = match(Decimal("1.00"), "CNY", "", "", "G2026110001 G2026110010", ledger())
    assert several.verdict is Verdict.AMBIGUOUS and not several.allocations


def test_names_are_compared_as_banks_write_them() -> None:
    assert normal_name("上海云帆（集团） 有限公司") == normal_name("上海云帆(集团)有限公司")


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50000"), places=2)


@st.composite
def ledgers(draw: st.DrawFn) -> Ledger:
    count = draw(st.integers(min_value=0, max_value=12))
    bills = [
        OpenBill(
            f"G{n:08d}",
            f"t-{draw(st.integers(0, 3))}",
            f"公司{draw(st.integers(0, 3))}",
            draw(st.sampled_from(["CNY", "CNY", "USD"])),
            draw(amounts),
            T0 + timedelta(days=draw(st.integers(0, 60))),
        )
        for n in range(count)
    ]
    accounts = {"ACC1": "t-1"} if draw(st.booleans()) else {}
    return Ledger.of(bills, accounts)


lines = st.tuples(
    amounts,
    st.sampled_from(["CNY", "USD"]),
    st.sampled_from(["", "公司0", "公司1", "公司2", "无名"]),
    st.sampled_from(["", "ACC1", "ACC2"]),
    st.lists(
        st.sampled_from(["G00000001", "G00000002", "G00000010", "G0000001", "付款", "G00000021"]),
        max_size=3,
    ).map(" ".join),
)


@settings(max_examples=150, deadline=None)
@given(ledgers(), st.lists(lines, max_size=6))
def test_money_adds_up_and_no_bill_takes_more_than_it_owes(
    ledger: Ledger, batch: list[tuple[Decimal, str, str, str, str]]
) -> None:
    for amount, currency, name, account, remark in batch:
        before = {k: b.balance for k, b in ledger.bills.items()}
        found = match(amount, currency, name, account, remark, ledger)
        assert sum((a.amount for a in found.allocations), Decimal(0)) + found.rest == amount
        assert all(a.amount > 0 for a in found.allocations)
        assert (found.rest == 0) == (found.verdict is Verdict.MATCHED)
        if found.verdict in (Verdict.AMBIGUOUS, Verdict.UNMATCHED):
            assert not found.allocations
        for allocation in found.allocations:
            taken = ledger.bills[allocation.invoice_id.upper()]
            assert taken.currency == currency
            assert allocation.amount <= before[allocation.invoice_id.upper()]
        assert len({a.invoice_id for a in found.allocations}) == len(found.allocations)
        ledger.apply(found.allocations)
        assert all(b.balance >= 0 for b in ledger.bills.values())

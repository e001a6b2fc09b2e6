"""Match a statement's credit line to open bills: a plain function over an in-memory ledger (no
I/O), so an import of 20,000 lines matches each in microseconds and the rules are proved alone
(tests/test_statement_rules.py).

In order: the bill numbers the remark lists (in its order; one transfer may pay several); the
payer, known by an account finance taught or by the customer's name, and the amount (one bill of
that amount, else the oldest bills whose balances add up to it, else the oldest first: less than a
bill is a partial payment). A bill number one keystroke away from an open bill's is only taken when
the payer confirms it; otherwise the line waits for finance with its candidates. What exceeds the
bills is left over (OVERPAID) for finance."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal("0.00")
MAX_CANDIDATES = 8
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,63}")
FUZZY_MIN = 6  # shorter tokens (years, amounts) are never read as a mistyped bill number


class Verdict(StrEnum):
    MATCHED = "matched"  # every yuan went to bills
    OVERPAID = "overpaid"  # bills took what they owed; the rest waits for finance
    AMBIGUOUS = "ambiguous"  # candidates, none certain: finance picks
    UNMATCHED = "unmatched"  # nothing tells whose it is


class Why(StrEnum):
    """How a line was matched, or why it waits (the workspace shows each in the reader's
    language)."""

    BILL_IN_REMARK = "bill number in the remark"
    PAYER_ACCOUNT = "known payer account"
    PAYER_NAME = "payer name"
    BILL_CLOSE_CONFIRMED = "mistyped bill number, confirmed by the payer"
    BILL_CLOSE = "mistyped bill number?"
    SEVERAL_CUSTOMERS = "payer name of several customers"
    BILLS_OF_SEVERAL_CUSTOMERS = "remark lists bills of several customers"
    NO_OPEN_BILL = "known payer with no open bill"
    NOTHING_FOUND = "no bill number, payer unknown"
    SAME_AMOUNT = "same amount"
    PAYERS_BILL = "the payer's bill"
    CHOSEN = "matched by finance"
    REFUSED = "payment refused"
    SET_ASIDE = "not a customer's payment"


@dataclass
class OpenBill:
    invoice_id: str
    tenant_id: str
    customer_name: str
    currency: str
    balance: Decimal
    since: datetime  # the first failure: bills are paid oldest first


@dataclass(frozen=True)
class Allocation:
    invoice_id: str
    amount: Decimal


@dataclass(frozen=True)
class Candidate:
    invoice_id: str
    customer_name: str
    balance: Decimal
    why: Why


@dataclass(frozen=True)
class Match:
    verdict: Verdict
    why: Why
    allocations: tuple[Allocation, ...] = ()
    rest: Decimal = ZERO  # not allocated: the excess, or the whole line while it waits
    candidates: tuple[Candidate, ...] = ()
    tenant_id: str | None = None


def normal_name(name: str) -> str:
    """A company name as banks and customers write it: full-width folded, spaces and case gone."""
    folded = unicodedata.normalize("NFKC", name)
    return re.sub(r"[\s·.,，。]", "", folded).upper()


def one_keystroke(a: str, b: str) -> bool:
    """Whether `b` is `a` with one letter wrong, missing or extra, or two neighbours swapped."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0] if len(diff) == 2 else -1
        return diff == [i, i + 1] and a[i] == b[i + 1] and a[i + 1] == b[i]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if len(longer) - len(shorter) != 1:
        return False
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def _deletions(text: str) -> set[str]:
    return {text} | {text[:i] + text[i + 1 :] for i in range(len(text))}


@dataclass
class Ledger:
    """The open bills and the payer accounts finance taught, indexed for matching; `apply` takes
    what a match allocated off the balances (so a statement's later lines see it)."""

    accounts: dict[str, str] = field(default_factory=dict)  # payer account -> tenant id
    bills: dict[str, OpenBill] = field(default_factory=dict)  # by upper-case invoice id
    _by_tenant: dict[str, list[OpenBill]] = field(default_factory=lambda: defaultdict(list))
    _by_name: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _by_amount: dict[tuple[str, Decimal], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    _near: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def of(cls, bills: Iterable[OpenBill], accounts: dict[str, str] | None = None) -> Ledger:
        ledger = cls(accounts=dict(accounts or {}))
        for bill in bills:
            ledger.add(bill)
        for listed in ledger._by_tenant.values():
            listed.sort(key=lambda b: (b.since, b.invoice_id))
        return ledger

    def add(self, bill: OpenBill) -> None:
        key = bill.invoice_id.upper()
        self.bills[key] = bill
        self._by_tenant[bill.tenant_id].append(bill)
        self._by_name[normal_name(bill.customer_name)].add(bill.tenant_id)
        self._by_amount[(bill.currency, bill.balance)].add(key)
        if len(key) >= FUZZY_MIN:
            for variant in _deletions(key):
                self._near[variant].add(key)

    def open_bills(self, tenant_id: str, currency: str) -> list[OpenBill]:
        return [
            b
            for b in self._by_tenant.get(tenant_id, [])
            if b.balance > 0 and b.currency == currency
        ]

    def apply(self, allocations: Iterable[Allocation]) -> None:
        for allocation in allocations:
            bill = self.bills.get(allocation.invoice_id.upper())
            if bill is None:
                continue
            self._by_amount[(bill.currency, bill.balance)].discard(bill.invoice_id.upper())
            bill.balance = max(ZERO, bill.balance - allocation.amount)
            if bill.balance > 0:
                self._by_amount[(bill.currency, bill.balance)].add(bill.invoice_id.upper())

    def teach(self, account: str, tenant_id: str) -> None:
        if account:
            self.accounts[account] = tenant_id

    def listed(self, remark: str, currency: str) -> tuple[list[OpenBill], list[OpenBill]]:
        """The open bills the remark names (in its order), and those a token of it misses by one
        keystroke (a letter wrong, missing, extra, or two swapped)."""
        exact: list[OpenBill] = []
        near: list[OpenBill] = []
        for token in TOKEN.findall(remark.upper()):
            bill = self.bills.get(token)
            if bill is not None:
                if bill.balance > 0 and bill.currency == currency and bill not in exact:
                    exact.append(bill)
                continue
            if len(token) < FUZZY_MIN:
                continue
            keys = {k for v in _deletions(token) for k in self._near.get(v, ())}
            for key in sorted(k for k in keys if one_keystroke(token, k)):
                found = self.bills[key]
                if found.balance > 0 and found.currency == currency and found not in near:
                    near.append(found)
        return exact, [b for b in near if b not in exact]

    def same_amount(self, amount: Decimal, currency: str) -> list[OpenBill]:
        keys = sorted(self._by_amount.get((currency, amount), ()))[:MAX_CANDIDATES]
        return [self.bills[k] for k in keys]

    def payers(self, name: str, account: str) -> tuple[set[str], Why]:
        """The customers the payer may be: by a taught account first, else by name."""
        if account and account in self.accounts:
            return {self.accounts[account]}, Why.PAYER_ACCOUNT
        return set(self._by_name.get(normal_name(name), ())) if name else set(), Why.PAYER_NAME


def allocate(bills: list[OpenBill], amount: Decimal) -> tuple[tuple[Allocation, ...], Decimal]:
    """`amount` over `bills` in their order, each taking at most its balance; what is left."""
    left = amount
    taken: list[Allocation] = []
    for bill in bills:
        take = min(left, bill.balance)
        if take > 0:
            taken.append(Allocation(bill.invoice_id, take))
            left -= take
        if left == 0:
            break
    return tuple(taken), left


def _settled(bills: list[OpenBill], amount: Decimal, why: Why, tenant: str | None) -> Match:
    allocations, left = allocate(bills, amount)
    verdict = Verdict.OVERPAID if left > 0 else Verdict.MATCHED
    return Match(verdict, why, allocations, left, tenant_id=tenant)


def _candidates(bills: Iterable[OpenBill], why: Why) -> tuple[Candidate, ...]:
    found = [Candidate(b.invoice_id, b.customer_name, b.balance, why) for b in bills]
    return tuple(found[:MAX_CANDIDATES])


def _payers_bills(bills: list[OpenBill], first: list[OpenBill], amount: Decimal) -> list[OpenBill]:
    """The order a payer's bills take a transfer: one of exactly its amount (the mistyped one
    first); else the oldest whose balances add up to it; else the mistyped ones, then oldest."""
    for bill in [*first, *bills]:
        if bill.balance == amount:
            return [bill]
    total = ZERO
    for count, bill in enumerate(bills, start=1):
        total += bill.balance
        if total == amount:
            return bills[:count]
    return [*first, *(b for b in bills if b not in first)]


def match(
    amount: Decimal, currency: str, payer_name: str, payer_account: str, remark: str, ledger: Ledger
) -> Match:
    """What a credit line of `amount` pays (see the module's text); changes nothing."""
    exact, near = ledger.listed(remark, currency)
    if exact:
        tenants = {b.tenant_id for b in exact}
        if len(tenants) > 1:
            why = Why.BILLS_OF_SEVERAL_CUSTOMERS
            return Match(Verdict.AMBIGUOUS, why, rest=amount, candidates=_candidates(exact, why))
        return _settled(exact, amount, Why.BILL_IN_REMARK, exact[0].tenant_id)
    tenants, by = ledger.payers(payer_name, payer_account)
    if len(tenants) == 1:
        (tenant,) = tenants
        bills = ledger.open_bills(tenant, currency)
        if not bills:
            return Match(Verdict.UNMATCHED, Why.NO_OPEN_BILL, rest=amount, tenant_id=tenant)
        mistyped = [b for b in near if b.tenant_id == tenant]
        order = _payers_bills(bills, mistyped, amount)
        why = Why.BILL_CLOSE_CONFIRMED if mistyped and order[0] in mistyped else by
        return _settled(order, amount, why, tenant)
    if len(tenants) > 1:
        theirs = [b for t in sorted(tenants) for b in ledger.open_bills(t, currency)]
        same = [b for b in theirs if b.balance == amount] or theirs
        why = Why.SEVERAL_CUSTOMERS
        return Match(Verdict.AMBIGUOUS, why, rest=amount, candidates=_candidates(same, why))
    if near:
        why = Why.BILL_CLOSE
        return Match(Verdict.AMBIGUOUS, why, rest=amount, candidates=_candidates(near, why))
    same = ledger.same_amount(amount, currency)
    return Match(
        Verdict.UNMATCHED,
        Why.NOTHING_FOUND,
        rest=amount,
        candidates=_candidates(same, Why.SAME_AMOUNT),
    )

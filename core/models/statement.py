"""A bank statement's layout: which of its columns say what. The large banks' layouts are built in
(`intake.statements.BUILT_IN`, sources in docs/bank-statements.md); finance maps any other bank's
columns in the settings file `BANK_LAYOUTS_FILE` with the same fields."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from core.models.shared import Currency, Strict

Column = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
LayoutName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


class BankLayout(Strict):
    """A statement export's header row, by meaning. Money in is either a `credit` column (with a
    `debit` column for money out) or one signed `amount` column (money in is positive)."""

    name: LayoutName  # a short id: icbc, boc, ...
    bank: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    date: Column
    time: Column | None = None
    credit: Column | None = None
    debit: Column | None = None
    amount: Column | None = None
    currency: Column | None = None
    default_currency: Currency = "CNY"  # when the export has no currency column
    balance: Column | None = None
    payer_name: Column | None = None
    payer_account: Column | None = None
    # one column holding the payer's account and name together (CCB, CMB)
    payer: Column | None = None
    remark: list[Column] = Field(default_factory=list, max_length=5)  # joined, in this order
    reference: Column | None = None  # the bank's transaction reference, where it has one
    # columns that must be in the header row besides those above (to tell similar layouts apart)
    also: list[Column] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _money_in(self) -> Self:
        if (self.credit is None) == (self.amount is None):
            raise ValueError("give either credit (with debit) or one signed amount column")
        if self.payer_name is None and self.payer is None:
            raise ValueError("give payer_name (and payer_account) or payer")
        return self

    def required(self) -> list[str]:
        """Every column the header row must have (a remark column may be missing: CMB's 客户摘要
        is left out of an export without one)."""
        named = (self.date, self.time, self.credit, self.debit, self.amount, self.currency)
        more = (self.balance, self.payer_name, self.payer_account, self.payer, self.reference)
        columns = [c for c in (*named, *more) if c is not None] + self.also
        return list(dict.fromkeys(columns))


class BankLayouts(Strict):
    """The settings file: `[[layout]]` tables, each a BankLayout."""

    version: int = 1
    layout: list[BankLayout] = Field(default_factory=list, max_length=50)

"""Fapiao (China's VAT invoices, fully digitalised: 数电票) as the product records them: the fapiao
issued per bill (blue, and red-letter ones that reverse a blue), the task a case gives finance
(issue, reissue with corrected buyer details, red-letter) and what finance records on it.
The product records and reminds; it never calls a tax system (docs/fapiao.md)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints, model_validator

from core.models.shared import Actor, InvoiceId, ShortText, Strict

# a 数电票 number: 20 digits (year, region, channel, sequence)
FapiaoNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{20}$")]
# 统一社会信用代码 (18 characters) or an older 纳税人识别号 (15 to 20)
TaxId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-Z]{15,20}$"),
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
]
# the field's name in every refusal of a fapiao number
NUMBER_RULE = "a 数电票 number is 20 digits"


class FapiaoKind(StrEnum):
    BLUE = "blue"  # 蓝字发票: the fapiao of a bill
    RED = "red"  # 红字发票: reverses a blue one (in full or in part)


class FapiaoTaskKind(StrEnum):
    ISSUE = "issue"
    REISSUE = "reissue"  # corrected 抬头 / 税号 / 地址电话 / 开户行: the old one reversed in red
    RED_LETTER = "red-letter"

    @property
    def reverses(self) -> bool:
        """Whether the task reverses a blue fapiao (so the buyer may have to confirm)."""
        return self is not FapiaoTaskKind.ISSUE


class Buyer(Strict):
    """The buyer's details on a fapiao: 抬头 (name), 税号, 地址电话, 开户行及账号."""

    name: ShortText
    tax_id: TaxId
    address_phone: ShortText | None = None
    bank_account: ShortText | None = None


class FapiaoTask(Strict):
    """What a case waits for from finance (one at a time): the fapiao to issue, to reissue, or
    the red-letter fapiao that reverses `blue_numbers`; and, once finance says the buyer must
    confirm the red-letter information in the tax system, since when and how often reminded."""

    kind: FapiaoTaskKind
    invoice_id: str | None = None
    buyer: Buyer | None = None
    blue_numbers: list[str] = Field(default_factory=list, max_length=20)
    # the task comes from a resolution with a credit: the customer's letter waits for it
    for_credit: bool = False
    requested_by: str
    requested_at: datetime
    buyer_confirms_since: datetime | None = None
    buyer_reminders: int = 0


class RecordedFapiao(Strict):
    """A fapiao finance recorded on the case."""

    number: str
    kind: FapiaoKind
    recorded_at: datetime


# --------------------------------------------------------------------------- updates


class RequestFapiao(Strict):
    """An agent asks finance for a fapiao: issue one, reissue with the buyer's corrected details,
    or reverse one in red. The service fills `blue_numbers` from the fapiao recorded for the
    case's bill (never the person)."""

    kind: FapiaoTaskKind
    buyer_name: ShortText | None = None
    buyer_tax_id: TaxId | None = None
    buyer_address_phone: ShortText | None = None
    buyer_bank_account: ShortText | None = None
    blue_numbers: list[FapiaoNumber] = Field(default_factory=list, max_length=20)
    by: Actor

    @model_validator(mode="after")
    def _buyer(self) -> RequestFapiao:
        needs_buyer = self.kind is not FapiaoTaskKind.RED_LETTER
        if needs_buyer and (self.buyer_name is None or self.buyer_tax_id is None):
            raise ValueError(
                f"buyer_name, buyer_tax_id: a fapiao to {self.kind.value} needs the buyer's "
                "抬头 and 税号"
            )
        return self

    def buyer(self) -> Buyer | None:
        if self.buyer_name is None or self.buyer_tax_id is None:
            return None
        return Buyer(
            name=self.buyer_name,
            tax_id=self.buyer_tax_id,
            address_phone=self.buyer_address_phone,
            bank_account=self.buyer_bank_account,
        )


class BuyerMustConfirm(Strict):
    """Finance: the buyer already used the blue fapiao (用途确认 / 入账确认), so the red-letter
    information (红字发票信息确认单) waits for the buyer's confirmation in the tax system."""

    by: Actor


class FapiaoRecorded(Strict):
    """Finance records the fapiao of the case's task: the new one (issue, reissue) or the
    red-letter one; a reissue also names the red-letter fapiao that reversed the old one."""

    fapiao_number: FapiaoNumber
    red_fapiao_number: FapiaoNumber | None = None
    by: Actor


# --------------------------------------------------------------------------- the record


class RecordFapiao(Strict):
    """One fapiao of a bill, as finance enters it (the workspace, `starter.py fapiao record`)."""

    fapiao_number: FapiaoNumber
    invoice_id: InvoiceId
    kind: FapiaoKind = FapiaoKind.BLUE
    issued_on: date
    buyer_name: ShortText
    buyer_tax_id: TaxId
    # a red-letter fapiao: the blue one it reverses
    reverses: FapiaoNumber | None = None
    # the red-letter fapiao reverses the blue one in full (else in part: a credit)
    in_full: bool = False
    case_id: str | None = None
    recorded_by: Actor

    @model_validator(mode="after")
    def _reverses(self) -> RecordFapiao:
        if self.kind is FapiaoKind.RED and self.reverses is None:
            raise ValueError("reverses: a red-letter fapiao names the blue fapiao it reverses")
        if self.kind is FapiaoKind.BLUE and self.reverses is not None:
            raise ValueError("reverses: only a red-letter fapiao reverses another")
        if self.reverses == self.fapiao_number:
            raise ValueError("reverses: a fapiao cannot reverse itself")
        return self


# finance's and the agent's fapiao steps on a case: one update takes any of them
FapiaoAction = RequestFapiao | BuyerMustConfirm | FapiaoRecorded

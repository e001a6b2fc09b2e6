"""What a customer's letter may say beyond its case or invoice: codes the templates turn into
zh-CN or en-US text, never the free text they came from, and the partner's letterhead.

The billing system explains a failed payment in its own words (``BillingFailure.reason``): those
stay internal (the timeline, the staff's emails); the customer reads the text of the code they
map to, and a neutral sentence when none matches.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints

from core.models.shared import Strict


class PaymentFailure(StrEnum):
    """Why a payment failed, as a customer is told (``failure_reason`` in ``_labels.txt``)."""

    CARD_EXPIRED = "card-expired"
    INSUFFICIENT_FUNDS = "insufficient-funds"
    ACCOUNT_FROZEN = "account-frozen"
    LIMIT_EXCEEDED = "limit-exceeded"
    TRANSFER_NOT_RECEIVED = "transfer-not-received"
    INVALID_ACCOUNT = "invalid-account"
    AUTHORIZATION_REVOKED = "authorization-revoked"
    CARD_DECLINED = "card-declined"
    BANK_UNAVAILABLE = "bank-unavailable"
    UNKNOWN = "unknown"


# first match wins: the specific causes before "declined", which banks add to most of them
_FAILURE_WORDS: tuple[tuple[PaymentFailure, str], ...] = (
    (PaymentFailure.CARD_EXPIRED, r"expir|过期|失效"),
    (
        PaymentFailure.INSUFFICIENT_FUNDS,
        r"insufficient|not enough (funds|money)|\bnsf\b|余额不足|资金不足",
    ),
    (PaymentFailure.ACCOUNT_FROZEN, r"frozen|freez|冻结|止付"),
    (PaymentFailure.LIMIT_EXCEEDED, r"limit|exceed|限额|超限|超出额度"),
    (
        PaymentFailure.TRANSFER_NOT_RECEIVED,
        r"(transfer|remittance|wire).{0,40}(not|never) (been )?(received|arrived)|"
        r"no (bank )?transfer|未收到|未到账",
    ),
    (
        PaymentFailure.INVALID_ACCOUNT,
        r"invalid (card|account|iban)|(account|card) (is )?closed|no such account|"
        r"账户无效|账号有误|已销户|账户不存在|卡号有误",
    ),
    (
        PaymentFailure.AUTHORIZATION_REVOKED,
        r"mandate|revoked|authori[sz]ation (cancel|withdraw)|授权已撤销|签约已解除",
    ),
    (PaymentFailure.CARD_DECLINED, r"declin|refused|reject|do not hono|拒绝|拒付|被拒"),
    (
        PaymentFailure.BANK_UNAVAILABLE,
        r"time(d)? ?out|unavailable|processing error|gateway|超时|系统繁忙|暂停服务",
    ),
)
_FAILURE_PATTERNS = tuple(
    (code, re.compile(words, re.IGNORECASE)) for code, words in _FAILURE_WORDS
)


def payment_failure(reason: str | None) -> PaymentFailure:
    """The code of the billing system's free-text reason; ``UNKNOWN`` when none fits. Pure, so a
    workflow may call it."""
    for code, pattern in _FAILURE_PATTERNS:
        if reason and pattern.search(reason):
            return code
    return PaymentFailure.UNKNOWN


Line = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Letterhead(Strict):
    """The partner as its customers' letters name it: the signature and where to pay, from the
    settings (``PARTNER_NAME``, ``BANK_ACCOUNT_NUMBER``...)."""

    partner_name: Line  # the legal name, in Chinese: zh-CN letters and the transfer's 户名
    partner_name_en: Line
    phone: Line
    hours: Line  # on China's working days, Beijing time: "09:00–18:00"
    bank_account_name: Line  # 户名
    bank_name: Line  # 开户行, as the bank writes it (in Chinese, also in English letters)
    bank_account_number: Line  # 账号


# what `make run` and the tests sign with; production sets its own in the environment
DEMO_LETTERHEAD = Letterhead(
    partner_name="示例云科技（上海）有限公司",
    partner_name_en="Example Cloud Technology (Shanghai) Co., Ltd.",
    phone="400-820-1234",
    hours="09:00–18:00",
    bank_account_name="示例云科技（上海）有限公司",
    bank_name="招商银行上海分行张江支行",
    bank_account_number="1219 0888 6610 501",
)

"""Every workflow id format and every new id, in one place: the service layer, the workflows (a
dispute case opened from collections) and the stores all name things the same way."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from random import Random

CASE = "case-"
COLLECTIONS = "collections-"
VIANET_INVOICE = "vianet-invoice-"
ACCOUNT = "account-"


def case_workflow_id(case_id: str) -> str:
    return f"{CASE}{case_id}"


def collections_workflow_id(invoice_id: str) -> str:
    return f"{COLLECTIONS}{invoice_id}"


def is_collections_workflow_id(workflow_id: str) -> bool:
    return workflow_id.startswith(COLLECTIONS) and 0 < len(workflow_id) - len(COLLECTIONS) <= 64


def account_workflow_id(tenant_id: str) -> str:
    """A customer's account: one per tenant (workflows/account.py)."""
    return f"{ACCOUNT}{tenant_id}"


def vianet_invoice_workflow_id(invoice_number: str) -> str:
    return f"{VIANET_INVOICE}{invoice_number}"


def dispute_case_id(invoice_id: str, number: int) -> str:
    """The case a collections workflow opens for the `number`th dispute of its invoice."""
    return f"{invoice_id}-D{number}"


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now: datetime, random_bits: int) -> str:
    """26 characters: the millisecond (48 bits) and 80 random bits, in Crockford's base 32, so
    ids sort by when they were made and two never meet (a collision needs the same millisecond
    and the same 80 bits)."""
    value = (int(now.timestamp() * 1000) << 80) | (random_bits & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_ulid() -> str:
    """A `ulid` of now: a form's or a command's one-time key."""
    return ulid(datetime.now(UTC), secrets.randbits(80))


def ulid_time(value: str) -> datetime | None:
    """The moment a `ulid` was made; None when `value` is not one."""
    if len(value) != 26 or value[0] > "7" or any(char not in CROCKFORD for char in value):
        return None
    number = 0
    for char in value[:10]:
        number = number * 32 + CROCKFORD.index(char)
    try:
        return datetime.fromtimestamp(number / 1000, UTC)
    except (ValueError, OverflowError):  # past the year 9999: made by no clock of ours
        return None


def new_case_id(now: datetime | None = None, random: Random | None = None) -> str:
    """`BC-<ULID>`, e.g. BC-01KB9W3ZJ8N4T6Q2X5V7R1M0CD. A workflow passes its own clock and
    random source (replayed alike); everything else draws from the system's."""
    bits = random.getrandbits(80) if random is not None else secrets.randbits(80)
    return f"BC-{ulid(now or datetime.now(UTC), bits)}"


def request_case_id(first_claimed: datetime, caller: str, key: str) -> str:
    """The case an intake request opens: the same on every attempt under its Idempotency-Key (a
    retry after a crash finds the case the first attempt started, and opens no second one), and
    unique for ever (the key's first claim, and 80 bits of a hash of the caller and the key)."""
    if first_claimed.tzinfo is None:  # SQLite gives back naive UTC
        first_claimed = first_claimed.replace(tzinfo=UTC)
    digest = hashlib.sha256(f"{caller}\n{key}".encode()).digest()
    return f"BC-{ulid(first_claimed, int.from_bytes(digest[:10], 'big'))}"

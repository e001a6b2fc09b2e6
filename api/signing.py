"""Request signatures: hex HMAC-SHA256 over the timestamp, the method, the path, the idempotency
key and the raw body, with the caller's secret.

Each caller has its own secret (the billing system: failures and payments; the customer portal:
cases), and up to two at once, so a secret is rotated without downtime: give the API the new one
beside the old, move the caller over, then drop the old. A request is accepted within
WINDOW_SECONDS of its timestamp; within that window an exact replay is answered from the database
(see `api/idempotency.py`), never carried out twice. Tests, docs/collections.md's example and
clients use `sign`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from pydantic import SecretStr

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
KEY_HEADER = "Idempotency-Key"
WINDOW_SECONDS = 300
# Shorter shared secrets can be guessed offline from one signed request.
MIN_SECRET_LENGTH = 16
MAX_SECRETS = 2  # the current one and the next, while a caller moves over
# unix seconds until the year 33658: a longer header is no time of ours (and int() of thousands
# of digits is slow, or refused with an error before any signature is checked)
MAX_TIMESTAMP_DIGITS = 12


class SignatureError(Exception):
    """The request is not signed by someone who holds the secret; the message says which check."""


def _key(secret: str | SecretStr) -> bytes:
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return raw.encode()


def signed_message(timestamp: int, method: str, path: str, key: str, body: bytes) -> bytes:
    """What is signed: `<timestamp>\\n<METHOD>\\n<path>\\n<idempotency key>\\n<raw body>`."""
    head = f"{timestamp}\n{method.upper()}\n{path}\n{key}\n".encode()
    return head + body


def sign(
    secret: str | SecretStr,
    timestamp: int,
    body: bytes | str,
    *,
    method: str = "POST",
    path: str,
    key: str = "",
) -> str:
    """The `X-Signature` value of a request sent at `timestamp` (unix seconds)."""
    raw = body.encode() if isinstance(body, str) else body
    message = signed_message(timestamp, method, path, key, raw)
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def unix_seconds(header: str | None) -> int | None:
    """A timestamp header's unix seconds, or None when it is not ASCII digits of a time of ours."""
    if not header or not header.isascii() or not header.isdigit():
        return None
    return int(header) if len(header) <= MAX_TIMESTAMP_DIGITS else None


class Verifier:
    """Checks one request's signature headers against its method, path, key and raw body."""

    def __init__(self, secrets: Sequence[SecretStr]) -> None:
        self._secrets = list(secrets)

    def verify(
        self,
        timestamp: str | None,
        signature: str | None,
        *,
        method: str,
        path: str,
        key: str,
        body: bytes,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        if not timestamp or not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        seconds = unix_seconds(timestamp)
        if seconds is None:
            raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds")
        if abs(now - seconds) > WINDOW_SECONDS:
            raise SignatureError(f"{TIMESTAMP_HEADER} is outside the {WINDOW_SECONDS} s window")
        given = signature.strip().lower().encode("utf-8", "replace")
        matches = [  # every secret is tried: the time taken says nothing of which one
            hmac.compare_digest(
                sign(secret, seconds, body, method=method, path=path, key=key).encode(),
                given,
            )
            for secret in self._secrets
        ]
        if not any(matches):
            raise SignatureError("signature does not match")

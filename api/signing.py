"""Webhook signatures: hex HMAC-SHA256 over ``f"{timestamp}.{raw_body}"`` with a shared secret.

The billing system signs every request it sends; the API checks the signature, the timestamp window
and replays before it reads the body. Tests, the README's curl example and clients use `sign`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict

from pydantic import SecretStr

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
WINDOW_SECONDS = 300
# Shorter shared secrets can be guessed offline from one signed request.
MIN_SECRET_LENGTH = 16


class SignatureError(Exception):
    """The request is not signed by someone who holds the secret; the message says which check."""


def _key(secret: str | SecretStr) -> bytes:
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return raw.encode()


def sign(secret: str | SecretStr, timestamp: int, body: bytes | str) -> str:
    """The ``X-Signature`` value for a request body sent at ``timestamp`` (unix seconds)."""
    raw = body.encode() if isinstance(body, str) else body
    message = str(timestamp).encode() + b"." + raw
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


class ReplayCache:
    """Signatures seen within the window, so the same signed request is taken only once.

    In memory and per process: behind several API processes a replay to another process passes this
    check, which is acceptable because every intake is idempotent on its id (a replayed billing
    failure only joins, a replayed payment id is counted once); a shared store would close it.
    """

    def __init__(self, window: int = WINDOW_SECONDS, max_entries: int = 100_000) -> None:
        self._window = window
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> when it expires

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, signature: str, now: float) -> bool:
        """Record the signature; False when it was already seen and has not expired."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        # Full of live entries: drop the oldest (bounded memory beats remembering everything).
        while len(self._seen) >= self._max:
            self._seen.popitem(last=False)
        self._seen[signature] = now + 2 * self._window  # a timestamp may be up to a window ahead
        return True


class Verifier:
    """Checks one request's signature headers against its raw body."""

    def __init__(self, secret: SecretStr, replays: ReplayCache | None = None) -> None:
        self._secret = secret
        self._replays = replays or ReplayCache()

    def verify(
        self,
        timestamp: str | None,
        signature: str | None,
        body: bytes,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        if not timestamp or not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds")
        if abs(now - int(timestamp)) > WINDOW_SECONDS:
            raise SignatureError(f"{TIMESTAMP_HEADER} is outside the {WINDOW_SECONDS} s window")
        expected = sign(self._secret, int(timestamp), body).encode()
        if not hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace")):
            raise SignatureError("signature does not match")
        if not self._replays.first_time(expected.decode(), now):
            raise SignatureError("this signed request was already received")

"""SendGrid's Event Webhook as it posts: a JSON array of events, signed with SendGrid's ECDSA key
(``X-Twilio-Email-Event-Webhook-Signature`` over the timestamp and the raw body), verified with the
``sendgrid`` library's ``EventWebhook`` helper against the public key from SendGrid's console.
"""

from __future__ import annotations

import binascii
import time

from sendgrid.helpers.eventwebhook import EventWebhook

from api.signing import unix_seconds

PATH = "/v1/email-events/sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# a batch holds thousands of events of ~0.5-1 KB each
MAX_BYTES = 16 * 1024 * 1024


class EventSignatureError(Exception):
    """Not signed by SendGrid's key, or not now; the message says which check failed."""


class EventVerifier:
    def __init__(self, public_key: str, window_seconds: int) -> None:
        try:
            self._webhook = EventWebhook(public_key)
        except ValueError as err:
            raise ValueError(
                f"SENDGRID_EVENT_PUBLIC_KEY: not an ECDSA public key ({err})"
            ) from None
        self._window = window_seconds

    def verify(self, body: bytes, signature: str | None, timestamp: str | None) -> str:
        """The body as text, once its signature and timestamp are checked."""
        if not signature or not timestamp:
            raise EventSignatureError(f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER}: required")
        seconds = unix_seconds(timestamp)
        if seconds is None or abs(time.time() - seconds) > self._window:
            raise EventSignatureError(f"{TIMESTAMP_HEADER}: outside {self._window} s of now")
        try:
            payload = body.decode("utf-8")
            valid = self._webhook.verify_signature(payload, signature, timestamp)
        except (UnicodeDecodeError, binascii.Error, ValueError):
            valid = False
        if not valid:
            raise EventSignatureError(f"{SIGNATURE_HEADER}: does not verify")
        return payload

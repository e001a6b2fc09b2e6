"""SendGrid Inbound Parse as it posts (raw mode): multipart/form-data with the whole message in
``email``, the SMTP ``envelope`` as JSON, and its ``SPF`` and ``dkim`` verdicts on the sender.
SendGrid signs nothing here: the URL carries basic-auth credentials
(``https://sendgrid:<INBOUND_PARSE_SECRET>@host/v1/inbound/sendgrid``), checked first.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from email import policy
from email.parser import BytesParser

from pydantic import SecretStr

from core.verdicts import Verdicts

PATH = "/v1/inbound/sendgrid"
USER = "sendgrid"
# SendGrid's limit on a whole message, and room for the form around it
MAX_BYTES = 30 * 1024 * 1024 + 256 * 1024


class FormError(ValueError):
    """The request is not what Inbound Parse posts; the message names the field."""


def authorized(header: str | None, secret: SecretStr) -> bool:
    """Whether ``Authorization`` carries basic-auth ``sendgrid:<secret>``."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = f"{USER}:{secret.get_secret_value()}".encode()
    return hmac.compare_digest(given, expected)


def raw_email(content_type: str, body: bytes) -> tuple[bytes, tuple[str, ...], Verdicts]:
    """The message in the ``email`` field, the envelope's recipients and the sender's verdicts."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise FormError("body: must be multipart/form-data, as Inbound Parse posts")
    form = BytesParser(policy=policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    fields: dict[str, bytes] = {}
    for part in form.iter_parts() if form.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    if "email" not in fields:
        raise FormError("email: missing (set Inbound Parse to post the raw, full MIME message)")
    verdicts = Verdicts.posted(fields.get("SPF"), fields.get("dkim"))
    return fields["email"], _recipients(fields.get("envelope")), verdicts


def _recipients(envelope: bytes | None) -> tuple[str, ...]:
    if not envelope:
        return ()
    try:
        to = json.loads(envelope).get("to") or []
    except (ValueError, AttributeError):
        raise FormError("envelope: not the JSON object Inbound Parse sends") from None
    return tuple(str(address) for address in to if isinstance(address, str))

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
from typing import TYPE_CHECKING

from pydantic import SecretStr
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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
    """The message in the ``email`` field, the envelope's recipients and the sender's verdicts.
    Read by python-multipart in one pass (the email package takes the form a line at a time: 20 s
    for 30 MB of empty lines)."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError("body: must be multipart/form-data, as Inbound Parse posts")
    form = _Form()
    parser = MultipartParser(boundary, callbacks=form.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError:
        raise FormError("body: not a multipart/form-data body") from None
    if "email" not in form.fields:
        raise FormError("email: missing (set Inbound Parse to post the raw, full MIME message)")
    verdicts = Verdicts.posted(form.fields.get("SPF"), form.fields.get("dkim"))
    return form.fields["email"], _recipients(form.fields.get("envelope")), verdicts


class _Form:
    """The fields of a form by name, as python-multipart's callbacks hand them over."""

    def __init__(self) -> None:
        self.fields: dict[str, bytes] = {}
        self._header: tuple[list[bytes], list[bytes]] = ([], [])  # its name, its value
        self._disposition = b""
        self._data: list[bytes] = []

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header[0].append(data[start:end]),
            "on_header_value": lambda data, start, end: self._header[1].append(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.append(data[start:end]),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._disposition, self._data = b"", []

    def _header_end(self) -> None:
        name, value = (b"".join(pieces) for pieces in self._header)
        self._header = ([], [])
        if name.lower() == b"content-disposition":
            self._disposition = value

    def _end(self) -> None:
        name = parse_options_header(self._disposition)[1].get(b"name")
        if name is not None:
            self.fields[name.decode("latin-1")] = b"".join(self._data)


def _recipients(envelope: bytes | None) -> tuple[str, ...]:
    if not envelope:
        return ()
    try:
        to = json.loads(envelope).get("to") or []
    except (ValueError, AttributeError):
        raise FormError("envelope: not the JSON object Inbound Parse sends") from None
    return tuple(str(address) for address in to if isinstance(address, str))

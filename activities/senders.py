"""Where emails go, behind one small interface: a file outbox in development; SendGrid, SMTP
(activities/smtp.py) or Microsoft Graph (activities/graph.py) for real.

A sender either returns the provider's message id, raises ``EmailRejected`` (permanent: retrying the
same email cannot help) or raises ``EmailDeliveryError`` (transient: retry later).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import re
from dataclasses import dataclass
from email.utils import encode_rfc2231, formataddr, formatdate
from pathlib import Path
from typing import Any, Protocol

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Category,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    Header,
    Mail,
    ReplyTo,
    To,
)

from core.files import write_atomically
from core.metrics import SENDGRID_RESPONSES, status_class

SENDGRID_HOST = "https://api.sendgrid.com"


class EmailRejected(Exception):
    """The provider refused this email for good (bad address, malformed request): do not retry."""


class EmailDeliveryError(Exception):
    """The provider could not take the email now (rate limit, outage, network): retry later,
    not before ``retry_after`` seconds when the provider said how long to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class OutgoingFile:
    """A file an email carries (an agent's reply), read from the attachment store."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingEmail:
    dedup_key: str
    to: str
    from_address: str
    from_name: str
    subject: str
    text: str
    html: str
    category: str
    # the thread (core/threads.py): with no message_id the outbox makes one from the key
    workflow_id: str = ""
    message_id: str = ""
    in_reply_to: str = ""
    references: str = ""
    reply_to: str | None = None
    attachments: tuple[OutgoingFile, ...] = ()


class EmailSender(Protocol):
    name: str
    # whether sending the same dedup key again delivers nothing more (then a retry needs no
    # record of the provider's answer: it may simply send again)
    idempotent: bool

    def send(self, email: OutgoingEmail) -> str:
        """Hand the email to the provider; return its message id."""
        ...


def _key_digest(dedup_key: str) -> str:
    return hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()


class FileOutboxSender:
    """Writes each email as an RFC 5322 ``.eml`` file, one file per dedup key."""

    name = "outbox"
    idempotent = True  # one file per dedup key: sent again, it is written again, not twice

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = Path(outbox_dir)

    def path_for(self, dedup_key: str) -> Path:
        # readable for people browsing the outbox (the workflow id and the email's name, the
        # key's two ends), digest so distinct keys never share a file
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", dedup_key).strip("._")
        if len(readable) > 80:
            readable = f"{readable[:40]}_{readable[-39:]}"
        return self.outbox_dir / f"{readable}-{_key_digest(dedup_key)[:12]}.eml"

    def send(self, email: OutgoingEmail) -> str:
        message_id = message_id_of(email)
        try:
            write_atomically(self.path_for(email.dedup_key), mime(email, message_id))
        except OSError as exc:
            raise EmailDeliveryError(f"outbox {self.outbox_dir}: {exc}") from exc
        return message_id


def message_id_of(email: OutgoingEmail) -> str:
    """The email's Message-ID: its thread's, else one made from its dedup key (the same on
    every attempt)."""
    domain = email.from_address.rpartition("@")[2] or "localhost"
    return email.message_id or f"<{_key_digest(email.dedup_key)[:32]}@{domain}>"


def mime(email: OutgoingEmail, message_id: str) -> bytes:
    """The email as RFC 5322 / MIME bytes: multipart/alternative, UTF-8 parts in base64.

    Written out directly: `email.message.EmailMessage` took 2 ms an email, the outbox's whole cost.
    Every header that is not plain printable ASCII becomes RFC 2047 encoded words, so no value
    (a subject with a line break, say) can add a header of its own; only a Chinese mailbox name
    in To stays UTF-8 (`_mailbox`)."""
    boundary = f"=_{_key_digest(email.dedup_key)[:24]}"  # "_" never occurs in base64 bodies
    headers = [
        f"Message-ID: {message_id}",
        f"Date: {formatdate(usegmt=True)}",
        f"From: {_sender(email.from_name, email.from_address)}",
        f"To: {_mailbox(email.to)}",
        f"Subject: {_header(email.subject)}",
        *_thread_lines(email),
        f"X-Dedup-Key: {_header(email.dedup_key)}",
        f"X-Category: {_header(email.category)}",
        "MIME-Version: 1.0",
    ]
    # with files: multipart/mixed of the text-and-HTML part, then each file
    mixed = f"{boundary}-m" if email.attachments else None
    if mixed:
        headers += [f'Content-Type: multipart/mixed; boundary="{mixed}"', "", f"--{mixed}"]
    lines = [*headers, f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
    for subtype, body in (("plain", email.text), ("html", email.html)):
        lines += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: base64",
            "",
            *_base64_lines(body.encode("utf-8")),
        ]
    lines.append(f"--{boundary}--")
    for file in email.attachments:
        lines += [f"--{mixed}", *_file_lines(file)]
    if mixed:
        lines.append(f"--{mixed}--")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8")  # ASCII but for a UTF-8 mailbox (_mailbox)


def _base64_lines(data: bytes) -> list[str]:
    return base64.encodebytes(data).decode("ascii").splitlines()


def _file_lines(file: OutgoingFile) -> list[str]:
    """One attached file's part: its name as RFC 2231 UTF-8 when it is not plain ASCII (and as
    encoded words in `name`, which older clients read), its bytes in base64."""
    if file.name.isascii() and file.name.isprintable() and '"' not in file.name:
        named, disposed = f'name="{file.name}"', f'filename="{file.name}"'
    else:
        named = f'name="{_header(file.name)}"'
        disposed = f"filename*={encode_rfc2231(file.name, 'utf-8')}"
    return [
        f"Content-Type: {file.content_type}; {named}",
        f"Content-Disposition: attachment; {disposed}",
        "Content-Transfer-Encoding: base64",
        "",
        *_base64_lines(file.data),
    ]


def _thread_lines(email: OutgoingEmail) -> list[str]:
    lines = [f"Reply-To: {_header(email.reply_to)}"] if email.reply_to else []
    if email.in_reply_to:
        lines.append(f"In-Reply-To: {_header(email.in_reply_to)}")
    if email.references:
        lines.append(f"References: {_header(email.references)}")
    return lines


def _sender(name: str, address: str) -> str:
    if name.isascii() and name.isprintable():
        return formataddr((name, address))  # quotes what needs quoting
    return f"{_header(name)}\r\n <{address}>"


def _mailbox(address: str) -> str:
    """An address as it is, also a Chinese one (RFC 6532: it goes with SMTPUTF8): encoded words
    are no address (Postfix read one as a local name of its own domain). Anything that could
    break the line is encoded instead, so no value can add a header of its own."""
    if address.isprintable() and not any(char.isspace() for char in address) and address:
        return address
    return _header(address)


def _header(value: str) -> str:
    """The value as it is when it is short printable ASCII, else folded encoded words."""
    if value.isascii() and value.isprintable() and len(value) <= 900:
        return value
    words: list[bytes] = []
    chunk = b""
    for char in value:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 39:  # 52 characters of base64: a line stays under 78
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)


class _DropRequestHeaders(logging.Filter):
    """python_http_client logs request headers at DEBUG, and they carry the API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("HEADERS:")


_HTTP_CLIENT_LOGGER = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _DropRequestHeaders) for f in _HTTP_CLIENT_LOGGER.filters):
    _HTTP_CLIENT_LOGGER.addFilter(_DropRequestHeaders())


def _sendgrid_error_text(body: Any) -> str:
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        errors = json.loads(raw).get("errors") or []
        messages = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        return "; ".join(m for m in messages if m) or raw[:500]
    except (ValueError, AttributeError):
        return raw[:500]


class SendGridSender:
    """SendGrid v3 mail/send. SendGrid has no idempotency key: callers deduplicate (EmailLog)."""

    name = "sendgrid"
    idempotent = False  # SendGrid has no idempotency key: each call is a new email

    def __init__(self, api_key: str, host: str = SENDGRID_HOST, timeout: float = 30.0) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=host)
        # python_http_client waits forever by default; a stuck request would hold the activity slot
        self._client.client.timeout = timeout
        self.host = host

    def __repr__(self) -> str:
        return f"SendGridSender(host={self.host!r})"

    def send(self, email: OutgoingEmail) -> str:
        mail = Mail(
            from_email=From(email.from_address, email.from_name),
            to_emails=To(email.to),
            subject=email.subject,
            plain_text_content=email.text,
            html_content=email.html,
        )
        if email.reply_to:
            mail.reply_to = ReplyTo(email.reply_to)
        for name, value in (
            ("Message-ID", email.message_id),
            ("In-Reply-To", email.in_reply_to),
            ("References", email.references),
        ):
            if value:
                mail.header = Header(name, value)
        # come back on every Event Webhook event of this email: events route without a lookup
        mail.custom_arg = CustomArg("dedup_key", email.dedup_key)
        if email.workflow_id:
            mail.custom_arg = CustomArg("workflow_id", email.workflow_id)
        mail.category = Category(email.category)
        for file in email.attachments:
            mail.add_attachment(
                Attachment(
                    FileContent(base64.b64encode(file.data).decode("ascii")),
                    FileName(file.name),
                    FileType(file.content_type),
                    Disposition("attachment"),
                )
            )
        try:
            response = self._client.send(mail)
        except http_errors.HTTPError as exc:
            SENDGRID_RESPONSES.labels(status_class(int(exc.status_code))).inc()
            raise _classify(int(exc.status_code), _sendgrid_error_text(exc.body)) from exc
        except (OSError, http.client.HTTPException) as exc:
            # URLError, refused/reset connections and timeouts are all OSError
            SENDGRID_RESPONSES.labels(status_class(None)).inc()
            raise EmailDeliveryError(f"SendGrid unreachable at {self.host}: {exc}") from exc
        SENDGRID_RESPONSES.labels(status_class(int(response.status_code))).inc()
        # accepted is what matters: a missing id must not make us send the email again
        return str(response.headers.get("X-Message-Id") or "")


def _classify(status: int, text: str) -> EmailRejected | EmailDeliveryError:
    message = f"SendGrid {status}: {text}"
    if status == 429 or status >= 500:
        return EmailDeliveryError(message)
    if status in (401, 403):
        # a wrong key or unverified sender is our configuration, not this email: retry once fixed
        return EmailDeliveryError(message)
    return EmailRejected(message)

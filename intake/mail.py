"""An inbound email read into what the product acts on: who wrote, to which thread, the new text.

Read with the standard library (``policy=default``), in what Chinese mail clients send: GB2312,
GBK, GB18030, Big5 and UTF-8 in base64 or quoted-printable, RFC 2047/2231 names. The new text is
separated from the quoted history by ``mail-parser-reply`` (Outlook's 发件人: block, Gmail's and
Apple Mail's "On … wrote:") after our own cut at the markers it does not know (Foxmail's and QQ
Mail's 原始邮件 line, NetEase's and Apple Mail's "… 写道：", lines quoted with ">");
tests/test_inbound_mail.py holds a reply in each client's format. Knows nothing of Temporal or HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser

from mailparser_reply import EmailReplyParser

# what a client labels GB2312 or GBK is often GBK or GB18030 in fact: each is a superset
_CHARSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "big5": "big5hkscs"}
_QUOTE_MARKERS = re.compile(
    r"^\s*(?:"
    r"-{4,}\s*(?:原始邮件|Original Message|原始郵件)\s*-{4,}"  # Foxmail, QQ Mail
    r"|在\s*.{4,}[，,].*写道[：:]"  # NetEase: 在 2026-12-03 13:08:00，"Name" <addr> 写道：
    r"|>?\s*\d{4}年\d{1,2}月\d{1,2}日.*写道[：:]"  # Apple Mail zh: 2026年12月3日 13:08，… 写道：
    r"|>\s*On\b.*\bwrote:"  # Apple Mail en quotes its own header line
    r")\s*$",
    re.MULTILINE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:自动回复|自動回覆|auto(?:matic)?[ -]?reply|out of office)", re.I
)
_REPLY_PARSER = EmailReplyParser(languages=["zh", "en"])


class MailError(ValueError):
    """The message cannot be read as an email; the message says what is missing."""


@dataclass(frozen=True)
class InboundMail:
    message_id: str
    from_address: str
    from_name: str
    subject: str
    # where it went: To, Cc and the envelope's recipients, lower-cased
    recipients: tuple[str, ...]
    in_reply_to: str
    references: tuple[str, ...]
    text: str  # the whole text part
    reply: str  # the new text, without the quoted history
    auto_reply: bool
    attachments: tuple[Attachment, ...] = field(default=())


@dataclass(frozen=True)
class Attachment:
    filename: str  # as the sender named it, decoded; sanitize before using it as a path
    content_type: str
    data: bytes


def parse_mail(raw: bytes, envelope_to: tuple[str, ...] = ()) -> InboundMail:
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; anything it raises is unreadable input
        raise MailError(f"email: not a readable message ({type(exc).__name__})") from exc
    assert isinstance(message, EmailMessage)
    sender = _first_address(message, "From")
    if sender is None:
        raise MailError("email: no From address")
    text = _text_of(message)
    subject = _header(message, "Subject")
    recipients = [a.addr_spec.lower() for h in ("To", "Cc") for a in _addresses(message, h)]
    recipients += [address.lower() for address in envelope_to]
    return InboundMail(
        message_id=_header(message, "Message-ID"),
        from_address=sender.addr_spec.lower(),
        from_name=sender.display_name,
        subject=subject,
        recipients=tuple(dict.fromkeys(recipients)),
        in_reply_to=_header(message, "In-Reply-To"),
        references=tuple(_header(message, "References").split()),
        text=text,
        reply=new_text(text),
        auto_reply=is_auto_reply(message, subject),
        attachments=tuple(_attachments(message)),
    )


def new_text(text: str) -> str:
    """The text above the quoted history."""
    text = text.replace("\r\n", "\n")
    marker = _QUOTE_MARKERS.search(text)
    if marker is not None:
        text = text[: marker.start()]
    lines = text.split("\n")
    while lines and lines[-1].lstrip().startswith(">"):  # a quote with no marker line above it
        lines.pop()
    reply = _REPLY_PARSER.parse_reply("\n".join(lines)) or ""
    return reply.strip()


def is_auto_reply(message: Message, subject: str) -> bool:
    auto_submitted = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    return (
        (auto_submitted not in ("", "no"))
        or bool(_header(message, "X-Autoreply"))
        or bool(_header(message, "X-Autorespond"))
        or precedence in ("bulk", "auto_reply", "junk", "list")
        or bool(_AUTO_SUBJECT.match(subject))
    )


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse is as good as absent
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _addresses(message: Message, name: str) -> list[Address]:
    try:
        header = message.get(name)
        found = list(getattr(header, "addresses", ()))
    except Exception:
        found = []
    if not found and message.get(name) is not None:
        # a header the policy would not parse: fall back to the plain address list
        raw = str(message.get(name))
        found = [Address(display_name=n, addr_spec=a) for n, a in getaddresses([raw]) if "@" in a]
    return [a for a in found if "@" in a.addr_spec]


def _first_address(message: Message, name: str) -> Address | None:
    found = _addresses(message, name)
    return found[0] if found else None


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = (part.get_content_charset() or "utf-8").lower()
    try:
        return payload.decode(_CHARSETS.get(charset, charset), errors="replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("utf-8", errors="replace")


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    text = _decoded(body)
    if body.get_content_type() == "text/html":
        text = _html_text(text)
    return text.replace("\r\n", "\n").replace("\xa0", " ").strip()


def _attachments(message: EmailMessage) -> list[Attachment]:
    found = []
    for part in message.iter_attachments():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            name = part.get_filename() or ""
            found.append(Attachment(str(name), part.get_content_type(), payload))
    return found


class _Text(HTMLParser):
    """The text of an HTML body, a line per block; a quoted blockquote is kept with ">"."""

    BLOCKS = frozenset({"p", "div", "br", "tr", "li", "blockquote", "h1", "h2", "h3", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.quoted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head"):
            self.skip += 1
        elif tag == "blockquote":
            self.quoted += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head"):
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self.quoted = max(0, self.quoted - 1)
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(f"> {data}" if self.quoted and data.strip() else data)


def _html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))

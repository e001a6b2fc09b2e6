"""An inbound email read into what the product acts on: who wrote, to which thread, the new text.

Read with the standard library (``policy=default``), in what Chinese mail clients send: GB2312,
GBK, GB18030, Big5 and UTF-8 in base64 or quoted-printable, RFC 2047/2231 names. The new text is
what stands above the quoted history: our own markers (Foxmail's and QQ Mail's 原始邮件 line,
NetEase's and Apple Mail's "… 写道：", Apple Mail's "> On … wrote:", lines quoted with ">") and
the headers ``mail-parser-reply`` knows (Outlook's 发件人: block, Gmail's "On … wrote:");
tests/test_inbound_mail.py holds a reply in each client's format. Knows nothing of Temporal or HTTP.

Anyone can mail us, so whatever a message holds, reading it is bounded and linear in its size:
at most MAX_LINES lines, MAX_PARTS parts nested at most MAX_DEPTH deep, MAX_HEADERS headers a part,
each header read from its first HEADER_CHARS characters (the standard parser is quadratic in a
header's length), a body from its first BODY_BYTES, its HTML by a linear scan, the new text looked
for in the first READ_CHARS characters and in each line's first LINE_CHARS; every regular
expression runs on such a bounded piece. A reading still going at its deadline stops (MailError).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import EmailPolicy, Policy
from email.utils import getaddresses
from typing import Any, TypeVar

from mailparser_reply.parser import EmailMessage as ReplyParser

T = TypeVar("T")

MAX_LINES = 1_000_000  # a 30 MB message in base64 has 400,000
MAX_PARTS = 100  # a message and all its parts (an attached email's too)
MAX_DEPTH = 20  # parts within parts: a forward of a forward is 8 or so
MAX_HEADERS = 1_000  # of one part (a long Received chain is 50)
HEADER_CHARS = 1_000  # of one header: a folded address list of 20 or so
BODY_BYTES = 1024 * 1024  # of the text (or HTML) part, decoded
READ_CHARS = 16_000  # of the text, where the new text is looked for (a case keeps 8,000)
LINE_CHARS = 200  # of a line, where a marker of quoted history is looked for
HEADER_LINES = 8  # lines the reply parser's markers are looked for in at once (two may overlap)
READ_SECONDS = 10.0  # a reading still going after this stops: a bounded one takes under a second

# what a client labels GB2312 or GBK is often GBK or GB18030 in fact: each is a superset
_CHARSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "big5": "big5hkscs"}
# a whole line (stripped, at most LINE_CHARS) that begins the quoted history
_QUOTE_MARKER = re.compile(
    r"-{4,}\s*(?:原始邮件|Original Message|原始郵件)\s*-{4,}"  # Foxmail, QQ Mail
    r"|在\s*.{4,}[，,].*写道[：:]"  # NetEase: 在 2026-12-03 13:08:00，"Name" <addr> 写道：
    r"|>?\s*\d{4}年\d{1,2}月\d{1,2}日.*写道[：:]"  # Apple Mail zh: 2026年12月3日 13:08，… 写道：
    r"|>\s*On\b.*\bwrote:"  # Apple Mail en quotes its own header line
)
# mail-parser-reply's headers of a quoted message, in Chinese and English
_REPLY_HEADERS: re.Pattern[str] = ReplyParser(text="", languages=["zh", "en"]).HEADER_REGEX
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:自动回复|自動回覆|auto(?:matic)?[ -]?reply|out of office)", re.I
)
# where the HTML of a body has markup: a comment (to its end, or the text's), a tag or a
# declaration (to its ">", or up to the next "<"): one pass, never a scan back
_MARKUP = re.compile(
    r"<!--.*?(?:-->|\Z)|<(/?)([a-zA-Z][a-zA-Z0-9]*)[^<>]*>?|<[!?/][^<>]*>?", re.DOTALL
)
_HTML_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "blockquote", "h1", "h2", "h3", "hr"})
_HTML_HIDDEN = frozenset({"style", "script", "head"})


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
    text: str  # the text part (its first BODY_BYTES)
    reply: str  # the new text, without the quoted history
    auto_reply: bool
    attachments: tuple[Attachment, ...] = field(default=())


@dataclass(frozen=True)
class Attachment:
    filename: str  # as the sender named it, decoded; sanitize before using it as a path
    content_type: str
    data: bytes


def parse_mail(
    raw: bytes, envelope_to: tuple[str, ...] = (), *, seconds: float = READ_SECONDS
) -> InboundMail:
    """The email in ``raw``; MailError when it cannot be read, or not within ``seconds``."""
    lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")
    if lines > MAX_LINES:
        raise MailError(f"email: more than {MAX_LINES:,} lines")
    reading = _Reading(time.monotonic() + seconds)
    try:
        return _read(reading, raw, envelope_to)
    except MailError:
        raise
    except Exception as exc:  # the parser is lenient; anything it raises is unreadable input
        raise MailError(f"email: not a readable message ({type(exc).__name__})") from exc


def _read(reading: _Reading, raw: bytes, envelope_to: tuple[str, ...]) -> InboundMail:
    message = BytesParser(policy=reading.policy).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    if any(len(part) > MAX_HEADERS for part in reading.parts):
        raise MailError(f"email: more than {MAX_HEADERS:,} headers in a part")
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


class _Policy(EmailPolicy):
    """``policy.default`` that reads each header from its first HEADER_CHARS characters, and
    stops a reading at its deadline (every step of the parser reads headers)."""

    deadline: float  # time.monotonic() of the reading's end

    def __init__(self, reading: _Reading) -> None:
        super().__init__(message_factory=reading.part)
        object.__setattr__(self, "deadline", reading.deadline)  # a policy's are read-only

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if time.monotonic() > self.deadline:
            raise MailError("email: still being read at its deadline")
        return super().header_fetch_parse(name, value[:HEADER_CHARS])


class _Part(EmailMessage):
    """A part of a message being read; reading stops at a part deeper than MAX_DEPTH."""

    depth = 0

    def attach(self, payload: Any) -> None:
        payload.depth = self.depth + 1
        if payload.depth > MAX_DEPTH:
            raise MailError(f"email: parts nested more than {MAX_DEPTH} deep")
        super().attach(payload)


class _Reading:
    """One message being read: its policy, and the parts made so far (at most MAX_PARTS)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.parts: list[_Part] = []
        self.policy = _Policy(self)

    def part(self, policy: Policy[Any]) -> _Part:
        if len(self.parts) >= MAX_PARTS:
            raise MailError(f"email: more than {MAX_PARTS} parts")
        self.parts.append(_Part(policy))
        return self.parts[-1]


def new_text(text: str) -> str:
    """The text above the quoted history, each line stripped."""
    lines = [line.strip() for line in text[:READ_CHARS].replace("\r\n", "\n").split("\n")]
    del lines[_history_start(lines) :]
    # a quote with no marker line above it; Outlook's line of underscores above its 发件人:
    while lines and (not lines[-1] or lines[-1][0] == ">" or not lines[-1].strip("_-")):
        lines.pop()
    return "\n".join(lines).strip()


def _history_start(lines: list[str]) -> int:
    """The first line of the quoted history (``len(lines)`` when there is none)."""
    end = next(
        (
            n
            for n, line in enumerate(lines)
            if len(line) <= LINE_CHARS and _QUOTE_MARKER.fullmatch(line)
        ),
        len(lines),
    )
    # mail-parser-reply's expressions take time quadratic in a line's length, and each call
    # holds the interpreter: they see short heads of a few lines at a time
    heads = [line[:LINE_CHARS] for line in lines[:end]]
    for start in range(0, len(heads), HEADER_LINES - 2):
        window = "\n".join(heads[start : start + HEADER_LINES])
        found = _REPLY_HEADERS.search(window)
        if found is not None:  # a header block's match may begin at the line break above it
            return start + window.count("\n", 0, found.start() + 1)
    return end


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


def _lenient(read: Callable[[], T], absent: T) -> T:
    """What ``read`` gives, or ``absent`` where the parser fails (a header it cannot parse is as
    good as absent); a reading past its deadline still stops."""
    try:
        return read()
    except MailError:
        raise
    except Exception:
        return absent


def _header(message: Message, name: str) -> str:
    value = _lenient(lambda: message.get(name), None)
    return " ".join(str(value).split()) if value is not None else ""


def _addresses(message: Message, name: str) -> list[Address]:
    found: list[Address] = _lenient(lambda: list(getattr(message.get(name), "addresses", ())), [])
    if not found:  # a header the policy would not parse: the plain address list
        found = _lenient(lambda: _plain_addresses(message, name), [])
    return [a for a in found if "@" in a.addr_spec]


def _plain_addresses(message: Message, name: str) -> list[Address]:
    raw = next((value for key, value in message.raw_items() if key.lower() == name.lower()), "")
    pairs = getaddresses([str(raw)[:HEADER_CHARS]])
    return [Address(display_name=n, addr_spec=a) for n, a in pairs if "@" in a]


def _first_address(message: Message, name: str) -> Address | None:
    found = _addresses(message, name)
    return found[0] if found else None


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = (part.get_content_charset() or "utf-8").lower()
    try:
        return payload[:BODY_BYTES].decode(_CHARSETS.get(charset, charset), errors="replace")
    except LookupError:  # a charset Python does not know
        return payload[:BODY_BYTES].decode("utf-8", errors="replace")


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


def _html_text(markup: str) -> str:
    """The text of an HTML body, a line per block; a quoted blockquote is kept with ">".

    One pass over the markup (``html.parser`` takes time quadratic in unclosed tags and
    comments, and holds the interpreter meanwhile)."""
    parts: list[str] = []
    hidden = quoted = 0
    at = 0
    for found in _MARKUP.finditer(markup):
        if not hidden:
            parts.append(_html_data(markup[at : found.start()], quoted))
        at = found.end()
        tag = (found.group(2) or "").lower()
        if found.group(0).endswith("/>"):  # <br/>: a start and an end, as html.parser reads it
            parts.append("\n\n" if tag in _HTML_BLOCKS else "")
            continue
        closing = found.group(1) == "/"
        if tag in _HTML_HIDDEN:
            hidden = max(0, hidden - 1) if closing else hidden + 1
        elif tag == "blockquote":
            quoted = max(0, quoted - 1) if closing else quoted + 1
        if tag in _HTML_BLOCKS:
            parts.append("\n")
    if not hidden:
        parts.append(_html_data(markup[at:], quoted))
    lines = [line.strip() for line in "".join(parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _html_data(data: str, quoted: int) -> str:
    text = html.unescape(data)
    return f"> {text}" if quoted and text.strip() else text

"""Replies as Chinese and other mail clients send them: each charset, encoding and quote format."""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

import pytest
import sendgrid

from intake.mail import (
    HEADER_CHARS,
    MAX_DEPTH,
    MAX_HEADERS,
    MAX_LINES,
    MAX_PARTS,
    READ_CHARS,
    MailError,
    new_text,
    parse_mail,
)

OURS = "billing-support@partner.example.cn"
QUOTED = {
    # Outlook zh-CN
    "outlook": "确认，谢谢。\n\n发件人: 账单支持 <{ours}>\n发送时间: 2026年12月3日 13:08\n"
    "收件人: finance@yunfan.example.cn\n主题: [案例 BC-1] 已解决\n\n"
    "尊敬的客户：\n您的问题已解决。\n",
    # Foxmail and QQ Mail
    "foxmail": "确认\n\n\n------------------ 原始邮件 ------------------\n"
    '发件人: "账单支持"<{ours}>;\n发送时间: 2026年12月3日(星期四) 下午1:08\n'
    '收件人: "finance"<finance@yunfan.example.cn>;\n主题: [案例 BC-1] 已解决\n\n尊敬的客户：\n',
    # NetEase (163, 126)
    "netease": '确认\n\n在 2026-12-03 13:08:00，"账单支持" <{ours}> 写道：\n'
    ">尊敬的客户：\n>已解决。\n",
    # Gmail
    "gmail": "确认\n\nOn Thu, Dec 3, 2026 at 1:08 PM Billing Support <{ours}> wrote:\n\n"
    "> Dear customer,\n> resolved.\n",
    # Apple Mail, zh and en
    "apple-zh": "确认\n\n> 2026年12月3日 13:08，账单支持 <{ours}> 写道：\n> \n> 尊敬的客户：\n",
    "apple-en": "确认\n\n> On 3 Dec 2026, at 13:08, Billing Support <{ours}> wrote:\n> \n> Dear\n",
}
# Foxmail in Traditional Chinese, as a Big5 client writes it
TRADITIONAL = (
    "確認\n\n------------------ 原始郵件 ------------------\n"
    f"發件人: 帳單支持 <{OURS}>\n主題: [案例 BC-1] 已解決\n\n尊敬的客戶：\n"
)


@pytest.mark.parametrize("client", sorted(QUOTED))
def test_the_new_text_is_cut_from_each_clients_quoted_history(client: str) -> None:
    assert new_text(QUOTED[client].format(ours=OURS)) == (
        "确认，谢谢。" if client == "outlook" else "确认"
    )


def test_text_without_history_is_kept_whole() -> None:
    assert new_text("不同意。\n发票金额应为 ￥1,200.00，\n请重新核对。\n") == (
        "不同意。\n发票金额应为 ￥1,200.00，\n请重新核对。"
    )


def raw_email(
    body: str,
    charset: str,
    encoding: str,
    *,
    subject: str = "=?GB2312?B?{subject}?=",
    headers: str = "",
    html: bool = False,
    to: str = "billing-support+abcdefghijklmnopqrst@reply.partner.example.cn",
    message_id: str = "<reply-1@yunfan.example.cn>",
    in_reply_to: str = "<thread.abcdefghijklmnopqrst@partner.example.cn>",
) -> bytes:
    """An email as a client writes it: body and subject in ``charset``, not re-encoded by Python;
    by default a reply to a thread of made-up tokens (a real one by `to` and `in_reply_to`)."""
    data = body.encode(charset)
    payload = base64.encodebytes(data) if encoding == "base64" else quopri.encodestring(data)
    subject = subject.format(
        subject=base64.b64encode("回复: [案例 BC-1] 已解决".encode("gb2312")).decode()
    )
    head = (
        f"From: =?GBK?B?{base64.b64encode('云帆财务'.encode('gbk')).decode()}?= "
        "<Finance@Yunfan.example.cn>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        f"In-Reply-To: {in_reply_to}\r\n"
        "References: <thread.abcdefghijklmnopqrst@partner.example.cn>\r\n"
        "   <x.abcdefghijklmnopqrst@partner.example.cn>\r\n"
        f"{headers}"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: text/{"html" if html else "plain"}; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + payload.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("charset", ["gb2312", "gbk", "gb18030", "big5", "utf-8"])
@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_each_charset_and_transfer_encoding_reads(charset: str, encoding: str) -> None:
    words = "確認" if charset == "big5" else "确认"
    text = TRADITIONAL if charset == "big5" else QUOTED["foxmail"].format(ours=OURS)
    mail = parse_mail(raw_email(text, charset, encoding))

    assert mail.reply == words
    assert mail.subject == "回复: [案例 BC-1] 已解决"
    assert (mail.from_address, mail.from_name) == ("finance@yunfan.example.cn", "云帆财务")
    assert mail.in_reply_to == "<thread.abcdefghijklmnopqrst@partner.example.cn>"
    assert len(mail.references) == 2
    assert mail.recipients == ("billing-support+abcdefghijklmnopqrst@reply.partner.example.cn",)
    assert not mail.auto_reply


def test_gbk_characters_in_a_gb2312_label_still_read() -> None:
    # 镕 is in GBK, not GB2312: clients label such text gb2312 all the same
    mail = parse_mail(
        raw_email("朱镕基路 1 号：确认\n", "gbk", "base64").replace(b"gbk", b"gb2312")
    )
    assert mail.reply == "朱镕基路 1 号：确认"


def test_an_html_only_reply_reads_as_text() -> None:
    html = (
        "<html><head><style>p{}</style></head><body><div>确认&nbsp;</div><div><br></div>"
        '<div style="">------------------&nbsp;原始邮件&nbsp;------------------</div>'
        "<div>发件人: 账单支持</div><blockquote>尊敬的客户</blockquote></body></html>"
    )
    assert parse_mail(raw_email(html, "utf-8", "base64", html=True)).reply == "确认"


@pytest.mark.parametrize(
    ("header", "subject"),
    [
        ("Auto-Submitted: auto-replied\r\n", ""),
        ("X-Autoreply: yes\r\n", ""),
        ("Precedence: bulk\r\n", ""),
        ("Precedence: auto_reply\r\n", ""),
        ("", f"=?UTF-8?B?{base64.b64encode('自动回复: 我正在休假'.encode()).decode()}?="),
        ("", "Out of Office: back on Monday"),
    ],
)
def test_auto_replies_are_known(header: str, subject: str) -> None:
    raw = raw_email("我正在休假。", "utf-8", "base64", headers=header, subject=subject or "Re: x")
    assert parse_mail(raw).auto_reply


def test_rfc_2231_attachment_names_and_the_sendgrid_sample_with_attachments() -> None:
    raw = (
        b"From: a@b.example\r\nTo: c@d.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n--b1\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=gbk''%B7%A2%C6%B1.pdf\r\n\r\n"
        + base64.b64encode(b"%PDF-1.4 test")
        + b"\r\n--b1--\r\n"
    )
    [attachment] = parse_mail(raw).attachments
    assert (attachment.filename, attachment.content_type) == ("发票.pdf", "application/pdf")
    assert attachment.data == b"%PDF-1.4 test"

    sample = _sendgrid_sample("raw_data_with_attachments.txt")
    mail = parse_mail(sample)
    assert mail.from_address and mail.attachments
    assert all(a.filename and a.data for a in mail.attachments)


def _sendgrid_sample(name: str) -> bytes:
    """The raw message in the ``email`` field of a sample request that ships with sendgrid."""
    path = Path(sendgrid.__file__).parent / "helpers" / "inbound" / "sample_data" / name
    form = path.read_bytes().replace(b"\r\n", b"\n")
    start = form.index(b'name="email"\n\n') + len(b'name="email"\n\n')
    return form[start : form.index(b"\n--xYzZY", start)]


def test_the_sendgrid_raw_sample_reads() -> None:
    mail = parse_mail(_sendgrid_sample("raw_data.txt"))
    assert (mail.from_address, mail.reply) == ("test@example.com", "Hello Twilio SendGrid!")


@pytest.mark.parametrize("raw", [b"", b"not an email at all", b"To: a@b.example\r\n\r\nhi"])
def test_a_message_without_a_sender_is_refused_by_name(raw: bytes) -> None:
    with pytest.raises(MailError, match="From"):
        parse_mail(raw)


# Anyone can mail us: what follows is shaped to be slow to read (issue 26). Each is read, or
# refused by name, within intake.mail's bounds.
HEAD = (
    "From: a@yunfan.example.cn\r\nTo: c@partner.example.cn\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
)
HALF_MB = 500_000


def plain(body: str, head: str = HEAD) -> bytes:
    return f"{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}".encode()


def nested(depth: int) -> bytes:
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n' for n in range(depth)
    )
    closing = "".join(f"--b{n}--\r\n" for n in reversed(range(depth)))
    return f"{HEAD}{opening}Content-Type: text/plain\r\n\r\n确认\r\n{closing}".encode()


def many_parts(count: int) -> bytes:
    part = "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\nx\r\n"
    text = "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n确认\r\n"
    mixed = 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    return f"{HEAD}{mixed}{text}{part * count}--b--\r\n".encode()


def html(markup: str) -> bytes:
    return f"{HEAD}Content-Type: text/html; charset=utf-8\r\n\r\n确认{markup}".encode()


LONG_LINES = {
    # NetEase's marker, 在 … ， … 写道：, without its end: quadratic in the line before
    "netease": "在 2026-12-03 13:08:00" + "，“账单支持”" * (HALF_MB // 7),
    "apple-zh": "> 2026年12月3日 13:08" + "，写道" * (HALF_MB // 3),
    "apple-en": "> On " + "Thu, Dec 3, 2026 " * (HALF_MB // 17),
    "gmail": "On " + "Thu, Dec 3, 2026, Billing Support " * (HALF_MB // 34),
    "outlook": "发件人: 账单支持\n发送时间: " + "2026年12月3日 " * (HALF_MB // 11),
}


@pytest.mark.parametrize("shape", sorted(LONG_LINES))
def test_a_half_megabyte_line_shaped_like_quoted_history_is_read_as_text(shape: str) -> None:
    mail = parse_mail(plain(f"确认\n{LONG_LINES[shape]}\n"))
    assert mail.reply.startswith("确认")
    assert len(mail.reply) <= READ_CHARS


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (nested(MAX_DEPTH + 1), "nested"),
        (nested(500), "nested"),
        (many_parts(MAX_PARTS), "parts"),
        (many_parts(5_000), "parts"),
        (plain("\r\n" * (MAX_LINES + 1)), "lines"),
        (plain("hi", HEAD + "X-Filler: x\r\n" * (MAX_HEADERS + 1)), "headers"),
    ],
    ids=["depth", "depth-500", "parts", "parts-5000", "lines", "headers"],
)
def test_a_message_past_a_bound_is_refused_by_name(raw: bytes, named: str) -> None:
    with pytest.raises(MailError, match=named):
        parse_mail(raw)


def test_within_the_bounds_a_message_reads() -> None:
    assert parse_mail(nested(MAX_DEPTH - 1)).reply == "确认"
    assert len(parse_mail(many_parts(MAX_PARTS - 3)).attachments) == MAX_PARTS - 3


def test_huge_headers_are_read_from_their_first_characters() -> None:
    ids = " ".join(f"<{n}.abcdefghijklmnopqrst@partner.example.cn>" for n in range(20_000))
    crowd = ", ".join(f'"同事 {n}" <c{n}@yunfan.example.cn>' for n in range(20_000))
    head = HEAD.replace("Subject: x", "Subject: " + "发票" * HALF_MB).replace(
        "To: c@partner.example.cn",
        f"To: billing-support+abcdefghijklmnopqrst@x.example.cn, {crowd}",
    )
    mail = parse_mail(plain("确认", f"{head}References: {ids}\r\nIn-Reply-To: {ids}\r\n"))
    assert mail.reply == "确认"
    assert mail.subject.startswith("发票" * 100) and len(mail.subject) <= HEADER_CHARS
    assert mail.recipients[0] == "billing-support+abcdefghijklmnopqrst@x.example.cn"
    assert 0 < len(mail.references) < HEADER_CHARS // 40
    assert mail.in_reply_to.startswith("<0.abcdefghijklmnopqrst@")


@pytest.mark.parametrize(
    "sender",
    ["(" * 50_000 + "a@b.example", '"a' * 100_000 + " <a@b.example>", "a" * HALF_MB + "@b.example"],
    ids=["nested-comments", "quotes", "one-long-address"],
)
def test_a_sender_the_header_parser_chokes_on_is_no_sender(sender: str) -> None:
    with pytest.raises(MailError, match="From"):
        parse_mail(plain("确认", HEAD.replace("a@yunfan.example.cn", sender)))


@pytest.mark.parametrize(
    "markup",
    ["<!--" * 100_000, "<![" * 100_000, "<a b=" * 100_000, "</" * 100_000, "<?" * 100_000],
    ids=["comments", "declarations", "tags", "end-tags", "instructions"],
)
def test_html_that_never_closes_reads_in_one_pass(markup: str) -> None:
    assert parse_mail(html(markup)).reply == "确认"


def test_a_reading_stops_at_its_deadline() -> None:
    with pytest.raises(MailError, match="deadline"):
        parse_mail(raw_email("确认", "utf-8", "base64"), seconds=-1)

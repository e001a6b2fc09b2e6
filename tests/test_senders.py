"""The senders: the file outbox on a real directory, the real SendGrid client against a stand-in."""

from __future__ import annotations

import base64
import logging
import socket
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from activities.senders import (
    EmailDeliveryError,
    EmailRejected,
    FileOutboxSender,
    OutgoingEmail,
    OutgoingFile,
    SendGridSender,
)
from tests.sendgrid_standin import (
    Answer,
    SendGridStandIn,
    accepted,
    bad_request,
    sendgrid_standin_fixture,  # noqa: F401  (pytest fixture "sendgrid_standin")
    server_error,
    too_many_requests,
)

API_KEY = "SG.test-key-that-must-never-leak"


def outgoing(key: str = "BC-20250303-0042/case_acknowledged/1", **changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "dedup_key": key,
        "to": "finance@yunfan.example.cn",
        "from_address": "billing-support@partner.example.cn",
        "from_name": "账单支持 Billing Support",
        "subject": "[案例 BC-20250303-0042] 我们已收到您的账单问题",
        "text": "尊敬的客户：\n\n我们已收到您的问题。\n",
        "html": "<p>我们已收到您的问题。</p>\n",
        "category": "case_acknowledged",
        **changes,
    }
    return OutgoingEmail(**fields)


def _parse(path: Path) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def test_outbox_writes_a_parseable_multipart_email(tmp_path: Path) -> None:
    sender = FileOutboxSender(tmp_path / "outbox")
    email = outgoing()
    message_id = sender.send(email)

    path = sender.path_for(email.dedup_key)
    assert path.parent == tmp_path / "outbox" and path.suffix == ".eml"
    message = _parse(path)
    assert message["Message-ID"] == message_id
    assert message["X-Dedup-Key"] == email.dedup_key
    assert message["Subject"] == email.subject
    assert message["To"] == email.to
    assert message["From"].addresses[0].display_name == email.from_name
    assert message["From"].addresses[0].addr_spec == email.from_address
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    # RFC 5322 lines end in CRLF on disk
    assert text is not None and text.get_content().replace("\r\n", "\n") == email.text
    assert html is not None and html.get_content().replace("\r\n", "\n") == email.html


PDF = OutgoingFile(
    "贷项通知单 CN-88.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40
)
PNG = OutgoingFile('screen"shot.png', "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)


def test_outbox_email_with_files_is_mixed_and_parses_back(tmp_path: Path) -> None:
    """An agent's reply with files: multipart/mixed of the text-and-HTML part and each file, its
    name (Chinese, or with a quote) and its bytes as they were."""
    sender = FileOutboxSender(tmp_path)
    email = outgoing(
        attachments=(PDF, PNG), in_reply_to="<thread.x@p.cn>", references="<thread.x@p.cn>"
    )
    message = _parse(_sent(sender, email))
    assert message.get_content_type() == "multipart/mixed"
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == email.text
    files = list(message.iter_attachments())
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        (PDF.name, "application/pdf"),
        (PNG.name, "image/png"),
    ]
    assert [f.get_content() for f in files] == [PDF.data, PNG.data]
    assert message["In-Reply-To"] == "<thread.x@p.cn>"
    # without files the email is what it always was
    assert (
        _parse(_sent(sender, outgoing(), key="plain")).get_content_type() == "multipart/alternative"
    )


def test_outbox_headers_cannot_be_injected_and_long_subjects_fold(tmp_path: Path) -> None:
    sender = FileOutboxSender(tmp_path)
    hostile = outgoing(subject="Invoice\r\nBcc: thief@evil.example", category="x\nY: 1")
    message = _parse(_sent(sender, hostile))
    assert message["Bcc"] is None and message["Y"] is None
    assert "thief@evil.example" in message["Subject"]

    long = outgoing(subject="关于您的发票 G000123456 的争议：" * 12)
    path = _sent(sender, long, key="long")
    assert max(len(line) for line in path.read_bytes().split(b"\r\n")) <= 78
    assert _parse(path)["Subject"] == long.subject


def _sent(sender: FileOutboxSender, email: OutgoingEmail, key: str = "") -> Path:
    if key:
        email = OutgoingEmail(**{**email.__dict__, "dedup_key": key})
    sender.send(email)
    return sender.path_for(email.dedup_key)


def test_outbox_resend_rewrites_the_same_file(tmp_path: Path) -> None:
    sender = FileOutboxSender(tmp_path)
    first = sender.send(outgoing(subject="first"))
    second = FileOutboxSender(tmp_path).send(outgoing(subject="second"))

    assert first == second  # Message-ID comes from the dedup key alone
    files = list(tmp_path.iterdir())
    assert len(files) == 1  # and no temporary file is left behind
    assert _parse(files[0])["Subject"] == "second"


def test_outbox_keys_that_look_alike_get_their_own_files(tmp_path: Path) -> None:
    sender = FileOutboxSender(tmp_path)
    ids = {sender.send(outgoing(key)) for key in ("case/1", "case_1", "case:1", "../../etc/passwd")}
    assert len(ids) == 4
    assert len(list(tmp_path.glob("*.eml"))) == 4
    assert all(path.parent == tmp_path for path in tmp_path.iterdir())


def test_outbox_that_cannot_be_written_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(EmailDeliveryError):
        FileOutboxSender(blocker).send(outgoing())


def test_sendgrid_request_carries_everything(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.script(accepted("msg-abc.1"))
    email = outgoing()

    assert SendGridSender(API_KEY, sendgrid_standin.host).send(email) == "msg-abc.1"

    [request] = sendgrid_standin.requests
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = request.json()
    assert body["personalizations"][0]["to"] == [{"email": email.to}]
    assert body["from"] == {"email": email.from_address, "name": email.from_name}
    assert body["subject"] == email.subject
    assert body["content"] == [
        {"type": "text/plain", "value": email.text},
        {"type": "text/html", "value": email.html},
    ]
    assert body["custom_args"] == {"dedup_key": email.dedup_key}
    assert body["categories"] == ["case_acknowledged"]


def test_sendgrid_request_carries_the_files_in_base64(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.script(accepted("msg-files.1"))
    SendGridSender(API_KEY, sendgrid_standin.host).send(outgoing(attachments=(PDF,)))
    [request] = sendgrid_standin.requests
    [attached] = request.json()["attachments"]
    assert attached["filename"] == PDF.name and attached["type"] == "application/pdf"
    assert attached["disposition"] == "attachment"
    assert base64.b64decode(attached["content"]) == PDF.data


def test_sendgrid_400_is_rejected_with_sendgrids_reason(
    sendgrid_standin: SendGridStandIn,
) -> None:
    sendgrid_standin.script(bad_request())
    with pytest.raises(EmailRejected) as raised:
        SendGridSender(API_KEY, sendgrid_standin.host).send(outgoing())
    assert "400" in str(raised.value)
    assert "The to email does not contain a valid address." in str(raised.value)
    assert API_KEY not in str(raised.value)


@pytest.mark.parametrize(
    "answer",
    [too_many_requests(), server_error(), Answer(502), Answer(503), Answer(401)],
    ids=["429", "500", "502", "503", "401"],
)
def test_sendgrid_transient_failures_are_delivery_errors(
    sendgrid_standin: SendGridStandIn, answer: Answer
) -> None:
    sendgrid_standin.script(answer)
    with pytest.raises(EmailDeliveryError, match=str(answer.status)) as raised:
        SendGridSender(API_KEY, sendgrid_standin.host).send(outgoing())
    assert API_KEY not in str(raised.value)


def test_sendgrid_timeout_is_a_delivery_error(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.script(accepted(delay=2.0))
    with pytest.raises(EmailDeliveryError):
        SendGridSender(API_KEY, sendgrid_standin.host, timeout=0.3).send(outgoing())


def test_sendgrid_unreachable_is_a_delivery_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EmailDeliveryError, match="unreachable"):
        SendGridSender(API_KEY, f"http://127.0.0.1:{port}").send(outgoing())


def test_sendgrid_api_key_is_never_logged(
    sendgrid_standin: SendGridStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    sendgrid_standin.script(accepted(), bad_request())
    sender = SendGridSender(API_KEY, sendgrid_standin.host)
    with caplog.at_level(logging.DEBUG):
        sender.send(outgoing())
        with pytest.raises(EmailRejected):
            sender.send(outgoing("other"))
    assert "mail/send" in caplog.text  # the client did log at DEBUG
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(sender)

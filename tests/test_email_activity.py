"""send_email on the real databases, templates and senders: at most once per dedup key."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage as EmailMessageFile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import email as email_module
from activities.email import DEFAULT_CLAIM_TIMEOUT, EmailActivities
from activities.rendering import TemplateRenderer
from activities.senders import EmailSender, FileOutboxSender, SendGridSender
from core.models import EmailMessage, EmailSent, EmailTemplate, Locale
from db.tables import EmailLog
from tests.factories import COLLECTIONS_INVOICE_ID, case_for, make_email_message
from tests.sendgrid_standin import (
    SendGridStandIn,
    accepted,
    bad_request,
    sendgrid_standin_fixture,  # noqa: F401  (pytest fixture "sendgrid_standin")
    server_error,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
KEY = "BC-20250303-0042/info_requested/1"


def email_activities(
    session_factory: sessionmaker[Session], sender: EmailSender
) -> EmailActivities:
    return EmailActivities(
        TemplateRenderer(TEMPLATES),
        sender,
        session_factory,
        from_address="billing-support@partner.example.cn",
        from_name="账单支持 Billing Support",
    )


def message(key: str = KEY, template: EmailTemplate = EmailTemplate.INFO_REQUESTED) -> EmailMessage:
    return make_email_message(template, key=key, locale=Locale.ZH_CN)


def unrenderable() -> tuple[EmailMessage, EmailMessage]:
    """A resolution email, and the same about a case without a resolution (its template fails)."""
    resolved = message(template=EmailTemplate.CASE_RESOLVED)
    return resolved, resolved.model_copy(update={"case": case_for(EmailTemplate.CASE_ACKNOWLEDGED)})


def log_row(session_factory: sessionmaker[Session], key: str = KEY) -> EmailLog:
    with session_factory() as session:
        return session.scalars(select(EmailLog).where(EmailLog.dedup_key == key)).one()


def send(activities: EmailActivities, email: EmailMessage) -> EmailSent:
    result: EmailSent = ActivityEnvironment().run(activities.send_email, email)
    return result


def test_outbox_email_is_sent_once_per_key(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    activities = email_activities(session_factory, FileOutboxSender(tmp_path))

    first = send(activities, message())
    second = send(activities, message())

    assert not first.duplicate and first.provider_message_id.startswith("<")
    assert second.duplicate and second.provider_message_id == first.provider_message_id
    assert len(list(tmp_path.glob("*.eml"))) == 1
    row = log_row(session_factory)
    assert (row.status, row.attempts, row.processor) == ("sent", 1, "outbox")
    assert row.subject.startswith("【工单 BC-20250303-0042】")
    assert row.case_id == "BC-20250303-0042" and row.template == "info_requested"
    assert row.sent_at is not None and row.error is None


def test_sendgrid_email_is_sent_once_per_key(
    session_factory: sessionmaker[Session], sendgrid_standin: SendGridStandIn
) -> None:
    sendgrid_standin.script(accepted("sg-1"))
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))

    assert send(activities, message()) == EmailSent(key=KEY, provider_message_id="sg-1")
    assert send(activities, message()).duplicate
    other = send(activities, message(f"{KEY}-reminder", EmailTemplate.CUSTOMER_REMINDER))

    assert not other.duplicate
    assert [r.json()["custom_args"]["dedup_key"] for r in sendgrid_standin.requests] == [
        KEY,
        f"{KEY}-reminder",
    ]
    assert log_row(session_factory).provider_message_id == "sg-1"


def test_rejected_email_is_not_retried(
    session_factory: sessionmaker[Session], sendgrid_standin: SendGridStandIn
) -> None:
    sendgrid_standin.script(bad_request())
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))

    for _ in range(2):
        with pytest.raises(ApplicationError) as raised:
            send(activities, message())
        assert raised.value.type == "EmailRejected"
        assert raised.value.non_retryable
        assert "does not contain a valid address" in raised.value.message

    assert len(sendgrid_standin.requests) == 1
    row = log_row(session_factory)
    assert row.status == "rejected" and row.error is not None and "400" in row.error


def test_transient_failure_is_retried_then_sent(
    session_factory: sessionmaker[Session], sendgrid_standin: SendGridStandIn
) -> None:
    sendgrid_standin.script(server_error(), accepted("sg-2"))
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))

    with pytest.raises(ApplicationError) as raised:
        send(activities, message())
    assert raised.value.type == "EmailDeliveryError" and not raised.value.non_retryable
    failed = log_row(session_factory)
    assert failed.status == "pending" and failed.error is not None and "500" in failed.error

    assert send(activities, message()).provider_message_id == "sg-2"
    row = log_row(session_factory)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert len(sendgrid_standin.requests) == 2


def test_an_accepted_email_whose_record_failed_is_not_sent_again(
    session_factory: sessionmaker[Session],
    sendgrid_standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SendGrid took it, then the database went away before `sent` was written (for longer
    than the attempt waits for it): the heartbeat carries SendGrid's answer to the next attempt,
    which records it and sends nothing."""
    monkeypatch.setattr(email_module, "SENT_PATIENCE", timedelta(seconds=1))
    sendgrid_standin.script(accepted("sg-1"))
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))
    finish = activities._finish

    def database_down_for_sent(key: str, attempt: int | None, **values: Any) -> None:
        if values.get("status") == "sent":
            raise OperationalError("UPDATE email_log", {}, Exception("connection refused"))
        finish(key, attempt, **values)

    monkeypatch.setattr(activities, "_finish", database_down_for_sent)
    beats: list[tuple[Any, ...]] = []
    first = ActivityEnvironment()
    first.on_heartbeat = lambda *details: beats.append(details)
    with pytest.raises(OperationalError):
        first.run(activities.send_email, message())
    monkeypatch.undo()
    assert log_row(session_factory).status == "pending"  # the claim is still held

    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=beats[-1])
    sent: EmailSent = retry.run(activities.send_email, message())
    assert sent.provider_message_id == "sg-1" and len(sendgrid_standin.requests) == 1
    row = log_row(session_factory)
    assert (row.status, row.provider_message_id) == ("sent", "sg-1")
    assert row.subject is not None and row.subject.startswith("【工单 BC-20250303-0042】")


def test_repeated_failures_before_sending_free_the_key_each_time(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    activities = email_activities(session_factory, FileOutboxSender(tmp_path))
    resolved, broken = unrenderable()
    for attempt in (1, 2, 3):
        with pytest.raises(ApplicationError, match="outcome") as failed:
            send(activities, broken)
        assert failed.value.type == "RenderFailed" and failed.value.non_retryable
        assert log_row(session_factory).attempts == attempt
    assert not send(activities, resolved).duplicate
    row = log_row(session_factory)
    assert (row.status, row.attempts) == ("sent", 4)


@pytest.mark.parametrize("earlier", ["none", "failed"])
def test_concurrent_attempts_send_once(
    session_factory: sessionmaker[Session], sendgrid_standin: SendGridStandIn, earlier: str
) -> None:
    if earlier == "failed":  # the racers compete for a row an earlier attempt released
        _leave_pending(session_factory, datetime.now(UTC), error="SendGrid 500: oops")
    sendgrid_standin.script(accepted("sg-slow", delay=0.5))
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))
    outcomes: list[EmailSent | ApplicationError] = []

    def attempt() -> None:
        try:
            outcomes.append(send(activities, message()))
        except ApplicationError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(sendgrid_standin.requests) == 1
    sent = [o for o in outcomes if isinstance(o, EmailSent)]
    busy = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(sent) == 1 and len(busy) == 2
    assert all(e.type == "EmailInProgress" and not e.non_retryable for e in busy)
    assert send(activities, message()).duplicate


def _leave_pending(
    session_factory: sessionmaker[Session], claimed_at: datetime, error: str | None = None
) -> None:
    """The row an attempt leaves when its worker dies (or its send fails) after claiming."""
    with session_factory() as session:
        session.add(
            EmailLog(
                dedup_key=KEY,
                case_id="BC-20250303-0042",
                template="info_requested",
                to_address="finance@yunfan.example.cn",
                locale="zh-CN",
                status="pending",
                processor="sendgrid",
                attempts=1,
                error=error,
                created_at=claimed_at,
                updated_at=claimed_at,
            )
        )
        session.commit()


def test_claim_of_a_crashed_attempt_is_taken_over(
    session_factory: sessionmaker[Session], sendgrid_standin: SendGridStandIn
) -> None:
    _leave_pending(session_factory, datetime.now(UTC) - DEFAULT_CLAIM_TIMEOUT - timedelta(1))
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))

    assert not send(activities, message()).duplicate
    assert len(sendgrid_standin.requests) == 1
    assert (log_row(session_factory).status, log_row(session_factory).attempts) == ("sent", 2)


def test_live_claim_is_left_alone(
    session_factory: sessionmaker[Session], sendgrid_standin: SendGridStandIn
) -> None:
    _leave_pending(session_factory, datetime.now(UTC))
    activities = email_activities(session_factory, SendGridSender("SG.k", sendgrid_standin.host))

    with pytest.raises(ApplicationError) as raised:
        send(activities, message())
    assert raised.value.type == "EmailInProgress" and not raised.value.non_retryable
    assert sendgrid_standin.requests == []


def test_render_failure_frees_the_key(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    activities = email_activities(session_factory, FileOutboxSender(outbox))
    resolved, broken = unrenderable()

    with pytest.raises(ApplicationError, match="cannot be rendered"):
        send(activities, broken)
    assert log_row(session_factory).status == "pending"
    assert not outbox.exists()

    assert not send(activities, resolved).duplicate
    assert log_row(session_factory).status == "sent"


def test_collections_email_is_logged_under_its_invoice(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    activities = email_activities(session_factory, FileOutboxSender(tmp_path))
    key = f"collections-{COLLECTIONS_INVOICE_ID}/final-notice"
    email = make_email_message(EmailTemplate.COLLECTIONS_FINAL_NOTICE, key=key)
    assert email.case is None and email.subject_id == COLLECTIONS_INVOICE_ID

    assert not send(activities, email).duplicate
    assert send(activities, email).duplicate

    row = log_row(session_factory, key)
    assert (row.status, row.case_id, row.template) == (
        "sent",
        COLLECTIONS_INVOICE_ID,
        "collections_final_notice",
    )
    assert row.subject.startswith(f"【账单 {COLLECTIONS_INVOICE_ID}】最终付款通知")
    [eml] = tmp_path.glob("*.eml")
    sent = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(sent, EmailMessageFile)
    text = sent.get_body(("plain",))
    assert text is not None and f"账单编号：{COLLECTIONS_INVOICE_ID}" in text.get_content()

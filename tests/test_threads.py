"""Email threads: one thread per workflow, signed tokens, and the headers both senders write."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage as EmailMessageFile
from email.parser import BytesParser
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.rendering import TemplateRenderer
from activities.senders import FileOutboxSender, OutgoingEmail, SendGridSender
from core import ids
from core.models import EmailTemplate
from core.settings import Settings, SettingsError
from core.threads import (
    MAILBOX,
    EmailThreads,
    ThreadHeaders,
    thread_headers,
    thread_token,
    tokens_in,
    verified,
)
from db.tables import EmailThread
from tests.factories import CASE_ID, COLLECTIONS_INVOICE_ID, make_email_message
from tests.sendgrid_standin import (
    SendGridStandIn,
    accepted,
    sendgrid_standin_fixture,  # noqa: F401  (pytest fixture "sendgrid_standin")
)
from tests.test_senders import API_KEY, outgoing

SECRET = SecretStr("thread-secret-for-tests-only-0123456789")
NEW_SECRET = SecretStr("the-next-thread-secret-for-tests-abcdef")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FROM = "billing-support@partner.example.cn"
THREADS = EmailThreads((SECRET,), "reply.partner.example.cn")


def test_a_token_is_the_workflows_and_only_its_secret_makes_it() -> None:
    token = thread_token("case-BC-1", SECRET)
    assert token == thread_token("case-BC-1", SECRET) and len(token) == 20
    assert token.islower() and token.isalnum()
    assert token != thread_token("case-BC-2", SECRET)
    assert token != thread_token("case-BC-1", SecretStr("another-secret-of-enough-length"))
    assert verified(token, "case-BC-1", [SECRET]) and not verified(token, "case-BC-2", [SECRET])


def test_after_a_rotation_tokens_are_new_and_the_old_threads_still_verify() -> None:
    rotated = EmailThreads((SECRET, NEW_SECRET), "reply.partner.example.cn")
    old, new = thread_token("case-BC-1", SECRET), thread_token("case-BC-1", NEW_SECRET)
    assert rotated.headers("case-BC-1", "k", "partner.example.cn").token == new  # the last signs
    assert rotated.verified(old, "case-BC-1") and rotated.verified(new, "case-BC-1")
    assert not rotated.verified(old, "case-BC-2")
    # once the old secret is dropped, its threads route nowhere
    assert not EmailThreads((NEW_SECRET,)).verified(old, "case-BC-1")


def test_a_token_under_an_empty_or_unknown_key_never_verifies() -> None:
    unsigned = thread_token("collections-G000123456", None)  # anyone can compute it
    unknown = thread_token("collections-G000123456", SecretStr("a-guess-at-the-secret-0123456789"))
    for threads in (EmailThreads(), EmailThreads((SECRET,)), EmailThreads((SECRET, NEW_SECRET))):
        assert not threads.verified(unsigned, "collections-G000123456")
        assert not threads.verified(unknown, "collections-G000123456")
    assert not verified(unsigned, "collections-G000123456", [])


def test_every_email_of_a_workflow_names_one_thread_root() -> None:
    first = THREADS.headers("case-BC-1", "BC-1/case_acknowledged/1", "partner.example.cn")
    later = THREADS.headers("case-BC-1", "BC-1/case_resolved/1", "partner.example.cn")
    other = THREADS.headers("case-BC-2", "BC-2/case_acknowledged/1", "partner.example.cn")

    assert first.message_id != later.message_id  # each email its own id ...
    assert first.in_reply_to == later.in_reply_to == later.references  # ... one thread
    assert other.references != first.references
    assert first.reply_to == f"{MAILBOX}+{first.token}@reply.partner.example.cn"
    # a resent email is the same message
    assert first == THREADS.headers("case-BC-1", "BC-1/case_acknowledged/1", "partner.example.cn")


def test_the_token_comes_back_from_an_address_or_a_message_id() -> None:
    headers = THREADS.headers("case-BC-1", "BC-1/case_resolved/1", "partner.example.cn")
    token = headers.token
    assert tokens_in(f"Billing <{headers.reply_to}>".upper()) == [token]  # lower-cased on the way
    assert tokens_in("<CAF=x@mail.gmail.com>", headers.references, headers.message_id) == [token]
    assert tokens_in("billing-support@reply.partner.example.cn", "<abc@qq.com>") == []


def test_no_reply_to_without_an_inbound_domain_or_a_secret() -> None:
    assert thread_headers("case-BC-1", "k", "partner.example.cn", SECRET, None).reply_to is None
    unsigned = thread_headers("case-BC-1", "k", "partner.example.cn", None, "reply.example.cn")
    assert unsigned.reply_to is None and unsigned.references.startswith("<thread.")


def test_an_inbound_domain_needs_a_thread_secret() -> None:
    with pytest.raises(ValidationError, match="EMAIL_THREAD_SECRET"):
        Settings(inbound_domain="reply.partner.example.cn")
    assert Settings(inbound_domain="reply.example.cn", email_thread_secret=SECRET).inbound_domain


def test_inbound_mail_needs_a_thread_secret_and_long_secrets() -> None:
    parse = SecretStr("inbound-parse-secret-3b8f1e")
    with pytest.raises(ValidationError, match="EMAIL_THREAD_SECRET is required"):
        Settings(inbound_parse_secret=parse)
    with pytest.raises(ValidationError, match="EMAIL_THREAD_SECRET must be at least 32"):
        Settings(inbound_parse_secret=parse, email_thread_secret=SecretStr("short-secret"))
    rotating = SecretStr(f"{SECRET.get_secret_value()},short-new-secret")
    with pytest.raises(ValidationError, match="EMAIL_THREAD_SECRET must be at least 32"):
        Settings(email_thread_secret=rotating)
    with pytest.raises(ValidationError, match="INBOUND_PARSE_SECRET must be at least 16"):
        Settings(inbound_parse_secret=SecretStr("x"), email_thread_secret=SECRET)
    # the CLI's file and the drop folder have no parse secret: they ask for the thread secret
    with pytest.raises(SettingsError, match="EMAIL_THREAD_SECRET is not set"):
        Settings().inbound_threads()
    both = SecretStr(f"{SECRET.get_secret_value()}, {NEW_SECRET.get_secret_value()}")
    threads = Settings(inbound_parse_secret=parse, email_thread_secret=both).inbound_threads()
    assert threads.secrets == (SECRET, NEW_SECRET)


def _parse(data: bytes) -> EmailMessageFile:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessageFile)
    return message


def threaded() -> tuple[ThreadHeaders, OutgoingEmail]:
    """A case's resolution email with its thread's headers."""
    headers = THREADS.headers("case-BC-1", "BC-1/case_resolved/1", "partner.example.cn")
    email = outgoing(
        workflow_id="case-BC-1",
        message_id=headers.message_id,
        in_reply_to=headers.in_reply_to,
        references=headers.references,
        reply_to=headers.reply_to or "",
    )
    return headers, email


def test_the_outbox_writes_the_thread_headers(tmp_path: Path) -> None:
    headers, email = threaded()
    sender = FileOutboxSender(tmp_path)
    assert sender.send(email) == headers.message_id
    written = _parse(sender.path_for(email.dedup_key).read_bytes())
    assert written["Message-ID"] == headers.message_id
    assert written["In-Reply-To"] == written["References"] == headers.references
    assert written["Reply-To"] == headers.reply_to


def test_sendgrid_gets_the_thread_headers_and_the_custom_args(
    sendgrid_standin: SendGridStandIn,
) -> None:
    sendgrid_standin.script(accepted("sg-1"))
    headers, email = threaded()
    SendGridSender(API_KEY, sendgrid_standin.host).send(email)

    [request] = sendgrid_standin.requests
    body = request.json()
    assert body["reply_to"] == {"email": headers.reply_to}
    assert body["headers"] == {
        "Message-ID": headers.message_id,
        "In-Reply-To": headers.in_reply_to,
        "References": headers.references,
    }
    assert body["custom_args"] == {"dedup_key": email.dedup_key, "workflow_id": "case-BC-1"}


@pytest.mark.parametrize(
    ("template", "workflow_id"),
    [
        (EmailTemplate.CASE_RESOLVED, ids.case_workflow_id(CASE_ID)),
        (
            EmailTemplate.COLLECTIONS_FINAL_NOTICE,
            ids.collections_workflow_id(COLLECTIONS_INVOICE_ID),
        ),
    ],
)
def test_the_email_activity_threads_each_email_and_records_its_workflow(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    template: EmailTemplate,
    workflow_id: str,
) -> None:
    outbox = FileOutboxSender(tmp_path)
    activities = EmailActivities(
        TemplateRenderer(TEMPLATES), outbox, session_factory, FROM, "Billing", threads=THREADS
    )
    message = make_email_message(template)
    env = ActivityEnvironment()
    env.run(activities.send_email, message)
    env.run(activities.send_email, message.model_copy(update={"key": f"{message.key}-again"}))

    written = _parse(outbox.path_for(message.key).read_bytes())
    token = thread_token(workflow_id, SECRET)
    assert written["Reply-To"] == f"{MAILBOX}+{token}@reply.partner.example.cn"
    assert written["References"] == f"<thread.{token}@partner.example.cn>"
    assert message.subject_id in written["Subject"]  # the case or invoice number stays
    with session_factory() as session:
        rows = session.scalars(select(EmailThread)).all()
    assert [(row.token, row.workflow_id) for row in rows] == [(token, workflow_id)]


def test_a_staff_email_carries_no_customer_reply_to(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """An agent answering a notification must not write into the customer's thread: with the
    thread's Reply-To their answer was stored as 'another sender' and never reached the customer."""
    outbox = FileOutboxSender(tmp_path)
    activities = EmailActivities(
        TemplateRenderer(TEMPLATES), outbox, session_factory, FROM, "Billing", threads=THREADS
    )
    message = make_email_message(EmailTemplate.OWNER_CASE_UPDATE)
    ActivityEnvironment().run(activities.send_email, message)
    written = _parse(outbox.path_for(message.key).read_bytes())
    assert "Reply-To" not in written
    # still threaded, so the staff's mail client groups the case's notifications
    token = thread_token(ids.case_workflow_id(CASE_ID), SECRET)
    assert written["References"] == f"<thread.{token}@partner.example.cn>"

"""The SMTP sender against real SMTP servers started here: aiosmtpd with trouble on demand
(tests/smtp_support.py) and a private Debian Postfix (tests/postfix_support.py), alone, in the
email activity and in the real worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.senders import (
    EmailDeliveryError,
    EmailRejected,
    FileOutboxSender,
    OutgoingEmail,
)
from activities.smtp import SendingRate, SmtpSender
from core.ids import case_workflow_id
from core.models import CaseView, EmailTemplate, EventKind
from core.settings import EmailBackend, Settings, SettingsError, load_settings
from db.migrate import upgrade
from db.session import one_off_session
from db.tables import EmailLog
from service import Service
from tests.clock_support import eventually
from tests.graph_standin import CLIENT_ID, CLIENT_SECRET, MAILBOX, TENANT_ID, GraphStandIn
from tests.graph_standin import SCOPE as GRAPH_SCOPE
from tests.postfix_support import (
    DOMAIN,
    REFUSED,
    Postfix,
    postfix_fixture,  # noqa: F401  (pytest fixture "postfix")
)
from tests.smtp_support import (
    DROP_KEPT,
    DROP_LOST,
    HOST,
    PASSWORD,
    TOKEN,
    USER,
    SelfSignedCertificate,
    SmtpServer,
    certificate_fixture,  # noqa: F401  (pytest fixture "certificate")
    smtp_server_fixture,  # noqa: F401  (pytest fixture "smtp_server")
)
from tests.test_email_activity import email_activities, log_row, message, send
from tests.test_senders import outgoing as email_of
from tests.workflow_support import open_case
from worker import build_sender, build_worker
from workflows.billing_case import BillingCaseWorkflow

M365 = {"M365_TENANT_ID": TENANT_ID, "M365_CLIENT_ID": CLIENT_ID, "M365_CLIENT_SECRET": "s"}
# aiosmtpd's own: on every sign-in, and on a server signing in over implicit TLS
pytestmark = [
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]
Start = Callable[..., SmtpServer]
CUSTOMER = "finance@customer.example.cn"


def outgoing(key: str = "case-T1/run/case_acknowledged", to: str = CUSTOMER) -> OutgoingEmail:
    """An email of a thread, with a Chinese subject and sender name, as the activity makes one."""
    return email_of(
        key,
        to=to,
        workflow_id="case-T1",
        message_id="<case-T1.2@partner.example.cn>",
        in_reply_to="<case-T1.1@partner.example.cn>",
        references="<case-T1.0@partner.example.cn> <case-T1.1@partner.example.cn>",
        reply_to="billing-support+t0k3n@reply.partner.example.cn",
    )


def sender(server: SmtpServer, certificate: SelfSignedCertificate, **options: object) -> SmtpSender:
    fields: dict[str, object] = {
        "security": server.security,
        "auth": "none",
        "username": USER,
        "password": PASSWORD,
        "tls_context": certificate.client_context(),
        "timeout": 10.0,
    }
    return SmtpSender(HOST, server.port, **{**fields, **options})  # type: ignore[arg-type]


def without_date(raw: bytes) -> bytes:
    """The message without its Date line (the time it was made, different on each send)."""
    return b"".join(line for line in raw.splitlines(True) if not line.startswith(b"Date: "))


# --------------------------------------------------------------------------- the bytes


def test_the_bytes_sent_are_the_outboxs(
    smtp_server: Start, certificate: SelfSignedCertificate, tmp_path: Path
) -> None:
    server = smtp_server(security="starttls", auth="login")
    email = outgoing()
    smtp = sender(server, certificate, auth="login", envelope_from="bounces@partner.example.cn")

    message_id = smtp.send(email)

    outbox = FileOutboxSender(tmp_path)
    assert outbox.send(email) == message_id == "<case-T1.2@partner.example.cn>"
    [received] = server.mail.received
    assert (received.mail_from, received.rcpt_tos) == ("bounces@partner.example.cn", [CUSTOMER])
    written = outbox.path_for(email.dedup_key).read_bytes()
    assert without_date(received.content) == without_date(written)
    parsed = message_from_bytes(received.content, policy=policy.default)
    assert parsed["Message-ID"] == message_id
    assert parsed["In-Reply-To"] == email.in_reply_to
    assert parsed["References"] == email.references
    assert parsed["Reply-To"] == email.reply_to
    assert parsed["X-Dedup-Key"] == email.dedup_key
    assert (
        str(parsed["Subject"]) == email.subject == "[案例 BC-20250303-0042] 我们已收到您的账单问题"
    )
    assert parsed["From"].addresses[0].display_name == "账单支持 Billing Support"
    assert server.mail.logins == [f"LOGIN {USER}"]


def test_a_chinese_mailbox_name_goes_with_smtputf8(
    smtp_server: Start, certificate: SelfSignedCertificate
) -> None:
    server = smtp_server()
    sender(server, certificate).send(outgoing(to="财务@customer.example.cn"))

    [received] = server.mail.received
    assert received.rcpt_tos == ["财务@customer.example.cn"] and received.smtputf8


# --------------------------------------------------------------------------- its answers


def test_a_refused_address_is_final(smtp_server: Start, certificate: SelfSignedCertificate) -> None:
    server = smtp_server()
    server.mail.refuse(CUSTOMER, "550 5.1.1 <finance@customer.example.cn>: no such user")

    with pytest.raises(EmailRejected, match=r"550 5\.1\.1"):
        sender(server, certificate).send(outgoing())
    assert server.mail.received == [] and server.mail.data_commands == 0


@pytest.mark.parametrize(
    "answer",
    ["554 5.7.1 message refused as spam", "552 5.3.4 message too big for system"],
)
def test_a_refused_message_is_final(
    smtp_server: Start, certificate: SelfSignedCertificate, answer: str
) -> None:
    server = smtp_server()
    server.mail.after_data(answer)

    with pytest.raises(EmailRejected, match=answer[:9]):
        sender(server, certificate).send(outgoing())
    assert server.mail.received == []


@pytest.mark.parametrize(
    ("rcpt", "after_data"),
    [
        ("451 4.3.0 mailbox temporarily unavailable", None),
        (None, "451 4.7.1 try again later"),
        (None, "421 4.7.0 too many messages from you, closing"),
        (None, "452 4.5.3 too many recipients this hour"),
        # a limit in a 5xx's words: the sending is refused for now, not this email
        (None, "550 5.7.1 sending frequency limit exceeded"),
        (None, DROP_LOST),  # the connection dropped after DATA
    ],
)
def test_a_passing_trouble_is_retried(
    smtp_server: Start, certificate: SelfSignedCertificate, rcpt: str | None, after_data: str | None
) -> None:
    server = smtp_server()
    if rcpt:
        server.mail.refuse(CUSTOMER, rcpt)
    if after_data:
        server.mail.after_data(after_data)
    smtp = sender(server, certificate)

    with pytest.raises(EmailDeliveryError):
        smtp.send(outgoing())
    server.mail.refused.clear()
    smtp.send(outgoing())  # once it has passed

    assert server.mail.keys() == ["case-T1/run/case_acknowledged"]


def test_no_server_is_retried(smtp_server: Start, certificate: SelfSignedCertificate) -> None:
    server = smtp_server()
    server.stop()
    with pytest.raises(EmailDeliveryError, match="ConnectionRefusedError"):
        sender(server, certificate).send(outgoing())


def test_a_conversation_that_drags_on_is_cut(
    smtp_server: Start, certificate: SelfSignedCertificate
) -> None:
    """Each answer within the socket's timeout, the whole beyond the sender's: cut, not sent."""
    server = smtp_server()
    server.mail.pause = 0.4  # before each answer to MAIL, RCPT and DATA

    with pytest.raises(EmailDeliveryError):
        sender(server, certificate, timeout=1.0).send(outgoing())
    assert server.mail.received == []


# --------------------------------------------------------------------------- TLS and sign-in


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("auth", ["login", "xoauth2"])
def test_tls_and_sign_in(
    smtp_server: Start, certificate: SelfSignedCertificate, security: str, auth: str
) -> None:
    server = smtp_server(security=security, auth=auth)
    tokens: list[str] = []

    def token() -> str:
        tokens.append(TOKEN)
        return TOKEN

    smtp = sender(server, certificate, auth=auth, token=token)
    smtp.send(outgoing())
    smtp.send(outgoing("case-T1/run/case_resolved"))

    assert len(server.mail.received) == 2
    assert server.mail.logins == [f"{auth.upper()} {USER}"] * 2
    assert len(tokens) == (2 if auth == "xoauth2" else 0)  # a fresh token each time


@pytest.mark.parametrize("auth", ["login", "xoauth2"])
def test_a_refused_sign_in_is_retried(
    smtp_server: Start, certificate: SelfSignedCertificate, auth: str
) -> None:
    """A wrong password or token is our configuration, not the email's: retried once fixed."""
    server = smtp_server(security="starttls", auth=auth)
    smtp = sender(server, certificate, auth=auth, password="wrong", token=lambda: "expired")

    with pytest.raises(EmailDeliveryError, match="535"):
        smtp.send(outgoing())
    assert server.mail.received == []


def test_starttls_is_never_skipped(smtp_server: Start, certificate: SelfSignedCertificate) -> None:
    plain = smtp_server()  # offers no STARTTLS
    with pytest.raises(EmailDeliveryError, match="does not offer STARTTLS"):
        sender(plain, certificate, security="starttls").send(outgoing())

    tls = smtp_server(security="starttls")
    untrusting = sender(tls, certificate, tls_context=None)  # the system's CAs only
    with pytest.raises(EmailDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.send(outgoing())
    assert plain.mail.received == tls.mail.received == []


# --------------------------------------------------------------------------- the rate limit


def test_the_rate_limit_waits_its_turn(
    smtp_server: Start, certificate: SelfSignedCertificate
) -> None:
    now = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    rate = SendingRate(3, max_wait=20.0, clock=lambda: now[0], sleep=sleep)
    server = smtp_server()
    smtp = sender(server, certificate, rate=rate)

    for n in range(3):  # three in the minute: none waits
        smtp.send(outgoing(f"k/{n}"))
        now[0] += 5
    assert waits == []
    now[0] = 1045.0  # the 4th turn is 60 s after the 1st: 15 s away, within the bound
    smtp.send(outgoing("k/3"))
    assert waits == [15.0] and now[0] == 1060.0
    # the last minute's three (1005, 1010, 1060) put the next turn at 1065: beyond a 4 s bound
    rate.max_wait = 4.0
    with pytest.raises(EmailDeliveryError, match="SMTP_MAX_PER_MINUTE=3"):
        smtp.send(outgoing("k/4"))
    assert waits == [15.0] and len(server.mail.received) == 4


def test_sends_arriving_at_once_book_turns_of_their_own() -> None:
    """Five threads at the same instant, two a minute: each waits for a turn no other took."""
    waits: list[float] = []
    rate = SendingRate(2, max_wait=200.0, clock=lambda: 0.0, sleep=waits.append)

    for _ in range(5):
        rate.wait_turn()

    assert waits == [60.0, 60.0, 120.0]  # turns at 0, 0, 60, 60, 120


# --------------------------------------------------------------------------- the activity


def test_a_bounce_is_recorded_once_and_not_sent_again(
    session_factory: sessionmaker[Session], smtp_server: Start, certificate: SelfSignedCertificate
) -> None:
    server = smtp_server()
    email = message()
    server.mail.refuse(str(email.to), "550 5.1.1 no such user")
    activities = email_activities(session_factory, sender(server, certificate))

    for _ in range(2):
        with pytest.raises(ApplicationError) as raised:
            send(activities, email)
        assert raised.value.type == "EmailRejected" and raised.value.non_retryable

    row = log_row(session_factory)
    assert (row.status, row.attempts, row.processor) == ("rejected", 1, "smtp")
    assert row.error is not None and "550 5.1.1" in row.error


@pytest.mark.parametrize("drop", [DROP_LOST, DROP_KEPT])
def test_a_drop_after_data_is_retried(
    session_factory: sessionmaker[Session],
    smtp_server: Start,
    certificate: SelfSignedCertificate,
    drop: str,
) -> None:
    """Retried, and sent once in the email log. The customer gets it once, unless the server had
    kept it before the connection dropped: then twice (the accept-then-crash window)."""
    server = smtp_server()
    server.mail.after_data(drop)
    activities = email_activities(session_factory, sender(server, certificate))

    with pytest.raises(ApplicationError) as raised:
        send(activities, message())
    assert raised.value.type == "EmailDeliveryError" and not raised.value.non_retryable
    sent = send(activities, message())
    assert send(activities, message()).duplicate  # from the log: not sent again

    row = log_row(session_factory)
    assert (row.status, row.attempts, row.provider_message_id) == (
        "sent",
        2,
        sent.provider_message_id,
    )
    assert server.mail.keys() == [message().key] * (2 if drop == DROP_KEPT else 1)


# --------------------------------------------------------------------------- Postfix


async def test_postfix_delivers_the_outboxs_bytes(
    postfix: Postfix, certificate: SelfSignedCertificate, tmp_path: Path
) -> None:
    smtp = SmtpSender(
        HOST,
        postfix.port,
        security="starttls",
        auth="none",
        tls_context=certificate.client_context(),
    )
    email, chinese = outgoing(), outgoing("case-T2/run/case_acknowledged", f"财务@{DOMAIN}")

    smtp.send(email)
    smtp.send(chinese)
    with pytest.raises(EmailRejected, match=r"550 5\.1\.1"):
        smtp.send(outgoing("case-T3/run/case_acknowledged", REFUSED))

    await eventually(lambda: len(postfix.delivered()) == 2, "Postfix delivered both")
    outbox = FileOutboxSender(tmp_path)
    for delivered in postfix.delivered():
        # Postfix's trace headers (Return-Path, Delivered-To, Received) come first
        ours = delivered[delivered.index(b"Message-ID: ") :].replace(b"\n", b"\r\n")
        sent = chinese if b"X-Dedup-Key: case-T2" in ours else email
        outbox.send(sent)
        assert without_date(ours) == without_date(outbox.path_for(sent.dedup_key).read_bytes())
        assert b"using TLS" in delivered[: delivered.index(b"Message-ID: ")]  # by STARTTLS


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SMTP_HOST is required when EMAIL_BACKEND=smtp"),
        ({"SMTP_HOST": "smtp.exmail.qq.com:465"}, "smtp_host"),
        ({"SMTP_HOST": "smtps://smtp.exmail.qq.com"}, "smtp_host"),
        ({"SMTP_HOST": "smtp.exmail.qq.com"}, "SMTP_USERNAME is required when SMTP_AUTH=login"),
        (
            {"SMTP_HOST": "smtp.partner.outlook.cn", "SMTP_AUTH": "xoauth2"},
            "M365_TENANT_ID, M365_CLIENT_ID, M365_CLIENT_SECRET are required when SMTP_AUTH=xo",
        ),
        ({"SMTP_HOST": "h", "SMTP_USERNAME": "u"}, "SMTP_PASSWORD is required"),
        (
            {"SMTP_HOST": "h", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p", "SMTP_SECURITY": "none"},
            "the password would go in clear",
        ),
        (
            {"SMTP_HOST": "h", "SMTP_AUTH": "xoauth2", "SMTP_SECURITY": "none", **M365},
            "the token would go in clear",
        ),
        ({"SMTP_HOST": "h", "SMTP_AUTH": "none", "SMTP_SECURITY": "ssl"}, "smtp_security"),
        ({"SMTP_HOST": "h", "SMTP_AUTH": "none", "SMTP_TIMEOUT_SECONDS": "90"}, "smtp_timeout"),
        ({"SMTP_HOST": "h", "SMTP_AUTH": "none", "SMTP_MAX_PER_MINUTE": "-1"}, "smtp_max_per"),
    ],
)
def test_smtp_settings_name_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_smtp_settings_build_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(**env: str) -> Settings:
        for name, value in {"EMAIL_BACKEND": "smtp", **env}.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    exmail = settings(
        SMTP_HOST="smtp.exmail.qq.com",
        SMTP_SECURITY="tls",
        SMTP_USERNAME=USER,
        SMTP_PASSWORD=PASSWORD,
        SMTP_MAX_PER_MINUTE="30",
    )
    smtp = build_sender(exmail)
    assert isinstance(smtp, SmtpSender) and smtp.port == 465 and smtp.security == "tls"
    assert smtp.rate is not None and smtp.rate.per_minute == 30
    assert smtp.envelope_from == str(exmail.email_from) and PASSWORD not in repr(smtp)
    assert not exmail.case_policy().told_when_delivered  # SMTP reports no delivery later
    # XOAUTH2: the Microsoft 365 app's token, the shared mailbox as the user (a new environment:
    # the Exmail one's password and TLS would carry over)
    for name in ("SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_MAX_PER_MINUTE"):
        monkeypatch.delenv(name)
    m365 = settings(SMTP_HOST="smtp.partner.outlook.cn", SMTP_AUTH="xoauth2", **M365)
    assert m365.smtp_port is None and m365.smtp_security == "starttls"  # 587 by default
    smtp = build_sender(m365)
    assert isinstance(smtp, SmtpSender) and smtp.username == str(m365.email_from)


def test_xoauth2_signs_in_with_the_microsoft_365_apps_token(
    smtp_server: Start, certificate: SelfSignedCertificate
) -> None:
    """The token from Azure AD's client credentials grant (the Graph stand-in's token endpoint),
    asked for M365_MAIL_SCOPE, fetched once and used for each conversation."""
    server = smtp_server(security="starttls", auth="xoauth2")
    with GraphStandIn() as graph:
        server.mail.token_valid = lambda token: token in graph.issued_tokens
        settings = Settings(
            email_backend=EmailBackend.SMTP,
            smtp_host=HOST,
            smtp_port=server.port,
            smtp_auth="xoauth2",
            m365_mail_scope=GRAPH_SCOPE,  # the scope the stand-in grants
            m365_tenant_id=TENANT_ID,
            m365_client_id=CLIENT_ID,
            m365_client_secret=SecretStr(CLIENT_SECRET),
            m365_authority=graph.url,
            m365_mailbox=MAILBOX,
        )
        smtp = build_sender(settings)
        assert isinstance(smtp, SmtpSender)
        smtp.tls_context = certificate.client_context()
        smtp.send(outgoing())
        smtp.send(outgoing("case-T1/run/case_resolved"))

        wrong = settings.model_copy(update={"m365_client_secret": SecretStr("not-the-secret")})
        refused = build_sender(wrong)
        assert isinstance(refused, SmtpSender)
        refused.tls_context = certificate.client_context()
        with pytest.raises(EmailDeliveryError, match="no XOAUTH2 token"):
            refused.send(outgoing("case-T1/run/case_closed"))

        assert len(graph.token_requests) == 2  # one for each app: the first one's is cached
    assert server.mail.logins == [f"XOAUTH2 {MAILBOX}"] * 2
    assert len(server.mail.received) == 2


# --------------------------------------------------------------------------- the real worker


def smtp_settings(directory: Path, server: SmtpServer) -> Settings:
    settings = Settings(
        database_url=f"sqlite:///{directory / 'billing.db'}",
        outbox_dir=directory / "outbox",
        task_queue=f"smtp-{uuid.uuid4()}",
        email_backend=EmailBackend.SMTP,
        smtp_host=HOST,
        smtp_port=server.port,
        smtp_security="none",
        smtp_auth="none",
    )
    upgrade(settings.database_url)
    return settings


async def case_view(client: Client, case_id: str) -> CaseView:
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, case_workflow_id(case_id))
    return await handle.query(BillingCaseWorkflow.view)


async def test_the_worker_sends_over_smtp_once_and_a_bounce_reaches_the_case(
    dev_env: WorkflowEnvironment, tmp_path: Path, smtp_server: Start
) -> None:
    client = dev_env.client
    server = smtp_server()
    server.mail.after_data(DROP_LOST)  # the first email's connection drops after DATA
    server.mail.refuse("nobody@bounce.example.cn", "550 5.1.1 no such user here")
    settings = smtp_settings(tmp_path, server)
    assert isinstance(build_sender(settings), SmtpSender)
    sent_case = open_case()
    bounced_case = open_case()
    customer = bounced_case.details.customer.model_copy(
        update={"email": "nobody@bounce.example.cn"}
    )
    bounced_case = bounced_case.model_copy(
        update={"details": bounced_case.details.model_copy(update={"customer": customer})}
    )

    def emailed(view: CaseView, kind: EventKind, template: EmailTemplate) -> int:
        return sum(
            e.kind is kind and template.value in (e.data.get("template"), e.text)
            for e in view.timeline
        )

    async with build_worker(client, settings):
        cases = Service(client, settings).cases
        await cases.open(sent_case)

        await eventually(
            lambda: len(server.mail.received) == 2, "the case's two emails", seconds=60
        )
        await cases.open(bounced_case)

        async def bounced() -> bool:
            view = await case_view(client, bounced_case.case_id)
            told = EmailTemplate.OWNER_EMAIL_BOUNCED
            return (
                emailed(view, EventKind.EMAIL_BOUNCED, EmailTemplate.CASE_ACKNOWLEDGED) == 1
                and emailed(view, EventKind.EMAIL_SENT, told) == 1
            )

        await eventually(bounced, "the bounce reached the case, its owner told", seconds=60)

    with one_off_session(settings.database_url) as session:
        rows = {
            row.dedup_key: (row.status, row.attempts) for row in session.scalars(select(EmailLog))
        }
    keys = server.mail.keys()
    assert len(keys) == len(set(keys)) == 4  # two of each case, each once (the bounce never)
    assert {key: status for key, (status, _) in rows.items() if status == "sent"} == dict.fromkeys(
        keys, "sent"
    )
    assert sorted(attempts for status, attempts in rows.values() if status == "sent") == [
        1,
        1,
        1,
        2,
    ]
    assert [status for status, _ in rows.values()].count("rejected") == 1
    assert server.mail.data_commands == 5  # the dropped one, then the four

"""Microsoft 365 through Graph: the sender and the mailbox reader against a stand-in that checks
the requests as Graph documents them (tests/graph_standin.py); one reply end to end."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage as EmailMessageFile
from email.parser import BytesParser
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.graph import GraphSender
from activities.senders import EmailDeliveryError, EmailRejected, OutgoingEmail
from core.azure_ad import ClientCredentials
from core.graph import GraphClient
from core.settings import EmailBackend, Settings, SettingsError, load_settings
from intake import mailbox
from intake.graph import GraphMailbox, graph_mailbox
from intake.mailbox import MailboxUnavailable, TryLater
from service import Service
from service.inbound import Outcome
from tests.graph_standin import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    SCOPE,
    TENANT_ID,
    GraphStandIn,
    Recorded,
)
from tests.test_email_activity import email_activities, log_row, message, send
from tests.test_inbound import (
    last_email,
    reply_to,
    resolved_case,
    running_fixture,  # noqa: F401  (pytest fixture "running")
    service_fixture,  # noqa: F401  (pytest fixture "service")
)
from worker import build_sender

SUBJECT = "回复：您的账单问题已解决 [BC-20261207-0042]"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="graph")
def graph_fixture() -> Iterator[GraphStandIn]:
    with GraphStandIn() as standin:
        yield standin


def client(standin: GraphStandIn, secret: str = CLIENT_SECRET, url: str = "") -> GraphClient:
    credentials = ClientCredentials(
        TENANT_ID, CLIENT_ID, secret, scope=SCOPE, authority=standin.url
    )
    return GraphClient(credentials, MAILBOX, base_url=url or standin.url)


def outgoing(key: str = "BC-20261207-0042/case_resolved/1") -> OutgoingEmail:
    return OutgoingEmail(
        dedup_key=key,
        to="finance@yunfan.example.cn",
        from_address=MAILBOX,
        from_name="账单支持",
        subject=SUBJECT,
        text="您好，问题已解决。",
        html="<p>您好，问题已解决。</p>",
        category="case_resolved",
        message_id="<case-BC-20261207-0042.3@partner.example.cn>",
        in_reply_to="<customer-1@qq.com>",
        references="<case-BC-20261207-0042.1@partner.example.cn> <customer-1@qq.com>",
        reply_to="billing-support+t0k3n@reply.partner.example.cn",
    )


def parsed(raw: bytes) -> EmailMessageFile:
    message_ = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message_, EmailMessageFile)
    return message_


def eml(subject: str, message_id: str) -> bytes:
    return (
        f"From: finance@yunfan.example.cn\r\nTo: {MAILBOX}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n\r\nhello\r\n"
    ).encode()


# --------------------------------------------------------------------------- sending


def test_sendmail_posts_our_mime_as_the_shared_mailbox(graph: GraphStandIn) -> None:
    sender = GraphSender(client(graph))
    email = outgoing()

    assert sender.send(email) == email.message_id
    sender.send(outgoing("another/key"))

    token, *others = graph.token_requests
    assert token.method == "POST" and token.path == f"/{TENANT_ID}/oauth2/v2.0/token"
    form = token.body.decode()
    assert "grant_type=client_credentials" in form and f"client_id={CLIENT_ID}" in form
    assert "scope=https%3A%2F%2Fmicrosoftgraph.chinacloudapi.cn%2F.default" in form
    assert others == []  # the token is cached
    first = graph.graph_requests[0]
    assert (first.method, first.path, first.status) == (
        "POST",
        f"/v1.0/users/{MAILBOX}/sendMail",
        202,
    )
    assert first.headers["Content-Type"] == "text/plain"
    assert first.headers["Authorization"] == f"Bearer {graph.issued_tokens[0]}"
    sent = parsed(base64.b64decode(first.body))
    assert sent["Message-ID"] == email.message_id
    assert sent["In-Reply-To"] == email.in_reply_to
    assert sent["References"] == email.references
    assert sent["Reply-To"] == email.reply_to
    assert sent["Subject"] == SUBJECT and str(sent["From"]) == f"账单支持 <{MAILBOX}>"
    body = sent.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "您好，问题已解决。"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, EmailRejected),
        (413, EmailRejected),
        (401, EmailDeliveryError),  # twice: with the cached token, then a new one
        (403, EmailDeliveryError),
        (404, EmailDeliveryError),  # the mailbox (M365_MAILBOX), not the email
        (429, EmailDeliveryError),
        (500, EmailDeliveryError),
        (503, EmailDeliveryError),
    ],
)
def test_sendmail_answers_are_permanent_or_transient(
    graph: GraphStandIn, status: int, error: type[Exception]
) -> None:
    sender = GraphSender(client(graph))
    sender.send(outgoing())  # a cached token
    graph.fail_next(status, times=2 if status == 401 else 1)

    with pytest.raises(error, match=f"HTTP {status}"):
        sender.send(outgoing())
    assert len(graph.token_requests) == (2 if status == 401 else 1)
    assert sender.send(outgoing()) == outgoing().message_id  # the next attempt goes through


def test_throttling_keeps_graphs_retry_after_for_temporal(
    graph: GraphStandIn, session_factory: sessionmaker[Session]
) -> None:
    graph.fail_next(429, retry_after="7")
    with pytest.raises(EmailDeliveryError) as caught:
        GraphSender(client(graph)).send(outgoing())
    assert caught.value.retry_after == 7.0

    graph.fail_next(429, retry_after="12")
    activities = email_activities(session_factory, GraphSender(client(graph)))
    with pytest.raises(ApplicationError) as raised:
        send(activities, message())
    assert raised.value.type == "EmailDeliveryError" and not raised.value.non_retryable
    assert raised.value.next_retry_delay == timedelta(seconds=12)
    assert send(activities, message()).provider_message_id.endswith("@partner.example.cn>")
    assert log_row(session_factory).status == "sent"


def test_no_answer_and_a_refused_sign_in_are_transient_and_keep_the_secret(
    graph: GraphStandIn,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(EmailDeliveryError, match="no answer"):
        GraphSender(client(graph, url=closed)).send(outgoing())

    wrong = "wrong-secret~that-must-not-show"
    with pytest.raises(EmailDeliveryError) as caught:
        GraphSender(client(graph, secret=wrong)).send(outgoing())
    assert f"token for app {CLIENT_ID}: HTTP 401 invalid_client" in str(caught.value)
    assert wrong not in str(caught.value) and graph.graph_requests == []


def test_the_graph_backend_needs_its_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("EMAIL_BACKEND", "graph")
    monkeypatch.setenv("M365_TENANT_ID", TENANT_ID)
    with pytest.raises(SettingsError, match="M365_CLIENT_ID, M365_CLIENT_SECRET are required"):
        load_settings()
    reading = "M365_CLIENT_ID, M365_CLIENT_SECRET are required when reading mail with Graph"
    with pytest.raises(SettingsError, match=reading):
        graph_mailbox(Settings(email_backend=EmailBackend.OUTBOX))
    monkeypatch.setenv("M365_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("M365_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("GRAPH_URL", "microsoftgraph.chinacloudapi.cn")
    with pytest.raises(SettingsError, match=r"graph_url: .* is not a URL"):
        load_settings()
    monkeypatch.delenv("GRAPH_URL")

    settings = load_settings()
    sender = build_sender(settings)
    assert isinstance(sender, GraphSender) and sender.name == "graph" and not sender.idempotent
    assert sender.client.url("/sendMail") == (
        f"https://microsoftgraph.chinacloudapi.cn/v1.0/users/{MAILBOX}/sendMail"
    )
    credentials = sender.client.credentials
    assert credentials.token_url == f"https://login.chinacloudapi.cn/{TENANT_ID}/oauth2/v2.0/token"
    assert credentials.scope == SCOPE and CLIENT_SECRET not in repr(sender)


# --------------------------------------------------------------------------- reading


def reader(standin: GraphStandIn, state: Path, clock: Clock | None = None) -> GraphMailbox:
    return GraphMailbox(client(standin), state, clock=clock or Clock())


async def test_new_mail_comes_by_the_delta_query_and_moves_when_set_aside(
    graph: GraphStandIn, tmp_path: Path
) -> None:
    raws = [eml(f"账单 {n}", f"<m{n}@qq.com>") for n in range(5)]
    for raw in raws:
        graph.deliver(raw)
    inbox = reader(graph, tmp_path / "delta.json")

    found = await inbox.new()
    assert [m.raw for m in found] == raws  # oldest first, across three pages
    deltas = [r for r in graph.graph_requests if r.path.endswith("/messages/delta")]
    assert [r.path for r in deltas] == [
        f"/v1.0/users/{MAILBOX}/mailFolders/inbox/messages/delta"
    ] * 3
    assert deltas[0].query == {"$select": "id,receivedDateTime"}
    assert "$skiptoken" in deltas[1].query and "$skiptoken" in deltas[2].query
    assert all(r.headers["Prefer"] == "odata.maxpagesize=50" for r in deltas)
    values = [r for r in graph.graph_requests if r.path.endswith("/$value")]
    assert [r.path for r in values] == [
        f"/v1.0/users/{MAILBOX}/messages/{m.key}/$value" for m in found
    ]
    assert not (tmp_path / "delta.json").exists()  # not before every message is set aside

    for m in found[:4]:
        await inbox.done(m)
    await inbox.failed(found[4], "email: something specific")
    assert [graph.folder_of(raw) for raw in raws] == ["Processed"] * 4 + ["Failed"]
    folders = [r for r in graph.graph_requests if r.path == f"/v1.0/users/{MAILBOX}/mailFolders"]
    assert [(r.method, r.status) for r in folders] == [("GET", 200), ("POST", 201)] * 2
    assert folders[0].query["$filter"] == "displayName eq 'Processed'"
    assert [r.json() for r in folders if r.method == "POST"] == [
        {"displayName": "Processed"},
        {"displayName": "Failed"},
    ]
    moves = [r for r in graph.graph_requests if r.path.endswith("/move")]
    assert [r.path for r in moves] == [
        f"/v1.0/users/{MAILBOX}/messages/{m.key}/move" for m in found
    ]
    assert [r.json()["destinationId"] for r in moves] == [graph.folder_id("Processed")] * 4 + [
        graph.folder_id("Failed")
    ]
    assert "$deltatoken=" in (tmp_path / "delta.json").read_text()

    later = eml("又一封", "<m9@qq.com>")
    graph.deliver(later)
    again = await inbox.new()  # from the delta link; the moved ones come back @removed: ignored
    assert [m.raw for m in again] == [later]
    assert "$deltatoken" in deltas_of(graph)[3].query
    assert len(folders) == 4  # the folders' ids are kept
    await inbox.close()


def deltas_of(graph: GraphStandIn) -> list[Recorded]:
    return [r for r in graph.graph_requests if r.path.endswith("/messages/delta")]


async def test_a_restart_resumes_from_the_stored_delta_link(
    graph: GraphStandIn, tmp_path: Path
) -> None:
    state = tmp_path / "delta.json"
    first = reader(graph, state)
    graph.deliver(eml("一", "<a@qq.com>"))
    for m in await first.new():
        await first.done(m)
    unsettled = eml("二", "<b@qq.com>")
    graph.deliver(unsettled)
    assert [m.raw for m in await first.new()] == [unsettled]  # then the process dies

    second = reader(graph, state)
    again = await second.new()  # from the link stored after the first round, not a newer one
    assert [m.raw for m in again] == [unsettled]
    assert "$deltatoken" in deltas_of(graph)[-1].query
    await second.done(again[0])
    third = reader(graph, state)
    assert await third.new() == []
    assert graph.inbox() == []


async def test_a_receive_that_waits_leaves_the_message_for_the_next_look(
    graph: GraphStandIn, tmp_path: Path
) -> None:
    raw = eml("稍后", "<later@qq.com>")
    graph.deliver(raw)
    inbox = reader(graph, tmp_path / "delta.json")

    async def later(raw: bytes) -> str:
        raise TryLater("Temporal is unavailable")

    async def taken(raw: bytes) -> str:
        return "confirmed"

    assert await mailbox.take(inbox, later) == []
    assert [m.raw for m in await inbox.new()] == [raw]
    assert [outcome for _, outcome in await mailbox.take(inbox, taken)] == ["confirmed"]
    assert graph.folder_of(raw) == "Processed"


async def test_throttling_waits_out_retry_after_and_outages_are_unavailable(
    graph: GraphStandIn, tmp_path: Path
) -> None:
    clock = Clock()
    inbox = reader(graph, tmp_path / "delta.json", clock)
    graph.fail_next(429, retry_after="30")
    with pytest.raises(MailboxUnavailable, match="HTTP 429"):
        await inbox.new()
    calls = len(graph.requests)
    clock.now += 29
    with pytest.raises(MailboxUnavailable, match="quiet"):
        await inbox.new()
    assert len(graph.requests) == calls  # Graph is not asked before its Retry-After
    clock.now += 2
    assert await inbox.new() == []

    graph.fail_next(503)
    with pytest.raises(MailboxUnavailable, match="HTTP 503"):
        await inbox.new()
    assert await inbox.new() == []


async def test_without_the_delta_query_the_inbox_is_listed_oldest_first(
    graph: GraphStandIn, tmp_path: Path
) -> None:
    graph.delta_unsupported = True
    raws = [eml(f"列 {n}", f"<l{n}@qq.com>") for n in range(3)]
    for raw in raws:
        graph.deliver(raw)
    inbox = reader(graph, tmp_path / "delta.json")

    found = await inbox.new()
    assert [m.raw for m in found] == raws
    listing = [r for r in graph.graph_requests if r.path.endswith("/mailFolders/inbox/messages")]
    assert listing[0].query == {
        "$select": "id,receivedDateTime",
        "$orderby": "receivedDateTime asc",
        "$top": "50",
    }
    for m in found:
        await inbox.done(m)
    assert await inbox.new() == [] and len(deltas_of(graph)) == 1  # asked once


async def test_an_expired_delta_link_reads_the_inbox_whole(
    graph: GraphStandIn, tmp_path: Path
) -> None:
    inbox = reader(graph, tmp_path / "delta.json")
    assert await inbox.new() == []
    waiting = eml("久等", "<w@qq.com>")
    graph.deliver(waiting)
    graph.expire_delta_links()
    assert [m.raw for m in await inbox.new()] == [waiting]
    assert [r.status for r in deltas_of(graph)][-2:] == [410, 200]


# --------------------------------------------------------------------------- end to end


async def test_a_reply_in_the_shared_mailbox_moves_its_case(
    graph: GraphStandIn, service: Service, running: Settings, tmp_path: Path
) -> None:
    case_id = await resolved_case(service)
    reply = reply_to(await last_email(running, "case_resolved"), "确认，谢谢！")
    graph.deliver(reply)
    settings = running.model_copy(
        update={
            "m365_tenant_id": TENANT_ID,
            "m365_client_id": CLIENT_ID,
            "m365_client_secret": SecretStr(CLIENT_SECRET),
            "m365_authority": graph.url,
            "graph_url": graph.url,
            "m365_mailbox": MAILBOX,
            "graph_delta_file": tmp_path / "graph-delta.json",
        }
    )
    inbox = graph_mailbox(settings)

    async def receive(raw: bytes) -> str:
        return (await service.inbound.receive(raw)).outcome.value

    taken = await mailbox.take(inbox, receive)
    assert [outcome for _, outcome in taken] == [Outcome.CONFIRMED.value]
    view = await service.cases.show(case_id)
    assert view.status.value == "closed"
    assert graph.folder_of(reply) == "Processed" and graph.inbox() == []
    assert await mailbox.take(inbox, receive) == []
    await inbox.close()

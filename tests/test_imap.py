"""The shared mailbox over IMAP (`INBOUND_BACKEND=imap`) against a real Dovecot started here
(tests/dovecot.py): customers' replies in the charsets Chinese clients write, each moved out of
the inbox only once the inbound service has taken it, set aside with its reason, read again after
a crash and acted on once, woken by IDLE, and carried across a restart of the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr, ValidationError
from temporalio.testing import WorkflowEnvironment

from core.models import CaseStatus, EventKind
from core.settings import ImapSecurity, InboundBackend, Settings
from intake import mailbox
from intake.drop_folder import FolderMailbox
from intake.imap import ImapMailbox, folder_name
from intake.mailbox import MailboxUnavailable, TryLater
from intake.mailboxes import mailbox_for
from service import Service
from tests.clock_support import eventually
from tests.dovecot import DOVECOT, MISSING, Dovecot, free_port
from tests.test_inbound import (  # noqa: F401  (pytest fixtures running, service)
    THREAD_SECRET,
    last_email,
    open_case,
    reply_to,
    resolved_case,
    running_fixture,
    service_fixture,
)
from tests.test_inbound_mail import OURS as OUR_ADDRESS
from tests.test_inbound_mail import QUOTED, TRADITIONAL, raw_email

ROOT = Path(__file__).resolve().parent.parent
Receive = Callable[[bytes], Awaitable[str]]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if not DOVECOT.exists():
        pytest.skip(MISSING)
    with Dovecot() as server:
        yield server


@dataclass
class Account:
    """A mailbox of its own on the server, and a person's view of it."""

    server: Dovecot
    user: str
    password: str

    def append(self, raw: bytes) -> None:
        self.server.append(self.user, self.password, raw)

    def messages(self, folder: str = "INBOX") -> list[tuple[bytes, str]]:
        return self.server.messages(self.user, self.password, folder)

    def mailbox(self, security: ImapSecurity = ImapSecurity.TLS, **options: Any) -> ImapMailbox:
        port = self.server.tls_port if security is ImapSecurity.TLS else self.server.port
        return ImapMailbox(
            "127.0.0.1",
            port,
            security=security,
            username=self.user,
            password=self.password,
            ssl_context=self.server.ssl_context(),
            **options,
        )


@pytest.fixture
def account(dovecot: Dovecot) -> Account:
    return Account(dovecot, *dovecot.account())


@pytest_asyncio.fixture
async def reader(account: Account) -> AsyncIterator[ImapMailbox]:
    imap = account.mailbox()
    yield imap
    await imap.close()


def note(n: int, text: str = "发票号 G000123456") -> bytes:
    return (
        f"From: finance@yunfan.example.cn\r\nSubject: n{n}\r\nMessage-ID: <n{n}-{uuid.uuid4()}@x>"
        f"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text} {n}\r\n"
    ).encode()


def subjects(messages: list[tuple[bytes, str]]) -> list[str]:
    return [
        str(BytesParser(policy=policy.default).parsebytes(raw)["Subject"]) for raw, _ in messages
    ]


def service_receive(service: Service) -> Receive:
    """What `mail watch` hands the loop: the service's receive, its outcome as text."""

    async def receive(raw: bytes) -> str:
        received = await service.inbound.receive(raw)
        return received.outcome.value + (" (again)" if received.duplicate else "")

    return receive


# ---------------------------------------------------------------------- through the service


@pytest.mark.parametrize("security", [ImapSecurity.TLS, ImapSecurity.STARTTLS])
async def test_gbk_gb18030_and_big5_replies_reach_their_cases_and_move_once_taken(
    service: Service, running: Settings, account: Account, security: ImapSecurity
) -> None:
    cases = {charset: await open_case(service) for charset in ("gbk", "gb18030", "big5")}
    for charset, case_id in cases.items():
        sent = await last_email(running, "case_acknowledged", case_id)
        text = TRADITIONAL if charset == "big5" else QUOTED["foxmail"].format(ours=OUR_ADDRESS)
        account.append(
            raw_email(
                text,
                charset,
                "base64",
                to=parseaddr(str(sent["Reply-To"]))[1],
                in_reply_to=str(sent["Message-ID"]),
                message_id=f"<{uuid.uuid4()}@yunfan.example.cn>",
            )
        )
    taken_while_in_inbox = []

    async def receive(raw: bytes) -> str:
        outcome = await service_receive(service)(raw)
        # the service has taken it and nothing has moved it yet
        taken_while_in_inbox.append(raw in [m for m, _ in account.messages()])
        return outcome

    imap = account.mailbox(security)
    try:
        taken = await mailbox.take(imap, receive)
    finally:
        await imap.close()

    assert [outcome for _, outcome in taken] == ["replied"] * 3
    assert taken_while_in_inbox == [True] * 3
    assert account.messages() == [] and len(account.messages("Processed")) == 3
    for charset, case_id in cases.items():
        view = await service.cases.show(case_id)
        replies = [e.text for e in view.timeline if e.kind is EventKind.CUSTOMER_REPLIED]
        assert replies == ["確認" if charset == "big5" else "确认"], charset


async def test_a_crash_between_receive_and_the_move_reads_it_again_and_acts_once(
    service: Service, running: Settings, account: Account
) -> None:
    case_id = await open_case(service)
    account.append(reply_to(await last_email(running, "case_acknowledged", case_id), "收到"))
    receive = service_receive(service)
    crashed = account.mailbox()
    [message] = await crashed.new()
    assert await receive(message.raw) == "replied"
    crashed._imap.protocol.transport.abort()  # gone before the move, as a killed process
    await crashed.close()
    assert len(account.messages()) == 1

    again = account.mailbox()
    try:
        taken = await mailbox.take(again, receive)
    finally:
        await again.close()

    assert taken == [(message.key, "replied (again)")]
    assert account.messages() == [] and len(account.messages("Processed")) == 1
    view = await service.cases.show(case_id)
    assert [e.kind for e in view.timeline].count(EventKind.CUSTOMER_REPLIED) == 1


async def test_mail_watch_reads_the_mailbox_the_settings_name(
    dev_env: WorkflowEnvironment, service: Service, running: Settings, account: Account
) -> None:
    """End to end: `starter.py mail watch` with INBOUND_BACKEND=imap over STARTTLS, a customer's
    confirmation put into the shared mailbox, and the case closes."""
    case_id = await resolved_case(service)
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
        "DATABASE_URL": running.database_url,
        "EMAIL_THREAD_SECRET": THREAD_SECRET,
        "INBOUND_BACKEND": "imap",
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(account.server.port),
        "IMAP_SECURITY": "starttls",
        "IMAP_USERNAME": account.user,
        "IMAP_PASSWORD": account.password,
        "SSL_CERT_FILE": str(account.server.cert),  # the test server's own certificate
    }
    log = running.outbox_dir.parent / "watch.log"
    with log.open("wb") as out:
        watch = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "starter.py", "mail", "watch"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        account.append(reply_to(await last_email(running, "case_resolved", case_id), "确认"))

        async def closed() -> bool:
            return (await service.cases.show(case_id)).status is CaseStatus.CLOSED

        await eventually(closed, "the case closed by the reply", seconds=60)
        await eventually(lambda: len(account.messages("Processed")) == 1, "moved")
    finally:
        watch.send_signal(signal.SIGINT)
        await asyncio.to_thread(watch.wait, 30)
    said = " ".join(log.read_text().split())  # as the terminal's width wrapped it
    assert said.startswith(f"watching the shared mailbox imap://{account.user}@127.0.0.1:"), said
    assert "over IMAP (starttls)" in said


# ---------------------------------------------------------------------- the mailbox alone


async def test_try_later_leaves_it_unseen_and_an_error_sets_it_aside_with_the_reason(
    account: Account, reader: ImapMailbox
) -> None:
    for n in range(2):
        account.append(note(n))

    async def later(raw: bytes) -> str:
        raise TryLater("Temporal is unavailable")

    async def broken(raw: bytes) -> str:
        raise ValueError("email: something specific")

    assert await mailbox.take(reader, later) == []
    inbox = account.messages()
    assert len(inbox) == 2 and not any("\\Seen" in flags for _, flags in inbox)
    assert account.messages("Processed") == account.messages("Failed") == []

    taken = await mailbox.take(reader, broken)
    assert [outcome for _, outcome in taken] == ["failed: email: something specific"] * 2
    assert account.messages() == []
    failed = account.messages("Failed")
    assert sorted(subjects(failed))[:2] == ["n0", "n1"]
    notes = [
        BytesParser(policy=policy.default).parsebytes(raw)
        for raw, _ in failed
        if b"Auto-Submitted: auto-generated" in raw
    ]
    assert len(notes) == 2
    for written in notes:
        assert "原因：email: something specific" in written.get_content()
        assert written["In-Reply-To"].startswith("<n")


@pytest.mark.parametrize("offered", ["IMAP4rev1", "IMAP4rev1 UIDPLUS"])
async def test_without_move_or_idle_it_copies_deletes_and_polls(offered: str) -> None:
    if not DOVECOT.exists():
        pytest.skip(MISSING)
    with Dovecot(capabilities=offered) as server:
        account = Account(server, *server.account())
        for n in range(3):
            account.append(note(n))
        reader = account.mailbox(ImapSecurity.NONE)
        try:
            [first, *rest] = await reader.new()
            assert not reader._imap.has_capability("MOVE")
            await reader.done(first)
            assert subjects(account.messages()) == ["n1", "n2"]
            assert [m.key for m in await reader.new()] == [m.key for m in rest]
            await reader.wait(0.1)  # no IDLE: a sleep
            taken = await mailbox.take(reader, lambda raw: asyncio.sleep(0, "ok"))
        finally:
            await reader.close()
        assert [outcome for _, outcome in taken] == ["ok", "ok"]
        assert account.messages() == []
        assert subjects(account.messages("Processed")) == ["n0", "n1", "n2"]


async def test_a_look_is_a_bounded_batch_oldest_first(account: Account) -> None:
    for n in range(5):
        account.append(note(n))
    reader = account.mailbox(batch=2)
    try:
        first = await reader.new()
        for message in first:
            await reader.done(message)
        second = await reader.new()
    finally:
        await reader.close()
    assert [m.raw.split(b"Subject: ")[1][:2] for m in first] == [b"n0", b"n1"]
    assert [m.raw.split(b"Subject: ")[1][:2] for m in second] == [b"n2", b"n3"]


@contextlib.asynccontextmanager
async def watching(
    reader: ImapMailbox, receive: Receive, interval: float
) -> AsyncIterator[list[str]]:
    """The loop `mail watch` runs, on the reader, while the block runs: the keys it reports."""
    reported: list[str] = []
    loop = asyncio.create_task(
        mailbox.watch(reader, receive, lambda key, outcome: reported.append(key), interval)
    )
    try:
        yield reported
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


def idling(reader: ImapMailbox) -> bool:
    return reader._imap is not None and bool(reader._imap.has_pending_idle())


async def test_idle_wakes_the_loop_when_mail_comes(account: Account, reader: ImapMailbox) -> None:
    async def receive(raw: bytes) -> str:
        return "ok"

    # a look every ten minutes: only IDLE can bring the reply in within the test
    async with watching(reader, receive, 600) as reported:
        await eventually(lambda: idling(reader), "idling")
        account.append(note(1))
        await eventually(lambda: len(reported) == 1, "the message taken")
    assert account.messages() == [] and len(account.messages("Processed")) == 1


async def test_the_server_restarted_mid_watch_loses_nothing(
    account: Account, reader: ImapMailbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The server restarts while the loop idles: the mailbox is unavailable, the loop waits and
    connects again. It restarts while a message is being received: the move connects again."""
    received: list[bytes] = []

    async def receive(raw: bytes) -> str:
        received.append(raw)
        if b"n3" in raw:
            await asyncio.to_thread(restart, account.server)
        return "ok"

    caplog.set_level(logging.WARNING, "inbound.mailbox")
    async with watching(reader, receive, 0.5) as reported:
        account.append(note(1))
        await eventually(lambda: len(reported) == 1, "the first message taken")
        await eventually(lambda: idling(reader), "idling")
        await asyncio.to_thread(restart, account.server)
        await eventually(lambda: any("unavailable" in r.message for r in caplog.records))
        account.append(note(2))
        await eventually(lambda: len(reported) == 2, "the second message taken")
        account.append(note(3))
        await eventually(lambda: len(reported) == 3, "the third message taken")
    assert [raw.split(b"Subject: ")[1][:2] for raw in received] == [b"n1", b"n2", b"n3"]
    assert account.messages() == []
    assert subjects(account.messages("Processed")) == ["n1", "n2", "n3"]


def restart(server: Dovecot) -> None:
    server.stop()
    server.start()


async def test_a_refused_sign_in_or_a_server_down_is_the_mailbox_unavailable(
    account: Account,
) -> None:
    wrong = ImapMailbox(
        "127.0.0.1",
        account.server.port,
        security=ImapSecurity.NONE,
        username=account.user,
        password="not-it",
    )
    with pytest.raises(MailboxUnavailable, match="sign-in refused"):
        await wrong.new()
    down = ImapMailbox(
        "127.0.0.1", free_port(), security=ImapSecurity.NONE, username="x", password="y"
    )
    with pytest.raises(MailboxUnavailable, match="ConnectionRefusedError"):
        await down.new()


# ---------------------------------------------------------------------- settings


def test_folder_names_go_in_modified_utf7() -> None:
    # RFC 3501 5.1.3's example, and the processed folder a Chinese team would name
    assert folder_name("台北/日本語") == '"&U,BTFw-/&ZeVnLIqe-"'
    assert folder_name("已处理") == '"&XfJZBHQG-"'
    assert folder_name('A&B "x"') == '"A&-B \\"x\\""'


IMAP: dict[str, Any] = {
    "inbound_backend": "imap",
    "imap_host": "imap.exmail.qq.com",
    "imap_username": "billing@partner.example.cn",
    "imap_password": SecretStr("app-password"),
}


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"imap_host": None}, "IMAP_HOST is required when INBOUND_BACKEND=imap"),
        ({"imap_password": None}, "IMAP_PASSWORD is required"),
        ({"imap_security": "none"}, "IMAP_SECURITY=none only with a server on this machine"),
        ({"imap_processed_folder": "inbox"}, "IMAP_PROCESSED_FOLDER and IMAP_FOLDER must differ"),
        ({"imap_failed_folder": "Processed"}, "IMAP_FAILED_FOLDER and IMAP_PROCESSED_FOLDER"),
        ({"imap_failed_folder": " "}, "IMAP_FAILED_FOLDER: ' ' is not a folder name"),
        ({"imap_security": "ssl"}, "imap_security"),
        ({"imap_poll_seconds": 0}, "imap_poll_seconds"),
    ],
)
def test_imap_settings_are_checked_by_name(changed: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**(IMAP | changed))


def test_the_settings_name_one_mailbox() -> None:
    folder = mailbox_for(Settings())
    assert isinstance(folder.mailbox, FolderMailbox) and "drop folder" in folder.described
    imap = mailbox_for(Settings(**IMAP))
    assert isinstance(imap.mailbox, ImapMailbox) and imap.interval == 1.0
    assert imap.mailbox.name == "imap://billing@partner.example.cn@imap.exmail.qq.com:993/INBOX"
    assert (imap.mailbox.processed, imap.mailbox.failed_folder) == ("Processed", "Failed")
    starttls = mailbox_for(Settings(**IMAP, imap_security="starttls"))
    assert isinstance(starttls.mailbox, ImapMailbox) and starttls.mailbox.port == 143
    assert Settings(**IMAP).inbound_backend is InboundBackend.IMAP
    given = mailbox_for(Settings(**IMAP), Path("elsewhere"))  # a folder given is read
    assert isinstance(given.mailbox, FolderMailbox)

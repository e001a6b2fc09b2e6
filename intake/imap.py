"""A shared mailbox read over IMAP (`INBOUND_BACKEND=imap`): a mailbox of intake/mailbox.py.

Every message in the folder (IMAP_FOLDER, INBOX by default) is new: one taken is moved out, to
the processed folder, so a look is a UID SEARCH of what is there, oldest first, a bounded batch
fetched with BODY.PEEK[] (nothing is marked seen: a person looking at the mailbox sees what we
have not taken as it came). UID MOVE where the server offers it (RFC 6851), else COPY, \\Deleted
and UID EXPUNGE. A message receive broke on goes to the failed folder with a note beside it
that gives the reason (a person reads that folder in their mail client; the log has it too).
Waits with IDLE (RFC 2177) where the server offers it. A lost connection, a refused sign-in or a
missing folder is MailboxUnavailable: the loop backs off, and the next call connects again.

aioimaplib has no STARTTLS of its own: the connection is upgraded with asyncio's start_tls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, TypeVar

import aioimaplib

from core.settings import ImapSecurity
from intake.mailbox import MailboxUnavailable, Message

T = TypeVar("T")
BATCH = 100  # messages at most in one look
BATCH_BYTES = 64 * 1024 * 1024  # and about this much mail (the first message whatever its size)
TIMEOUT_SECONDS = 30.0  # a command unanswered this long: the connection is taken as lost
_FETCHED = re.compile(rb"\d+ FETCH \(.*\{(\d+)\}$")
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)
log = logging.getLogger("inbound.imap")


def folder_name(name: str) -> str:
    """A folder's name as IMAP spells it on the wire: modified UTF-7 (RFC 3501 5.1.3), quoted,
    so that 已处理 or a name with spaces works."""
    out, pending = [], ""

    def flush() -> None:
        nonlocal pending
        if pending:
            encoded = pending.encode("utf-16-be")
            b64 = base64.b64encode(encoded).decode().rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending = ""

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending += ch
    flush()
    return str(aioimaplib.quoted("".join(out)))


class ImapMailbox:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: ImapSecurity,
        username: str,
        password: str | None = None,
        token: Callable[[], str] | None = None,
        folder: str = "INBOX",
        processed: str = "Processed",
        failed: str = "Failed",
        ssl_context: ssl.SSLContext | None = None,
        batch: int = BATCH,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        """Signs in with the password, or with ``token`` (an OAuth access token for
        AUTHENTICATE XOAUTH2, asked for at each connection) where one is given."""
        if password is None and token is None:
            raise ValueError("a password or a token is needed to sign in")
        self.host, self.port, self.security = host, port, security
        self.username, self._password, self._token = username, password, token
        self.folder, self.processed, self.failed_folder = folder, processed, failed
        self._ssl = ssl_context or ssl.create_default_context()
        self.batch, self.timeout = batch, timeout
        self.name = f"imap://{username}@{host}:{port}/{folder}"
        self._imap: Any = None  # aioimaplib.IMAP4 while connected and the folder selected
        self._lost = asyncio.Event()
        self._validity = b""  # the folder's UIDVALIDITY: a UID means a message only under it
        self._taken: dict[str, bytes] = {}  # key -> the UIDVALIDITY it was read under

    # ------------------------------------------------------------------ the Mailbox protocol

    async def new(self) -> list[Message]:
        imap = await self._connected()
        # a server shows mail that came since its last look only once asked what is new (Dovecot
        # answers a SEARCH from the folder as it last saw it): NOOP first, as RFC 3501 6.1.2 says
        await self._ok(imap.noop(), "NOOP")
        found = await self._ok(imap.uid_search("UNDELETED", charset=None), "UID SEARCH")
        # the untagged lines (aioimaplib takes "SEARCH" off them), then the tagged one's text
        uids = sorted({int(n) for line in _bytes(found[:-1]) for n in line.split() if n.isdigit()})
        if not uids:
            return []
        chosen = await self._within_budget(imap, uids[: self.batch])
        fetched = await self._ok(imap.uid("fetch", _set(chosen), "(UID BODY.PEEK[])"), "FETCH")
        messages = sorted(_messages(fetched), key=lambda m: int(m.key))
        self._taken.update((m.key, self._validity) for m in messages)
        return messages

    async def done(self, message: Message) -> None:
        await self._move(message, self.processed)

    async def failed(self, message: Message, reason: str) -> None:
        log.warning("inbound %s moved to %s: %s", message.key, self.failed_folder, reason)
        imap = await self._connected()
        note = _note(message, reason, self.username)
        answer = await self._do(imap.append(note, mailbox=folder_name(self.failed_folder)))
        if answer.result != "OK":  # the log keeps the reason; the message still goes
            log.error("no note for inbound %s in %s: %s", message.key, self.failed_folder, answer)
        await self._move(message, self.failed_folder)

    async def wait(self, seconds: float) -> None:
        imap = await self._connected()
        if not imap.has_capability("IDLE"):
            await self._do(asyncio.sleep(seconds), within=seconds + self.timeout)
            return
        queue = imap.protocol.idle_queue
        while not queue.empty():  # what an earlier IDLE left: its news has been looked at
            queue.get_nowait()
        idle = await self._do(imap.idle_start(timeout=seconds))
        try:
            while True:
                pushed = await self._do(
                    imap.wait_server_push(timeout=seconds + self.timeout),
                    within=seconds + 2 * self.timeout,
                )
                if pushed == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                if any(isinstance(line, bytes) and line.endswith(b"EXISTS") for line in pushed):
                    break
        finally:
            if imap.has_pending_idle() and not self._lost.is_set():
                imap.idle_done()
        await self._do(asyncio.wait_for(idle, self.timeout))

    async def close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        transport = imap.protocol.transport
        if not self._lost.is_set() and transport is not None and not transport.is_closing():
            with contextlib.suppress(OSError, TimeoutError, aioimaplib.AioImapException):
                await asyncio.wait_for(imap.logout(), 5)  # going anyway
        if transport is not None:
            transport.close()

    # ------------------------------------------------------------------ moving

    async def _move(self, message: Message, folder: str) -> None:
        imap = await self._connected()
        if self._taken.pop(message.key, None) != self._validity:
            # the folder was made again since the message was read: its UID may now name another
            # message. Left where it is: read again, the service's dedup acts on it once
            log.warning("inbound %s left in %s: its folder changed", message.key, self.folder)
            return
        target = folder_name(folder)
        for attempt in (1, 2):
            if imap.has_capability("MOVE"):
                answer = await self._do(imap.uid("move", message.key, target))
            else:
                answer = await self._do(imap.uid("copy", message.key, target))
                if answer.result == "OK":
                    await self._removed(imap, message.key)
            if answer.result == "OK":
                return
            if attempt == 1 and b"TRYCREATE" in b" ".join(_bytes(answer.lines)):
                await self._create(imap, folder)  # someone deleted it since we connected
                continue
            raise MailboxUnavailable(f"{self.name}: moving {message.key} to {folder}: {answer}")

    async def _removed(self, imap: Any, uid: str) -> None:
        await self._ok(imap.uid("store", uid, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
        if imap.has_capability("UIDPLUS"):
            await self._ok(imap.uid("expunge", uid), "UID EXPUNGE")
        else:  # RFC 6851's fallback: every message marked deleted goes, as a person meant it
            await self._ok(imap.expunge(), "EXPUNGE")

    # ------------------------------------------------------------------ the connection

    async def _connected(self) -> Any:
        if self._imap is not None and not self._lost.is_set():
            return self._imap
        self._imap = None
        self._lost = lost = asyncio.Event()
        tls = self._ssl if self.security is ImapSecurity.TLS else None
        imap = aioimaplib.IMAP4(
            self.host,
            self.port,
            timeout=self.timeout,
            conn_lost_cb=lambda _: lost.set(),
            ssl_context=tls,
        )
        try:
            await self._do(imap.wait_hello_from_server())
            if self.security is ImapSecurity.STARTTLS:
                await self._starttls(imap)
            await self._sign_in(imap)
            for folder in (self.processed, self.failed_folder):
                await self._create(imap, folder)
            selected = await self._ok(imap.select(folder_name(self.folder)), "SELECT")
        except BaseException:
            if imap.protocol.transport is not None:
                imap.protocol.transport.close()
            raise
        validity = re.search(rb"UIDVALIDITY (\d+)", b" ".join(_bytes(selected)))
        self._validity = validity.group(1) if validity else b""
        self._imap = imap
        return imap

    async def _starttls(self, imap: Any) -> None:
        protocol = imap.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise MailboxUnavailable(f"{self.name}: the server offers no STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        await self._ok(protocol.execute(command), "STARTTLS")
        loop = asyncio.get_running_loop()
        upgrade = loop.start_tls(protocol.transport, protocol, self._ssl, server_hostname=self.host)
        protocol.transport = await self._do(upgrade)
        await self._do(protocol.capability())  # asked again over TLS (RFC 3501 6.2.1)

    async def _sign_in(self, imap: Any) -> None:
        if self._token is not None:
            answer = await self._do(imap.xoauth2(self.username, self._token()))
        else:
            answer = await self._do(imap.login(self.username, self._password))
        if answer.result != "OK":
            said = b" ".join(_bytes(answer.lines)).decode(errors="replace")
            raise MailboxUnavailable(f"{self.name}: sign-in refused: {said}")
        await self._do(imap.protocol.capability())  # what the server offers once signed in

    async def _create(self, imap: Any, folder: str) -> None:
        """The folder, created unless it is there."""
        name = folder_name(folder)
        listed = await self._ok(imap.list('""', name), "LIST")
        if any(line.startswith(b"(") for line in _bytes(listed[:-1])):  # "(\\flags) sep name"
            return
        created = await self._do(imap.create(name))
        if created.result != "OK":
            raise MailboxUnavailable(f"{self.name}: cannot create folder {folder!r}: {created}")

    async def _within_budget(self, imap: Any, uids: list[int]) -> list[int]:
        sized = await self._ok(imap.uid("fetch", _set(uids), "(UID RFC822.SIZE)"), "FETCH")
        sizes: dict[int, int] = {}
        for line in _bytes(sized):
            uid_of, size = _UID.search(line), _SIZE.search(line)
            if uid_of and size:
                sizes[int(uid_of.group(1))] = int(size.group(1))
        chosen: list[int] = []
        total = 0
        for uid in uids:
            if uid not in sizes:  # gone meanwhile (a person moved it)
                continue
            if chosen and total + sizes[uid] > BATCH_BYTES:
                break
            chosen.append(uid)
            total += sizes[uid]
        return chosen or uids[:1]

    async def _ok(self, command: Awaitable[Any], what: str) -> list[Any]:
        answer = await self._do(command)
        if answer.result != "OK":
            raise MailboxUnavailable(f"{self.name}: {what}: {answer.result} {answer.lines}")
        return list(answer.lines)

    async def _do(self, command: Awaitable[T], within: float | None = None) -> T:
        """The command's answer, or MailboxUnavailable when the connection is lost meanwhile, the
        server cannot be reached or it does not answer ``within`` seconds."""
        task = asyncio.ensure_future(command)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait(
                {task, lost},
                timeout=within or 2 * self.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            lost.cancel()
        if not task.done():
            task.cancel()
            self._lost.set()
            raise MailboxUnavailable(f"{self.name}: connection lost")
        try:
            return task.result()
        except (OSError, TimeoutError, ssl.SSLError, aioimaplib.AioImapException) as err:
            self._lost.set()
            raise MailboxUnavailable(f"{self.name}: {type(err).__name__}: {err}") from None


def _set(uids: list[int]) -> str:
    return ",".join(map(str, uids))


def _bytes(lines: list[Any]) -> list[bytes]:
    return [bytes(line) for line in lines if isinstance(line, bytes | bytearray)]


def _messages(lines: list[Any]) -> list[Message]:
    """The messages of a UID FETCH (UID BODY.PEEK[]) answer: each a line ending in its literal's
    size, the literal, then the rest of its line (where a server may put the UID)."""
    found = []
    for n, line in enumerate(lines):
        if not isinstance(line, bytes) or not _FETCHED.match(line) or n + 1 >= len(lines):
            continue
        rest = lines[n + 2] if n + 2 < len(lines) and isinstance(lines[n + 2], bytes) else b""
        uid = _UID.search(line) or _UID.search(rest)
        if uid is not None and isinstance(lines[n + 1], bytes | bytearray):
            found.append(Message(uid.group(1).decode(), bytes(lines[n + 1])))
    return found


def _note(message: Message, reason: str, mailbox: str) -> bytes:
    """The note put beside a message set aside, for the staff reading the failed folder: why,
    threaded under the message it is about. Auto-generated, so read back it never acts."""
    note = EmailMessage()
    note["From"] = mailbox if "@" in mailbox else f"{mailbox}@localhost"
    note["To"] = note["From"]
    note["Subject"] = f"未能处理的客户邮件（IMAP UID {message.key}）"
    note["Date"] = formatdate(localtime=True)
    note["Message-ID"] = make_msgid("inbound-failed")
    note["Auto-Submitted"] = "auto-generated"
    head = message.raw.split(b"\r\n\r\n", 1)[0][:65_536]
    original = _MESSAGE_ID.search(head)
    if original is not None:
        note["In-Reply-To"] = note["References"] = original.group(1).decode("ascii", "replace")
    note.set_content(
        "账单支持系统未能处理这封客户邮件，已将它移到本文件夹，请人工查看。\n\n"
        f"原因：{reason}\n"
        f"原邮件：IMAP UID {message.key}"
        + (f"，Message-ID {original.group(1).decode('ascii', 'replace')}" if original else "")
        + "\n"
    )
    return note.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")

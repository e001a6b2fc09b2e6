"""Where customers' email is read from when it does not come by SendGrid Inbound Parse: the drop
folder (`make run`), a shared mailbox over IMAP (`INBOUND_BACKEND=imap`) or Microsoft Graph
(`INBOUND_BACKEND=graph`). One loop for all of them: each new message is handed to the inbound
service and set aside as processed only once the service has taken it, so a crash in between reads
it again and the service's message dedup keeps it from acting twice.

Knows nothing of Temporal: the loop takes its ``receive`` function as a parameter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("inbound.mailbox")
MAX_BACKOFF_SECONDS = 30.0  # a mailbox that cannot be reached is tried again at most this far apart


class TryLater(Exception):
    """``receive`` could not act now (Temporal or the database is down): the message stays."""


class MailboxUnavailable(Exception):
    """The mailbox cannot be read now (server down, connection lost, sign-in refused)."""


@dataclass(frozen=True)
class Message:
    key: str  # the mailbox's own handle: a file name, an IMAP UID, a Graph message id
    raw: bytes  # the whole RFC 5322 message


class Mailbox(Protocol):
    name: str  # where it reads, for the log: a folder, imap://host/INBOX

    async def new(self) -> list[Message]:
        """The messages not yet set aside, oldest first."""
        ...

    async def done(self, message: Message) -> None:
        """Set the message aside as processed (received: never read again)."""
        ...

    async def failed(self, message: Message, reason: str) -> None:
        """Set the message aside for a person, with the reason (receive broke on it)."""
        ...

    async def wait(self, seconds: float) -> None:
        """Return when new mail may have come (IMAP IDLE), or after ``seconds``."""
        ...

    async def close(self) -> None: ...


async def take(
    mailbox: Mailbox, receive: Callable[[bytes], Awaitable[str]]
) -> list[tuple[str, str]]:
    """Receive each new message once, oldest first; (message key, outcome) for each taken."""
    taken: list[tuple[str, str]] = []
    for message in await mailbox.new():
        try:
            outcome = await receive(message.raw)
        except TryLater as err:
            log.warning("inbound %s waits: %s", message.key, err)
            break
        except Exception as err:  # this message, not the mailbox: set it aside with the reason
            await mailbox.failed(message, str(err))
            taken.append((message.key, f"failed: {err}"))
            continue
        await mailbox.done(message)
        taken.append((message.key, outcome))
    return taken


async def watch(
    mailbox: Mailbox,
    receive: Callable[[bytes], Awaitable[str]],
    report: Callable[[str, str], None],
    interval: float = 1.0,
) -> None:
    """Take the mailbox's new messages, then wait for more (at most ``interval`` seconds), for
    ever. A mailbox that cannot be reached is tried again, further apart each time."""
    backoff = interval
    while True:
        try:
            for key, outcome in await take(mailbox, receive):
                report(key, outcome)
            backoff = interval
            await mailbox.wait(interval)
        except MailboxUnavailable as err:
            log.warning(
                "mailbox %s unavailable, trying again in %.0f s: %s", mailbox.name, backoff, err
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

"""The mail that waits for a person: the inbound messages (``inbound_mail``, recorded by
service/inbound.py) that matched no thread a workflow acts on — an unknown sender, an unreadable
message, one its workflow refused, a sender who is not the thread's customer or failed SPF/DKIM
(where no case noted it), a reply to a 21Vianet invoice's thread — and the auto-replies, listed
apart. A person attaches one to a case (a note on its timeline, its files listed as the case's),
opens a case from it, or marks it handled; either way it waits no more. The customer's own emails
of a case (the rows of its workflow) are listed beside ours on its page.

Attaching is a note by the person, never the customer's reply: the sender was not proved the
case's customer by a thread (that is why it matched nothing), an auto-reply must never restart a
case's clocks, and a note changes no state, so the person takes the case's next step themselves.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update

from core.ids import CASE, VIANET_INVOICE, case_workflow_id
from core.models import AddNote
from core.settings import Settings
from db.tables import InboundMail, table
from service.attachments import SHA256, Attachments, Direction
from service.calls import reading
from service.cases import Cases
from service.errors import NotFound, Refused
from service.inbound import OFF_CASE, WAITS, Outcome
from service.workspace import PAGE_SIZE, Page

ROWS = table(InboundMail)
AUTO_REPLY = Outcome.AUTO_REPLY.value
NOTE_CHARS = 8_000  # of the text, on the case's timeline


class NoLetter(NotFound):
    """No such message, or one not acted on yet."""


class HandledAlready(Refused):
    """Someone filed the message otherwise first."""


class View(StrEnum):
    ALL = "all"  # everything waiting: a person's and the auto-replies
    PERSON = "person"  # what needs a person
    AUTO_REPLIES = "auto-replies"
    HANDLED = "handled"  # attached or marked handled, the latest first


def needs_person() -> ColumnElement[bool]:
    """service.inbound.waits_for_person in SQL (handled or not)."""
    on_case = ROWS.c.workflow_id.startswith(CASE)
    return or_(
        ROWS.c.outcome.in_([o.value for o in WAITS]),
        and_(
            ROWS.c.outcome.in_([o.value for o in OFF_CASE]),
            or_(ROWS.c.workflow_id.is_(None), not_(on_case)),
        ),
        and_(ROWS.c.outcome == Outcome.NOTED.value, ROWS.c.workflow_id.startswith(VIANET_INVOICE)),
    )


def _condition(view: View) -> ColumnElement[bool]:
    waiting = ROWS.c.handled_at.is_(None)
    match view:
        case View.PERSON:
            return and_(waiting, needs_person())
        case View.AUTO_REPLIES:
            return and_(waiting, ROWS.c.outcome == AUTO_REPLY)
        case View.HANDLED:
            return ROWS.c.handled_at.is_not(None)
        case View.ALL:
            return and_(waiting, or_(needs_person(), ROWS.c.outcome == AUTO_REPLY))


@dataclass(frozen=True)
class MailFile:
    sha256: str
    name: str
    size: int
    content_type: str
    refused: str = ""  # why the store did not keep it


@dataclass(frozen=True)
class Letter:
    """One inbound message as a person reads it."""

    id: int
    received_at: datetime
    outcome: str
    sender: str
    sender_name: str
    subject: str
    text: str
    size: int
    workflow_id: str | None
    files: list[MailFile] = field(default_factory=list)
    handled_by: str | None = None
    handled_at: datetime | None = None

    @property
    def at(self) -> datetime:  # beside our emails' (service.workspace.ThreadEmail)
        return self.received_at

    @property
    def case_id(self) -> str | None:
        if self.workflow_id and self.workflow_id.startswith(CASE):
            return self.workflow_id.removeprefix(CASE)
        return None


@dataclass(frozen=True)
class FoundFile:
    file: MailFile
    path: Path
    stat: os.stat_result


def _letter(row: Any) -> Letter:
    files = [
        MailFile(
            str(f.get("sha256", "")),
            str(f.get("name", "")),
            int(f.get("size", 0)),
            str(f.get("content_type", "")),
            str(f.get("refused", "")),
        )
        for f in row.files or []
    ]
    return Letter(
        row.id,
        row.created_at,
        row.outcome or "",
        row.sender,
        row.sender_name,
        row.subject,
        row.text,
        row.size,
        row.workflow_id,
        files,
        row.handled_by,
        row.handled_at,
    )


class Inbox:
    def __init__(self, settings: Settings, cases: Cases, attachments: Attachments) -> None:
        self._settings = settings
        self._cases = cases
        self._attachments = attachments

    async def letters(self, view: View, page: int) -> Page[Letter]:
        """One page of a view, the newest first (the handled ones: the latest handled first)."""
        return await asyncio.to_thread(self._letters, view, page)

    async def waiting(self) -> int:
        """How many messages wait for a person (auto-replies not counted)."""
        return await asyncio.to_thread(self._count, _condition(View.PERSON))

    async def letter(self, letter_id: int) -> Letter:
        return await asyncio.to_thread(self._letter, letter_id)

    async def of_workflows(self, workflow_ids: list[str], limit: int = 100) -> list[Letter]:
        """The messages recorded on these workflows (a case's, a customer's), the newest first."""
        if not workflow_ids:
            return []
        return await asyncio.to_thread(self._of_workflows, workflow_ids, limit)

    async def attach(self, letter_id: int, case_id: str, by: str) -> Letter:
        """File the message on a case: a note of the person's with its sender, subject and text,
        its files listed as the case's. The same attachment again changes nothing; Refused when
        someone handled it otherwise first, or the case takes no note (it has ended)."""
        letter = await self.letter(letter_id)
        workflow_id = case_workflow_id(case_id)
        if letter.handled_at is not None:
            if letter.workflow_id == workflow_id:
                return letter
            raise HandledAlready(f"this email was handled already, by {letter.handled_by}")
        await self._cases.show(case_id)  # NotFound for a case that does not exist
        digest = await asyncio.to_thread(self._digest, letter_id)
        subject = f"{letter.subject}\n" if letter.subject else ""
        text = f"customer email from {letter.sender or '?'}: {subject}{letter.text}"
        note = AddNote(text=text[:NOTE_CHARS], by=by)
        await self._cases.act(case_id, note, update_id=f"inbox-{digest[:40]}")
        kept = [f for f in letter.files if not f.refused]
        if kept:
            await self._attachments.adopt(case_id, Direction.INBOUND, digest, kept)
        await asyncio.to_thread(self._handle, letter_id, by, workflow_id)
        return await self.letter(letter_id)

    async def handle(self, letter_id: int, by: str) -> Letter:
        """Mark the message handled (who, when); the same again changes nothing."""
        await self.letter(letter_id)  # NotFound for no such message
        await asyncio.to_thread(self._handle, letter_id, by, None)
        return await self.letter(letter_id)

    async def file(self, letter_id: int, sha256: str) -> FoundFile:
        """One kept file of a message, found in the store; NotFound when the message has no
        such file, Lost when the store has lost it."""
        letter = await self.letter(letter_id)
        listed = [f for f in letter.files if f.sha256 == sha256 and not f.refused]
        if not SHA256.fullmatch(sha256) or not listed:
            raise NotFound(f"email {letter_id}: no attachment {sha256[:80]!r}")
        path, stat = await self._attachments.in_store(sha256, f"email {letter_id}")
        return FoundFile(listed[0], path, stat)

    # ------------------------------------------------------------------ the database

    def _letters(self, view: View, page: int) -> Page[Letter]:
        condition = _condition(view)
        order = ROWS.c.handled_at if view is View.HANDLED else ROWS.c.created_at
        total = self._count(condition)
        page = min(max(1, page), max(1, -(-total // PAGE_SIZE)))
        query = (
            select(ROWS)
            .where(condition)
            .order_by(order.desc(), ROWS.c.id.desc())
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        )
        with reading(self._settings.database_url) as session:
            return Page([_letter(row) for row in session.execute(query)], total, page)

    def _count(self, condition: ColumnElement[bool]) -> int:
        with reading(self._settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(ROWS).where(condition)) or 0

    def _letter(self, letter_id: int) -> Letter:
        with reading(self._settings.database_url) as session:
            row = session.execute(select(ROWS).where(ROWS.c.id == letter_id)).first()
        if row is None or not row.outcome:  # one still being acted on is no one's yet
            raise NoLetter(f"no email {letter_id}")
        return _letter(row)

    def _digest(self, letter_id: int) -> str:
        with reading(self._settings.database_url) as session:
            return str(session.scalar(select(ROWS.c.digest).where(ROWS.c.id == letter_id)))

    def _of_workflows(self, workflow_ids: list[str], limit: int) -> list[Letter]:
        query = (
            select(ROWS)
            .where(ROWS.c.workflow_id.in_(workflow_ids), ROWS.c.outcome.is_not(None))
            .order_by(ROWS.c.created_at.desc(), ROWS.c.id.desc())
            .limit(limit)
        )
        with reading(self._settings.database_url) as session:
            return [_letter(row) for row in session.execute(query)]

    def _handle(self, letter_id: int, by: str, workflow_id: str | None) -> None:
        """Only the first person's handling counts (the same row sent twice, two people)."""
        values: dict[str, Any] = {"handled_by": by[:320], "handled_at": datetime.now(UTC)}
        if workflow_id is not None:
            values["workflow_id"] = workflow_id
        with reading(self._settings.database_url) as session:
            session.execute(
                update(ROWS)
                .where(ROWS.c.id == letter_id, ROWS.c.handled_at.is_(None))
                .values(**values, updated_at=values["handled_at"])
            )
            session.commit()

"""The files of a case's emails: kept in the attachment store (intake/attachments.py, by sha256,
outside Temporal) and listed per case in ``case_attachments``. A stored file is given out only
through its case's row: a digest that is not the case's is not found, whatever the store holds.

The customer's files come in with their email (the inbound service keeps them); ours would go out
with a reply of the case, kept the same way with ``Direction.OUTBOUND`` and the email's dedup key as
their source, and served by the same call.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from stat import S_ISREG
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from core.settings import Settings
from db.tables import CaseAttachment, table
from intake.attachments import AttachmentStore, Stored
from intake.mail import Attachment
from service.calls import reading
from service.errors import NotFound

ROWS = table(CaseAttachment)
SHA256 = re.compile(r"[0-9a-f]{64}")


class Direction(StrEnum):
    INBOUND = "inbound"  # the customer's email brought it
    OUTBOUND = "outbound"  # our email to the customer carried it


@dataclass(frozen=True)
class CaseFile:
    """One stored file of a case, as its page lists it."""

    case_id: str
    direction: Direction
    sha256: str
    name: str
    size: int
    content_type: str  # as its email declared it (the store took only listed types)


@dataclass(frozen=True)
class Found:
    """A case's file in the store: where it is, and its size and time there."""

    file: CaseFile
    path: Path
    stat: os.stat_result


class Listed(Protocol):
    """A file the store kept already, as an email that waited for a person lists it."""

    @property
    def sha256(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def content_type(self) -> str: ...


class Lost(NotFound):
    """The case lists the file, but the store no longer has it (deleted or never restored)."""


class Attachments:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.store = AttachmentStore(
            settings.attachments_dir, settings.attachment_max_bytes, settings.attachment_types
        )

    async def keep(
        self, case_id: str, direction: Direction, source: str, files: Sequence[Attachment]
    ) -> list[Stored]:
        """Store the files (those within the limits) and list them as the case's; the same call
        again changes nothing. What was kept, and why the others were not."""
        return await asyncio.to_thread(self._keep, case_id, direction, source[:255], files)

    async def stored(self, files: Sequence[Attachment]) -> list[dict[str, str | int]]:
        """Store the files (those within the limits) for no case yet (an email that waits for a
        person); each one's sha256, name, size, declared type, and why it was not kept."""
        return await asyncio.to_thread(self._stored, files)

    async def adopt(
        self, case_id: str, direction: Direction, source: str, files: Sequence[Listed]
    ) -> None:
        """List files the store kept already (`stored`) as the case's; the same again changes
        nothing."""
        kept = [(Stored(f.name, f.size, f.sha256), f.content_type) for f in files]
        await asyncio.to_thread(self._list, case_id, direction, source[:255], kept)

    async def of(self, case_id: str) -> list[CaseFile]:
        """The case's files, in the order they came."""
        return await asyncio.to_thread(self._of, case_id)

    async def file(self, case_id: str, sha256: str) -> Found:
        """One of the case's files, found in the store; NotFound when the case has no such file
        (a malformed digest included), Lost when the store has lost it. The store never deletes
        a file, so it is still there when it is read."""
        if not SHA256.fullmatch(sha256):
            raise NotFound(f"case {case_id}: no attachment {sha256[:80]!r}")
        listed = [found for found in await self.of(case_id) if found.sha256 == sha256]
        if not listed:
            raise NotFound(f"case {case_id}: no attachment {sha256}")
        path, stat = await self.in_store(sha256, f"case {case_id}")
        return Found(listed[0], path, stat)

    async def in_store(self, sha256: str, whose: str) -> tuple[Path, os.stat_result]:
        """Where the store has a file, and its size and time; Lost when it is not there."""
        path = self.store.path_for(sha256)
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            stat = None
        if stat is None or not S_ISREG(stat.st_mode):
            raise Lost(f"{whose}: attachment {sha256} is missing from {self.store.root}")
        return path, stat

    def _stored(self, files: Sequence[Attachment]) -> list[dict[str, str | int]]:
        stored = [(self.store.keep(f.filename, f.content_type, f.data), f) for f in files]
        return [
            {
                "sha256": s.sha256,
                "name": s.name,
                "size": s.size,
                "content_type": f.content_type[:255],
                "refused": s.refused,
            }
            for s, f in stored
        ]

    def _keep(
        self, case_id: str, direction: Direction, source: str, files: Sequence[Attachment]
    ) -> list[Stored]:
        stored = [self.store.keep(f.filename, f.content_type, f.data) for f in files]
        kept = [(s, f.content_type) for s, f in zip(stored, files, strict=True) if not s.refused]
        self._list(case_id, direction, source, kept)
        return stored

    def _list(
        self, case_id: str, direction: Direction, source: str, files: Sequence[tuple[Stored, str]]
    ) -> None:
        """List stored files (each with its declared type) as the case's, once."""
        types = {s.sha256: content_type for s, content_type in files}
        kept = {s.sha256: s for s, _ in files}
        for _ in range(2):  # a second writer of the same rows: read again, add what is left
            with reading(self._settings.database_url) as session:
                known = set(
                    session.scalars(
                        select(ROWS.c.sha256).where(
                            ROWS.c.case_id == case_id, ROWS.c.direction == direction.value
                        )
                    )
                )
                now = datetime.now(UTC)
                rows = [
                    {
                        "case_id": case_id,
                        "direction": direction.value,
                        "sha256": digest,
                        "name": s.name,
                        "size": s.size,
                        "content_type": types[digest][:255],
                        "source": source,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for digest, s in kept.items()
                    if digest not in known
                ]
                if not rows:
                    break
                try:
                    session.execute(insert(ROWS), rows)
                    session.commit()
                    break
                except IntegrityError:
                    session.rollback()
        else:
            raise RuntimeError(f"case {case_id}: its attachments kept changing under two writes")

    def _of(self, case_id: str) -> list[CaseFile]:
        with reading(self._settings.database_url) as session:
            rows = session.execute(
                select(ROWS).where(ROWS.c.case_id == case_id).order_by(ROWS.c.id)
            ).all()
        return [
            CaseFile(
                row.case_id,
                Direction(row.direction),
                row.sha256,
                row.name,
                row.size,
                row.content_type,
            )
            for row in rows
        ]

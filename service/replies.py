"""An agent's public reply with the files they attach: the files kept in the attachment store
first (within ATTACHMENT_MAX_BYTES and ATTACHMENT_TYPES), the reply sent to the case with them
by reference, then listed as the case's files sent by us. The email activity reads them back by
digest: no file's bytes pass through Temporal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from core.models import AttachedFile, CaseView, Reply
from intake.attachments import Stored
from intake.mail import Attachment as Attachment  # the files a reply takes, for its callers
from service.attachments import Attachments, Direction
from service.cases import Cases
from service.errors import Refused


class FileRefused(Refused):
    """A file the limits do not take: too large, or of a type not taken."""

    def __init__(self, name: str, too_large: bool, limit: str) -> None:
        what = f"over {limit} bytes" if too_large else f"its type is not taken ({limit})"
        super().__init__(f"attachments: {name}: {what}; nothing was sent")
        self.name, self.too_large, self.limit = name, too_large, limit


class Replies:
    def __init__(self, cases: Cases, attachments: Attachments) -> None:
        self._cases = cases
        self._attachments = attachments

    async def send(
        self, case_id: str, reply: Reply, files: Sequence[Attachment], *, key: str
    ) -> CaseView:
        """Send `reply` with `files` (FileRefused, and nothing sent, when one is over the
        limits); the same `key` again is the same reply, sent once."""
        files = [f for f in files if f.data or f.filename]  # a file input left empty
        stored = await asyncio.to_thread(lambda: [self._kept(f) for f in files])
        named = [
            AttachedFile(
                sha256=s.sha256, name=s.name, content_type=f.content_type.lower(), size=s.size
            )
            for s, f in zip(stored, files, strict=True)
        ]
        with_files = Reply.model_validate({**reply.model_dump(), "attachments": named})
        view = await self._cases.act(case_id, with_files, update_id=f"reply/{key}")
        if files:
            await self._attachments.keep(case_id, Direction.OUTBOUND, f"reply/{key}", files)
        return view

    def _kept(self, file: Attachment) -> Stored:
        store = self._attachments.store
        kept = store.keep(file.filename, file.content_type, file.data)
        if kept.refused:
            too_large = len(file.data) > store.max_bytes
            limit = f"{store.max_bytes:,}" if too_large else ", ".join(sorted(store.types))
            raise FileRefused(kept.name, too_large, limit)
        return kept

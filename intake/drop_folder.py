"""The inbound drop folder (`var/inbound/`, watched by `make run`): a person playing the customer,
or a mail system without SendGrid, puts an ``.eml`` file in; it is received like an Inbound Parse
post and moved to ``done/`` (or to ``failed/`` with a ``.error`` note beside it). A mailbox of
intake/mailbox.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from intake.mailbox import Message

SETTLE_SECONDS = 0.5  # a file still being written is left for the next look


class FolderMailbox:
    def __init__(self, folder: Path, *, settle: float = SETTLE_SECONDS) -> None:
        self.folder = Path(folder)
        self.settle = settle
        self.name = str(self.folder)

    async def new(self) -> list[Message]:
        return await asyncio.to_thread(self._settled)

    def _settled(self) -> list[Message]:
        self.folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        files = sorted(self.folder.glob("*.eml"), key=lambda p: p.stat().st_mtime)
        return [
            Message(path.name, path.read_bytes())
            for path in files
            if now - path.stat().st_mtime >= self.settle
        ]

    async def done(self, message: Message) -> None:
        self._move(message.key, "done")

    async def failed(self, message: Message, reason: str) -> None:
        self._move(message.key, "failed")
        note = self.folder / "failed" / f"{message.key}.error"
        note.write_text(f"{reason}\n", encoding="utf-8")

    def _move(self, name: str, to: str) -> None:
        (self.folder / to).mkdir(parents=True, exist_ok=True)
        (self.folder / name).replace(self.folder / to / name)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        pass

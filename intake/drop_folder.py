"""The inbound drop folder (`var/inbound/`, watched by `make run`): a person playing the customer,
or a mail system without SendGrid, puts an ``.eml`` file in; it is received like an Inbound Parse
post and moved to ``done/`` (or to ``failed/`` with a ``.error`` note beside it). Takes its
``receive`` function as a parameter and knows nothing of Temporal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("inbound.drop_folder")
SETTLE_SECONDS = 0.5  # a file still being written is left for the next look


class TryLater(Exception):
    """``receive`` could not act now (Temporal or the database is down): the file stays."""


async def take(
    folder: Path, receive: Callable[[bytes], Awaitable[str]], *, settle: float = SETTLE_SECONDS
) -> list[tuple[str, str]]:
    """Receive each settled ``.eml`` in ``folder`` once, oldest first; (file name, outcome)."""
    taken: list[tuple[str, str]] = []
    for path in await asyncio.to_thread(_settled, folder, settle):
        try:
            outcome = await receive(path.read_bytes())
        except TryLater as err:
            log.warning("inbound %s waits: %s", path.name, err)
            break
        except Exception as err:  # this file, not the folder: set it aside with the reason
            _move(path, folder / "failed")
            (folder / "failed" / f"{path.name}.error").write_text(f"{err}\n", encoding="utf-8")
            taken.append((path.name, f"failed: {err}"))
            continue
        _move(path, folder / "done")
        taken.append((path.name, outcome))
    return taken


def _settled(folder: Path, settle: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime)
    return [path for path in files if now - path.stat().st_mtime >= settle]


def _move(path: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    path.replace(to / path.name)


async def watch(
    folder: Path,
    receive: Callable[[bytes], Awaitable[str]],
    report: Callable[[str, str], None],
    interval: float = 1.0,
) -> None:
    """Take the folder's files every ``interval`` seconds, for ever."""
    while True:
        for name, outcome in await take(folder, receive):
            report(name, outcome)
        await asyncio.sleep(interval)

"""The suite's clock: the Beijing hour it runs at (SUITE_BEIJING_HOUR, docs/testing.md), and the
one way a test waits for something that happens later (`eventually`)."""

from __future__ import annotations

import asyncio
import inspect
import os
import time as stopwatch
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import cast

from core.formatting import CHINA_STANDARD_TIME

# how often `eventually` looks again: a check in memory, and one that asks a server or a database
POLL = 0.02
POLL_AWAITED = 0.1


def suite_hour() -> time | None:
    """SUITE_BEIJING_HOUR=H or H:MM, the Beijing wall-clock time the suite runs at; None: now."""
    value = os.environ.get("SUITE_BEIJING_HOUR", "").strip()
    if not value:
        return None
    hour, _, minute = value.partition(":")
    try:
        return time(int(hour), int(minute or 0))
    except ValueError:
        raise ValueError(f"SUITE_BEIJING_HOUR={value!r}: an hour such as 3, 10 or 20:30") from None


def next_beijing(now: datetime, at: time) -> datetime:
    """The first instant from `now` on at which Beijing's wall clock reads `at` (UTC)."""
    local = now.astimezone(CHINA_STANDARD_TIME)
    target = datetime.combine(local.date(), at, CHINA_STANDARD_TIME)
    if target < local:
        target += timedelta(days=1)
    return target.astimezone(UTC)


def zone_reading(now: datetime, at: time) -> str:
    """A fixed-offset zone whose clock reads `at`'s hour at `now` (the real Temporal dev server's
    clock cannot be moved, so a calendar built in this zone is what moves the hour)."""
    hours = (at.hour - now.astimezone(UTC).hour) % 24
    if hours > 14:  # the zones run from UTC-12 to UTC+14
        hours -= 24
    return f"Etc/GMT{-hours:+d}" if hours else "Etc/UTC"  # Etc/GMT-8 is UTC+8


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    what: str = "condition",
    *,
    seconds: float = 30,
    every: float | None = None,
) -> None:
    """Poll `check` (a function or a coroutine function) until it holds; after `seconds` of
    wall-clock time the test fails naming `what`. Effects, visibility and other processes are
    eventually consistent: a test waits for them, and never asserts on elapsed time."""
    deadline = stopwatch.monotonic() + seconds
    while True:
        answer = check()
        awaited = inspect.isawaitable(answer)
        if await cast(Awaitable[bool], answer) if awaited else answer:
            return
        if stopwatch.monotonic() > deadline:
            raise AssertionError(f"not reached in {seconds:.0f} s: {what}")
        await asyncio.sleep(every or (POLL_AWAITED if awaited else POLL))

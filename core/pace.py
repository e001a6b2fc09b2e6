"""A bulk import's pace: at most `per_second` calls a second, evenly spaced; 0 goes as fast as its
concurrency allows.

On a small machine an import at full speed takes every core from the people working on it: with
a billing run starting invoices flat out on 2 cores, an agent's note took 0.5 s at the median and
1.8 s at p95, against 33 and 59 ms with no import (docs/performance.md, scenario 8). A paced import
leaves them their share; it takes longer, and runs the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pace:
    def __init__(
        self,
        per_second: float = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_second < 0:
            raise ValueError("pace must be 0 (as fast as possible) or more lines a second")
        self.interval = 1 / per_second if per_second else 0.0
        self._next = 0.0
        self._clock = clock
        self._sleep = sleep

    async def turn(self) -> None:
        """Wait for this call's turn (callers on one event loop share the pace)."""
        if not self.interval:
            return
        now = self._clock()
        at = max(self._next, now)
        self._next = at + self.interval
        if at > now:
            await self._sleep(at - now)

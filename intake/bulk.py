"""Report every line of a failures file, a bounded number at a time, and count what happened.

A line is *started* (its invoice's collections began), *joined* (the invoice's running collections
took it: a later failure, or the same failure id again, which the workflow counts once) or
*rejected* (bad fields or format, or refused because the invoice's collections already ended).
A line repeated in the same file is not special-cased: it joins, so memory stays flat on any size.
Re-running an import therefore starts nothing new. When Temporal itself fails (unreachable,
overloaded) the import stops after the lines in flight, with the counts so far: run it again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.models import BillingFailure
from core.pace import Pace
from intake.failure_file import FailureReader, FileFormat, Line, RejectedFile, detect_format

BATCH = 256  # lines read per trip to the reading thread


class LineRejected(Exception):
    """Raised by the report function: this line is refused; the message is the reason."""


# Reports one failure; answers "started" or "joined", raises LineRejected, or anything else to stop.
Report = Callable[[BillingFailure], Awaitable[str]]


@dataclass
class ImportSummary:
    lines: int = 0  # records read (header and blank lines not counted)
    started: int = 0
    joined: int = 0
    rejected: int = 0
    bytes_read: int = 0
    total_bytes: int = 0
    rejected_file: Path | None = None

    @property
    def accepted(self) -> int:
        return self.started + self.joined

    @property
    def done(self) -> int:
        return self.accepted + self.rejected


class ImportAborted(Exception):
    """Temporal (or the disk) failed mid-import; `summary` has the counts so far; re-run it."""

    def __init__(self, summary: ImportSummary, cause: BaseException) -> None:
        super().__init__(f"import stopped after {summary.done} lines: {cause}")
        self.summary = summary


async def run_import(
    path: Path,
    report: Report,
    *,
    fmt: FileFormat | None = None,
    concurrency: int = 20,
    progress: Callable[[ImportSummary], None] | None = None,
    prepare: Callable[[list[BillingFailure]], None] | None = None,
    pace: Pace | None = None,
) -> ImportSummary:
    """Read, validate and report each line (`pace`: at most so many a second); raises
    FailureFileError before reporting anything when the file as a whole is unusable."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    fmt = detect_format(path, fmt)
    summary = ImportSummary()
    stop = asyncio.Event()
    failures: list[BaseException] = []
    queue: asyncio.Queue[Line | None] = asyncio.Queue(maxsize=2 * concurrency)

    def tick() -> None:
        if progress is not None:
            progress(summary)

    with FailureReader(path, fmt) as reader, RejectedFile(path, fmt, reader.columns) as rejected:
        summary.total_bytes = reader.size

        def reject(line: Line, reason: str) -> None:
            rejected.write(line, reason)
            summary.rejected += 1
            summary.rejected_file = rejected.path

        lines: Iterator[Line] = iter(reader)

        def read_batch() -> list[Line]:
            """The next lines; `prepare` sees their failures first (in this thread)."""
            batch = list(itertools.islice(lines, BATCH))
            if prepare is not None:
                prepare([line.failure for line in batch if line.failure is not None])
            return batch

        async def read() -> None:
            try:
                while not stop.is_set():
                    # the disk is read in a thread so the reporting tasks keep running meanwhile
                    batch = await asyncio.to_thread(read_batch)
                    if not batch:
                        break
                    summary.bytes_read = reader.offset
                    for line in batch:
                        summary.lines += 1
                        if line.problem is not None:
                            reject(line, line.problem)
                            tick()
                        else:
                            await queue.put(line)
                        if stop.is_set():
                            break
            except OSError as err:  # the file became unreadable half-way
                failures.append(err)
                stop.set()
            finally:
                for _ in range(concurrency):
                    await queue.put(None)  # the workers finish what is queued, then end

        async def work() -> None:
            while (line := await queue.get()) is not None:
                if stop.is_set():
                    continue  # Temporal failed: drain without reporting
                assert line.failure is not None
                if pace is not None:
                    await pace.turn()
                try:
                    result = await report(line.failure)
                except LineRejected as err:
                    reject(line, str(err))
                except Exception as err:
                    failures.append(err)
                    stop.set()
                    continue
                else:
                    if result == "started":
                        summary.started += 1
                    else:
                        summary.joined += 1
                tick()

        await asyncio.gather(read(), *(work() for _ in range(concurrency)))
    summary.bytes_read = reader.offset
    tick()
    if failures:
        raise ImportAborted(summary, failures[0]) from failures[0]
    return summary

"""A bulk import's pace (core/pace.py), without a server: the schedule it keeps, read from a
clock the test holds, and that both imports wait their turn for every call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import starter
from core.models import BillingFailure
from core.pace import Pace
from intake.bulk import run_import
from tests.intake_support import failure_fields


class Clock:
    """The pace's clock and sleep: time stands still unless the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def paced(per_second: float, clock: Clock) -> Pace:
    return Pace(per_second, clock=clock.monotonic, sleep=clock.sleep)


async def test_calls_at_once_are_spaced_evenly(clock: Clock) -> None:
    pace = paced(10, clock)
    await asyncio.gather(*(pace.turn() for _ in range(5)))
    # the first goes now, each other a tenth of a second after the one before
    assert clock.slept == [0.1, 0.2, 0.3, 0.4]


async def test_a_pause_is_not_made_up_for_with_a_burst(clock: Clock) -> None:
    pace = paced(2, clock)
    await pace.turn()
    clock.now += 60  # nothing to import for a minute
    await pace.turn()
    await pace.turn()
    assert clock.slept == [0.5]  # not 120 calls at once: the next one waits its half second


async def test_zero_is_as_fast_as_possible(clock: Clock) -> None:
    pace = paced(0, clock)
    await asyncio.gather(*(pace.turn() for _ in range(100)))
    assert clock.slept == []


def test_a_negative_pace_is_refused() -> None:
    with pytest.raises(ValueError, match="pace"):
        Pace(-1)


async def test_every_line_of_an_import_waits_its_turn(tmp_path: Path) -> None:
    source = tmp_path / "run.jsonl"
    source.write_text(
        "\n".join(json.dumps(failure_fields(f"INV-{k}", f"F-{k}")) for k in range(30)) + "\n"
    )
    turns = 0

    class Counting(Pace):
        async def turn(self) -> None:
            nonlocal turns
            turns += 1

    async def report(failure: BillingFailure) -> str:
        return "started"

    summary = await run_import(source, report, concurrency=4, pace=Counting(5))
    assert summary.started == 30 and turns == 30


@pytest.mark.parametrize("command", ["failures", "statement"])
def test_the_cli_refuses_a_negative_pace_naming_it(command: str, tmp_path: Path) -> None:
    file = tmp_path / ("run.csv" if command == "failures" else "statement.csv")
    file.write_text("x\n")
    result = CliRunner().invoke(starter.app, ["import", command, str(file), "--pace", "-1"])
    assert result.exit_code == 2 and "--pace" in result.output

"""The suite's own clock and waiting helpers (tests/clock_support.py, tests/workflow_support.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from core.formatting import CHINA_STANDARD_TIME
from tests.clock_support import eventually, next_beijing, suite_hour, zone_reading
from tests.workflow_support import refused, time_skipping


@pytest.mark.parametrize("hour", [time(3), time(10, 3), time(20)])
@pytest.mark.parametrize("utc_hour", [0, 5, 13, 16, 23])
def test_the_suites_hour_is_read_in_beijing_and_in_the_moved_zone(
    hour: time, utc_hour: int
) -> None:
    now = datetime(2026, 12, 7, utc_hour, 30, tzinfo=UTC)
    at = next_beijing(now, hour)
    assert now <= at < now + timedelta(days=1)
    assert at.astimezone(CHINA_STANDARD_TIME).time() == hour
    assert now.astimezone(ZoneInfo(zone_reading(now, hour))).hour == hour.hour


def test_suite_beijing_hour_is_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUITE_BEIJING_HOUR", "10:03")
    assert suite_hour() == time(10, 3)
    monkeypatch.setenv("SUITE_BEIJING_HOUR", "25")
    with pytest.raises(ValueError, match="SUITE_BEIJING_HOUR"):
        suite_hour()
    monkeypatch.delenv("SUITE_BEIJING_HOUR")
    assert suite_hour() is None


async def test_eventually_polls_functions_and_coroutines_and_names_what_never_came() -> None:
    calls: list[int] = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await eventually(third_time, every=0)
    await eventually(lambda: len(calls) == 3)
    with pytest.raises(AssertionError, match="not reached in 0 s: the impossible"):
        await eventually(lambda: False, "the impossible", seconds=0.05)


async def test_a_refusal_the_server_lost_is_asked_again() -> None:
    tries: list[int] = []

    async def update() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise RPCError("update 23ff not found", RPCStatusCode.NOT_FOUND, b"")
        raise WorkflowUpdateFailedError(ValueError("no fraud hold for invoice"))

    refusal = await refused(update)
    assert len(tries) == 3 and "no fraud hold" in str(refusal.cause)

    async def carried_out() -> None:
        return None

    with pytest.raises(AssertionError, match="carried out"):
        await refused(carried_out)


async def test_a_time_skipping_server_starts_at_the_suites_hour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUITE_BEIJING_HOUR", "3")
    async with time_skipping() as env:
        now = await env.get_current_time()
    assert now.astimezone(CHINA_STANDARD_TIME).hour == 3
    assert now - datetime.now(UTC) < timedelta(days=1)

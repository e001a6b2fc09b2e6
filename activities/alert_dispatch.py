"""Post the queued staff alerts to their robots: the worker runs one dispatcher beside its
activities (worker.py), every worker process one, all sharing the ``staff_alerts`` outbox.

A row is *claimed* before it is posted (a compare-and-set on ``attempts``, as the email log's
claim) until ``claimed_until``: a dispatcher that dies mid-post leaves it to the next after the
lease (the robot may then show it twice; no robot takes an idempotency key). Each robot's rate
limit is kept twice: in this process (every attempt in its window) and across processes (the
attempts the outbox records in the last minute); a robot that still answers "too many" is left
alone for the time it asks, its alert kept. An error is retried with backoff until
``give_up_after``; a refusal (a bad key, a signature it does not take) fails the row at once.
A failed row is logged and counted (``billing_staff_alerts{outcome="failed"}``), never retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from activities.alerts import FAILED, PENDING, SENT, STAFF_ALERT
from activities.robots import RobotClient, RobotRateLimited, RobotRefused, RobotUnavailable
from core.alerts import Robot
from core.metrics import STAFF_ALERTS, STAFF_ALERTS_PENDING

log = logging.getLogger(__name__)

A = STAFF_ALERT.c


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claimed:
    id: int
    attempt: int
    title: str
    text: str
    created_at: datetime


class AlertDispatcher:
    def __init__(
        self,
        robots: list[Robot],
        session_factory: sessionmaker[Session],
        client: RobotClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        lease: timedelta = timedelta(seconds=60),  # outlasts a post (RobotClient's 10 s timeout)
        backoff: timedelta = timedelta(seconds=30),
        backoff_max: timedelta = timedelta(minutes=15),
        give_up_after: timedelta = timedelta(hours=24),
    ) -> None:
        self.robots = robots
        self.session_factory = session_factory
        self.client = client
        self.clock = clock
        self.lease = lease
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.give_up_after = give_up_after
        self._attempts: dict[str, deque[datetime]] = {robot.name: deque() for robot in robots}
        self._paused_until: dict[str, datetime] = {}

    async def run(self, interval: float = 1.0) -> None:
        """Until cancelled: a round every ``interval`` seconds; a round that fails (the database
        away) is logged and the next one tries again."""
        while True:
            try:
                await self.run_once()
            except Exception as err:  # the next round tries again; the rows wait in the outbox
                log.warning("staff alerts: a round failed: %s: %s", type(err).__name__, err)
            await asyncio.sleep(interval)

    async def run_once(self) -> int:
        """One round: each robot posts what is due within its budget. Returns how many posted."""
        posted = await asyncio.gather(*(self._robot_round(robot) for robot in self.robots))
        await asyncio.to_thread(self._count_pending)
        return sum(posted)

    async def _robot_round(self, robot: Robot) -> int:
        posted = 0
        while self._budget(robot, self.clock()) > 0 and await asyncio.to_thread(
            self._recent_attempts_ok, robot
        ):
            claimed = await asyncio.to_thread(self._claim, robot)
            if claimed is None:
                break
            self._attempts[robot.name].append(self.clock())
            if not await self._post(robot, claimed):
                break
            posted += 1
        return posted

    def _budget(self, robot: Robot, now: datetime) -> int:
        """How many more this process may post to ``robot`` now (0 while it is paused)."""
        if self._paused_until.get(robot.name, now) > now:
            return 0
        seen = self._attempts[robot.name]
        longest = max(limit.seconds for limit in robot.limits)
        while seen and seen[0] <= now - timedelta(seconds=longest):
            seen.popleft()
        return min(
            limit.count - sum(1 for at in seen if at > now - timedelta(seconds=limit.seconds))
            for limit in robot.limits
        )

    def _recent_attempts_ok(self, robot: Robot) -> bool:
        """Across every dispatcher: fewer attempts in the last minute than the robot takes."""
        now = self.clock()
        per_minute = min(limit.count for limit in robot.limits if limit.seconds == 60.0)
        since = now - timedelta(minutes=1)
        with self.session_factory() as session:
            count = session.scalar(
                select(func.count())
                .select_from(STAFF_ALERT)
                .where(A.robot == robot.name, A.attempted_at > since)
            )
        return (count or 0) < per_minute

    async def _post(self, robot: Robot, claimed: Claimed) -> bool:
        """Post one claimed alert and record what became of it; False: stop this robot's round."""
        service = robot.service.value
        try:
            await self.client.post(robot, claimed.title, claimed.text)
        except RobotRateLimited as exc:
            until = self.clock() + timedelta(seconds=exc.retry_after)
            self._paused_until[robot.name] = until
            await asyncio.to_thread(self._finish, claimed, due_at=until, error=str(exc))
            STAFF_ALERTS.labels(service, "rate_limited").inc()
            log.warning("staff alerts: %s is rate limited until %s", robot.name, until)
            return False
        except RobotRefused as exc:
            await asyncio.to_thread(self._finish, claimed, status=FAILED, error=str(exc))
            STAFF_ALERTS.labels(service, "failed").inc()
            log.error("staff alert %d to %s refused for good: %s", claimed.id, robot.name, exc)
            return True
        except RobotUnavailable as exc:
            return await self._retry_later(robot, claimed, str(exc))
        except Exception as exc:  # a bug of ours or of the client: the row is retried, not lost
            return await self._retry_later(robot, claimed, f"{type(exc).__name__}: {exc}")
        await asyncio.to_thread(self._finish, claimed, status=SENT, sent_at=self.clock())
        STAFF_ALERTS.labels(service, "sent").inc()
        return True

    async def _retry_later(self, robot: Robot, claimed: Claimed, error: str) -> bool:
        now = self.clock()
        service = robot.service.value
        if now - claimed.created_at >= self.give_up_after:
            await asyncio.to_thread(
                self._finish, claimed, status=FAILED, error=f"gave up after {error}"
            )
            STAFF_ALERTS.labels(service, "failed").inc()
            log.error("staff alert %d to %s given up: %s", claimed.id, robot.name, error)
            return False
        pause = min(self.backoff * 2 ** (claimed.attempt - 1), self.backoff_max)
        await asyncio.to_thread(self._finish, claimed, due_at=now + pause, error=error)
        STAFF_ALERTS.labels(service, "retried").inc()
        log.warning("staff alert %d to %s: %s; again in %s", claimed.id, robot.name, error, pause)
        return False  # the robot is down: its other alerts wait for the next round

    # ------------------------------------------------------------------ the outbox

    def _claim(self, robot: Robot) -> Claimed | None:
        """The oldest due alert of ``robot`` no other dispatcher holds, now held by this one."""
        now = self.clock()
        free = or_(A.claimed_until.is_(None), A.claimed_until < now)
        due = and_(A.robot == robot.name, A.status == PENDING, A.due_at <= now, free)
        with self.session_factory() as session:
            for _ in range(3):  # another dispatcher took it first: the next one
                row = session.execute(
                    select(A.id, A.attempts, A.title, A.text, A.created_at)
                    .where(due)
                    .order_by(A.due_at, A.id)
                    .limit(1)
                ).first()
                if row is None:
                    return None
                attempt = row.attempts + 1
                result = session.execute(
                    update(STAFF_ALERT)
                    .where(A.id == row.id, A.attempts == row.attempts, due)
                    .values(
                        attempts=attempt,
                        claimed_until=now + self.lease,
                        attempted_at=now,
                        updated_at=now,
                    )
                )
                session.commit()
                if cast(CursorResult[Any], result).rowcount == 1:
                    return Claimed(row.id, attempt, row.title, row.text, row.created_at)
        return None

    def _finish(self, claimed: Claimed, **values: Any) -> None:
        """Record an attempt's outcome, while that attempt still holds the row."""
        with self.session_factory() as session:
            session.execute(
                update(STAFF_ALERT)
                .where(A.id == claimed.id, A.attempts == claimed.attempt, A.status == PENDING)
                .values(claimed_until=None, updated_at=self.clock(), **values)
            )
            session.commit()

    def _count_pending(self) -> None:
        services = {robot.name: robot.service.value for robot in self.robots}
        counts = dict.fromkeys(services.values(), 0)
        with self.session_factory() as session:
            rows = session.execute(
                select(A.robot, func.count()).where(A.status == PENDING).group_by(A.robot)
            ).all()
        for name, count in rows:
            if name in services:
                counts[services[name]] += count
        for service, count in counts.items():
            STAFF_ALERTS_PENDING.labels(service).set(count)

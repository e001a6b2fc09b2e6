"""Scenario 7: the workspace's pages with thousands of open cases and collections.

The product's worker (a subprocess) brings `workflows` billing cases and as many collections (and
their customers' accounts) to their first wait on the bench's dev server (owners spread over a
team, every priority); by default 10,000 of each, which a quiet 2-core machine does in about 13
minutes (26.7 a second). The projection is then filled up to `rows` open cases and `rows` open
collections with rows of the same shape, for a smaller run (`--workspace-workflows`): a queue page
reads only the projection, so its size is what counts there. A case page asks its workflow: with
more workflows than the worker caches, most of them replay first, so in a smaller run the worker
caches the share of the real workflows it would cache of `rows` (1,000 real of each against
10,000: a cache of 100), and a case page replays as often as it would with all of them real.
Then an agent, signed in with a local account, asks the workspace (in this process, over the same
dev server) for queue pages (every queue, pages and filters) and case pages (random open cases:
most are long evicted from the worker's cache, so the query replays their history). Each page's
time is taken inside the app, from the request to the last byte of the answer: the server's side,
without the client's.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.env import WORKER, Child, DevServer, worker_env
from bench.open_workflows import quantile
from core.models import Locale, Priority
from core.settings import Settings
from db.migrate import upgrade
from db.session import make_engine
from db.tables import Case, table
from db.tables import Collections as CollectionsRow
from service import Service
from service.users import NewUser, Role
from service.workspace import Queue
from tests.workflow_support import billing_failure, open_case
from web.app import create_app

TEAM = [f"agent.{n:02d}@partner.example.cn" for n in range(20)]
ME = TEAM[0]
PASSWORD = "bench password, long enough"
STARTS_AT_ONCE = 50


@dataclass
class PageTimes:
    what: str
    ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "pages": len(self.ms),
            "statuses": self.statuses,
            "p50_ms": round(statistics.median(self.ms), 1),
            "p95_ms": round(quantile(self.ms, 0.95), 1),
            "max_ms": round(max(self.ms), 1),
        }


@dataclass
class WorkspaceRun:
    workflows: int  # real cases, and as many real collections
    rows: int  # open cases, and as many open collections, in the projection
    seed_seconds: float  # the workflows brought to their first wait
    pages: list[PageTimes]
    cache: int  # the worker's max_cached_workflows in this run


class Timed:
    """The app's own time per request: from its first call to the end of its answer's body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = 1000 * (time.perf_counter() - start)

        await self.app(scope, receive, timed)


def projected(database_url: str) -> tuple[int, int]:
    """Open cases and collections the worker has stored so far."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        cases = db.execute("SELECT count(*) FROM cases").fetchone()[0]
        collections = db.execute("SELECT count(*) FROM collections").fetchone()[0]
    return int(cases), int(collections)


async def seed(
    service: Service, count: int, *, team: list[str] = TEAM, collections: bool = True
) -> list[str]:
    """`count` cases (owners over the team, a tenth unassigned, every priority) and `count`
    collections (unless not), started `STARTS_AT_ONCE` at a time; the case ids."""
    pick = random.Random(7)
    limit = asyncio.Semaphore(STARTS_AT_ONCE)
    priorities = list(Priority)
    ids: list[str] = []

    async def one(n: int) -> None:
        owner = None if n % 10 == 9 else team[(n - n // 10) % len(team)]  # each has some
        amount = f"{pick.randrange(0, 100_000)}.00"
        case = open_case(owner=owner, priority=priorities[n % len(priorities)], amount=amount)
        failure = billing_failure(amount=str(Decimal(amount) + 1), subscriptions=1)
        async with limit:
            await service.cases.open(case)
            if collections:
                await service.collections.start(failure)
        ids.append(case.case_id)

    await asyncio.gather(*(one(n) for n in range(count)))
    return ids


def pad(database_url: str, rows: int) -> None:
    """Open cases and collections straight into the projection, up to `rows` of each, as the
    worker writes them (owners over the team, a tenth unassigned, every priority)."""
    cases_now, collections_now = projected(database_url)
    now = datetime.now(UTC)
    priorities = [priority.value for priority in Priority]
    customer = {
        "tenant_id": "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64",
        "customer_name": "上海云帆信息科技有限公司",
        "customer_email": "finance@yunfan.example.cn",
        "locale": "zh-CN",
        "created_at": now,
        "updated_at": now,
    }
    cases = [
        customer
        | {
            "case_id": f"BP{n:08d}",
            "workflow_id": f"case-BP{n:08d}",
            "status": "open" if n % 3 else "waiting-on-customer",
            "invoice_id": f"GP{n:08d}",
            "category": "invoice-dispute",
            "priority": priorities[n % len(priorities)],
            "disputed_amount": Decimal(n % 100_000),
            "currency": "CNY",
            "description": "padding",
            "owner": None if n % 10 == 9 else TEAM[n % len(TEAM)],
            "opened_at": now - timedelta(minutes=n),
            "sla_breached": n % 50 == 0,
        }
        for n in range(max(0, rows - cases_now))
    ]
    collections = [
        customer
        | {
            "invoice_id": f"GP{n:08d}",
            "workflow_id": f"collections-GP{n:08d}",
            "status": "active",
            "stage": "payment-failed",
            "currency": "CNY",
            "amount_due": Decimal("12340.50"),
            "paid": Decimal(0),
            "credited": Decimal(0),
            "balance": Decimal("12340.50"),
            "first_failed_at": now - timedelta(minutes=n),
            "subscription_ids": [],
            "suspended_subscriptions": [],
        }
        for n in range(max(0, rows - collections_now))
    ]
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for model, values in ((Case, cases), (CollectionsRow, collections)):
                if values:
                    connection.execute(insert(table(model)), values)
    finally:
        engine.dispose()


async def run_workspace(
    server: DevServer,
    workdir: Path,
    tuning: dict[str, int],
    *,
    workflows: int,
    rows: int,
    requests: int,
) -> WorkspaceRun:
    run_dir = workdir / f"workspace-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    # the worker caches the share of the real workflows it would cache of `rows` of each: a case
    # page misses the cache (and replays its workflow's history) as often as it would there
    default = Settings.model_fields["max_cached_workflows"].default
    cache = scaled_cache(tuning.get("max_cached_workflows", default), workflows, rows)
    env = worker_env(run_dir.name, run_dir, {**tuning, "max_cached_workflows": cache})
    upgrade(env["DATABASE_URL"])
    settings = Settings(
        task_queue=env["TASK_QUEUE"],
        database_url=env["DATABASE_URL"],
        outbox_dir=Path(env["OUTBOX_DIR"]),
        web_session_secret=SecretStr(uuid.uuid4().hex * 2),
        web_secure_cookies=False,  # its client speaks plain http
    )
    service = Service(server.client, settings)
    worker = Child.start("worker", WORKER, env, run_dir / "worker.log")
    try:
        start = time.perf_counter()
        ids = await seed(service, workflows)
        while (stored := projected(settings.database_url)) < (workflows, workflows):
            if worker.process.poll() is not None:
                raise RuntimeError(f"the worker stopped at {stored}:\n{worker.tail()}")
            print(f"  7. stored {stored[0]:,} cases, {stored[1]:,} collections", file=sys.stderr)
            await asyncio.sleep(5)
        seeded = time.perf_counter() - start
        pad(settings.database_url, rows)
        await service.users.add(
            NewUser(
                email=ME,
                name="Bench",
                roles=[Role.AGENT],
                locale=Locale.ZH_CN,
                password=SecretStr(PASSWORD),
            )
        )

        async def factory() -> Service:
            return service

        timed = Timed(create_app(settings, factory))
        pages = await browse(timed, ids, requests)
    finally:
        await worker.stop()
    return WorkspaceRun(workflows, max(rows, workflows), seeded, pages, cache)


def scaled_cache(cache: int, workflows: int, rows: int) -> int:
    """The cache that holds the share of `workflows` that `cache` holds of `rows` (at least 1)."""
    return max(1, min(cache, cache * workflows // max(rows, workflows)))


async def browse(app: Timed, ids: list[str], requests: int) -> list[PageTimes]:
    """One agent's pages, one at a time: queues (each queue, pages 1-3, a filter now and then),
    case pages (random cases) and the collections list."""
    pick = random.Random(11)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web")
    login = await client.get("/login")
    token = login.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = await client.post(
        "/login", data={"email": ME, "password": PASSWORD, "csrf_token": token}
    )
    assert signed.status_code == 303, signed.text
    queues, case_pages = PageTimes("queue page"), PageTimes("case page")
    lists = PageTimes("collections list")
    for n in range(requests):
        queue = list(Queue)[n % len(Queue)]
        query = f"?page={1 + n % 3}" + ("&priority=high" if n % 4 == 3 else "")
        for times, path in (
            (queues, f"/queues/{queue.value}{query}"),
            (case_pages, f"/cases/{pick.choice(ids)}"),
            (lists, f"/collections?page={1 + n % 3}"),
        ):
            answer = await client.get(path)
            times.statuses[answer.status_code] = times.statuses.get(answer.status_code, 0) + 1
            times.ms.append(app.last_ms)
    return [queues, case_pages, lists]

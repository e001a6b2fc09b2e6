"""Scenario 6, the IMAP path: customers' replies put into a shared mailbox on a private Dovecot
(tests/dovecot.py) at a steady rate, read by `starter.py mail watch` with INBOUND_BACKEND=imap
over IMAPS, as production runs it, to their cases through the product's worker. Each reply is
timed from its APPEND to the moment the inbound service recorded it done (the case had taken the
reply): the watch's look (IDLE, or a 1 s poll on a server without IDLE) and the service's work."""

from __future__ import annotations

import asyncio
import imaplib
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.email_loop import THREAD_SECRET, open_case, reply_email
from bench.env import BIN, WORKER, Child, DevServer, worker_env
from bench.report import Row
from core.settings import Settings
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from db.tables import InboundMail
from service import Service
from tests.dovecot import Dovecot

WATCH = [str(BIN / "python"), "starter.py", "mail", "watch"]
POLL_SECONDS = 1.0
# replies put into the mailbox a second: far above what a partner's customers send (a billing
# run's replies come over hours), and a pace the sequential loop keeps up with on a shared machine
RATE = 2.0
TARGET_P95_MS = 2000
WITHOUT_IDLE = "IMAP4rev1 UIDPLUS MOVE"  # what a server offers that has no IDLE


@dataclass
class ImapLoopRun:
    replies: int
    rate: float  # replies put into the mailbox a second
    idle: bool
    arrival_ms: list[float]  # each reply, from its APPEND to its case having it

    def p(self, q: int) -> float:
        return statistics.quantiles(self.arrival_ms, n=100)[q - 1]


async def run_imap_loop(
    server: DevServer,
    workdir: Path,
    tuning: dict[str, int],
    *,
    cases: int,
    replies: int,
    rate: float,
    idle: bool,
) -> ImapLoopRun:
    task_queue = f"bench-imap-{uuid.uuid4().hex[:8]}"
    run_dir = workdir / task_queue
    run_dir.mkdir(parents=True)
    env = worker_env(task_queue, run_dir, tuning) | {"EMAIL_THREAD_SECRET": THREAD_SECRET}
    upgrade(env["DATABASE_URL"])
    service = Service(server.client, Settings(task_queue=task_queue))
    with Dovecot(capabilities=None if idle else WITHOUT_IDLE) as dovecot:
        user, password = dovecot.account()
        watch_env = env | {
            "INBOUND_BACKEND": "imap",
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": str(dovecot.tls_port),
            "IMAP_SECURITY": "tls",
            "IMAP_USERNAME": user,
            "IMAP_PASSWORD": password,
            "IMAP_POLL_SECONDS": str(POLL_SECONDS),
            "SSL_CERT_FILE": str(dovecot.cert),  # the private server's own certificate
        }
        worker = Child.start("worker", WORKER, env, run_dir / "worker.log")
        watch = Child.start("mail watch", WATCH, watch_env, run_dir / "watch.log")
        try:
            ids = [await open_case(service) for _ in range(cases)]
            for case_id in ids:  # each case has taken its first update: the worker is warm
                await service.cases.show(case_id)
            client = await asyncio.to_thread(dovecot.client, user, password)
            try:
                arrived = await _arrive(client, ids, replies, rate)
            finally:
                await asyncio.to_thread(client.logout)
            done = await _taken(env["DATABASE_URL"], arrived, watch, within=60 + replies / rate)
        finally:
            await watch.stop()
            await worker.stop()
    return ImapLoopRun(replies, rate, idle, [1000 * done[m] for m in arrived])


async def _arrive(
    client: imaplib.IMAP4, ids: list[str], replies: int, rate: float
) -> dict[str, datetime]:
    """Each reply put into the inbox on its tick; when, by its Message-ID."""
    arrived: dict[str, datetime] = {}
    start = time.monotonic()
    for n in range(replies):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        message_id = f"<{uuid.uuid4()}@bench.example.cn>"
        raw = reply_email(ids[n % len(ids)], n, message_id)
        arrived[message_id] = datetime.now(UTC)
        answer, said = await asyncio.to_thread(client.append, "INBOX", None, None, raw)
        if answer != "OK":
            raise RuntimeError(f"APPEND: {said}")
    return arrived


async def _taken(
    database_url: str, arrived: dict[str, datetime], watch: Child, within: float
) -> dict[str, float]:
    """Seconds from each reply's arrival to its inbound record's outcome, once all have one."""
    session = make_session_factory(make_engine(database_url))
    deadline = time.monotonic() + within
    while True:
        with session() as db:
            rows: list[Any] = list(
                db.execute(
                    select(InboundMail.message_id, InboundMail.outcome, InboundMail.updated_at)
                ).all()
            )
        finished = [row for row in rows if row.outcome]
        if len(finished) >= len(arrived):
            break
        if watch.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{len(finished)} of {len(arrived)} replies taken:\n{watch.tail()}")
        await asyncio.sleep(0.5)
    wrong = [row.outcome for row in finished if row.outcome != "replied"]
    if wrong or {row.message_id for row in finished} != set(arrived):
        raise RuntimeError(f"not each reply replied once: {wrong[:5]}\n{watch.tail()}")
    return {r.message_id: (r.updated_at - arrived[r.message_id]).total_seconds() for r in finished}


def imap_rows(runs: list[ImapLoopRun], result: dict[str, Any]) -> list[Row]:
    result["imap_loop"] = [asdict(run) | {"p95_ms": run.p(95)} for run in runs]
    return [
        Row(
            "6",
            f"IMAP reply, APPEND to the case's change: p50 / p95 ms ({run.replies:,} replies, "
            f"{run.rate:g}/s, {'IDLE' if run.idle else f'a {POLL_SECONDS:g} s poll, no IDLE'})",
            f"{statistics.median(run.arrival_ms):.0f} / {run.p(95):.0f}",
            target=f"p95 ≤ {TARGET_P95_MS}",
            met=run.p(95) <= TARGET_P95_MS,
        )
        for run in runs
    ]

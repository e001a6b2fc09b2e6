"""Scenario 8: the load of a real team. `agents` agents, each signed in with a local account, drive
the workspace over HTTP with locust (bench/locustfile.py, headless, a subprocess) with think time
between their steps: they open queues and their cases, add notes, reply to customers and resolve
cases, while a billing run of `lines` failures imports (`starter.py import failures FILE`, a
subprocess) into the same worker. Every process is the product's own: the worker
(`worker.py`), the workspace (`python -m web`, uvicorn) and the importer, against the bench's dev
server and a SQLite database. Each request is timed by locust, on the client's side: the whole
round trip over the loopback, what an agent waits for.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.env import BIN, ROOT, WORKER, Child, DevServer, free_port, worker_env
from bench.open_workflows import quantile
from bench.starts import write_failures
from bench.workspace import projected, seed
from core.models import Locale
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from service.users import NewUser, Role

PASSWORD = "bench team password, long enough"
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
IMPORT_WAIT = 120.0  # seconds the import may go on after the agents stop, to time it whole


@dataclass
class Measured:
    """What locust measured for one kind of request (its CSV's row)."""

    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass
class TeamRun:
    agents: int
    cases: int  # open cases, spread over the agents
    lines: int  # the billing run's failures
    pace: float  # lines a second it is imported at (0: flat out)
    apart: bool  # the cases' worker a process apart from the billing run's
    seconds: float  # how long the agents worked
    think_seconds: tuple[float, float]
    import_seconds: float | None  # from the agents' start; None: still importing after IMPORT_WAIT
    import_code: int | None
    requests: list[Measured] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "3× page: case: …", the most first

    def all_of(self, kind: str) -> Measured:
        """Every page ("page") or every action ("action") as one."""
        return next(m for m in self.requests if m.name == f"{kind}: (all)")


async def run_team(
    server: DevServer,
    workdir: Path,
    tuning: dict[str, int],
    *,
    agents: int,
    cases: int,
    lines: int,
    seconds: float,
    pace: float = 0,
    apart: bool = False,
    think: tuple[float, float] = (2.0, 6.0),
) -> TeamRun:
    run_dir = workdir / f"team-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    env = worker_env(run_dir.name, run_dir, tuning)
    upgrade(env["DATABASE_URL"])
    secret = uuid.uuid4().hex * 2
    settings = Settings(
        task_queue=env["TASK_QUEUE"],
        database_url=env["DATABASE_URL"],
        outbox_dir=Path(env["OUTBOX_DIR"]),
        web_session_secret=SecretStr(secret),
        web_secure_cookies=False,  # locust speaks plain http
    )
    service = Service(server.client, settings)
    team = [f"agent.{n:03d}@partner.example.cn" for n in range(agents)]
    if apart:  # the cases' worker process apart from the billing run's (WORKER_QUEUES)
        worker = Child.start(
            "worker", WORKER, {**env, "WORKER_QUEUES": "cases"}, run_dir / "worker.log"
        )
        bulk = Child.start(
            "bulk worker", WORKER, {**env, "WORKER_QUEUES": "invoices"}, run_dir / "bulk.log"
        )
        children = [worker, bulk]
    else:
        worker = Child.start("worker", WORKER, env, run_dir / "worker.log")
        children = [worker]
    importing: asyncio.Task[int] | None = None
    try:
        ids = await seed(service, cases, team=team, collections=False)
        while projected(settings.database_url)[0] < cases:
            if worker.process.poll() is not None:
                raise RuntimeError(f"the worker stopped:\n{worker.tail()}")
            await asyncio.sleep(2)
        for email in team:
            await service.users.add(
                NewUser(
                    email=email,
                    name=email.split("@")[0],
                    roles=[Role.AGENT],
                    locale=Locale.ZH_CN,
                    password=SecretStr(PASSWORD),
                )
            )
        owners = await asyncio.to_thread(_owners, settings.database_url, ids)
        team_file = run_dir / "team.json"
        team_file.write_text(
            json.dumps(
                {
                    "password": PASSWORD,
                    "think_seconds": list(think),
                    "agents": [
                        {"email": email, "cases": [c for c, o in owners if o == email]}
                        for email in team
                    ],
                }
            )
        )
        port = free_port()
        web_env = {
            **env,
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port),
            "WEB_SESSION_SECRET": secret,
            "WEB_SECURE_COOKIES": "false",
        }
        web = Child.start(
            "workspace", [str(BIN / "python"), "-m", "web"], web_env, run_dir / "web.log"
        )
        children.append(web)
        host = f"http://127.0.0.1:{port}"
        await _answering(web, f"{host}/login")
        failures = run_dir / "failures.csv"
        write_failures(failures, lines, prefix=f"R{uuid.uuid4().hex[:6].upper()}-")
        paced = ["--pace", str(pace)]
        importer = Child.start(
            "import",
            [str(BIN / "python"), "starter.py", "import", "failures", str(failures), *paced],
            env,
            run_dir / "import.log",
        )
        children.append(importer)
        times = run_dir / "times.jsonl"
        started = time.perf_counter()
        locust = Child.start(
            "locust",
            [
                str(BIN / "locust"),
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                host,
                "--users",
                str(agents),
                "--spawn-rate",
                "1",  # one a second: the workspace checks two passwords at a time
                "--run-time",
                f"{seconds:.0f}s",
                "--stop-timeout",
                "30",
                "--only-summary",
                "--exit-code-on-error",
                "0",
            ],
            {"BENCH_TEAM": str(team_file), "BENCH_TIMES": str(times)},
            run_dir / "locust.log",
        )
        children.append(locust)
        # each reaped by its own wait (wait4: a poll() would take the exit from it)
        ended: list[float] = []
        importing = asyncio.create_task(importer.wait())
        importing.add_done_callback(lambda _: ended.append(time.perf_counter() - started))
        if await locust.wait():
            raise RuntimeError(f"locust failed with {locust.returncode}:\n{locust.tail()}")
        worked = time.perf_counter() - started
        # the import's own time, should it outlast the agents
        await asyncio.wait({importing}, timeout=IMPORT_WAIT)
        return TeamRun(
            agents,
            cases,
            lines,
            pace,
            apart,
            worked,
            think,
            ended[0] if ended else None,
            importer.returncode,
            *_measured(times),
        )
    finally:
        if importing is not None:
            importing.cancel()  # stopped below, if it still runs
        for child in reversed(children):
            await child.stop()


def _owners(database_url: str, ids: list[str]) -> list[tuple[str, str | None]]:
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("SELECT case_id, owner FROM cases").fetchall()
    wanted = set(ids)
    return [(case_id, owner) for case_id, owner in rows if case_id in wanted]


async def _answering(web: Child, url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if web.process.poll() is not None:
                raise RuntimeError(f"the workspace exited:\n{web.tail()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"the workspace did not answer in {within:.0f} s:\n{web.tail()}")


def _measured(path: Path) -> tuple[list[Measured], list[str]]:
    """Each kind of request, then every page and every action together; the errors, counted."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["name"], []).append(record)
    for prefix in ("page: ", "action: "):
        groups[f"{prefix}(all)"] = [r for r in records if r["name"].startswith(prefix)]
    measured = [
        Measured(
            name,
            len(group),
            sum(1 for r in group if r["error"]),
            round(quantile([r["ms"] for r in group], 0.50), 1) if group else 0.0,
            round(quantile([r["ms"] for r in group], 0.95), 1) if group else 0.0,
            round(max((r["ms"] for r in group), default=0.0), 1),
        )
        for name, group in groups.items()
    ]
    errors = Counter(f"{r['name']}: {r['error']}" for r in records if r["error"])
    return measured, [f"{n}× {what}" for what, n in errors.most_common()]

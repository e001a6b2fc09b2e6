"""Scenario 6: the email loop. SendGrid's Event Webhook batches through the API against raw
Temporal signals at the same concurrency; customers' replies through Inbound Parse, each timed
from the POST to the answer (given once the case has taken the reply). The API (`python -m api`)
and the product's worker run in subprocesses, as `make run` starts them."""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from bench.env import BIN, WORKER, Child, DevServer, free_port, worker_env
from core.ids import case_workflow_id
from core.models import CaseForm, Category
from core.settings import Settings
from core.threads import MAILBOX, thread_token
from db.migrate import upgrade
from service import Service

T = TypeVar("T")
API = [str(BIN / "python"), "-m", "api"]
# the API's paths and SendGrid's headers, as SendGrid's own documentation names them
EVENTS, INBOUND = "/v1/email-events/sendgrid", "/v1/inbound/sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
THREAD_SECRET = "bench-thread-secret-0123456789abcdef"
PARSE_SECRET = "bench-parse-secret-0123456789"


@dataclass
class EmailLoopRun:
    events: int
    batch: int
    concurrency: int
    events_seconds: float
    signals_seconds: float
    replies: int
    reply_ms: list[float]

    @property
    def ratio(self) -> float:
        return self.signals_seconds / self.events_seconds  # events/s over signals/s

    def p(self, q: int) -> float:
        return statistics.quantiles(self.reply_ms, n=100)[q - 1]


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
    }


def reply_email(case_id: str, n: int, message_id: str) -> bytes:
    """The customer's ``n``-th reply to the case, as their mail client writes it."""
    token = thread_token(case_workflow_id(case_id), SecretStr(THREAD_SECRET))
    return (
        f"From: finance@bench.example.cn\r\nTo: {MAILBOX}+{token}@reply.bench.example.cn\r\n"
        f"Subject: re {case_id}\r\nMessage-ID: {message_id}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"第 {n} 次回复：发票号 G000123456。\r\n"
    ).encode()


def _reply(case_id: str, n: int) -> tuple[bytes, str]:
    raw = reply_email(case_id, n, f"<{uuid.uuid4()}@bench.example.cn>")
    body = (
        b'--xYzZY\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        + raw
        + b'\r\n--xYzZY\r\nContent-Disposition: form-data; name="SPF"\r\n\r\npass\r\n--xYzZY--\r\n'
    )
    return body, "multipart/form-data; boundary=xYzZY"


async def run_email_loop(
    server: DevServer,
    workdir: Path,
    tuning: dict[str, int],
    *,
    events: int,
    batch: int,
    concurrency: int,
    cases: int,
    replies: int,
    reply_concurrency: int,
) -> EmailLoopRun:
    task_queue = f"bench-email-{uuid.uuid4().hex[:8]}"
    run_dir = workdir / task_queue
    run_dir.mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    port = free_port()
    env = worker_env(task_queue, run_dir, tuning) | {
        "EMAIL_THREAD_SECRET": THREAD_SECRET,
        "INBOUND_DOMAIN": "reply.bench.example.cn",
        "INBOUND_PARSE_SECRET": PARSE_SECRET,
        "SENDGRID_EVENT_PUBLIC_KEY": base64.b64encode(public).decode(),
        "BILLING_WEBHOOK_SECRETS": "bench-billing-secret-0123",
        "PORTAL_WEBHOOK_SECRETS": "bench-portal-secret-01234",
        "API_PORT": str(port),
    }
    upgrade(env["DATABASE_URL"])
    service = Service(server.client, Settings(task_queue=task_queue))
    worker = Child.start("worker", WORKER, env, run_dir / "worker.log")
    api_process = Child.start("api", API, env, run_dir / "api.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
            await _ready(api, api_process)
            ids = [await open_case(service) for _ in range(cases)]
            for case_id in ids:  # each case has taken its first update: the worker is warm
                await service.cases.show(case_id)
            events_seconds = await _events(api, key, ids, events, batch, concurrency)
            signals_seconds = await _signals(server, ids, events, batch, concurrency)
            reply_ms = await _replies(api, ids, replies, reply_concurrency)
    finally:
        await api_process.stop()
        await worker.stop()
    return EmailLoopRun(
        events, batch, concurrency, events_seconds, signals_seconds, replies, reply_ms
    )


async def _ready(api: httpx.AsyncClient, process: Child, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise RuntimeError(f"the API exited while starting:\n{process.tail()}")
        try:
            if (await api.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the API is not ready in {within:.0f} s:\n{process.tail()}")


async def open_case(service: Service) -> str:
    form = CaseForm(
        tenant_id=str(uuid.uuid4()),
        name="上海示例科技有限公司",
        email="finance@bench.example.cn",
        category=Category.INVOICE_DISPUTE,
        description="十月发票多收了一台已删除的虚拟机。",
        amount=Decimal("1200.00"),
        opened_by="bench",
    )
    return (await service.cases.open(service.cases.prepare(form))).case_id


async def _gathered(jobs: list[T], concurrency: int, run: Callable[[T], Awaitable[None]]) -> float:
    """Wall seconds to run `run(job)` for every job, `concurrency` at a time."""
    todo = iter(jobs)

    async def lane() -> None:
        for job in todo:
            await run(job)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - start


async def _events(
    api: httpx.AsyncClient,
    key: ec.EllipticCurvePrivateKey,
    ids: list[str],
    events: int,
    batch: int,
    concurrency: int,
) -> float:
    now = int(time.time())
    kinds = ("processed", "delivered")
    bodies = [
        json.dumps(
            [
                {
                    "event": kinds[n % 2],
                    "sg_event_id": f"ev-{start + n}",
                    "timestamp": now,
                    "email": "finance@bench.example.cn",
                    "category": ["case_acknowledged"],
                    "dedup_key": f"{ids[(start + n) % len(ids)]}/case_acknowledged/{n}",
                    "workflow_id": case_workflow_id(ids[(start + n) % len(ids)]),
                }
                for n in range(min(batch, events - start))
            ]
        ).encode()
        for start in range(0, events, batch)
    ]

    async def post(body: bytes) -> None:
        answer = await api.post(EVENTS, content=body, headers=_signed(key, body))
        if answer.status_code != 200:
            raise RuntimeError(f"events: {answer.status_code} {answer.text}")

    return await _gathered(list(bodies), concurrency, post)


async def _signals(
    server: DevServer, ids: list[str], events: int, batch: int, concurrency: int
) -> float:
    """The baseline: the same number of raw signals (one the case ignores), a batch at a time."""

    async def send(start: int) -> None:
        await asyncio.gather(
            *(
                server.client.get_workflow_handle(
                    case_workflow_id(ids[(start + n) % len(ids)])
                ).signal("link_collections", "not-a-collections-id")
                for n in range(min(batch, events - start))
            )
        )

    return await _gathered(list(range(0, events, batch)), concurrency, send)


async def _replies(
    api: httpx.AsyncClient, ids: list[str], replies: int, concurrency: int
) -> list[float]:
    timings: list[float] = []
    auth = httpx.BasicAuth("sendgrid", PARSE_SECRET)

    async def post(n: int) -> None:
        body, content_type = _reply(ids[n % len(ids)], n)
        start = time.perf_counter()
        answer = await api.post(
            INBOUND, content=body, headers={"Content-Type": content_type}, auth=auth
        )
        timings.append(1000 * (time.perf_counter() - start))
        if answer.status_code != 200 or answer.json()["outcome"] != "replied":
            raise RuntimeError(f"inbound: {answer.status_code} {answer.text}")

    await _gathered(list(range(replies)), concurrency, post)
    return timings

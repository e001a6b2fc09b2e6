"""Crash workers and API processes while cases and collections run, then check that nothing was
lost.

Shared by `tests/test_chaos.py` (10 + 10, kills at quiet points) and `make chaos` (`python -m
chaos`): the real worker (`python worker.py`) and the real intake API (`python -m api`) run as
subprocesses that are SIGKILLed and restarted. Cases are opened, failures reported and invoices
paid through the HTTP intake as its callers do (signed, one Idempotency-Key per logical request,
retried on any process until a final answer); agents' actions go to Temporal as updates with fixed
ids. Every call is idempotent (a key answered once, updates with fixed ids, payment ids counted
once, a repeated start refused), so a call retried after a crash or a server restart never acts
twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import ProgrammingError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from core import search
from core.ids import case_workflow_id, collections_workflow_id
from core.models import (
    AddNote,
    BillingFailure,
    CaseRequest,
    CaseStatus,
    CaseView,
    Category,
    CollectionsView,
    Confirm,
    OpenCase,
    Outcome,
    PaymentReport,
    Resolve,
)
from core.settings import Settings
from db.migrate import upgrade
from db.session import make_engine, one_off_session
from db.tables import EmailLog
from service import Service
from service.errors import AlreadyExists, Unavailable
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
AGENT = "agent.chaos@partner.example.cn"
# the whole policy on day 0: a failure is emailed and its subscriptions suspended (dry-run) at once
FAST_POLICY = """
manager_email = "billing-manager@partner.example.cn"
[[steps]]
name = "payment-failed"
day = 0
email = "collections_payment_failed"
[[steps]]
name = "suspension"
day = 0
action = "suspend"
email = "collections_suspended"
"""
# what a crashed worker or a restarting server answers for a while: retried
TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}
PAUSE = 0.2
READY_TIMEOUT = 60.0  # seconds for a started API process to listen
CASES, FAILURES, PAYMENTS = "/v1/cases", "/v1/billing-failures", "/v1/payments"
# the intake's callers, each with its own secret setting (as api/app.py's CALLERS)
SECRET_OF = {
    CASES: "portal_webhook_secrets",
    FAILURES: "billing_webhook_secrets",
    PAYMENTS: "billing_webhook_secrets",
}
# only one chaos run at a time on a shared PostgreSQL database: `make chaos` and the test
_CHAOS_LOCK_KEY = 2_111_924_017


def chaos_settings(
    directory: Path, task_queue: str, codec_keys: str, database_url: str | None = None
) -> Settings:
    """A migrated database (`database_url`, else a SQLite file in `directory`), a file outbox,
    the day-0 collections policy, dry-run Partner Center and fresh callers' secrets."""
    policy = directory / "collections_policy.toml"
    policy.write_text(FAST_POLICY)
    settings = Settings(
        database_url=database_url or f"sqlite:///{directory / 'billing.db'}",
        outbox_dir=directory / "outbox",
        task_queue=task_queue,
        collections_policy_file=policy,
        partner_center_backend="dry-run",
        business_calendar=False,  # the day-0 policy runs now, whatever the hour in Beijing
        codec_keys=SecretStr(codec_keys),
        billing_webhook_secrets=SecretStr(secrets.token_urlsafe(24)),
        portal_webhook_secrets=SecretStr(secrets.token_urlsafe(24)),
    )
    upgrade(settings.database_url)
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def create_database(url: str) -> None:
    """Create the PostgreSQL database of `url` unless it exists, through the server's `postgres`
    database."""
    parsed = make_url(url)
    admin_url = parsed.set(database="postgres").render_as_string(hide_password=False)
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = "SELECT 1 FROM pg_database WHERE datname = :name"
            if not conn.scalar(text(exists), {"name": parsed.database}):
                with suppress(ProgrammingError):  # another run created it meanwhile
                    conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


class DatabaseBusy(RuntimeError):
    """Another chaos run holds the database."""


@contextmanager
def exclusive_database(url: str, wait: float | None = None) -> Iterator[str]:
    """The PostgreSQL database of `url`, created if missing, held by this run alone while the
    block runs (an advisory lock), its schema `public` emptied and migrated. DatabaseBusy when
    another run still holds it after `wait` seconds (None: wait as long as it takes)."""
    create_database(url)
    engine = make_engine(url)
    try:
        with engine.connect() as lock:
            deadline = None if wait is None else time.monotonic() + wait
            take = text("SELECT pg_try_advisory_lock(:key)")
            while not lock.scalar(take, {"key": _CHAOS_LOCK_KEY}):
                lock.rollback()
                if deadline is not None and time.monotonic() > deadline:
                    raise DatabaseBusy(f"another chaos run holds {make_url(url).database}")
                time.sleep(1)
            lock.commit()  # the session lock outlives the transaction; no snapshot held open
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            upgrade(url)
            try:
                yield url
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _CHAOS_LOCK_KEY})
                lock.commit()
    finally:
        engine.dispose()


class ChildProcess(ABC):
    """One process of the run (`command`) on the run's settings, against the Temporal server at
    `address`, its output in `log`; SIGKILLed and restarted."""

    def __init__(self, settings: Settings, address: str, log: Path, **env: str) -> None:
        assert settings.codec_keys is not None
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": "default",
            "DATABASE_URL": settings.database_url,
            "OUTBOX_DIR": str(settings.outbox_dir),
            "TASK_QUEUE": settings.task_queue,
            "COLLECTIONS_POLICY_FILE": str(settings.collections_policy_file),
            "PARTNER_CENTER_BACKEND": "dry-run",
            "BUSINESS_CALENDAR": "false",
            "EMAIL_BACKEND": "outbox",
            "CODEC_KEYS": settings.codec_keys.get_secret_value(),
            # versioned as in production: every worker is the same build, and each one that
            # starts makes it current (the same call again changes nothing)
            "WORKER_VERSIONING": "true",
            "WORKER_DEPLOYMENT_NAME": settings.task_queue,
            "WORKER_TAKE_OVER": "true",
            **env,
        }
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._log: IO[bytes] | None = None

    @abstractmethod
    def command(self) -> list[str]:
        """The process's command line (a worker's, an API process's)."""

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.starts += 1
        self.wait_ready()

    def wait_ready(self) -> None:
        """Return once the process serves; nothing to wait for unless it listens."""
        return None

    def wait_listening(self, port: int, what: str) -> None:
        """Until `port` on HOST answers; RuntimeError if the process exits first or it takes
        longer than READY_TIMEOUT."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{what} on :{port} exited with code {self.process.returncode} while "
                    f"starting (see {self.log_path})"
                )
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((HOST, port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{what} on :{port} not listening in {READY_TIMEOUT:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, whatever it was doing dies mid-flight."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.kills += 1
        self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        """A clean stop (SIGINT), SIGKILL if it hangs; closes the log."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class WorkerProcess(ChildProcess):
    """`python worker.py`: it polls the task queue as soon as it has connected."""

    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "worker.py")]


class ApiProcess(ChildProcess):
    """`python -m api` on 127.0.0.1:`port` with the callers' secrets of `settings`."""

    def __init__(self, settings: Settings, address: str, log: Path, port: int) -> None:
        assert settings.billing_webhook_secrets and settings.portal_webhook_secrets
        super().__init__(
            settings,
            address,
            log,
            API_HOST=HOST,
            API_PORT=str(port),
            BILLING_WEBHOOK_SECRETS=settings.billing_webhook_secrets.get_secret_value(),
            PORTAL_WEBHOOK_SECRETS=settings.portal_webhook_secrets.get_secret_value(),
        )
        self.port = port
        self.url = f"http://{HOST}:{port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "api"]

    def wait_ready(self) -> None:
        """Until the port answers: a request sent before would only be refused and retried."""
        self.wait_listening(self.port, "API")


def signature(secret: str, timestamp: int, path: str, key: str, body: bytes) -> str:
    """`X-Signature` as a caller computes it (docs/collections.md, "The HTTP intake"); chaos is a
    caller and does not import the API (tests/test_chaos.py checks it equals `api.signing.sign`)."""
    message = f"{timestamp}\nPOST\n{path}\n{key}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class IntakeRefused(Exception):
    """A final answer that is not a success (a 4xx other than 'still running, retry')."""

    def __init__(self, path: str, key: str, status: int, detail: str) -> None:
        super().__init__(f"{path} {key}: {status} {detail}")
        self.status = status


class Intake:
    """The HTTP intake as its callers use it: each logical request signed under one
    Idempotency-Key, sent to a random live API process and sent again (same key and body, a
    fresh timestamp) on a dropped connection, a timeout, a 5xx, 408, 429 or a 409 with
    Retry-After, until it has a final answer."""

    def __init__(self, apis: Sequence[ApiProcess], settings: Settings, timeout: float = 60) -> None:
        self._apis = apis
        self._secrets = {
            path: secret.get_secret_value().split(",")[-1]
            for path, name in SECRET_OF.items()
            if (secret := getattr(settings, name)) is not None
        }
        self._http = httpx.AsyncClient(timeout=timeout)
        self.requests = 0  # logical requests
        self.resent = 0  # sends after the first
        self.refused: list[IntakeRefused] = []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Intake:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def post(self, path: str, body: BaseModel, key: str) -> dict[str, Any]:
        raw = body.model_dump_json().encode()
        self.requests += 1
        while True:
            api = random.choice([api for api in self._apis if api.alive()] or self._apis)
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                "X-Signature-Timestamp": str(timestamp),
                "X-Signature": signature(self._secrets[path], timestamp, path, key, raw),
            }
            response: httpx.Response | None = None
            with suppress(httpx.TransportError):  # killed mid-request, not listening, too slow
                response = await self._http.post(api.url + path, content=raw, headers=headers)
            wait = _retry_in(response)
            if response is not None and wait is None:
                break
            self.resent += 1
            await asyncio.sleep(wait or PAUSE)
        if response.is_success:
            answer: dict[str, Any] = response.json()
            return answer
        try:
            detail = str(response.json().get("detail"))
        except ValueError:
            detail = response.text
        refused = IntakeRefused(path, key, response.status_code, detail)
        self.refused.append(refused)
        raise refused


def _retry_in(response: httpx.Response | None) -> float | None:
    """Seconds before the request is sent again (no answer: PAUSE), or None when the answer is
    final."""
    if response is None:
        return PAUSE
    status = response.status_code
    if status >= 500 or status in (408, 429):
        return PAUSE
    if status == 409 and "Retry-After" in response.headers:
        # the key's first attempt still runs, or died with its process (taken over later)
        return float(response.headers["Retry-After"])
    return None


def new_key(kind: str) -> str:
    """One Idempotency-Key per logical request."""
    return f"chaos-{kind}-{uuid.uuid4()}"


def case_form() -> CaseRequest:
    """What the customer portal sends for a new case (the case id is the API's, and the one who
    opened it the portal that signed it)."""
    return CaseRequest(
        tenant_id=str(uuid.uuid4()),
        name="上海示例科技有限公司",
        email="finance@customer.example.cn",
        category=Category.INVOICE_DISPUTE,
        description="October invoice charges a VM we deleted in September.",
        subscription_id=str(uuid.uuid4()),
        invoice_id="G000123456",
        amount=Decimal("12340.00"),
    )


async def open_case_http(intake: Intake, form: CaseRequest, key: str) -> str:
    """POST /v1/cases: the new case's id (the same for the same key, from any API process)."""
    answer = await intake.post(CASES, form, key)
    return str(answer["case_id"])


async def report_failure_http(intake: Intake, failure: BillingFailure, key: str) -> None:
    """POST /v1/billing-failures: started or joined."""
    await intake.post(FAILURES, failure, key)


async def pay_in_full(
    intake: Intake, client: Client, failure: BillingFailure, key: str
) -> CollectionsView:
    """POST /v1/payments with the whole amount under one payment id; the workflow's final view."""
    payment = PaymentReport(
        payment_id=f"PAY-{failure.invoice_id}",
        invoice_id=failure.invoice_id,
        amount=failure.amount_due,
        received_at=datetime.now(UTC),
    )
    await intake.post(PAYMENTS, payment, key)
    handle = client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(failure.invoice_id)
    )
    return await retry(handle.result)


async def retry(call: Callable[[], Awaitable[T]]) -> T:
    """Call until Temporal answers: a dead worker, a restarting server or a workflow task failed
    under CPU starvation is waited out."""
    while True:
        try:
            return await call()
        except RPCError as err:
            if err.status not in TRANSIENT:
                raise
        except WorkflowQueryFailedError:  # the worker failed the task (a deadlock detected)
            pass
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            if isinstance(err.__cause__, asyncio.CancelledError):  # cancelled here: no retry
                raise
        except (RuntimeError, Unavailable):  # the client's connection is being re-established
            pass
        await asyncio.sleep(PAUSE)


async def open_case(client: Client, settings: Settings, data: OpenCase) -> str:
    """Straight through the service layer (tests/test_faults.py), not the HTTP intake."""
    with suppress(AlreadyExists):  # a start retried after it succeeded
        await retry(lambda: Service(client, settings).cases.open(data))
    return data.case_id


async def report_failure(client: Client, settings: Settings, failure: BillingFailure) -> None:
    """Start or join: a repeat of the same failure id changes nothing."""
    await retry(lambda: Service(client, settings).collections.report_failure(failure))


async def resolve_case(client: Client, case_id: str) -> None:
    """A note, then a resolution: updates with fixed ids, so a retry is answered, not re-run."""
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, case_workflow_id(case_id))
    note = AddNote(text="Checked the meter data", by=AGENT)
    await retry(lambda: handle.execute_update(BillingCaseWorkflow.note, note, id="chaos-note"))
    resolution = Resolve(outcome=Outcome.EXPLAINED, summary="The charge is explained.", by=AGENT)
    # accepted is enough: its answer waits for the resolution email (confirm_case waits for it)
    await retry(
        lambda: handle.start_update(
            BillingCaseWorkflow.resolve,
            resolution,
            id="chaos-resolve",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
    )


async def confirm_case(client: Client, case_id: str) -> CaseView:
    """Once the customer has been told (resolved), the customer confirms; the final view."""
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, case_workflow_id(case_id))
    while True:
        described = await retry(handle.describe)
        if described.status is not WorkflowExecutionStatus.RUNNING:
            return await retry(handle.result)
        view = await retry(lambda: handle.query(BillingCaseWorkflow.view))
        if view.status is CaseStatus.RESOLVED:
            # it may end between the query and the update: described on the next round
            with suppress(RPCError, WorkflowUpdateFailedError):
                await retry(
                    lambda: handle.execute_update(
                        BillingCaseWorkflow.confirm, Confirm(), id="chaos-confirm"
                    )
                )
            continue
        await asyncio.sleep(PAUSE)


async def extra_cases(client: Client, settings: Settings, case_ids: set[str]) -> list[str]:
    """Case workflows on the run's task queue that no answer named: a case opened twice for one
    request (a retry after the first attempt had started it)."""
    known = {case_workflow_id(case_id) for case_id in case_ids}
    query = (
        f"{search.on_task_queues(settings.task_queues())} AND WorkflowType = 'BillingCaseWorkflow'"
    )
    return sorted(
        [found.id async for found in client.list_workflows(query) if found.id not in known]
    )


@dataclass(frozen=True)
class EmailCheck:
    """What went out (outbox files, or the keys an SMTP server received) against email_log: one
    email per dedup key, one 'sent' row per key."""

    sent: int  # email_log rows 'sent'
    not_sent: int  # rows left 'pending' or 'rejected'
    files: int  # .eml files in the outbox, or messages received
    duplicates: int  # keys that went out more than once, or went out with no 'sent' row
    retried: int  # sent rows that took more than one attempt (where a resend could happen)
    lost: int  # 'sent' rows whose email never went out


async def emails_settle(settings: Settings, seconds: float) -> None:
    """Until no email is pending (one retried after a refused connection, say), at most
    `seconds`: a workflow may end before an email another one sends has gone out."""
    deadline = time.monotonic() + seconds
    pending = select(func.count()).select_from(EmailLog).where(EmailLog.status == "pending")
    while time.monotonic() < deadline:
        with one_off_session(settings.database_url) as session:
            if not session.scalar(pending):
                return
        await asyncio.sleep(PAUSE)


def check_emails(settings: Settings, received: list[str] | None = None) -> EmailCheck:
    """`received`: the dedup keys of the messages a server got (else the outbox's files')."""
    with one_off_session(settings.database_url) as session:
        rows = list(session.scalars(select(EmailLog)))
        sent = {row.dedup_key for row in rows if row.status == "sent"}
        not_sent = sum(row.status != "sent" for row in rows)
        retried = sum(row.attempts > 1 for row in rows if row.status == "sent")
    if received is None:
        files = sorted(Path(settings.outbox_dir).glob("*.eml"))
        received = [str(message_from_bytes(f.read_bytes())["X-Dedup-Key"]) for f in files]
    keys: dict[str, int] = {}
    for key in received:
        keys[key] = keys.get(key, 0) + 1
    extra = sum(count - 1 for count in keys.values())
    return EmailCheck(
        sent=len(sent),
        not_sent=not_sent,
        files=len(received),
        duplicates=extra + len(set(keys) - sent),
        retried=retried,
        lost=len(sent - set(keys)),
    )

"""Crash the worker while cases and collections run, then check that nothing was lost.

Shared by `tests/test_chaos.py` (10 + 10, two kills) and `make chaos` (`python -m chaos`): the
real worker runs as a subprocess (`python worker.py`) that is SIGKILLed and restarted; the drivers
here talk to Temporal only through idempotent calls (updates with fixed ids, payment ids counted
once, a repeated start refused), so a call retried after a crash or a server restart never acts
twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import IO, TypeVar

from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from core.ids import case_workflow_id, collections_workflow_id
from core.models import (
    AddNote,
    BillingFailure,
    CaseStatus,
    CaseView,
    CollectionsView,
    Confirm,
    OpenCase,
    Outcome,
    PaymentReceived,
    Resolve,
)
from core.settings import Settings
from db.migrate import upgrade
from db.session import one_off_session
from db.tables import EmailLog
from service import Service
from service.errors import AlreadyExists, Unavailable
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
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


def chaos_settings(directory: Path, task_queue: str, codec_keys: str) -> Settings:
    """A migrated SQLite file, a file outbox, the day-0 collections policy, dry-run Partner
    Center, in `directory`."""
    policy = directory / "collections_policy.toml"
    policy.write_text(FAST_POLICY)
    settings = Settings(
        database_url=f"sqlite:///{directory / 'billing.db'}",
        outbox_dir=directory / "outbox",
        task_queue=task_queue,
        collections_policy_file=policy,
        partner_center_backend="dry-run",
        codec_keys=SecretStr(codec_keys),
    )
    upgrade(settings.database_url)
    return settings


class WorkerProcess:
    """`python worker.py` on `settings`, against the server at `address`; killed with SIGKILL."""

    def __init__(self, settings: Settings, address: str, log: Path) -> None:
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
            "EMAIL_BACKEND": "outbox",
            "CODEC_KEYS": settings.codec_keys.get_secret_value(),
        }
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, activities die mid-flight."""
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


async def retry(call: Callable[[], Awaitable[T]]) -> T:
    """Call until Temporal answers: a dead worker or a restarting server is waited out."""
    while True:
        try:
            return await call()
        except RPCError as err:
            if err.status not in TRANSIENT:
                raise
        except (RuntimeError, Unavailable):  # the client's connection is being re-established
            pass
        await asyncio.sleep(PAUSE)


async def open_case(client: Client, settings: Settings, data: OpenCase) -> str:
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
    await retry(
        lambda: handle.execute_update(BillingCaseWorkflow.resolve, resolution, id="chaos-resolve")
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


async def pay_in_full(client: Client, failure: BillingFailure) -> CollectionsView:
    """The whole amount under one payment id (counted once however often it is sent)."""
    handle = client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(failure.invoice_id)
    )
    payment = PaymentReceived(
        payment_id=f"PAY-{failure.invoice_id}",
        invoice_id=failure.invoice_id,
        amount=failure.amount_due,
        received_at=datetime.now(UTC),
    )
    described = await retry(handle.describe)
    if described.status is WorkflowExecutionStatus.RUNNING:
        # it may end meanwhile: its result says how
        with suppress(RPCError, WorkflowUpdateFailedError):
            await retry(
                lambda: handle.execute_update(
                    CollectionsWorkflow.payment_received, payment, id=f"chaos-{payment.payment_id}"
                )
            )
    return await retry(handle.result)


@dataclass(frozen=True)
class EmailCheck:
    """The outbox against email_log: one file per dedup key, one 'sent' row per key."""

    sent: int  # email_log rows 'sent'
    not_sent: int  # rows left 'pending' or 'rejected'
    files: int  # .eml files in the outbox
    duplicates: int  # keys found in more than one file, or a file per row mismatch
    retried: int  # sent rows that took more than one attempt (where a resend could happen)


def check_emails(settings: Settings) -> EmailCheck:
    with one_off_session(settings.database_url) as session:
        rows = list(session.scalars(select(EmailLog)))
        sent = {row.dedup_key for row in rows if row.status == "sent"}
        not_sent = sum(row.status != "sent" for row in rows)
        retried = sum(row.attempts > 1 for row in rows if row.status == "sent")
    files = sorted(Path(settings.outbox_dir).glob("*.eml"))
    keys: dict[str, int] = {}
    for file in files:
        key = str(message_from_bytes(file.read_bytes())["X-Dedup-Key"])
        keys[key] = keys.get(key, 0) + 1
    extra = sum(count - 1 for count in keys.values())
    unmatched = len(sent ^ set(keys))
    return EmailCheck(
        sent=len(sent),
        not_sent=not_sent,
        files=len(files),
        duplicates=extra + unmatched,
        retried=retried,
    )

"""The `invoice` commands of starter.py: bad input exits 2 naming the field, a refusal exits 1,
and the whole path (failure, show, payment, dispute, promise, waive) on the dev server."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

import starter
from core.settings import Settings
from tests.intake_support import failure_fields, unique_prefix

TENANT = "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64"
SUBSCRIPTION = "a7c4e2d9-1b3f-4c8a-8e6d-5f0b9c2a7e13"


def failure_args(invoice: str, failure_id: str, **overrides: str) -> list[str]:
    fields = failure_fields(invoice, failure_id)
    options = {
        "--failure-id": failure_id,
        "--tenant-id": fields["tenant_id"],
        "--name": fields["customer_name"],
        "--email": fields["customer_email"],
        "--amount": "10000.00",
        "--failed-at": fields["failed_at"],
        **overrides,
    }
    args = ["invoice", "fail", invoice]
    for option, value in options.items():
        args += [option, value]
    for subscription in fields["subscription_ids"]:
        args += ["--subscription", subscription]
    return args


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(starter.app, args, env=env)


def test_billing_failure_bad_field_exits_2() -> None:
    bad = invoke(failure_args("G000123456", "F-1", **{"--tenant-id": "not-a-guid"}))
    assert bad.exit_code == 2, bad.output
    assert "tenant_id" in bad.output and "invalid input" in bad.output
    naive = invoke(failure_args("G000123456", "F-1", **{"--failed-at": "2026-11-24T09:00:00"}))
    assert naive.exit_code == 2 and "failed_at: must include a timezone" in (naive.output)
    negative = invoke(failure_args("G000123456", "F-1", **{"--amount": "-3"}))
    assert negative.exit_code == 2 and "amount_due" in negative.output
    promise = invoke(["invoice", "promise", "G000123456", "--until", "2026-12-01T09:00:00"])
    assert promise.exit_code == 2 and "until: must include a timezone" in promise.output
    assert invoke(["invoice", "fail", "--help"]).exit_code == 0


async def test_collections_commands(dev_env: WorkflowEnvironment, running: Settings) -> None:
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
    }
    invoice = unique_prefix()

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(invoke, list(args), env)

    started = await run(*failure_args(invoice, f"{invoice}-F1"))
    # the worker runs in this process: its log lines may be in the output too
    assert started.exit_code == 0 and "started collections of" in started.output, started.output
    joined = await run(*failure_args(invoice, f"{invoice}-F2", **{"--amount": "12000.00"}))
    assert joined.exit_code == 0 and "joined the running collections" in joined.output

    paid = await run("invoice", "pay", invoice, "--payment-id", "P-1", "--amount", "2000")
    assert paid.exit_code == 0, paid.output
    assert "balance ¥10,000.00" in paid.output and "status active" in paid.output
    other = await run("invoice", "pay", invoice, "--payment-id", "P-1", "--amount", "2500")
    said = " ".join(other.output.split())
    assert other.exit_code == 1 and "¥2,000.00" in said and "¥2,500.00" in said, other.output

    shown = await run("invoice", "show", invoice)
    assert shown.exit_code == 0, shown.output
    for text in ("¥10,000.00", "active", f"{invoice}-F2", "billing-failed", "payment-received"):
        assert text in shown.output, text

    until = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    promised = await run("invoice", "promise", invoice, "--until", until, "--by", "agent.wang")
    assert promised.exit_code == 0 and "paused-promise" in promised.output, promised.output
    disputed = await run("invoice", "dispute", invoice, "--description", "Meter error", "--by", "a")
    assert disputed.exit_code == 0 and "paused-dispute" in disputed.output, disputed.output
    assert re.search(r"Linked case\s+BC-[0-9A-Z]{26}", disputed.output)  # a new case
    again = await run("invoice", "promise", invoice, "--until", until, "--by", "agent.wang")
    assert again.exit_code == 1 and "is paused-dispute" in again.output  # refused

    waived = await run("invoice", "waive", invoice, "--reason", "goodwill", "--by", "manager.li")
    assert waived.exit_code == 0 and "waived" in waived.output, waived.output
    fraud = await run("invoice", "fraud", invoice, "--reason", "stolen card", "--by", "manager.li")
    # refused either way: by the validator while the waived workflow winds up, or as ended
    assert fraud.exit_code == 1, fraud.output
    assert "cannot report fraud" in fraud.output or "has ended" in fraud.output, fraud.output

    unknown = await run("invoice", "pay", f"{invoice}X", "--payment-id", "P-9", "--amount", "1")
    assert unknown.exit_code == 1 and "not in collections" in unknown.output
    missing = await run("invoice", "show", f"{invoice}X")
    assert missing.exit_code == 1 and "not in collections" in missing.output

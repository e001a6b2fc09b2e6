"""Customer data never reaches Temporal in clear: a dispute settled by a credit runs on the real dev
server with the real worker; read back without the codec, neither workflow's history nor its
description holds the customer's name or email (search attributes hold only ids, by design).

`RECORD_HISTORIES=1` also writes both histories, decrypted, to tests/histories/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.codec import CodecError, new_key
from core.ids import case_workflow_id, collections_workflow_id
from core.models import (
    AddNote,
    BillingFailure,
    CaseStatus,
    CollectionsStatus,
    Confirm,
    Customer,
    OpenDispute,
    Outcome,
    Resolve,
    Waive,
)
from core.settings import Settings
from core.temporal import data_converter
from service import Service
from service.errors import ServiceError
from tests.clock_support import eventually
from tests.codec_support import decrypted, raw_history, replay_and_record
from tests.intake_support import guid, unique_prefix
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

# ASCII and CJK, so the check cannot pass just because one script is escaped somewhere
NAME = "Yunfan Privacy 7Q 云帆隐私测试有限公司"
EMAIL = "zhou.privacy-7q@yunfan-hidden.example.cn"
AGENT = "agent.wang@partner.example.cn"


def failure(invoice: str) -> BillingFailure:
    return BillingFailure(
        failure_id=f"{invoice}-F1",
        invoice_id=invoice,
        customer=Customer(tenant_id=guid("tenant", invoice), name=NAME, email=EMAIL),
        subscription_ids=[guid("subscription", invoice)],
        amount_due=Decimal("4200.00"),
        failed_at=datetime(2026, 11, 24, 1, 0, tzinfo=UTC),
        reason=f"card of {NAME} declined",
    )


async def plain_description(client: Client, workflow_id: str) -> bytes:
    plain = await Client.connect(
        client.service_client.config.target_host, namespace=client.namespace
    )
    described = await plain.get_workflow_handle(workflow_id).describe()
    return described.raw_description.SerializeToString()


async def test_dispute_credited_leaves_no_customer_data_in_clear(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    client = dev_env.client
    invoice = unique_prefix()
    await Service(client, running).collections.report_failure(failure(invoice))
    disputed = await Service(client).collections.act(
        invoice,
        OpenDispute(description=f"{NAME} says the VM was deleted; reply to {EMAIL}", by=AGENT),
    )
    assert disputed.status is CollectionsStatus.PAUSED_DISPUTE and disputed.linked_case_id
    case_id = disputed.linked_case_id

    async def case_open() -> bool:
        try:
            await Service(client).cases.show(case_id)
        except ServiceError:
            return False
        return True

    await eventually(case_open)
    await Service(client).cases.act(case_id, AddNote(text=f"Called {NAME} on {EMAIL}", by=AGENT))
    resolution = Resolve(
        outcome=Outcome.CREDIT_ISSUED,
        summary="The VM was deleted on 2026-11-02: the whole invoice is credited.",
        credit_amount=Decimal("4200.00"),
        by=AGENT,
    )
    await Service(client).cases.act(case_id, resolution)
    collections = client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(invoice)
    )
    settled = await collections.result()
    assert settled.status is CollectionsStatus.CREDITED and settled.balance == 0
    await Service(client).cases.act(case_id, Confirm())
    case = client.get_workflow_handle_for(BillingCaseWorkflow.run, case_workflow_id(case_id))
    assert (await case.result()).status is CaseStatus.CLOSED

    codec = client.data_converter.payload_codec
    assert codec is not None
    for handle in (collections, case):
        workflow_id = handle.id
        stored = await raw_history(client, workflow_id)
        stored += await plain_description(client, workflow_id)
        for secret in (NAME, EMAIL, "云帆隐私测试", "Yunfan Privacy"):
            assert secret.encode() not in stored, (workflow_id, secret)
        # the same history opened with the key does hold them: the check above can fail
        opened = await decrypted(await handle.fetch_history(), codec)
        readable = b"".join(event.SerializeToString() for event in opened.events)
        assert NAME.encode() in readable and EMAIL.encode() in readable

    await replay_and_record(
        client, await collections.fetch_history(), "collections_disputed_credited"
    )
    await replay_and_record(client, await case.fetch_history(), "billing_case_dispute_credited")


async def test_a_payload_sealed_with_another_key_is_a_clear_error(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    """A client holding other keys than the worker is told which key id it lacks."""
    invoice = unique_prefix()
    await Service(dev_env.client, running).collections.report_failure(failure(invoice))
    other = await Client.connect(
        dev_env.client.service_client.config.target_host,
        data_converter=data_converter(Settings(codec_keys=SecretStr(f"other-1:{new_key()}"))),
    )
    handle = other.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(invoice)
    )
    with pytest.raises(CodecError, match=r"which is not configured \(configured: other-1\)"):
        await handle.query(CollectionsWorkflow.view)
    await Service(dev_env.client).collections.act(invoice, Waive(reason="test over", by=AGENT))

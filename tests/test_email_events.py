"""SendGrid's Event Webhook on the real dev server and worker: batches signed with a generated
ECDSA key and verified through the sendgrid library, recorded once, in any order; a bounce reaches
the case."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from api.event_webhook import (
    PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventSignatureError,
    EventVerifier,
)
from core.models import CaseStatus, Confirm, EventKind, Outcome, Resolve
from core.settings import Settings
from db.session import make_engine, make_session_factory
from db.tables import EmailEvent, EmailLog
from service import Service
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.test_inbound import (  # noqa: F401  (pytest fixtures running, service, sendgrid)
    EVENT_KEY,
    EVENT_PUBLIC_KEY,
    _emails,
    last_email,
    open_case,
    reply_to,
    resolved_case,
    running_fixture,
    sendgrid_fixture,
    service_fixture,
)
from tests.workflow_support import billing_failure

KEY = EVENT_KEY
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def signed(
    events: list[dict[str, Any]], *, key: ec.EllipticCurvePrivateKey = KEY, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(at if at is not None else int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }


def event(kind: str, dedup_key: str, workflow_id: str, at: int, **more: Any) -> dict[str, Any]:
    return {
        "email": "finance@yunfan.example.cn",
        "timestamp": at,
        "event": kind,
        "sg_event_id": f"{kind}-{uuid.uuid4()}",
        "sg_message_id": "sg-1.filter",
        "category": ["case_resolved"],
        "dedup_key": dedup_key,
        "workflow_id": workflow_id,
        **more,
    }


def delivery(settings: Settings, key: str) -> str | None:
    with make_session_factory(make_engine(settings.database_url))() as session:
        return session.scalar(select(EmailLog.delivery).where(EmailLog.dedup_key == key))


def event_rows(settings: Settings) -> int:
    with make_session_factory(make_engine(settings.database_url))() as session:
        return int(session.scalar(select(func.count()).select_from(EmailEvent)) or 0)


async def test_delivered_then_the_customers_confirmation_closes_the_case(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    case_id = await resolved_case(service)
    resolution = await last_email(running, "case_resolved", case_id)
    key, now = str(resolution["X-Dedup-Key"]), int(time.time())
    batch = [
        event("delivered", key, f"case-{case_id}", now),
        event("processed", key, f"case-{case_id}", now - 5),  # late, out of order
        {"event": "open", "sg_event_id": "o-1", "timestamp": now},  # not ours: ignored
    ]
    body, headers = signed(batch)

    first = await sendgrid.post(PATH, content=body, headers=headers)
    again = await sendgrid.post(PATH, content=body, headers=headers)

    assert first.json() == {"recorded": 2, "duplicates": 0, "ignored": 1}, first.text
    assert again.json() == {"recorded": 0, "duplicates": 2, "ignored": 1}
    assert delivery(running, key) == "delivered"
    assert (await service.inbound.receive(reply_to(resolution, "确认"))).outcome.value == (
        "confirmed"
    )
    assert (await service.cases.show(case_id)).status is CaseStatus.CLOSED


async def test_a_resolution_counts_as_told_only_once_delivered(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    """Accepted is not delivered: the case waits in `resolving` until SendGrid's delivered event
    (a bounce instead sends it back to the agent)."""
    told = await open_case(service, told_when_delivered=True)
    bounced = await open_case(service, told_when_delivered=True)
    now = int(time.time())
    batch = []
    for case_id, kind in ((told, "delivered"), (bounced, "bounce")):
        resolve = Resolve(outcome=Outcome.EXPLAINED, summary="已核对。", by="agent")
        answer = await service.cases.act(case_id, resolve)
        assert answer.status is CaseStatus.RESOLVING, answer.status
        assert answer.waiting_for == "the resolution email to reach the customer"
        key = str((await last_email(running, "case_resolved", case_id))["X-Dedup-Key"])
        batch.append(event(kind, key, f"case-{case_id}", now, reason="550 mailbox unknown"))
    body, headers = signed(batch)
    assert (await sendgrid.post(PATH, content=body, headers=headers)).status_code == 200

    async def settled() -> bool:
        views = [await service.cases.show(c) for c in (told, bounced)]
        return [v.status for v in views] == [CaseStatus.RESOLVED, CaseStatus.OPEN]

    await eventually(settled, seconds=10)
    view = await service.cases.show(told)
    assert view.resolution is not None and view.resolution.customer_told_at is not None
    # confirmed: the history of a resolution told once delivered replays (the recorded one)
    await service.cases.act(told, Confirm())
    handle = service.client.get_workflow_handle(f"case-{told}")
    await handle.result()
    await replay_and_record(
        service.client, await handle.fetch_history(), "billing_case_told_when_delivered"
    )


async def test_a_late_bounce_sends_the_case_back_and_tells_the_owner(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    case_id = await resolved_case(service)
    key = str((await last_email(running, "case_resolved", case_id))["X-Dedup-Key"])
    now = int(time.time())
    bounce = event("bounce", key, f"case-{case_id}", now, reason="550 5.1.1 mailbox unknown")
    body, headers = signed([event("delivered", key, f"case-{case_id}", now - 5), bounce])

    answer = await sendgrid.post(PATH, content=body, headers=headers)
    again = await sendgrid.post(PATH, content=body, headers=headers)

    assert answer.status_code == 200 and again.json()["duplicates"] == 2
    assert delivery(running, key) == "bounce"
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.OPEN and view.resolution is None
    notes = [e.text for e in view.timeline if e.kind is EventKind.NOTE]
    assert "case_resolved was not delivered (bounce)" in notes
    await eventually(lambda: _told(running, case_id), seconds=10)
    assert len(_emails(running, "owner_email_bounced", case_id)) == 1  # once, though posted twice


async def _told(settings: Settings, case_id: str) -> bool:
    return bool(_emails(settings, "owner_email_bounced", case_id))


async def test_forged_unsigned_stale_and_oversized_batches_are_refused_and_change_nothing(
    running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    batch = [event("bounce", "k/1", "case-BC-X", int(time.time()))]
    body, headers = signed(batch)
    forged_body, forged = signed(batch, key=OTHER_KEY)
    stale_body, stale = signed(batch, at=int(time.time()) - 3600)
    tampered = body.replace(b"bounce", b"delivered")

    answers = [
        await sendgrid.post(PATH, content=forged_body, headers=forged),
        await sendgrid.post(PATH, content=body, headers={"Content-Type": "application/json"}),
        await sendgrid.post(PATH, content=stale_body, headers=stale),
        await sendgrid.post(PATH, content=tampered, headers=headers),
        await sendgrid.post(PATH, content=body, headers={**headers, SIGNATURE_HEADER: "%%%"}),
        await sendgrid.post(PATH, content=body, headers={**headers, TIMESTAMP_HEADER: "9" * 5000}),
        await sendgrid.post(PATH, content=body, headers={**headers, TIMESTAMP_HEADER: "-1"}),
    ]
    huge = await sendgrid.post(
        PATH, content=b"[]", headers={**headers, "Content-Length": str(17 * 1024 * 1024)}
    )

    assert [a.status_code for a in answers] == [401] * 7
    assert huge.status_code == 413
    assert event_rows(running) == 0


def test_a_timestamp_that_is_no_time_of_ours_is_refused_first() -> None:
    verifier = EventVerifier(EVENT_PUBLIC_KEY, 600)
    body, headers = signed([])
    for timestamp in ("9" * 5000, "1" * 13, "١٧٠٠٠٠٠٠٠٠", "1.7e9", "-5", ""):
        with pytest.raises(EventSignatureError, match=TIMESTAMP_HEADER):
            verifier.verify(body, headers[SIGNATURE_HEADER], timestamp)


async def test_a_malformed_batch_is_refused_by_field(sendgrid: httpx.AsyncClient) -> None:
    for batch, field in (
        ({"event": "bounce"}, "body"),
        ([event("bounce", "k", "case-X", 1, sg_event_id=7)], "[0].sg_event_id"),
        ([event("bounce", "k", "case-X", 0)], "[0].timestamp"),
    ):
        body, headers = signed(batch)  # type: ignore[arg-type]
        answer = await sendgrid.post(PATH, content=body, headers=headers)
        assert answer.status_code == 400 and answer.json()["detail"].startswith(field)


async def test_thousands_of_events_in_one_batch(
    running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    now = int(time.time())
    batch = [event("delivered", f"other/{n}", "collections-G1", now) for n in range(3000)]
    body, headers = signed(batch)
    answer = await sendgrid.post(PATH, content=body, headers=headers)
    assert answer.json() == {"recorded": 3000, "duplicates": 0, "ignored": 0}
    assert event_rows(running) == 3000


async def test_a_bounced_notice_holds_collections_for_a_person(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    failure = billing_failure()
    await service.collections.report_failure(failure)
    notice = await last_email(running, "collections_payment_failed", failure.invoice_id)
    workflow_id = f"collections-{failure.invoice_id}"
    bounce = event("bounce", str(notice["X-Dedup-Key"]), workflow_id, int(time.time()))
    body, headers = signed([bounce | {"category": ["collections_payment_failed"]}])

    assert (await sendgrid.post(PATH, content=body, headers=headers)).json()["recorded"] == 1

    # the invoice hands the event to the customer's account, which sent the notice and tells
    # every invoice it named
    async def held() -> bool:
        view = await service.collections.show(failure.invoice_id)
        return bool(view.needs_attention and "not delivered" in view.needs_attention)

    await eventually(held)

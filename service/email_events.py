"""Delivery truth: SendGrid's Event Webhook, recorded in the email log, once per event.

Each email goes out with ``dedup_key`` and ``workflow_id`` as custom args (activities/senders.py);
SendGrid puts them on every event of that email, so an event routes without a lookup. Events come
late, twice and out of order: each ``sg_event_id`` is recorded once, and an email's delivery state
moves only forward (processed < deferred < delivered < bounce, dropped, blocked; at the same rank
the later event wins). A bounce, drop or block of a case's email reaches the case
(``email_undelivered``), and so does the delivery of a resolution, which the case waits for,
and of a final notice, which a suspension waits for (``email_delivered``); events of other
emails are recorded only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from temporalio.client import Client

from core.ids import ACCOUNT, CASE, COLLECTIONS
from core.models import EmailDelivered, EmailTemplate, EmailUndelivered
from core.settings import Settings
from db.tables import EmailEvent, EmailLog, table
from service.calls import reading, signal_if_running
from service.errors import Refused

# what each event says of the email; the higher rank holds when events come out of order
RANK = {
    "processed": 1,
    "deferred": 2,
    "delivered": 3,
    "bounce": 4,
    "dropped": 4,
    "blocked": 4,
    "spamreport": 5,
}
UNDELIVERED = frozenset({"bounce", "dropped", "blocked"})
RESOLUTION = EmailTemplate.CASE_RESOLVED.value  # its delivery closes the loop: the case is told
FINAL_NOTICE = EmailTemplate.COLLECTIONS_FINAL_NOTICE.value  # its delivery allows the suspension
TOLD_DELIVERED = frozenset({RESOLUTION, FINAL_NOTICE})
CHUNK = 500  # ids in one IN (...) clause
EVENTS = table(EmailEvent)
EMAIL_LOG = table(EmailLog)


@dataclass(frozen=True)
class Event:
    sg_event_id: str
    event: str
    dedup_key: str
    workflow_id: str
    occurred_at: datetime
    address: str
    template: str
    reason: str


@dataclass(frozen=True)
class EventsRecorded:
    recorded: int  # new events
    duplicates: int  # posted before
    ignored: int  # not ours (no custom args) or of a kind we do not keep (open, click, ...)


def parse_events(batch: Any) -> tuple[list[Event], int]:
    """The batch's events that are ours and of a kind we keep, and how many others it had.
    Refused, naming the field, when it is not what the Event Webhook posts."""
    if not isinstance(batch, list):
        raise Refused("body: must be a JSON array of events")
    events, ignored = [], 0
    for n, item in enumerate(batch):
        if not isinstance(item, dict):
            raise Refused(f"[{n}]: must be an object")
        kind = item.get("event")
        if item.get("event") == "bounce" and item.get("type") == "blocked":
            kind = "blocked"
        key, workflow_id = item.get("dedup_key"), item.get("workflow_id")
        if kind not in RANK or not isinstance(key, str) or not isinstance(workflow_id, str):
            ignored += 1
            continue
        event_id, stamp = item.get("sg_event_id"), item.get("timestamp")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 100:
            raise Refused(f"[{n}].sg_event_id: must be SendGrid's event id")
        if not isinstance(stamp, int) or isinstance(stamp, bool) or not 0 < stamp < 2**33:
            raise Refused(f"[{n}].timestamp: must be unix seconds")
        events.append(
            Event(
                sg_event_id=event_id,
                event=str(kind),
                dedup_key=key[:255],
                workflow_id=workflow_id[:128],
                occurred_at=datetime.fromtimestamp(stamp, UTC),
                address=str(item.get("email") or "")[:320],
                template=str(_first(item.get("category")) or "")[:64],
                reason=str(item.get("reason") or item.get("response") or "")[:500],
            )
        )
    return events, ignored


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


class EmailEvents:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def record(self, batch: Any) -> EventsRecorded:
        """Record a batch; tell each case of its undelivered emails. Refused (nothing recorded)
        when the batch is malformed; Unavailable when the database or Temporal cannot be reached
        (the same batch may be posted again: what was recorded is not recorded twice)."""
        events, ignored = parse_events(batch)
        with reading(self._settings.database_url) as session:
            new, duplicates = self._insert(session, events)
            self._advance(session, new)
            session.commit()
            pending = self._unrouted(session, [e for e in events if _routed(e)])
        for event in pending:
            await self._tell(event)
            with reading(self._settings.database_url) as session:
                session.execute(
                    update(EVENTS)
                    .where(EVENTS.c.sg_event_id == event.sg_event_id)
                    .values(routed=True)
                )
                session.commit()
        return EventsRecorded(recorded=len(new), duplicates=duplicates, ignored=ignored)

    @staticmethod
    def _insert(session: Session, events: list[Event]) -> tuple[list[Event], int]:
        ids = list(dict.fromkeys(e.sg_event_id for e in events))
        seen: set[str] = set()
        for chunk in _chunks(ids):
            seen.update(
                session.scalars(
                    select(EVENTS.c.sg_event_id).where(EVENTS.c.sg_event_id.in_(chunk))
                ).all()
            )
        new: list[Event] = []
        for event in events:
            if event.sg_event_id not in seen:
                seen.add(event.sg_event_id)
                new.append(event)
        if new:
            now = datetime.now(UTC)
            session.execute(
                EVENTS.insert(),
                [
                    {
                        "sg_event_id": e.sg_event_id,
                        "dedup_key": e.dedup_key,
                        "workflow_id": e.workflow_id,
                        "event": e.event,
                        "occurred_at": e.occurred_at,
                        "reason": e.reason,
                        "routed": not _routed(e),
                        "created_at": now,
                        "updated_at": now,
                    }
                    for e in new
                ],
            )
        return new, len(events) - len(new)

    @staticmethod
    def _advance(session: Session, events: list[Event]) -> None:
        """Each email's delivery state, moved forward by the best of its new events."""
        best: dict[str, Event] = {}
        for event in events:
            held = best.get(event.dedup_key)
            if held is None or _order(event) > _order(held):
                best[event.dedup_key] = event
        current = {}
        for chunk in _chunks(list(best)):
            rows = session.execute(
                select(EMAIL_LOG.c.dedup_key, EMAIL_LOG.c.delivery, EMAIL_LOG.c.delivery_at).where(
                    EMAIL_LOG.c.dedup_key.in_(chunk)
                )
            ).all()
            current.update({row.dedup_key: row for row in rows})
        now = datetime.now(UTC)
        for key, event in best.items():
            row = current.get(key)
            if row is None:
                continue  # not an email of ours (another system's key): the event is kept
            if row.delivery is not None and row.delivery_at is not None:
                held_at = row.delivery_at.replace(tzinfo=row.delivery_at.tzinfo or UTC)
                if (RANK[row.delivery], held_at) >= (RANK[event.event], event.occurred_at):
                    continue
            session.execute(
                update(EMAIL_LOG)
                .where(EMAIL_LOG.c.dedup_key == key)
                .values(delivery=event.event, delivery_at=event.occurred_at, updated_at=now)
            )

    @staticmethod
    def _unrouted(session: Session, events: list[Event]) -> list[Event]:
        """The undelivered events whose case has not been told yet (this post, or an earlier
        one that could not reach Temporal)."""
        if not events:
            return []
        waiting: set[str] = set()
        for chunk in _chunks([e.sg_event_id for e in events]):
            waiting.update(
                session.scalars(
                    select(EVENTS.c.sg_event_id).where(
                        EVENTS.c.sg_event_id.in_(chunk), EVENTS.c.routed.is_(False)
                    )
                ).all()
            )
        return list({e.sg_event_id: e for e in events if e.sg_event_id in waiting}.values())

    async def _tell(self, event: Event) -> None:
        if not event.workflow_id.startswith((CASE, COLLECTIONS, ACCOUNT)):
            return  # a 21Vianet invoice's reminder to our own finance team: recorded only
        if event.event == "delivered":
            delivered = EmailDelivered(key=event.dedup_key, template=event.template)
            await signal_if_running(self._client, event.workflow_id, "email_delivered", delivered)
            return
        undelivered = EmailUndelivered(
            key=event.dedup_key,
            event=event.event,
            address=event.address,
            template=event.template,
            reason=event.reason,
        )
        # a workflow that has ended: the event stays recorded, nobody to tell
        await signal_if_running(self._client, event.workflow_id, "email_undelivered", undelivered)


def _routed(event: Event) -> bool:
    """Whether the event is told to its workflow (else only recorded)."""
    return event.event in UNDELIVERED or (
        event.event == "delivered" and event.template in TOLD_DELIVERED
    )


def _order(event: Event) -> tuple[int, datetime]:
    return RANK[event.event], event.occurred_at

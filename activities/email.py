"""Send an email at most once per dedup key, with every attempt recorded in ``email_log``.

The email is about a case or an unpaid invoice; the log files it under ``EmailMessage.subject_id``.

A row moves ``pending -> sent | rejected``. A pending row is *claimed* by one attempt at a time:
``error IS NULL`` and a recent ``updated_at`` mean an attempt is sending right now; a recorded error
(the last attempt failed before the provider took the email) or a claim older than
``claim_timeout`` (that attempt's worker died) leave it free for the next attempt.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.alerts import AlertOutbox
from activities.errors import RENDER_ERRORS, database, render_failed
from activities.rendering import TemplateRenderer
from activities.senders import (
    EmailDeliveryError,
    EmailRejected,
    EmailSender,
    OutgoingEmail,
    OutgoingFile,
)
from activities.staff import TO_EVERY_MANAGER, StaffDirectory, recipient_key
from core.files import content_path
from core.metrics import EMAILS
from core.models import EmailMessage, EmailSent
from core.threads import EmailThreads
from db.tables import EmailLog, EmailThread, table

PENDING = "pending"
SENT = "sent"
REJECTED = "rejected"
# outlasts any provider call (SendGridSender gives up after 30 s; SmtpSender after 50 s with its
# rate limit's wait, 110 s with a server crawling through the connection): a live claim is not taken
DEFAULT_CLAIM_TIMEOUT = timedelta(minutes=2)

# Core statements with their values as parameters: each compiles once (the ORM's unit of work and
# values built into each statement were half of this activity's CPU; docs/performance.md)
EMAIL_LOG = table(EmailLog)
_FIND = select(
    EMAIL_LOG.c.status,
    EMAIL_LOG.c.error,
    EMAIL_LOG.c.attempts,
    EMAIL_LOG.c.provider_message_id,
    EMAIL_LOG.c.updated_at,
).where(EMAIL_LOG.c.dedup_key == bindparam("key"))
_PENDING_ROW = update(EMAIL_LOG).where(
    EMAIL_LOG.c.dedup_key == bindparam("key"), EMAIL_LOG.c.status == PENDING
)
# ... and with the attempt count an attempt read or set: a compare-and-set on its claim
_CLAIMED_ROW = _PENDING_ROW.where(EMAIL_LOG.c.attempts == bindparam("claimed"))
EMAIL_THREAD = table(EmailThread)
_FIND_THREAD = select(EMAIL_THREAD.c.workflow_id).where(EMAIL_THREAD.c.token == bindparam("token"))


SUBJECT_CHARS = 998  # email_log.subject, RFC 5322's longest line
ACCEPTED = "accepted"  # heartbeat details: the provider took this key's email
# how long an attempt whose email the provider took waits for the database to record it (within
# the activity's 60 s): a database cut shorter than this never sends an email twice
SENT_PATIENCE = timedelta(seconds=45)


def _accepted_by_an_earlier_attempt(key: str) -> dict[str, str] | None:
    """The provider's answer to a failed earlier attempt of this activity, if it took the email."""
    details = list(activity.info().heartbeat_details)
    if len(details) == 3 and details[0] == ACCEPTED and details[1] == key:
        accepted = details[2]
        if isinstance(accepted, dict) and isinstance(accepted.get("provider_message_id"), str):
            return {
                "provider_message_id": accepted["provider_message_id"],
                "subject": str(accepted.get("subject") or ""),
            }
    return None


def _rejected(error: str) -> ApplicationError:
    return ApplicationError(error, type="EmailRejected", non_retryable=True)


def _in_progress(key: str) -> ApplicationError:
    return ApplicationError(f"email {key} is being sent by another attempt", type="EmailInProgress")


class EmailActivities:
    def __init__(
        self,
        renderer: TemplateRenderer,
        sender: EmailSender,
        session_factory: sessionmaker[Session],
        from_address: str,
        from_name: str,
        claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT,
        threads: EmailThreads | None = None,
        alerts: AlertOutbox | None = None,
        files: Path | None = None,
        staff: StaffDirectory | None = None,
    ) -> None:
        self.renderer = renderer
        self.sender = sender
        self.session_factory = session_factory
        self.from_address = from_address
        self.from_name = from_name
        self.claim_timeout = claim_timeout
        self.threads = threads or EmailThreads()
        self.alerts = alerts
        self.files = files  # the attachment store's root: the files an agent's reply carries
        self.staff = staff  # the managers, their languages and the workspace's address
        self.domain = from_address.rpartition("@")[2] or "localhost"

    @activity.defn
    def send_email(self, message: EmailMessage) -> EmailSent:
        try:
            sent = self._send_email(message)
        except ApplicationError as exc:
            outcome = "rejected" if exc.non_retryable and exc.type == "EmailRejected" else "failed"
            if exc.type != "EmailInProgress":  # another attempt is sending it: not a failure
                EMAILS.labels(message.template.value, outcome).inc()
            raise
        except Exception:
            EMAILS.labels(message.template.value, "failed").inc()
            raise
        EMAILS.labels(message.template.value, "duplicate" if sent.duplicate else "sent").inc()
        return sent

    def _send_email(self, message: EmailMessage) -> EmailSent:
        self._queue_alerts(message)  # once, whoever the email goes to
        if self.staff is None or message.template.to_customer:
            return self._deliver(message)
        if message.template in TO_EVERY_MANAGER:
            return self._send_to_managers(message, self.staff)
        # the agent, the team or finance: one address, in that person's language (same key)
        (recipient,) = self.staff.recipients(message)
        return self._deliver(message.model_copy(update={"locale": recipient.locale}))

    def _send_to_managers(self, message: EmailMessage, staff: StaffDirectory) -> EmailSent:
        """Each manager's copy, in their language, under its own key (a retry sends only the
        copies not sent yet); one address refused does not keep the others from theirs."""
        sent: list[EmailSent] = []
        refused: ApplicationError | None = None
        for recipient in staff.recipients(message):
            copy = message.model_copy(
                update={
                    "key": recipient_key(message.key, recipient.address),
                    "to": recipient.address,
                    "locale": recipient.locale,
                }
            )
            try:
                sent.append(self._deliver(copy))
            except ApplicationError as exc:
                if exc.type != "EmailRejected":
                    raise
                refused = exc
        if not sent and refused is not None:
            raise refused
        return sent[0]

    def _deliver(self, message: EmailMessage) -> EmailSent:
        accepted = _accepted_by_an_earlier_attempt(message.key)
        if accepted is not None:
            # that attempt could not record it (the database was down): record it, send nothing
            self._finish(message.key, None, status=SENT, sent_at=datetime.now(UTC), **accepted)
            return EmailSent(key=message.key, provider_message_id=accepted["provider_message_id"])
        thread = self.threads.headers(message.workflow_id, message.key, self.domain)
        with database(f"the email log row of {message.key}"):
            self._record_thread(thread.token, message.workflow_id)  # before: a claim is not left
            claim = self._claim(message)
        if isinstance(claim, EmailSent):
            return claim
        try:
            links = self.staff.links(message) if self.staff is not None else None
            rendered = self.renderer.render_message(message, links)
            attached = self._attached(message)
        except RENDER_ERRORS as exc:
            # this input never renders: free the key, and let a person look
            self._finish(message.key, claim, error=f"{type(exc).__name__}: {exc}")
            raise render_failed(f"email {message.template.value}", exc) from exc
        try:
            provider_id = self.sender.send(
                OutgoingEmail(
                    dedup_key=message.key,
                    to=str(message.to),
                    from_address=self.from_address,
                    from_name=self.from_name,
                    subject=rendered.subject,
                    text=rendered.text,
                    html=rendered.html,
                    category=message.template.value,
                    workflow_id=message.workflow_id,
                    message_id=thread.message_id,
                    in_reply_to=thread.in_reply_to,
                    references=thread.references,
                    # staff answer in the workspace: their reply must not enter the customer's
                    # thread (it was taken as another sender's and never reached the customer)
                    reply_to=thread.reply_to if message.template.to_customer else None,
                    attachments=attached,
                )
            )
        except EmailRejected as exc:
            self._finish(
                message.key, claim, status=REJECTED, subject=rendered.subject, error=str(exc)
            )
            raise _rejected(str(exc)) from exc
        except EmailDeliveryError as exc:
            self._finish(message.key, claim, error=str(exc))
            wait = None if exc.retry_after is None else timedelta(seconds=exc.retry_after)
            raise ApplicationError(
                str(exc), type="EmailDeliveryError", next_retry_delay=wait
            ) from exc
        except Exception as exc:
            # the sender broke before the provider answered: free the key
            self._finish(message.key, claim, error=f"{type(exc).__name__}: {exc}")
            raise
        accepted = {"provider_message_id": provider_id, "subject": rendered.subject}
        if not self.sender.idempotent:
            # Kept by Temporal for the next attempt, should this commit fail: the only duplicate
            # window left is a worker that dies between the provider's accept and this heartbeat.
            # (A provider that takes the same key twice as one email needs no such record.)
            activity.heartbeat(ACCEPTED, message.key, accepted)
        self._record_sent(message.key, accepted)
        activity.logger.info("email %s (%s) sent: %s", message.key, message.template, provider_id)
        return EmailSent(key=message.key, provider_message_id=provider_id)

    def _attached(self, message: EmailMessage) -> tuple[OutgoingFile, ...]:
        """The files the email names, read from the store by digest (a file it lost, or whose
        bytes are no longer what it named, fails the email for a person to see)."""
        named = getattr(message.data, "attachments", [])
        if not named:
            return ()
        if self.files is None:
            raise ValueError("attachments: this worker has no attachment store")
        found = []
        for file in named:
            path = content_path(self.files, file.sha256)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                where = f"attachment {file.name} ({file.sha256})"
                raise ValueError(f"{where} is not in {path.parent}") from None
            if hashlib.sha256(data).hexdigest() != file.sha256:
                raise ValueError(f"attachment {file.name}: {path} does not hold {file.sha256}")
            found.append(OutgoingFile(file.name, file.content_type, data))
        return tuple(found)

    def _queue_alerts(self, message: EmailMessage) -> None:
        """A staff email that is an alert is also queued for the group robots, first: the alert
        goes even while the email cannot. The database away retries the activity (the email
        needs it too); anything else about the alert is logged and never holds the email back."""
        if self.alerts is None:
            return
        try:
            self.alerts.queue(message)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            activity.logger.error(
                "staff alert of %s not queued: %s: %s", message.key, type(exc).__name__, exc
            )

    def _claim(self, message: EmailMessage) -> int | EmailSent:
        """Take the key for this attempt: returns the attempt number, or the earlier result."""
        now = datetime.now(UTC)
        with self.session_factory() as session:
            row = session.execute(_FIND, {"key": message.key}).first()
            if row is None:
                try:
                    session.execute(
                        insert(EMAIL_LOG),
                        {
                            "dedup_key": message.key,
                            "case_id": message.subject_id,
                            "template": message.template.value,
                            "to_address": str(message.to),
                            "locale": message.locale.value,
                            "status": PENDING,
                            "processor": self.sender.name,
                            "attempts": 1,
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
                    session.commit()
                except IntegrityError:
                    # another attempt inserted the key between our read and our insert
                    raise _in_progress(message.key) from None
                return 1
            if row.status == SENT:
                return EmailSent(
                    key=message.key,
                    provider_message_id=row.provider_message_id or "",
                    duplicate=True,
                )
            if row.status == REJECTED:
                raise _rejected(row.error or f"email {message.key} was rejected")
            if row.error is None and row.updated_at > now - self.claim_timeout:
                raise _in_progress(message.key)
            # compare-and-set on attempts: of two attempts racing for a free row, one wins
            attempt: int = row.attempts + 1
            result = session.execute(
                _CLAIMED_ROW,
                {
                    "key": message.key,
                    "claimed": row.attempts,
                    "attempts": attempt,
                    "error": None,
                    "to_address": str(message.to),
                    "locale": message.locale.value,
                    "processor": self.sender.name,
                    "updated_at": now,
                },
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                session.rollback()
                raise _in_progress(message.key)
            session.commit()
            return attempt

    def _record_thread(self, token: str, workflow_id: str) -> None:
        """Where a reply carrying ``token`` goes; written once, before the first email goes out."""
        with self.session_factory() as session:
            if session.execute(_FIND_THREAD, {"token": token}).first() is not None:
                return
            now = datetime.now(UTC)
            try:
                session.execute(
                    insert(EMAIL_THREAD),
                    {
                        "token": token,
                        "workflow_id": workflow_id,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                session.commit()
            except IntegrityError:
                session.rollback()  # another email of the thread recorded it first

    def _record_sent(self, key: str, accepted: dict[str, str]) -> None:
        """The provider took the email: its row says so. A database that does not answer is
        waited for (up to SENT_PATIENCE) rather than failing the attempt: the heartbeat above
        is not kept by every server when an attempt fails, and a retry would send again."""
        deadline = time.monotonic() + SENT_PATIENCE.total_seconds()
        pause = 0.5
        while True:
            try:
                self._finish(
                    key, None, status=SENT, sent_at=datetime.now(UTC), error=None, **accepted
                )
                return
            except (OperationalError, InterfaceError):
                if time.monotonic() + pause > deadline:
                    raise
                activity.heartbeat(ACCEPTED, key, accepted)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _finish(self, key: str, attempt: int | None, **values: Any) -> None:
        """Record the outcome; with ``attempt``, only while this attempt still holds the claim."""
        params = {"key": key, "updated_at": datetime.now(UTC), **values}
        if params.get("subject"):  # the column's size; an email's subject line is one line
            params["subject"] = params["subject"][:SUBJECT_CHARS]
        statement = _PENDING_ROW
        if attempt is not None:
            statement, params["claimed"] = _CLAIMED_ROW, attempt
        with database(f"the email log row of {key}"), self.session_factory() as session:
            session.execute(statement, params)
            session.commit()

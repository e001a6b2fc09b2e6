"""Queue a staff email's alert for each group robot (STAFF_ALERTS), in the ``staff_alerts`` outbox.

The email activity calls ``queue`` before it sends the email: the alert says the same thing as the
email, in the staff's language (STAFF_ALERTS_LOCALE), with the link to the workspace page where a
person acts. Each row is unique by (email key, robot), so a retried activity queues nothing twice;
``activities/alert_dispatch.py`` posts them. An email that is no alert queues nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from activities.errors import RENDER_ERRORS
from activities.rendering import RenderedAlert, TemplateRenderer
from core.alerts import AlertKind, Robot, workspace_page
from core.metrics import STAFF_ALERTS
from core.models import About, EmailMessage, EmailTemplate, Locale, NoticeState
from db.tables import StaffAlert, table

log = logging.getLogger(__name__)

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
TITLE_CHARS = 200  # staff_alerts.title

STAFF_ALERT = table(StaffAlert)


def alert_kind(message: EmailMessage) -> AlertKind | None:
    """Which alert a staff email is, if any. A manager's needs-attention email says more by the
    view it carries: a suspension waiting for approval, or a final notice that bounced."""
    match message.template:
        case EmailTemplate.MANAGER_SLA_BREACH:
            return AlertKind.SLA_BREACH
        case EmailTemplate.OWNER_EMAIL_BOUNCED:
            return AlertKind.EMAIL_BOUNCED
        case EmailTemplate.MANAGER_NEEDS_ATTENTION:
            invoice = message.collections
            if invoice is not None and invoice.approval_asked_at is not None:
                return AlertKind.APPROVAL_ASKED
            if invoice is not None and invoice.final_notice is NoticeState.UNDELIVERED:
                return AlertKind.FINAL_NOTICE_BOUNCED
            return AlertKind.NEEDS_ATTENTION
    return None


def about(message: EmailMessage) -> tuple[About, str]:
    """What a staff email is about: a case, an invoice, a 21Vianet invoice or an account."""
    if message.case is not None:
        return About.CASE, message.case.case_id
    if message.collections is not None:
        return About.COLLECTIONS, message.collections.invoice_id
    if message.vianet_invoice is not None:
        return About.VIANET_INVOICE, message.vianet_invoice.invoice_number
    return About.ACCOUNT, message.account.tenant_id if message.account is not None else ""


def subject_id(message: EmailMessage) -> str:
    return about(message)[1]


def links(message: EmailMessage, base_url: str) -> dict[str, str]:
    """The workspace pages a staff email and its alert link to: ``page`` where a person acts,
    ``queue`` the list it belongs to, ``attention`` 需要处理 (everything waiting for a person)."""
    page = workspace_page(*about(message))
    queue = "/queues/sla" if message.template is EmailTemplate.MANAGER_SLA_BREACH else page
    return {
        "page": base_url + page,
        "queue": base_url + queue,
        "attention": base_url + "/queues/needs-attention",
    }


class AlertOutbox:
    def __init__(
        self,
        robots: list[Robot],
        renderer: TemplateRenderer,
        session_factory: sessionmaker[Session],
        base_url: str,
        locale: Locale = Locale.ZH_CN,
    ) -> None:
        self.robots = robots
        self.renderer = renderer
        self.session_factory = session_factory
        self.base_url = base_url.rstrip("/")
        self.locale = locale

    def queue(self, message: EmailMessage) -> int:
        """The email's alert, once per robot: how many rows this call added (0 when the email is
        no alert, no robot is configured, or an earlier attempt queued them)."""
        kind = alert_kind(message)
        if kind is None or not self.robots:
            return 0
        with self.session_factory() as session:
            queued = set(
                session.scalars(
                    select(STAFF_ALERT.c.robot).where(STAFF_ALERT.c.dedup_key == message.key)
                )
            )
        missing = [robot for robot in self.robots if robot.name not in queued]
        if not missing:
            return 0
        alert, error = self._render(kind, message)
        now = datetime.now(UTC)
        added = 0
        for robot in missing:
            row = {
                "dedup_key": message.key,
                "robot": robot.name,
                "kind": kind.value,
                "template": message.template.value,
                "subject_id": subject_id(message)[:128],
                "title": alert.title[:TITLE_CHARS],
                "text": alert.text,
                # an alert that does not render is recorded as failed: a person sees it, and the
                # email still goes
                "status": PENDING if error is None else FAILED,
                "error": error,
                "attempts": 0,
                "due_at": now,
                "created_at": now,
                "updated_at": now,
            }
            with self.session_factory() as session:
                try:
                    session.execute(insert(STAFF_ALERT), row)
                    session.commit()
                except IntegrityError:
                    continue  # another attempt of this activity queued it a moment ago
            added += 1
            STAFF_ALERTS.labels(robot.service.value, "queued" if error is None else "failed").inc()
        return added

    def _render(self, kind: AlertKind, message: EmailMessage) -> tuple[RenderedAlert, str | None]:
        try:
            links_ = links(message, self.base_url)
            return self.renderer.render_alert(kind, message, self.locale, links_), None
        except RENDER_ERRORS as exc:
            log.error("staff alert %s of %s does not render: %s", kind, message.key, exc)
            title = f"{kind.value} {subject_id(message)}"
            return RenderedAlert(title=title, text=""), f"{type(exc).__name__}: {exc}"

"""Who a staff email goes to, and in which language, with the links to the workspace page where
they act (WEB_PUBLIC_URL).

A manager's email goes to every manager of the workspace (a local account with the manager role,
not disabled), each in their own language (``workspace_users.locale``); to the policy's address
(``manager_email``) only when no manager has an account. Any other staff email (the case's agent,
the team, finance) goes to the address the workflow gave, in that person's language when they have
an account; an address with none (a team's mailbox) reads the staff's (STAFF_ALERTS_LOCALE)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.alerts import links
from activities.errors import database
from core.models import EmailMessage, EmailTemplate, Locale, Recipient
from db.tables import WorkspaceUser

MANAGER = "manager"  # service.users.Role.MANAGER (activities do not import the service)
# the staff emails each manager gets in their own language (a workflow waits for a person, an SLA
# breached, an invoice handed over, fraud reported, Partner Center refused, 21Vianet overdue)
TO_EVERY_MANAGER = frozenset(t for t in EmailTemplate if t.data.recipient is Recipient.MANAGER)


@dataclass(frozen=True)
class StaffRecipient:
    address: str
    locale: Locale


class StaffDirectory:
    def __init__(
        self, session_factory: sessionmaker[Session], base_url: str, locale: Locale
    ) -> None:
        self.session_factory = session_factory
        self.base_url = base_url.rstrip("/")
        self.locale = locale  # a recipient with no account reads this

    def recipients(self, message: EmailMessage) -> list[StaffRecipient]:
        """Each manager, by address, for a manager's email (or the address the workflow gave when
        there is none); for any other, the address the workflow gave."""
        with database("the workspace's people"), self.session_factory() as session:
            people = session.execute(
                select(WorkspaceUser.email, WorkspaceUser.roles, WorkspaceUser.locale).where(
                    WorkspaceUser.disabled.is_(False)
                )
            ).all()
        managers = sorted(
            (
                StaffRecipient(email, _locale(locale, self.locale))
                for email, roles, locale in people
                if MANAGER in (roles or [])
            ),
            key=lambda recipient: recipient.address,
        )
        if managers and message.template in TO_EVERY_MANAGER:
            return managers
        address = str(message.to)
        known = {email.lower(): locale for email, _, locale in people}
        return [StaffRecipient(address, _locale(known.get(address.lower()), self.locale))]

    def links(self, message: EmailMessage) -> dict[str, str]:
        return links(message, self.base_url)


def _locale(value: str | None, default: Locale) -> Locale:
    try:
        return Locale(value) if value else default
    except ValueError:
        return default


def recipient_key(key: str, address: str) -> str:
    """One manager's copy of a staff email: its own dedup key, unique for ever with the email's
    (the address as a digest: a key stays short, and says nothing of the person)."""
    return f"{key}/to-{hashlib.sha256(address.lower().encode()).hexdigest()[:16]}"

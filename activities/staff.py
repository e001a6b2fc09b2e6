"""Who a manager's email goes to, and in which language: every manager of the workspace (a local
account with the manager role, not disabled) in their own language (``workspace_users.locale``),
with the links to the workspace page where they act (WEB_PUBLIC_URL). The policy's address
(``manager_email``) only when no manager has an account: in its account's language if it has one
(another role), else the staff's (STAFF_ALERTS_LOCALE)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.alerts import links
from activities.errors import database
from core.models import EmailMessage, EmailTemplate, Locale
from db.tables import WorkspaceUser

MANAGER = "manager"  # service.users.Role.MANAGER (activities do not import the service)
# the staff emails each manager gets in their own language: a workflow waits for a person (a
# failed step, a flag, a suspension to approve)
TO_EVERY_MANAGER = frozenset({EmailTemplate.MANAGER_NEEDS_ATTENTION})


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
        """Each manager, by address; or the address the workflow gave when there is none."""
        with database("the workspace's managers"), self.session_factory() as session:
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
        if managers:
            return managers
        address = str(message.to)
        known = {email: locale for email, _, locale in people}
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

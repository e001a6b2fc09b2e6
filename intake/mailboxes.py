"""The one place settings name a mailbox: where `mail watch` reads customers' email from
(INBOUND_BACKEND), and how often it looks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.graph import m365_credentials
from core.settings import ImapSecurity, InboundBackend, Settings, SettingsError
from intake.drop_folder import FolderMailbox
from intake.graph import graph_mailbox
from intake.imap import ImapMailbox
from intake.mailbox import Mailbox

FOLDER_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Source:
    mailbox: Mailbox
    interval: float  # seconds between looks at most
    described: str  # for the first line of `mail watch`


def mailbox_for(settings: Settings, folder: Path | None = None) -> Source:
    """The mailbox INBOUND_BACKEND names; a drop ``folder`` given reads that folder whatever it
    names."""
    if folder is not None or settings.inbound_backend is InboundBackend.FOLDER:
        where = folder or settings.inbound_dir
        mailbox: Mailbox = FolderMailbox(where)
        return Source(mailbox, FOLDER_POLL_SECONDS, f"the drop folder {where} for .eml files")
    if settings.inbound_backend is InboundBackend.GRAPH:
        graph = graph_mailbox(settings)
        described = f"the shared mailbox {settings.shared_mailbox()} through Microsoft Graph"
        return Source(graph, settings.graph_poll_seconds, described)
    return _imap(settings)


def _imap(settings: Settings) -> Source:
    host, username, password = settings.imap_host, settings.imap_username, settings.imap_password
    token: Callable[[], str] | None = None
    if settings.imap_auth == "xoauth2":
        credentials = m365_credentials(settings, settings.m365_mail_scope, "IMAP_AUTH=xoauth2")

        def bearer() -> str:
            return credentials.bearer()[0]

        token, username, password = bearer, username or settings.shared_mailbox(), None
    if not (host and username and (password or token)):  # Settings() refuses them missing
        raise SettingsError("IMAP_HOST, IMAP_USERNAME and IMAP_PASSWORD are required for imap")
    imap = ImapMailbox(
        host,
        settings.imap_port or (993 if settings.imap_security is ImapSecurity.TLS else 143),
        security=settings.imap_security,
        username=username,
        password=password.get_secret_value() if password is not None else None,
        token=token,
        folder=settings.imap_folder,
        processed=settings.imap_processed_folder,
        failed=settings.imap_failed_folder,
    )
    described = (
        f"the shared mailbox {imap.name} over IMAP ({settings.imap_security.value}): taken mail "
        f"to {settings.imap_processed_folder!r}, failed to {settings.imap_failed_folder!r}"
    )
    return Source(imap, settings.imap_poll_seconds, described)

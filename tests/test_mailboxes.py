"""Which mailbox `mail watch` reads (intake/mailboxes.py): the settings that name it, Microsoft
365's shared mailbox through Graph, and IMAP signed in with the Microsoft 365 app's token."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import InboundBackend, Settings, SettingsError
from intake.drop_folder import FolderMailbox
from intake.graph import GraphMailbox
from intake.imap import ImapMailbox
from intake.mailboxes import mailbox_for
from tests.graph_standin import CLIENT_ID, CLIENT_SECRET, MAILBOX, SCOPE, TENANT_ID, GraphStandIn

M365: dict[str, Any] = {
    "m365_tenant_id": TENANT_ID,
    "m365_client_id": CLIENT_ID,
    "m365_client_secret": SecretStr(CLIENT_SECRET),
    "m365_mailbox": MAILBOX,
}


def test_the_drop_folder_unless_the_settings_name_another() -> None:
    source = mailbox_for(Settings())
    assert isinstance(source.mailbox, FolderMailbox) and "drop folder" in source.described


def test_graph_and_imaps_oauth_need_the_microsoft_365_app() -> None:
    with pytest.raises(ValueError, match="M365_TENANT_ID, M365_CLIENT_ID, M365_CLIENT_SECRET"):
        Settings(inbound_backend=InboundBackend.GRAPH)
    with pytest.raises(ValueError, match="required when IMAP_AUTH=xoauth2"):
        Settings(
            inbound_backend=InboundBackend.IMAP, imap_host="imap.example.cn", imap_auth="xoauth2"
        )
    with pytest.raises(ValueError, match="IMAP_PASSWORD is required"):
        Settings(
            inbound_backend=InboundBackend.IMAP, imap_host="imap.example.cn", imap_username="a@b.cn"
        )


def test_graph_reads_the_shared_mailbox_at_its_own_pace() -> None:
    settings = Settings(inbound_backend=InboundBackend.GRAPH, graph_poll_seconds=5, **M365)
    source = mailbox_for(settings)
    assert isinstance(source.mailbox, GraphMailbox)
    assert source.interval == 5 and MAILBOX in source.described


def test_imap_signs_in_as_the_shared_mailbox_with_the_apps_token() -> None:
    """No password: the user is the shared mailbox, the token the client credentials grant's for
    M365_MAIL_SCOPE, asked for at each connection (cached by the app's credentials)."""
    with GraphStandIn() as graph:
        settings = Settings(
            inbound_backend=InboundBackend.IMAP,
            imap_host="imap.partner.outlook.cn",
            imap_auth="xoauth2",
            m365_authority=graph.url,
            m365_mail_scope=SCOPE,  # the scope the stand-in grants
            **M365,
        )
        source = mailbox_for(settings)
        imap = source.mailbox
        assert isinstance(imap, ImapMailbox) and imap.username == MAILBOX
        assert imap._password is None and imap._token is not None
        first, again = imap._token(), imap._token()
        assert first == again and first in graph.issued_tokens
        assert len(graph.token_requests) == 1
        with pytest.raises(SettingsError, match="IMAP_AUTH=xoauth2"):
            mailbox_for(settings.model_copy(update={"m365_client_id": None}))

"""Microsoft Graph operated by 21Vianet, app-only, for one shared mailbox: the requests the sender
(activities/graph.py) and the mailbox reader (intake/graph.py) make, signed with the app's
client-credentials token (core/azure_ad.py). Facts and sources: docs/microsoft-365.md.

Every failure is a ``GraphError`` carrying Graph's status (None: no answer, or no token) and the
seconds its ``Retry-After`` asked for; each caller decides what is permanent for it. No message
carries the client secret or a token.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from core.azure_ad import ClientCredentials, TokenError, TokenRefused, error_detail
from core.settings import Settings

log = logging.getLogger(__name__)

GRAPH_URL = "https://microsoftgraph.chinacloudapi.cn"  # Microsoft Graph operated by 21Vianet
GRAPH_SCOPE = f"{GRAPH_URL}/.default"  # the app permissions granted to it, app-only
API_VERSION = "v1.0"
LONGEST_WAIT = 3600.0  # a Retry-After beyond this is taken as this


class GraphError(Exception):
    """A Graph call failed. ``status``: Graph's HTTP status (None when it did not answer or no
    token was had); ``signin``: Azure AD refused the app's credentials; ``retry_after``: the
    seconds Graph asked us to wait (429, 503)."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        signin: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.signin = signin


class GraphClient:
    """Synchronous and thread-safe (httpx's client and the credentials both are)."""

    def __init__(
        self,
        credentials: ClientCredentials,
        mailbox: str,
        *,
        base_url: str = GRAPH_URL,
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials
        self.mailbox = mailbox
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self.base_url!r}, mailbox={self.mailbox!r})"

    def close(self) -> None:
        self._http.close()
        self.credentials.close()

    def url(self, path: str) -> str:
        """The URL of ``path`` under the shared mailbox: /v1.0/users/{mailbox}{path}."""
        return f"{self.base_url}/{API_VERSION}/users/{quote(self.mailbox, safe='@')}{path}"

    def request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Graph's answer when it is a success; else GraphError. A cached token that Graph
        refuses (revoked before it expired) is replaced once."""
        token, cached = self._bearer(what)
        response = self._call(method, url, what, token, json, content, headers, params)
        if response.status_code == 401 and cached:
            self.credentials.forget(token)
            token, _ = self._bearer(what)
            response = self._call(method, url, what, token, json, content, headers, params)
        if response.is_success:
            return response
        detail = f"HTTP {response.status_code}{error_detail(response)}"
        raise GraphError(
            self.credentials.scrub(f"Graph {what}: {detail}"),
            response.status_code,
            retry_after=retry_after(response),
        )

    def _call(
        self,
        method: str,
        url: str,
        what: str,
        token: str,
        json: dict[str, Any] | None,
        content: bytes | None,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
    ) -> httpx.Response:
        request_headers = {
            **(headers or {}),
            "Authorization": f"Bearer {token}",
            # Graph echoes it and logs it: what its support asks for about one request
            "client-request-id": str(uuid.uuid4()),
        }
        try:
            return self._http.request(
                method, url, json=json, content=content, headers=request_headers, params=params
            )
        except httpx.TransportError as exc:
            raise GraphError(f"Graph {what}: no answer ({type(exc).__name__}: {exc})") from exc

    def _bearer(self, what: str) -> tuple[str, bool]:
        try:
            return self.credentials.bearer()
        except TokenError as exc:
            raise GraphError(
                f"Graph {what}: {exc}", None, signin=isinstance(exc, TokenRefused)
            ) from exc


def graph_client(settings: Settings, why: str) -> GraphClient:
    """The shared mailbox's Graph client from the M365_* and GRAPH_* settings; SettingsError
    naming what is missing (``why``: what needs it, for the message)."""
    credentials = m365_credentials(settings, settings.graph_scope, why)
    return GraphClient(credentials, settings.shared_mailbox(), base_url=settings.graph_url)


def m365_credentials(settings: Settings, scope: str, why: str) -> ClientCredentials:
    """The partner's Microsoft 365 app (M365_*) signing in for ``scope``: Graph's, or SMTP's
    XOAUTH2 (M365_MAIL_SCOPE); SettingsError naming what is missing."""
    settings.require_m365(why)
    assert settings.m365_tenant_id and settings.m365_client_id and settings.m365_client_secret
    return ClientCredentials(
        settings.m365_tenant_id,
        settings.m365_client_id,
        settings.m365_client_secret,
        scope=scope,
        authority=settings.m365_authority,
    )


def retry_after(response: httpx.Response) -> float | None:
    """The seconds of a ``Retry-After`` header (a number, or an HTTP date), at most an hour."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), LONGEST_WAIT)

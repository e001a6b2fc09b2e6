"""An app-only access token from Azure AD operated by 21Vianet (the OAuth 2.0 client credentials
grant of the v2 endpoint), cached and refreshed: what Partner Center's client and Microsoft
Graph's (sending and reading the shared mailbox) sign in with.

In core, not activities: the mailbox reader (intake) signs in with it too, and intake stands on
core alone (tests/test_architecture.py).

Errors: ``TokenRefused`` (Azure AD answered no: a wrong secret, app id, tenant or scope, which a
person must fix) and ``TokenUnavailable`` (no answer, 408/429/5xx, an answer without a token: try
again later). No message carries the client secret or a token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)

# Azure AD operated by 21Vianet, where the partner's app signs in
AUTHORITY = "https://login.chinacloudapi.cn"
# a token is replaced this many seconds before it expires, so no call carries a stale one
TOKEN_REFRESH_MARGIN = 300.0


class TokenError(Exception):
    """No token; ``status`` is Azure AD's HTTP status when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TokenRefused(TokenError):
    """Azure AD refused the app's credentials (400/401: secret, app id, tenant or scope)."""


class TokenUnavailable(TokenError):
    """No token now (network, 408, 429, 5xx, an answer without a token): try again later."""


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float  # on the credentials' clock


class ClientCredentials:
    """Thread-safe: one instance serves every thread that calls the API with it."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: SecretStr | str,
        *,
        scope: str,
        authority: str = AUTHORITY,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.scope = scope
        # SecretStr keeps the secret out of reprs and tracebacks' locals
        self._secret = SecretStr(client_secret) if isinstance(client_secret, str) else client_secret
        # v2 endpoint, client credentials with a scope (v1 would take resource= instead)
        self.token_url = f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=timeout, headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"scope={self.scope!r})"
        )

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def bearer(self) -> tuple[str, bool]:
        """A valid access token, and whether it came from the cache."""
        # held while fetching, so threads that find no token wait for one request, not make many
        with self._lock:
            token = self._token
            if token is not None and self._clock() < token.refresh_at:
                return token.value, True
            self._token = self._fetch()
            return self._token.value, False

    def forget(self, value: str) -> None:
        """Drop ``value`` (the API refused it before it expired): the next call fetches anew."""
        with self._lock:
            # another thread may have replaced it already; keep that newer one
            if self._token is not None and self._token.value == value:
                self._token = None

    def scrub(self, text: str) -> str:
        """``text`` without the secret or the current token (error bodies are the server's)."""
        for secret in (self._secret.get_secret_value(), self._token.value if self._token else ""):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def _fetch(self) -> _Token:
        started = self._clock()
        prefix = f"token for app {self.client_id}"
        try:
            response = self._http.post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self._secret.get_secret_value(),
                    "scope": self.scope,
                },
            )
        except httpx.TransportError as exc:
            raise TokenUnavailable(
                f"{prefix}: no answer from Azure AD ({type(exc).__name__}: {exc})"
            ) from exc
        if not response.is_success:
            message = self.scrub(f"{prefix}: HTTP {response.status_code}{error_detail(response)}")
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise TokenUnavailable(message, response.status_code)
            # Azure AD answers 400/401 to a wrong secret, app id, tenant or scope
            raise TokenRefused(message, response.status_code)
        try:
            answer = response.json()
            value = str(answer["access_token"])
            lifetime = float(answer["expires_in"])  # a string in some Azure AD answers
        except (ValueError, KeyError, TypeError):
            raise TokenUnavailable(
                f"{prefix}: HTTP {response.status_code} without a usable token",
                response.status_code,
            ) from None
        log.debug("%s: new token, valid %.0f s", prefix, lifetime)
        return _Token(value, started + lifetime - min(TOKEN_REFRESH_MARGIN, lifetime / 2))


def error_detail(response: httpx.Response) -> str:
    """The reason an answer gives, on one line: Partner Center's ``description``, Azure AD's
    ``error``, Graph's ``error.code`` and ``error.message``; else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Graph: {"error": {"code": ..., "message": ...}}
            body = {"errorName": error.get("code"), "description": error.get("message")}
        for name in ("errorName", "error", "description", "error_description"):
            if body.get(name):
                parts.append(str(body[name]).splitlines()[0])
    text = " ".join(parts) or response.reason_phrase
    return f" {text[:300]}" if text else ""

"""Suspend and reactivate a customer's subscription through Partner Center operated by 21Vianet.

``PartnerCenterClient`` speaks the subscription REST API (GET, then PATCH the full resource with
``If-Match: <etag>``) with an app-only token from Azure AD operated by 21Vianet. Behind the small
``SubscriptionBackend`` interface sit the real API (``PartnerCenterBackend``) and ``DryRunBackend``,
the default, which calls nothing. ``PartnerCenterActivities.change_subscription`` makes one change
per key and records it in ``partner_center_actions``.

Errors: ``PartnerCenterNotFound`` (404), ``PartnerCenterForbidden`` (401/403, or credentials that
Azure AD refuses) and ``PartnerCenterRejected`` (any other 4xx) are permanent;
``PartnerCenterUnavailable`` (429, 5xx, network, an etag that keeps changing) is transient. No
message carries the client secret or a token.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Protocol

import httpx
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import database
from core.azure_ad import AUTHORITY, ClientCredentials, TokenError, TokenRefused, error_detail
from core.azure_ad import TOKEN_REFRESH_MARGIN as TOKEN_REFRESH_MARGIN
from core.metrics import PARTNER_CENTER_CALLS
from core.models import ChangeSubscription, SubscriptionChanged, SubscriptionStatus
from db.tables import PartnerCenterAction

log = logging.getLogger(__name__)

PARTNER_CENTER_URL = "https://partner.partnercenterapi.microsoftonline.cn"
# the Partner Center API's app id URI; configurable (PARTNER_CENTER_SCOPE) should 21Vianet's differ
SCOPE = "https://api.partnercenter.microsoft.com/.default"
# fields the API fills in itself and refuses in a PATCH body
READ_ONLY_FIELDS = frozenset({"suspensionReasons"})
# reads and PATCHes tried when another writer keeps changing the etag
DEFAULT_MAX_ATTEMPTS = 3

PENDING = "pending"
DONE = "done"
FAILED = "failed"


class PartnerCenterError(Exception):
    """A Partner Center call failed; ``status`` is the HTTP status when there was an answer."""

    permanent: ClassVar[bool] = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PartnerCenterNotFound(PartnerCenterError):
    """404: no such customer or subscription."""


class PartnerCenterForbidden(PartnerCenterError):
    """401/403, or Azure AD refused the app's credentials: a person must fix the app's access."""


class PartnerCenterRejected(PartnerCenterError):
    """Any other 4xx: the request itself is wrong, so sending it again cannot help."""


class PartnerCenterUnavailable(PartnerCenterError):
    """429, 5xx, a network failure or an etag that kept changing: try again later."""

    permanent = False


def _error_for(status: int, message: str) -> PartnerCenterError:
    if status == 404:
        return PartnerCenterNotFound(message, status)
    if status in (401, 403):
        return PartnerCenterForbidden(message, status)
    if status in (408, 429) or status >= 500:
        return PartnerCenterUnavailable(message, status)
    return PartnerCenterRejected(message, status)


def subscription_path(tenant_id: str, subscription_id: str) -> str:
    return f"/v1/customers/{tenant_id}/subscriptions/{subscription_id}"


def describe_change(tenant_id: str, subscription_id: str, status: str) -> str:
    """The PATCH that sets ``status``, as stored in ``partner_center_actions.request``."""
    return (
        f"PATCH {subscription_path(tenant_id, subscription_id)} If-Match: <etag of the GET>; "
        f'body: the full Subscription resource with "status": "{status}", '
        f"without {', '.join(sorted(READ_ONLY_FIELDS))}"
    )


class PartnerCenterClient:
    """Synchronous and thread-safe: one client serves every activity thread of the worker."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: SecretStr | str,
        *,
        base_url: str = PARTNER_CENTER_URL,
        authority: str = AUTHORITY,
        scope: str = SCOPE,
        timeout: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._max_attempts = max(1, max_attempts)
        self._http = httpx.Client(timeout=timeout, headers={"Accept": "application/json"})
        self._credentials = ClientCredentials(
            tenant_id,
            client_id,
            client_secret,
            scope=scope,
            authority=authority,
            http=self._http,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"PartnerCenterClient(base_url={self.base_url!r}, tenant_id={self.tenant_id!r}, "
            f"client_id={self.client_id!r})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PartnerCenterClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def get_subscription(self, tenant_id: str, subscription_id: str) -> tuple[dict[str, Any], str]:
        """The Subscription resource and its etag: the ``ETag`` header, else ``attributes.etag``."""
        what = f"GET customer {tenant_id} subscription {subscription_id}"
        response = self._send("GET", subscription_path(tenant_id, subscription_id), what)
        try:
            resource = response.json()
        except ValueError:
            resource = None
        if not isinstance(resource, dict):
            # a proxy's error page with a 200 is an outage, not an answer
            raise PartnerCenterUnavailable(
                f"Partner Center {what}: HTTP {response.status_code} but no JSON resource",
                response.status_code,
            )
        attributes = resource.get("attributes")
        etag = response.headers.get("ETag") or (
            attributes.get("etag") if isinstance(attributes, dict) else None
        )
        if not etag:
            raise PartnerCenterRejected(
                f"Partner Center {what}: HTTP {response.status_code} but the subscription has "
                "no etag, so it cannot be changed safely",
                response.status_code,
            )
        return resource, str(etag)

    def set_status(self, tenant_id: str, subscription_id: str, status: str) -> bool:
        """Set the subscription's status; False when it already had it (nothing is sent)."""
        path = subscription_path(tenant_id, subscription_id)
        what = f"PATCH customer {tenant_id} subscription {subscription_id}"
        for attempt in range(1, self._max_attempts + 1):
            resource, etag = self.get_subscription(tenant_id, subscription_id)
            if str(resource.get("status", "")).lower() == status:
                return False
            body = {k: v for k, v in resource.items() if k not in READ_ONLY_FIELDS}
            body["status"] = status
            response = self._send(
                "PATCH", path, what, json=body, headers={"If-Match": etag}, accept=(412,)
            )
            if response.status_code != 412:
                return True
            log.info("%s: etag changed under us (attempt %d), reading again", what, attempt)
        raise PartnerCenterUnavailable(
            f"Partner Center {what}: HTTP 412 {self._max_attempts} times in a row "
            "(the subscription kept changing)",
            412,
        )

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        token, cached = self._bearer(what)
        response = self._call(method, path, what, token, json, headers)
        if response.status_code == 401 and cached:
            # a cached token can be revoked before it expires: one more try with a new one
            self._credentials.forget(token)
            token, _ = self._bearer(what)
            response = self._call(method, path, what, token, json, headers)
        if response.is_success or response.status_code in accept:
            return response
        detail = f"HTTP {response.status_code}{error_detail(response)}"
        raise _error_for(
            response.status_code, self._credentials.scrub(f"Partner Center {what}: {detail}")
        )

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        token: str,
        json: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        request_headers = {
            **(headers or {}),
            "Authorization": f"Bearer {token}",
            "MS-RequestId": str(uuid.uuid4()),
        }
        try:
            return self._http.request(
                method, self.base_url + path, json=json, headers=request_headers
            )
        except httpx.TransportError as exc:
            raise PartnerCenterUnavailable(
                f"Partner Center {what}: no answer ({type(exc).__name__}: {exc})"
            ) from exc

    def _bearer(self, what: str) -> tuple[str, bool]:
        """A valid access token and whether it came from the cache; Azure AD's refusal is
        PartnerCenterForbidden (a person must fix the app), no token now is Unavailable."""
        try:
            return self._credentials.bearer()
        except TokenError as exc:
            kind = (
                PartnerCenterForbidden
                if isinstance(exc, TokenRefused)
                else PartnerCenterUnavailable
            )
            raise kind(f"Partner Center {what}: {exc}", exc.status) from exc


class SubscriptionBackend(Protocol):
    name: str

    def set_status(self, tenant_id: str, subscription_id: str, status: SubscriptionStatus) -> bool:
        """Give the subscription this status; False when it already had it."""
        ...


class PartnerCenterBackend:
    name = "partner-center"

    def __init__(self, client: PartnerCenterClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"PartnerCenterBackend({self.client!r})"

    def set_status(self, tenant_id: str, subscription_id: str, status: SubscriptionStatus) -> bool:
        return self.client.set_status(tenant_id, subscription_id, status.value)


class DryRunBackend:
    """Calls nothing: the activity records the call that would have been made."""

    name = "dry-run"

    def set_status(self, tenant_id: str, subscription_id: str, status: SubscriptionStatus) -> bool:
        log.info("dry-run, not sent: %s", describe_change(tenant_id, subscription_id, status))
        return True


class PartnerCenterActivities:
    def __init__(
        self, backend: SubscriptionBackend, session_factory: sessionmaker[Session]
    ) -> None:
        self.backend = backend
        self.session_factory = session_factory

    @activity.defn
    def change_subscription(self, data: ChangeSubscription) -> SubscriptionChanged:
        """Suspend or reactivate one subscription, once per ``data.key``."""
        earlier = self._start(data)
        if earlier is not None:
            return earlier
        calls = PARTNER_CENTER_CALLS
        change = data.status.value
        try:
            changed = self.backend.set_status(data.tenant_id, data.subscription_id, data.status)
        except PartnerCenterError as exc:
            calls.labels(change, "refused" if exc.permanent else "unavailable").inc()
            self._record(data.key, outcome=FAILED if exc.permanent else PENDING, error=str(exc))
            raise ApplicationError(
                str(exc), type=type(exc).__name__, non_retryable=exc.permanent
            ) from exc
        except Exception as exc:
            calls.labels(change, "error").inc()
            self._record(data.key, error=f"{type(exc).__name__}: {exc}")
            raise
        calls.labels(change, "changed" if changed else "unchanged").inc()
        result = self._finish(data.key, changed)
        activity.logger.info(
            "subscription %s of %s: %s (%s, changed=%s)",
            data.subscription_id,
            data.tenant_id,
            result.status.value,
            result.backend,
            result.changed,
        )
        return result

    def _start(self, data: ChangeSubscription) -> SubscriptionChanged | None:
        """Take the key for this attempt; returns the stored result when it is already done."""
        now = datetime.now(UTC)
        request = describe_change(data.tenant_id, data.subscription_id, data.status.value)
        with database(f"Partner Center action {data.key}"), self.session_factory() as session:
            row = _row(session, data.key)
            if row is None:
                session.add(
                    PartnerCenterAction(
                        key=data.key,
                        invoice_id=data.invoice_id,
                        tenant_id=data.tenant_id,
                        subscription_id=data.subscription_id,
                        status=data.status.value,
                        reason=data.reason,
                        backend=self.backend.name,
                        outcome=PENDING,
                        request=request,
                        attempts=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                try:
                    session.commit()
                    return None
                except IntegrityError:
                    session.rollback()
                    row = _row(session, data.key)
                    assert row is not None  # the concurrent insert that beat ours
            stored = (row.tenant_id, row.subscription_id, row.status)
            if stored != (data.tenant_id, data.subscription_id, data.status.value):
                raise ApplicationError(
                    f"key {data.key} already names {row.status} of subscription "
                    f"{row.subscription_id} of {row.tenant_id}: one key, one change",
                    type="PartnerCenterKeyReused",
                    non_retryable=True,
                )
            if row.outcome == DONE:
                return _result(row)
            # pending or failed: the backend's call is idempotent, so a concurrent attempt is safe
            session.execute(
                update(PartnerCenterAction)
                .where(PartnerCenterAction.id == row.id)
                .values(
                    attempts=PartnerCenterAction.attempts + 1,
                    backend=self.backend.name,
                    request=request,
                    updated_at=now,
                )
            )
            session.commit()
        return None

    def _record(self, key: str, **values: Any) -> None:
        with database(f"Partner Center action {key}"), self.session_factory() as session:
            session.execute(
                update(PartnerCenterAction)
                .where(PartnerCenterAction.key == key, PartnerCenterAction.outcome != DONE)
                .values(updated_at=datetime.now(UTC), **values)
            )
            session.commit()

    def _finish(self, key: str, changed: bool) -> SubscriptionChanged:
        now = datetime.now(UTC)
        self._record(
            key, outcome=DONE, changed=changed, error=None, done_at=now, backend=self.backend.name
        )
        with database(f"Partner Center action {key}"), self.session_factory() as session:
            # ours, or the result of a concurrent attempt that finished first: every caller agrees
            row = _row(session, key)
            assert row is not None
            return _result(row)


def _row(session: Session, key: str) -> PartnerCenterAction | None:
    return session.scalars(
        select(PartnerCenterAction).where(PartnerCenterAction.key == key)
    ).first()


def _result(row: PartnerCenterAction) -> SubscriptionChanged:
    return SubscriptionChanged(
        subscription_id=row.subscription_id,
        status=SubscriptionStatus(row.status),
        changed=bool(row.changed),
        backend=row.backend,
    )

"""Partner Center: the real client against a stand-in; change_subscription on both databases."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.partner_center import (
    TOKEN_REFRESH_MARGIN,
    DryRunBackend,
    PartnerCenterActivities,
    PartnerCenterBackend,
    PartnerCenterClient,
    PartnerCenterError,
    PartnerCenterForbidden,
    PartnerCenterNotFound,
    PartnerCenterRejected,
    PartnerCenterUnavailable,
    SubscriptionBackend,
)
from core.models import ChangeSubscription, SubscriptionChanged, SubscriptionStatus
from core.settings import Settings
from db.tables import PartnerCenterAction
from tests.partner_center_standin import (
    CLIENT_ID,
    CLIENT_SECRET,
    PARTNER_TENANT_ID,
    PartnerCenterStandIn,
    partner_center_standin_fixture,  # noqa: F401  (pytest fixture "partner_center_standin")
)

CUSTOMER = "8f3e2d1c-0b9a-4c8d-a7e6-f5d4c3b2a190"
SUBSCRIPTION = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
OTHER_SUBSCRIPTION = "9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a"
KEY = "collections-INV-2026-0042/suspend/1a2b3c4d"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(
    standin: PartnerCenterStandIn, secret: str = CLIENT_SECRET, clock: Clock | None = None
) -> PartnerCenterClient:
    return PartnerCenterClient(
        PARTNER_TENANT_ID,
        CLIENT_ID,
        secret,
        base_url=standin.url,
        authority=standin.url,
        clock=clock or Clock(),
    )


@pytest.fixture
def client(partner_center_standin: PartnerCenterStandIn) -> Iterator[PartnerCenterClient]:
    with make_client(partner_center_standin) as client:
        yield client


def methods(standin: PartnerCenterStandIn) -> list[tuple[str, int]]:
    return [(r.method, r.status) for r in standin.api_requests]


def change(
    status: SubscriptionStatus = SubscriptionStatus.SUSPENDED,
    key: str = KEY,
    subscription_id: str = SUBSCRIPTION,
) -> ChangeSubscription:
    return ChangeSubscription(
        key=key,
        tenant_id=CUSTOMER,
        subscription_id=subscription_id,
        status=status,
        invoice_id="INV-2026-0042",
        reason="non-payment, day 30 of the collections policy",
    )


def run(activities: PartnerCenterActivities, data: ChangeSubscription) -> SubscriptionChanged:
    result: SubscriptionChanged = ActivityEnvironment().run(activities.change_subscription, data)
    return result


def action_row(session_factory: sessionmaker[Session], key: str = KEY) -> PartnerCenterAction:
    with session_factory() as session:
        return session.scalars(
            select(PartnerCenterAction).where(PartnerCenterAction.key == key)
        ).one()


# --------------------------------------------------------------------------- the client


def test_token_is_fetched_once_and_cached(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    client.get_subscription(CUSTOMER, SUBSCRIPTION)
    client.set_status(CUSTOMER, SUBSCRIPTION, "suspended")
    client.set_status(CUSTOMER, SUBSCRIPTION, "active")

    assert len(partner_center_standin.token_requests) == 1
    token = partner_center_standin.token_requests[0]
    assert token.path == f"/{PARTNER_TENANT_ID}/oauth2/v2.0/token"
    form = token.body.decode()
    assert "grant_type=client_credentials" in form
    assert "api.partnercenter.microsoft.com%2F.default" in form
    bearers = {r.headers["Authorization"] for r in partner_center_standin.api_requests}
    assert bearers == {f"Bearer {partner_center_standin.issued_tokens[0]}"}
    assert len(partner_center_standin.api_requests) == 5


def test_token_is_refreshed_shortly_before_it_expires(
    partner_center_standin: PartnerCenterStandIn,
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    clock = Clock()
    with make_client(partner_center_standin, clock=clock) as client:
        client.get_subscription(CUSTOMER, SUBSCRIPTION)
        clock.now += partner_center_standin.token_lifetime - TOKEN_REFRESH_MARGIN - 1
        client.get_subscription(CUSTOMER, SUBSCRIPTION)
        assert len(partner_center_standin.token_requests) == 1
        clock.now += 2
        client.get_subscription(CUSTOMER, SUBSCRIPTION)

    assert len(partner_center_standin.token_requests) == 2
    first, second = partner_center_standin.issued_tokens
    bearers = [r.headers["Authorization"] for r in partner_center_standin.api_requests]
    assert bearers == [f"Bearer {first}", f"Bearer {first}", f"Bearer {second}"]


def test_suspend_then_reactivate(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    original = partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)

    assert client.set_status(CUSTOMER, SUBSCRIPTION, "suspended") is True
    suspended = partner_center_standin.subscription(CUSTOMER, SUBSCRIPTION)
    assert suspended["status"] == "suspended"
    assert suspended["suspensionReasons"] == ["ResellerInitiated"]

    assert client.set_status(CUSTOMER, SUBSCRIPTION, "active") is True
    active = partner_center_standin.subscription(CUSTOMER, SUBSCRIPTION)
    assert active["status"] == "active" and "suspensionReasons" not in active

    assert methods(partner_center_standin) == [
        ("GET", 200),
        ("PATCH", 200),
        ("GET", 200),
        ("PATCH", 200),
    ]
    first_patch, second_patch = [
        r for r in partner_center_standin.api_requests if r.method == "PATCH"
    ]
    assert first_patch.path == f"/v1/customers/{CUSTOMER}/subscriptions/{SUBSCRIPTION}"
    assert first_patch.headers["If-Match"] == original["attributes"]["etag"]
    assert first_patch.json() == {**original, "status": "suspended"}  # the full resource
    assert second_patch.headers["If-Match"] == suspended["attributes"]["etag"]
    assert "suspensionReasons" not in second_patch.json()  # read-only, though the GET had it
    assert len({first_patch.headers["MS-RequestId"], second_patch.headers["MS-RequestId"]}) == 2


def test_the_status_it_already_has_sends_no_patch(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION, status="suspended")

    assert client.set_status(CUSTOMER, SUBSCRIPTION, "suspended") is False
    assert methods(partner_center_standin) == [("GET", 200)]


def test_a_changed_etag_is_read_again_and_the_patch_succeeds(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.conflict_next_patch()

    assert client.set_status(CUSTOMER, SUBSCRIPTION, "suspended") is True
    assert methods(partner_center_standin) == [
        ("GET", 200),
        ("PATCH", 412),
        ("GET", 200),
        ("PATCH", 200),
    ]
    first, second = [r for r in partner_center_standin.api_requests if r.method == "PATCH"]
    assert first.headers["If-Match"] != second.headers["If-Match"]
    assert partner_center_standin.subscription(CUSTOMER, SUBSCRIPTION)["status"] == "suspended"


def test_an_etag_that_keeps_changing_is_transient_after_three_tries(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.conflict_next_patch(times=3)

    with pytest.raises(PartnerCenterUnavailable, match="412") as caught:
        client.set_status(CUSTOMER, SUBSCRIPTION, "suspended")
    assert caught.value.status == 412
    assert methods(partner_center_standin) == [("GET", 200), ("PATCH", 412)] * 3
    assert partner_center_standin.subscription(CUSTOMER, SUBSCRIPTION)["status"] == "active"


def test_the_etag_is_taken_from_the_resource_without_an_etag_header(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    resource = partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.etag_header = False

    _, etag = client.get_subscription(CUSTOMER, SUBSCRIPTION)
    assert etag == resource["attributes"]["etag"]
    assert client.set_status(CUSTOMER, SUBSCRIPTION, "suspended") is True
    patch = partner_center_standin.api_requests[-1]
    assert (patch.method, patch.status, patch.headers["If-Match"]) == ("PATCH", 200, etag)


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, PartnerCenterForbidden), (404, PartnerCenterNotFound), (400, PartnerCenterRejected)],
)
def test_client_errors_are_permanent(
    partner_center_standin: PartnerCenterStandIn,
    client: PartnerCenterClient,
    status: int,
    error: type[PartnerCenterError],
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.fail_next(status)

    with pytest.raises(error) as caught:
        client.set_status(CUSTOMER, SUBSCRIPTION, "suspended")
    assert caught.value.permanent and caught.value.status == status
    assert CUSTOMER in str(caught.value) and SUBSCRIPTION in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert methods(partner_center_standin) == [("GET", status)]


def test_an_unknown_subscription_is_not_found(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    with pytest.raises(PartnerCenterNotFound, match=f"{OTHER_SUBSCRIPTION}: HTTP 404 NotFound"):
        client.set_status(CUSTOMER, OTHER_SUBSCRIPTION, "suspended")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient, status: int
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.fail_next(status)

    with pytest.raises(PartnerCenterUnavailable, match=f"HTTP {status}") as caught:
        client.set_status(CUSTOMER, SUBSCRIPTION, "suspended")
    assert not caught.value.permanent
    # the retry belongs to Temporal: the next call goes through
    assert client.set_status(CUSTOMER, SUBSCRIPTION, "suspended") is True


def test_a_connection_failure_is_transient(partner_center_standin: PartnerCenterStandIn) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    client = PartnerCenterClient(
        PARTNER_TENANT_ID,
        CLIENT_ID,
        CLIENT_SECRET,
        base_url=f"http://127.0.0.1:{closed_port}",
        authority=partner_center_standin.url,
    )
    with client, pytest.raises(PartnerCenterUnavailable, match="no answer") as caught:
        client.get_subscription(CUSTOMER, SUBSCRIPTION)
    assert not caught.value.permanent and caught.value.status is None


def test_a_revoked_cached_token_is_replaced_once(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    client.get_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.revoke_tokens()

    assert client.set_status(CUSTOMER, SUBSCRIPTION, "suspended") is True
    assert len(partner_center_standin.token_requests) == 2
    assert methods(partner_center_standin) == [
        ("GET", 200),
        ("GET", 401),
        ("GET", 200),
        ("PATCH", 200),
    ]


def test_401_with_a_new_token_is_permanent_at_once(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.fail_next(401)

    with pytest.raises(PartnerCenterForbidden, match="HTTP 401"):
        client.get_subscription(CUSTOMER, SUBSCRIPTION)
    assert len(partner_center_standin.token_requests) == 1
    assert methods(partner_center_standin) == [("GET", 401)]


def test_401_again_after_a_new_token_is_permanent(
    partner_center_standin: PartnerCenterStandIn, client: PartnerCenterClient
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    client.get_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.fail_next(401, times=2)

    with pytest.raises(PartnerCenterForbidden, match="HTTP 401"):
        client.get_subscription(CUSTOMER, SUBSCRIPTION)
    assert len(partner_center_standin.token_requests) == 2
    assert methods(partner_center_standin) == [("GET", 200), ("GET", 401), ("GET", 401)]


def test_a_wrong_secret_is_permanent_and_named_without_the_secret(
    partner_center_standin: PartnerCenterStandIn,
) -> None:
    wrong = "wrong-secret~that-must-not-show"
    with make_client(partner_center_standin, secret=wrong) as client:
        with pytest.raises(PartnerCenterForbidden) as caught:
            client.get_subscription(CUSTOMER, SUBSCRIPTION)
        assert wrong not in repr(client)
    message = str(caught.value)
    assert f"token for app {CLIENT_ID}: HTTP 401 invalid_client AADSTS7000215" in message
    assert CUSTOMER in message and SUBSCRIPTION in message
    assert wrong not in message
    assert partner_center_standin.api_requests == []


# --------------------------------------------------------------------------- the activity


def test_change_subscription_is_idempotent_on_its_key(
    session_factory: sessionmaker[Session],
    partner_center_standin: PartnerCenterStandIn,
    client: PartnerCenterClient,
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    activities = PartnerCenterActivities(PartnerCenterBackend(client), session_factory)

    first = run(activities, change())
    calls = len(partner_center_standin.requests)
    second = run(activities, change())

    expected = SubscriptionChanged(
        subscription_id=SUBSCRIPTION,
        status=SubscriptionStatus.SUSPENDED,
        changed=True,
        backend="partner-center",
    )
    assert first == second == expected
    assert calls == 3  # token, GET, PATCH
    assert len(partner_center_standin.requests) == calls  # the second run called nothing
    row = action_row(session_factory)
    assert (row.outcome, row.changed, row.attempts, row.error) == ("done", True, 1, None)
    assert (row.tenant_id, row.subscription_id, row.status) == (CUSTOMER, SUBSCRIPTION, "suspended")
    assert row.invoice_id == "INV-2026-0042" and row.reason.startswith("non-payment")
    assert row.done_at is not None and row.done_at.tzinfo is not None


def test_a_subscription_already_suspended_is_done_unchanged(
    session_factory: sessionmaker[Session],
    partner_center_standin: PartnerCenterStandIn,
    client: PartnerCenterClient,
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION, status="suspended")
    activities = PartnerCenterActivities(PartnerCenterBackend(client), session_factory)

    result = run(activities, change())
    assert (result.changed, result.status) == (False, SubscriptionStatus.SUSPENDED)
    assert methods(partner_center_standin) == [("GET", 200)]
    assert (action_row(session_factory).outcome, action_row(session_factory).changed) == (
        "done",
        False,
    )


def test_dry_run_records_the_call_and_sends_nothing(
    session_factory: sessionmaker[Session], partner_center_standin: PartnerCenterStandIn
) -> None:
    activities = PartnerCenterActivities(DryRunBackend(), session_factory)

    result = run(activities, change(SubscriptionStatus.ACTIVE))
    again = run(activities, change(SubscriptionStatus.ACTIVE))

    assert result == again
    assert (result.changed, result.status, result.backend) == (
        True,
        SubscriptionStatus.ACTIVE,
        "dry-run",
    )
    assert partner_center_standin.requests == []
    row = action_row(session_factory)
    assert (row.outcome, row.backend, row.attempts) == ("done", "dry-run", 1)
    assert row.request.startswith(
        f"PATCH /v1/customers/{CUSTOMER}/subscriptions/{SUBSCRIPTION} If-Match: "
    )
    assert '"status": "active"' in row.request


@pytest.mark.parametrize(
    ("status", "error_type"), [(404, "PartnerCenterNotFound"), (403, "PartnerCenterForbidden")]
)
def test_permanent_errors_are_non_retryable(
    session_factory: sessionmaker[Session],
    partner_center_standin: PartnerCenterStandIn,
    client: PartnerCenterClient,
    status: int,
    error_type: str,
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.fail_next(status)
    activities = PartnerCenterActivities(PartnerCenterBackend(client), session_factory)

    with pytest.raises(ApplicationError) as caught:
        run(activities, change())
    assert (caught.value.type, caught.value.non_retryable) == (error_type, True)
    assert CUSTOMER in caught.value.message and SUBSCRIPTION in caught.value.message
    assert f"HTTP {status}" in caught.value.message
    row = action_row(session_factory)
    assert (row.outcome, row.changed, row.error) == ("failed", None, caught.value.message)


def test_transient_errors_are_retried_until_done(
    session_factory: sessionmaker[Session],
    partner_center_standin: PartnerCenterStandIn,
    client: PartnerCenterClient,
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    partner_center_standin.fail_next(503)
    activities = PartnerCenterActivities(PartnerCenterBackend(client), session_factory)

    with pytest.raises(ApplicationError) as caught:
        run(activities, change())
    assert (caught.value.type, caught.value.non_retryable) == ("PartnerCenterUnavailable", False)
    assert "HTTP 503" in caught.value.message
    assert action_row(session_factory).outcome == "pending"
    assert "HTTP 503" in (action_row(session_factory).error or "")

    assert run(activities, change()).changed is True  # Temporal's next attempt
    row = action_row(session_factory)
    assert (row.outcome, row.attempts, row.error, row.changed) == ("done", 2, None, True)


def test_a_key_names_one_change(
    session_factory: sessionmaker[Session], partner_center_standin: PartnerCenterStandIn
) -> None:
    activities = PartnerCenterActivities(DryRunBackend(), session_factory)
    run(activities, change())

    with pytest.raises(ApplicationError) as caught:
        run(activities, change(subscription_id=OTHER_SUBSCRIPTION))
    assert (caught.value.type, caught.value.non_retryable) == ("PartnerCenterKeyReused", True)
    assert action_row(session_factory).subscription_id == SUBSCRIPTION


def test_the_secret_and_tokens_appear_in_no_message_and_no_log(
    session_factory: sessionmaker[Session],
    partner_center_standin: PartnerCenterStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    partner_center_standin.add_subscription(CUSTOMER, SUBSCRIPTION)
    messages: list[str] = []

    def attempt(backend: SubscriptionBackend, data: ChangeSubscription) -> None:
        activities = PartnerCenterActivities(backend, session_factory)
        messages.append(repr(backend))
        try:
            run(activities, data)
        except ApplicationError as exc:
            error: BaseException | None = exc
            while error is not None:  # the whole chain Temporal would serialize
                messages.append(f"{type(error).__name__}: {error}")
                error = error.__cause__
        else:
            messages.append(action_row(session_factory, data.key).request)

    with caplog.at_level(logging.DEBUG):
        with make_client(partner_center_standin, secret=CLIENT_SECRET[::-1]) as wrong:
            attempt(PartnerCenterBackend(wrong), change(key="wrong-secret"))
        with make_client(partner_center_standin) as client:
            partner_center_standin.fail_next(500)
            attempt(PartnerCenterBackend(client), change(key="outage"))
            partner_center_standin.revoke_tokens()
            attempt(PartnerCenterBackend(client), change(key="outage"))
            partner_center_standin.fail_next(403)
            attempt(PartnerCenterBackend(client), change(SubscriptionStatus.ACTIVE, key="403"))

    assert partner_center_standin.subscription(CUSTOMER, SUBSCRIPTION)["status"] == "suspended"
    assert len(partner_center_standin.issued_tokens) == 2
    assert any(r.name == "httpx" for r in caplog.records)  # the HTTP client did log
    assert any("HTTP 500" in m for m in messages) and any("HTTP 403" in m for m in messages)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in [CLIENT_SECRET, CLIENT_SECRET[::-1], *partner_center_standin.issued_tokens]:
        assert secret not in logged
        assert all(secret not in message for message in messages)


# --------------------------------------------------------------------------- settings


def test_the_partner_center_backend_needs_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.delenv(f"PARTNER_CENTER_{name}", raising=False)
    assert Settings(_env_file=None).partner_center_backend == "dry-run"

    with pytest.raises(ValidationError) as caught:
        Settings(
            _env_file=None,
            partner_center_backend="partner-center",
            partner_center_client_id=CLIENT_ID,
        )
    assert (
        "PARTNER_CENTER_TENANT_ID, PARTNER_CENTER_CLIENT_SECRET are required when "
        "PARTNER_CENTER_BACKEND=partner-center"
    ) in str(caught.value)

    monkeypatch.setenv("PARTNER_CENTER_BACKEND", "partner-center")
    monkeypatch.setenv("PARTNER_CENTER_TENANT_ID", PARTNER_TENANT_ID)
    monkeypatch.setenv("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET)
    settings = Settings(_env_file=None)
    assert settings.partner_center_client_secret is not None
    assert settings.partner_center_client_secret.get_secret_value() == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(settings)

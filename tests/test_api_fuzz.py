"""Schemathesis against the intake API's own OpenAPI, in process: generated requests (valid and
invalid bodies), each correctly signed so it reaches validation and Temporal. No answer is a 5xx,
every answer matches the schema, and no rejected request leaves a workflow behind.

Temporal here is a time-skipping test server of its own with the stand-in activities, so every
workflow on it was started by this test's requests.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core import NotSet
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from tests.intake_support import SIGNED, caller_secret
from tests.workflow_support import FakeActivities

DELIVERIES = itertools.count()


def schema_of(settings: Settings) -> Any:
    return schemathesis.openapi.from_dict(create_app(settings).openapi())


@functools.cache
def cases() -> st.SearchStrategy[Any]:
    """Valid and invalid requests of every operation; the signature headers are set (and signed)
    by `signed_request`, so invalid data lies in the body, where validation has to catch it."""
    schema = schema_of(Settings().model_copy(update=SIGNED))
    signature = {TIMESTAMP_HEADER: "0", SIGNATURE_HEADER: "0", KEY_HEADER: "0"}
    return st.one_of(
        *(schema.as_strategy(generation_mode=mode, headers=signature) for mode in GenerationMode)
    )


def signed_request(case: Any) -> dict[str, Any]:
    """The request as its caller would send it: a new key, signed with the caller's secret."""
    body = case.body
    if isinstance(body, NotSet):
        raw = b""
    elif isinstance(body, bytes):  # negative mode: not JSON at all
        raw = body
    else:
        raw = json.dumps(body).encode()
    at, key, path = int(time.time()), f"fuzz-{next(DELIVERIES)}-{uuid.uuid4()}", case.formatted_path
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    headers.update(
        {
            "Content-Type": case.media_type or "application/json",
            KEY_HEADER: key,
            TIMESTAMP_HEADER: str(at),
            SIGNATURE_HEADER: sign(
                caller_secret(path), at, raw, method=case.method, path=path, key=key
            ),
        }
    )
    return {
        "method": case.method,
        "url": case.formatted_path,
        "content": raw,
        "headers": headers,
        "params": case.query,
    }


def workflow_ids(body: Any) -> set[str]:
    """The workflows a request with this body would start."""
    if not isinstance(body, dict):
        return set()
    ids = set()
    if isinstance(body.get("invoice_id"), str) and "failure_id" in body:
        ids.add(f"collections-{body['invoice_id']}")
    return ids


async def exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        assert err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT), err
        return False
    return True


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The API keeps its idempotency keys here."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'billing.db'}"
    upgrade(url)
    return url


@pytest.fixture
def accepted() -> set[str]:
    """Workflows accepted requests may have started: shared by all examples of one test run,
    like the test server."""
    return set()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink step replays requests
)
@given(data=st.data())
async def test_generated_requests(
    time_env: WorkflowEnvironment,
    fake: FakeActivities,
    accepted: set[str],
    database: str,
    data: st.DataObject,
) -> None:
    settings = Settings(task_queue=fake.task_queue, database_url=database).model_copy(update=SIGNED)
    client = time_env.client

    async def connect() -> Service:
        return Service(client, settings)

    app = create_app(settings, connect)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        for _ in range(data.draw(st.integers(1, 3), label="requests")):
            case = data.draw(cases(), label="request")
            response = await http.request(**signed_request(case))
            assert response.status_code < 500, (case.path, response.text)
            case.validate_response(response, excluded_checks=EXCLUDED)
            started = workflow_ids(case.body)
            if response.status_code < 400:
                accepted |= started
                continue
            for workflow_id in started - accepted:
                assert not await exists(client, workflow_id), (workflow_id, response.text)


# JSON Schema cannot state every rule of the models (amounts in whole fen and above zero,
# moments with a timezone, names without control characters): a schema-valid body may rightly get
# a 422 naming the field. Every other check (no 5xx, documented status codes and bodies, invalid
# data refused) runs.
EXCLUDED = [positive_data_acceptance]

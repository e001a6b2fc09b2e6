"""Nobody acts in another's name (issue 26) in the workspace: cookies are Secure and browsers are
told to keep to HTTPS unless WEB_SECURE_COOKIES=false. Over the real worker and Temporal dev
server, as test_workspace.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from service import Service
from tests.workspace_support import (
    AGENT,
    Stack,
    browser,
    try_password,
    workspace,
)
from web.app import create_app

WRONG = "not the password at all"


@pytest_asyncio.fixture(scope="module")
async def stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with workspace(dev_env, tmp_path_factory.mktemp("sessions")) as stack:
        yield stack


async def test_cookies_are_secure_and_hsts_is_sent_by_default(stack: Stack) -> None:
    settings = Settings(
        database_url=stack.settings.database_url,
        task_queue=stack.settings.task_queue,
        web_session_secret=stack.settings.web_session_secret,
    )

    async def factory() -> Service:
        return stack.service

    client = browser(create_app(settings, factory), base_url="https://web.test")
    answer = await try_password(client, AGENT)
    assert answer.status_code == 303 and "; secure" in answer.headers["set-cookie"].lower()
    page = await client.get("/queues/mine")
    assert page.status_code == 200
    assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    # WEB_SECURE_COOKIES=false, as `make run` sets it for plain http on loopback: neither
    plain = await browser(stack.app).get("/login")
    assert "strict-transport-security" not in plain.headers
    assert "secure" not in plain.headers["set-cookie"].lower()

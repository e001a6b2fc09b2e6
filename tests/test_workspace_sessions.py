"""Nobody acts in another's name (issue 26) in the workspace: a session is the server's, not its
cookie's (signing out and the maximum lifetime end it at once); cookies are Secure and browsers
are told to keep to HTTPS unless WEB_SECURE_COOKIES=false. Over the real worker and Temporal dev
server, as test_workspace.py. (Signing out in a real browser: test_workspace_browser.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from service import Service
from tests.workflow_support import open_case
from tests.workspace_support import (
    AGENT,
    Stack,
    browser,
    csrf_of,
    holding,
    signed_in,
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


async def _case(stack: Stack, owner: str) -> str:
    data = open_case(owner=owner)
    await stack.service.cases.open(data)
    return data.case_id


def _at(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    """The workspace's clock (its sessions and sign-in failures) reads `moment`."""
    monkeypatch.setattr("web.auth.time.time", lambda: moment)


async def test_a_signed_out_cookie_opens_nothing_and_changes_nothing(stack: Stack) -> None:
    case_id = await _case(stack, AGENT)
    client = await signed_in(stack.app, AGENT)
    page = await client.get(f"/cases/{case_id}")
    copied, token = httpx.Cookies(client.cookies), csrf_of(page.text)
    assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
    opened = await holding(stack.app, copied).get(f"/cases/{case_id}")
    assert opened.status_code == 303 and opened.headers["location"].startswith("/login")
    note = await holding(stack.app, copied).post(
        f"/cases/{case_id}/actions/note", data={"text": "after sign-out", "csrf_token": token}
    )
    assert note.status_code == 401
    timeline = (await stack.service.cases.show(case_id)).timeline
    assert all(event.text != "after sign-out" for event in timeline)


async def test_a_busy_session_ends_at_its_maximum_lifetime(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await signed_in(stack.app, AGENT)
    start = time.time()
    assert stack.settings.web_session_max_hours == 12  # the default
    for hours in (4, 8, 11.9):  # a request every 4 hours: never idle for 8
        _at(monkeypatch, start + hours * 3600)
        assert (await client.get("/queues/mine")).status_code == 200, hours
    _at(monkeypatch, start + 12 * 3600 + 60)
    ended = await client.get("/queues/mine")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")


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

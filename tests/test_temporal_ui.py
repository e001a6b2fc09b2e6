"""The Temporal UI as a manager uses it: a dev server with its UI, decoding through our codec
endpoint, and Chromium driven by Playwright. `starter.py workflow setup` registers the search
attributes on it (the server starts without them), a case is escalated through the real worker,
and the page must show it under the `EscalatedToVianet = true` filter with its summary, current
details and activity summaries (a local activity's on its event).

UI_SCREENSHOT=docs/ui-case.png also writes the case's screenshot there (docs/managers.md's picture).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import async_playwright, expect
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from api.codec import create_codec_app
from core import search
from core.models import Escalate, Severity, VianetTicket
from core.settings import Settings
from core.temporal import StampActions, data_converter
from db.migrate import upgrade
from service import Service
from tests.clock_support import eventually
from tests.ui_support import history_summaries
from tests.workflow_support import (
    SERVER_STARTUP,
    SUITE_SERVER_ARGS,
    make_suite_version_current,
    open_case,
)
from worker import build_worker

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright downloads no browser of its own
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AGENT = "agent.wang@partner.example.cn"
WAIT_MS = 20_000  # generous for 2 busy cores: an element that never appears still fails


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class UiStack:
    env: WorkflowEnvironment
    url: str
    added_at_start: list[str]


@pytest_asyncio.fixture(scope="module")
async def ui_stack(codec_keys: str) -> AsyncIterator[UiStack]:
    """A dev server with its UI on a free port, the codec endpoint it decodes through, and the
    search attributes registered by `starter.py workflow setup`'s service call (the server starts
    without them)."""
    ui_port, codec_port = free_port(), free_port()
    url = f"http://127.0.0.1:{ui_port}"
    token = secrets.token_urlsafe(24)
    settings = Settings(
        codec_keys=SecretStr(codec_keys),
        codec_token=SecretStr(token),
        codec_cors_origins=[url],
        codec_local_ui=True,  # as `make run`: the UI has no sign-in, and no secret in its settings
    )
    codec = uvicorn.Server(
        uvicorn.Config(
            create_codec_app(settings),
            host="127.0.0.1",
            port=codec_port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=codec.run, daemon=True)  # its own loop, as in production
    thread.start()
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(settings),
        interceptors=[StampActions()],
        dev_server_existing_path=shutil.which("temporal")
        or str(Path(sys.executable).parent / "temporal"),
        ip="127.0.0.1",
        dev_server_startup_timeout=SERVER_STARTUP,
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=[
            *SUITE_SERVER_ARGS,
            "--ui-disable-news-fetch",
            "--ui-codec-endpoint",
            f"http://127.0.0.1:{codec_port}/",
        ],
    )
    try:
        await eventually(lambda: codec.started, "the codec endpoint listens")
        added = await Service(env.client).register_search_attributes()
        await make_suite_version_current(env.client)
        yield UiStack(env, url, added)
    finally:
        await env.shutdown()
        codec.should_exit = True
        thread.join(10)


async def test_setup_registers_the_search_attributes_once(ui_stack: UiStack) -> None:
    client = ui_stack.env.client
    assert ui_stack.added_at_start == sorted(key.name for key in search.ALL_KEYS)
    assert await Service(client).register_search_attributes() == []
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    assert {key.name: listed.custom_attributes[key.name] for key in search.ALL_KEYS} == {
        key.name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}")
        for key in search.ALL_KEYS
    }
    cli = await asyncio.to_thread(
        CliRunner().invoke,
        starter.app,
        ["workflow", "setup"],
        env={"TEMPORAL_ADDRESS": client.service_client.config.target_host},
    )
    assert cli.exit_code == 0, cli.output
    assert "search attributes added: none (all present)" in cli.output


async def test_manager_finds_an_escalated_case_in_the_ui(ui_stack: UiStack, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` to run the UI test")
    client = ui_stack.env.client
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"ui-{uuid.uuid4()}",
    )
    upgrade(settings.database_url)
    data = open_case(amount="12340.00")
    workflow_id = f"case-{data.case_id}"
    handle = client.get_workflow_handle(workflow_id)
    async with build_worker(client, settings):
        await Service(client, settings).cases.open(data)
        await Service(client).cases.act(
            data.case_id, Escalate(reason="Meter error", severity=Severity.B, by=AGENT)
        )
        await Service(client).cases.act(
            data.case_id, VianetTicket(ticket_number="VN-2611240001", by=AGENT)
        )

        async def settled() -> bool:  # every effect done, the filter sees it: the page is final
            timers = (await history_summaries(client, handle))["timers"]
            listed = [w.id async for w in client.list_workflows("EscalatedToVianet = true")]
            return timers[-1:] == ["21Vianet: response target"] and workflow_id in listed

        await eventually(settled, "the case waits on 21Vianet and is listed as escalated")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 760})
                query = quote("EscalatedToVianet = true")
                await page.goto(f"{ui_stack.url}/namespaces/default/workflows?query={query}")
                await page.get_by_role("link", name=workflow_id, exact=True).first.click(
                    timeout=WAIT_MS
                )
                # the timeline (newest first) names each activity and timer by its summary; a
                # local activity (a database write) by its type, its summary one click away
                for summary in (
                    "Email customer: case escalated (zh-CN)",
                    "21Vianet: response target",
                ):
                    await expect(page.get_by_text(summary).first).to_be_visible(timeout=WAIT_MS)
                await page.get_by_role("button", name="Event record_escalation").first.click(
                    timeout=WAIT_MS
                )
                for text in ("core_local_activity", "Save 21Vianet escalation #1"):
                    await expect(page.get_by_text(text, exact=True).first).to_be_visible(
                        timeout=WAIT_MS
                    )
                await page.get_by_text("Close").first.click(timeout=WAIT_MS)
                await page.get_by_test_id("user-metadata-tab").click()
                frames = {
                    "summary": f"Invoice dispute · tenant {data.details.customer.tenant_id}"
                    " · ¥12,340.00 · normal",
                    "details": f"Case {data.case_id}",
                    "current-details": "waiting for 21Vianet: answer to ticket VN-2611240001",
                }
                for frame, text in frames.items():
                    body = page.frame_locator(f"#user-metadata-{frame}").locator("body")
                    await expect(body).to_contain_text(text, timeout=WAIT_MS)
                await expect(
                    page.frame_locator("#user-metadata-current-details").locator("body")
                ).to_contain_text("Next deadline: 21Vianet: response target")
                shot = tmp_path / "ui-case.png"
                await page.screenshot(path=shot)
                assert shot.stat().st_size > 10_000
                if target := os.environ.get("UI_SCREENSHOT"):
                    shutil.copyfile(shot, target)
            finally:
                await browser.close()

"""The workspace on the real stack, shared by its tests: a migrated SQLite file, the real worker on
dev_env, a local account per role, and the app (over the same Temporal client)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from core.models import Locale
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from service.users import NewUser, Role, Users
from web.app import create_app
from worker import build_worker

PASSWORD = "correct horse battery"
AGENT = "agent.wang@partner.example.cn"
OTHER_AGENT = "agent.li@partner.example.cn"
MANAGER = "manager.zhao@partner.example.cn"
FINANCE = "finance.qian@partner.example.cn"
ACCOUNTS = {
    AGENT: ("王客服", [Role.AGENT], Locale.ZH_CN),
    OTHER_AGENT: ("李客服", [Role.AGENT], Locale.EN_US),
    MANAGER: ("赵经理", [Role.MANAGER], Locale.ZH_CN),
    FINANCE: ("Qian Finance", [Role.FINANCE], Locale.EN_US),
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Stack:
    settings: Settings
    service: Service
    app: FastAPI


def workspace_settings(tmp: Path, **overrides: Any) -> Settings:
    overrides.setdefault("web_secure_cookies", False)  # the test clients speak plain http
    overrides.setdefault("database_url", f"sqlite:///{tmp / 'billing.db'}")
    settings = Settings(
        outbox_dir=tmp / "outbox",
        task_queue=f"web-{uuid.uuid4()}",
        web_session_secret=SecretStr("a-test-session-secret-of-32-characters!"),
        **overrides,
    )
    upgrade(settings.database_url)
    return settings


@asynccontextmanager
async def workspace(env: WorkflowEnvironment, tmp: Path, **overrides: Any) -> AsyncIterator[Stack]:
    settings = workspace_settings(tmp, **overrides)
    users = Users(settings)
    for email, (name, roles, locale) in ACCOUNTS.items():
        new = NewUser(
            email=email, name=name, roles=roles, locale=locale, password=SecretStr(PASSWORD)
        )
        await users.add(new)
    service = Service(env.client, settings)

    async def factory() -> Service:
        return service

    async with build_worker(env.client, settings):
        yield Stack(settings, service, create_app(settings, factory))


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def browser(
    app: FastAPI, address: str = "127.0.0.1", base_url: str = "http://web.test"
) -> httpx.AsyncClient:
    """A browser-like client of the app, from a client address (sign-in counts failures by it)."""
    transport = httpx.ASGITransport(app=app, client=(address, 50123))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


def holding(app: FastAPI, cookies: httpx.Cookies) -> httpx.AsyncClient:
    """Someone holding a copy of these cookies (a browser would drop one the app has ended)."""
    client = browser(app)
    client.cookies.update(cookies)
    return client


async def try_password(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    """Send the sign-in form once, with the login page's CSRF token."""
    token = csrf_of((await client.get("/login")).text)
    return await client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )


async def signed_in(app: FastAPI, email: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A browser-like client of the app, signed in with the account's password."""
    client = browser(app, address)
    answer = await try_password(client, email)
    assert answer.status_code == 303, answer.text
    return client


async def act(client: httpx.AsyncClient, page: str, action: str, **fields: str) -> httpx.Response:
    """Send an action's form from its page, with the page's CSRF token."""
    token = csrf_of((await client.get(page)).text)
    return await client.post(f"{page}/actions/{action}", data={**fields, "csrf_token": token})

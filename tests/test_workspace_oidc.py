"""Sign-in with OpenID Connect, as with the partner's Entra ID operated by 21Vianet, against a local
provider (oidc-provider-mock): the authorization code flow through authlib, the id token checked
against the provider's keys, the roles from the `groups` claim."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from oidc_provider_mock import User, run_server_in_thread
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from tests.workspace_support import Stack, csrf_of, holding, workspace

MANAGERS, FINANCE = "5b0e1f3a-manager-group", "9c2d7e4b-finance-group"
PEOPLE = [
    User(
        sub="zhao",
        claims={"email": "Zhao@Partner.example.cn", "name": "赵经理", "groups": [MANAGERS]},
    ),
    User(sub="qian", claims={"email": "qian@partner.example.cn", "groups": [FINANCE]}),
    User(sub="visitor", claims={"email": "visitor@partner.example.cn", "groups": ["other"]}),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread(user_claims=PEOPLE) as server:
        yield f"http://localhost:{server.server_port}"


@pytest_asyncio.fixture(scope="module")
async def stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory, provider: str
) -> AsyncIterator[Stack]:
    async with workspace(
        dev_env,
        tmp_path_factory.mktemp("oidc"),
        oidc_authority=provider,
        oidc_client_id="billing-workspace",
        oidc_client_secret=SecretStr("a-client-secret"),
        oidc_manager_groups=[MANAGERS],
        oidc_finance_groups=[FINANCE],
    ) as stack:
        yield stack


async def sign_in_as(stack: Stack, sub: str, next: str = "/") -> httpx.AsyncClient:
    """The browser's part: to the provider, pick the person, back to the workspace."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.app), base_url="http://web.test"
    )
    start = await client.get("/login/oidc", params={"next": next})
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    async with httpx.AsyncClient() as browser:
        chosen = await browser.post(authorize, data={"sub": sub})
    assert chosen.status_code == 302, chosen.text
    back = urlsplit(chosen.headers["location"])
    assert back.netloc == "web.test" and back.path == "/auth/callback"
    done = await client.get(f"{back.path}?{back.query}")
    assert done.status_code == 303, done.text
    return client


async def test_the_login_page_offers_entra_id(stack: Stack) -> None:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.app), base_url="http://web.test"
    )
    page = await client.get("/login")
    assert "/login/oidc" in page.text and "Microsoft Entra ID" in page.text


async def test_roles_come_from_the_group_claim(stack: Stack) -> None:
    manager = await sign_in_as(stack, "zhao", next="/queues/unassigned")
    page = await manager.get("/queues/unassigned")
    assert page.status_code == 200 and "赵经理" in page.text and "经理" in page.text
    finance = await sign_in_as(stack, "qian")
    payables = await finance.get("/payables")
    assert payables.status_code == 200 and "/payables/actions/record" in payables.text
    queue = await finance.get("/collections")
    assert queue.status_code == 200
    visitor = await sign_in_as(stack, "visitor")
    assert (await visitor.get("/queues/mine")).status_code == 403


async def test_signing_out_ends_an_entra_id_session(stack: Stack) -> None:
    """Its roles are the session's (from the groups claim at sign-in), but the session is the
    server's: a copy of its cookie kept from before Sign out opens nothing."""
    manager = await sign_in_as(stack, "zhao")
    page = await manager.get("/queues/unassigned")
    assert page.status_code == 200
    copied = httpx.Cookies(manager.cookies)
    signed_out = await manager.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert signed_out.status_code == 303
    assert (await holding(stack.app, copied).get("/queues/unassigned")).status_code == 303


async def test_a_forged_callback_signs_nobody_in(stack: Stack) -> None:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.app), base_url="http://web.test"
    )
    await client.get("/login/oidc")
    forged = await client.get("/auth/callback?code=made-up&state=not-ours")
    assert forged.status_code == 401
    assert (await client.get("/queues/mine")).status_code == 303  # still signed out

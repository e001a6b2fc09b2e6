"""Nobody acts in another's name (issue 26) in the workspace: a session is the server's, not its
cookie's (signing out, disabling the account and the maximum lifetime end it at once; a local
account's roles are read at every request); sign-in waits after failures, per account and per
client address, alike for accounts that do not exist, and checks at most two passwords at once;
cookies are Secure and browsers are told to keep to HTTPS unless WEB_SECURE_COOKIES=false. Over
the real worker and Temporal dev server, as test_workspace.py. (Signing out in a real browser:
test_workspace_browser.py.)"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

import cli.common
import starter
from core.models import Locale
from core.settings import Settings
from service import Service
from service.errors import Throttled
from service.sessions import Sessions
from service.throttle import ACCOUNT, ADDRESS
from service.users import HASHER, HASHING_AT_ONCE, NewUser, Person, Role, Users
from tests.workflow_support import open_case
from tests.workspace_support import (
    AGENT,
    MANAGER,
    PASSWORD,
    Stack,
    act,
    browser,
    csrf_of,
    holding,
    signed_in,
    try_password,
)
from web.app import create_app

WRONG = "not the password at all"


async def _account(stack: Stack, role: Role = Role.AGENT) -> str:
    """A local account of this test's own (its failures and sessions touch no other test)."""
    email = f"person-{uuid.uuid4().hex[:8]}@partner.example.cn"
    new = NewUser(email=email, name=email[:15], roles=[role], password=SecretStr(PASSWORD))
    await Users(stack.settings).add(new)
    return email


async def _case(stack: Stack, owner: str) -> str:
    data = open_case(owner=owner)
    await stack.service.cases.open(data)
    return data.case_id


async def _cli(stack: Stack, *args: str, input: str | None = None) -> Result:
    """`starter.py` as an operator runs it (in a thread: it runs its own event loop)."""
    env = {"DATABASE_URL": stack.settings.database_url, "COLUMNS": "200"}
    return await asyncio.to_thread(
        lambda: CliRunner().invoke(starter.app, list(args), input=input, env=env)
    )


class CountingHasher:
    """The real argon2id hasher, counting its checks and how many run at once."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.calls = self.running = self.most = 0
        self._lock = threading.Lock()

    def verify(self, hashed: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.pause)
            return HASHER.verify(hashed, password)
        finally:
            with self._lock:
                self.running -= 1


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


async def test_signing_in_again_ends_the_session_before(stack: Stack) -> None:
    client = await signed_in(stack.app, AGENT)
    copied = httpx.Cookies(client.cookies)
    assert (await try_password(client, MANAGER)).status_code == 303
    assert (await holding(stack.app, copied).get("/queues/mine")).status_code == 303
    assert "赵经理" in (await client.get("/queues/mine")).text


async def test_a_disabled_account_is_refused_at_once(stack: Stack) -> None:
    email = await _account(stack)
    client = await signed_in(stack.app, email)
    assert (await client.get("/queues/mine")).status_code == 200
    disabled = await _cli(stack, "user", "disable", email.upper())
    assert disabled.exit_code == 0 and "disabled" in disabled.output, disabled.output
    refused = await client.get("/queues/mine")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    again = await try_password(browser(stack.app, "10.26.5.1"), email)
    assert again.status_code == 401 and "邮箱或密码错误" in again.text  # as a wrong password
    assert (await _cli(stack, "user", "enable", email)).exit_code == 0
    await signed_in(stack.app, email, "10.26.5.1")
    nobody = await _cli(stack, "user", "disable", "nobody@partner.example.cn")
    assert nobody.exit_code == 1 and "has no account" in nobody.output


async def test_a_role_change_is_seen_at_the_next_request(stack: Stack) -> None:
    email = await _account(stack, Role.AGENT)
    case_id = await _case(stack, email)
    client = await signed_in(stack.app, email)
    assert (await act(client, f"/cases/{case_id}", "note", text="as an agent")).status_code == 303
    assert "/payables/actions/record" not in (await client.get("/payables")).text
    changed = await _cli(stack, "user", "role", email, "--role", "finance")
    assert changed.exit_code == 0 and "(finance)" in changed.output, changed.output
    assert "/payables/actions/record" in (await client.get("/payables")).text
    refused = await act(client, f"/cases/{case_id}", "note", text="no longer an agent")
    assert refused.status_code == 403


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


async def test_twenty_wrong_passwords_then_the_right_one_waits(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alike for an account that does not exist: the same answers after the same work."""
    email, nobody = await _account(stack), f"nobody-{uuid.uuid4().hex[:8]}@partner.example.cn"
    hasher = CountingHasher()
    monkeypatch.setattr("service.users.HASHER", hasher)
    known, unknown = browser(stack.app, "10.26.6.1"), browser(stack.app, "10.26.6.2")
    answers = {
        who: [(await try_password(client, who, WRONG)).status_code for _ in range(20)]
        for who, client in ((email, known), (nobody, unknown))
    }
    assert answers[email] == answers[nobody] == [401] * ACCOUNT.free + [429] * 15
    assert hasher.calls == 2 * ACCOUNT.free  # locked, nothing more is checked
    right = await try_password(known, email)
    assert right.status_code == 429 and 0 < int(right.headers["retry-after"]) <= 30
    assert "登录尝试次数过多。请等待1分钟后再试。" in right.text
    known.headers["accept-language"] = "en-US"
    english = await try_password(known, email)
    assert "Too many sign-in attempts. Please wait 1 minute, then try again." in english.text
    # the account waits, from wherever it is tried
    assert (await try_password(browser(stack.app, "10.26.6.3"), email)).status_code == 429
    assert hasher.calls == 2 * ACCOUNT.free
    _at(monkeypatch, time.time() + 31)
    assert (await try_password(known, email)).status_code == 303


async def test_one_address_trying_many_accounts_waits(stack: Stack) -> None:
    guesser = browser(stack.app, "10.26.6.9")
    for n in range(ADDRESS.free):
        guess = await try_password(guesser, f"guess-{n}@partner.example.cn", WRONG)
        assert guess.status_code == 401
    # from there, even a real account's right password waits; from elsewhere it signs in
    assert (await try_password(guesser, AGENT)).status_code == 429
    await signed_in(stack.app, AGENT, "10.26.6.10")


async def test_at_most_two_passwords_are_checked_at_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = CountingHasher(pause=0.3)
    monkeypatch.setattr("service.users.HASHER", hasher)
    clients = [browser(stack.app, f"10.26.7.{n}") for n in range(10)]
    tokens = [csrf_of((await client.get("/login")).text) for client in clients]
    answers = await asyncio.gather(
        *(
            client.post(
                "/login",
                data={"email": f"flood-{n}@partner.example.cn", "password": WRONG, "csrf_token": t},
            )
            for n, (client, t) in enumerate(zip(clients, tokens, strict=True))
        )
    )
    codes = [answer.status_code for answer in answers]
    assert hasher.most <= HASHING_AT_ONCE and 429 in codes
    assert hasher.calls == codes.count(401)  # a busy answer checked nothing
    busy = next(answer for answer in answers if answer.status_code == 429)
    assert busy.headers["retry-after"] == "1" and "登录尝试次数过多" in busy.text


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


async def test_user_list_and_reset_password(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's console measured its width when the suite imported it: one row a line here
    monkeypatch.setattr(cli.common.console, "width", 200)
    email = await _account(stack)
    client = await signed_in(stack.app, email)
    short = await _cli(stack, "user", "reset-password", email, input="short\nshort\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    new = "a new horse battery staple"
    reset = await _cli(stack, "user", "reset-password", email, input=f"{new}\n{new}\n")
    assert reset.exit_code == 0, reset.output
    assert (await client.get("/queues/mine")).status_code == 303  # its sessions ended
    elsewhere = browser(stack.app, "10.26.9.1")
    assert (await try_password(elsewhere, email)).status_code == 401  # the old password
    assert (await try_password(elsewhere, email, new)).status_code == 303
    await _cli(stack, "user", "disable", email)
    listed = await _cli(stack, "user", "list")
    row = next(line for line in listed.output.splitlines() if email in line)
    assert "agent" in row and "disabled" in row


async def test_sessions_and_failed_sign_ins_on_each_database(database_url: str) -> None:
    """The sessions' and the failures' SQL on SQLite and on PostgreSQL."""
    settings = Settings(database_url=database_url)
    users, sessions = Users(settings), Sessions(settings)
    email = "li@partner.example.cn"
    new = NewUser(email=email, name="李", roles=[Role.AGENT], password=SecretStr(PASSWORD))
    await users.add(new)
    now = datetime.now(UTC)
    person = await users.sign_in(email, PASSWORD, address="10.0.0.1", now=now)
    assert person is not None
    token = await sessions.start(person, local=True, now=now)
    await users.set_roles(email, frozenset({Role.MANAGER}))
    seen = await sessions.person(token, now=now + timedelta(hours=1))
    assert seen is not None and seen.roles == {Role.MANAGER}
    entra = Person("zhao@partner.example.cn", "赵", frozenset({Role.FINANCE}), Locale.EN_US)
    other = await sessions.start(entra, local=False, now=now)
    assert (await sessions.person(other, now=now + timedelta(hours=7))) == entra
    assert await sessions.person(other, now=now + timedelta(hours=12, minutes=1)) is None
    await users.disable(email)
    assert await sessions.person(token, now=now + timedelta(hours=1)) is None
    await users.enable(email)
    # five failures are free, then the account waits 30 s, then twice as long at each failure
    for _ in range(ACCOUNT.free):
        assert await users.sign_in(email, WRONG, address="10.0.0.2", now=now) is None
    with pytest.raises(Throttled) as waiting:
        await users.sign_in(email, PASSWORD, address="10.0.0.3", now=now)
    assert waiting.value.retry_after == 30
    later = now + timedelta(seconds=31)
    assert await users.sign_in(email, WRONG, address="10.0.0.2", now=later) is None
    with pytest.raises(Throttled) as waiting:
        await users.sign_in(email, PASSWORD, address="10.0.0.3", now=later)
    assert waiting.value.retry_after == 60
    waited = later + timedelta(seconds=60)
    signed = await users.sign_in(email, PASSWORD, address="10.0.0.3", now=waited)
    assert signed is not None  # and the account's failures are forgotten:
    assert await users.sign_in(email, WRONG, address="10.0.0.2", now=later) is None


def test_each_failure_past_the_free_ones_doubles_the_wait_to_a_cap() -> None:
    waits = [ACCOUNT.wait(n).total_seconds() for n in range(4, 12)]
    assert waits == [0, 30, 60, 120, 240, 480, 900, 900]
    assert ACCOUNT.wait(10**6).total_seconds() == 900

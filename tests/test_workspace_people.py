"""The workspace's people (issue 24 item 4), over httpx against the app on the real worker and
Temporal dev server: a case goes only to a person picked from the active agents and managers; an
admin lists, adds, disables, enables, changes the roles of and resets the password of local
accounts, through the same `Users` calls as the CLI; disabling ends that person's sessions at
once; nobody else reaches these pages. (In a real browser: test_people_browser.py.)"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

import starter
from core.settings import Settings
from service.errors import Refused
from service.users import NewUser, Role, Users
from tests.people_support import account
from tests.workflow_support import open_case
from tests.workspace_support import (
    AGENT,
    FINANCE,
    MANAGER,
    OTHER_AGENT,
    PASSWORD,
    Stack,
    act,
    browser,
    csrf_of,
    signed_in,
    try_password,
)

ONE_TIME = re.compile(r'data-testid="one-time-password">([^<]+)<')


async def test_case_owners_are_the_active_agents_and_managers(database_url: str) -> None:
    """The picker's SQL on SQLite and on PostgreSQL."""
    users = Users(Settings(database_url=database_url))
    made = {}
    for name, roles in {
        "agent": [Role.AGENT],
        "manager": [Role.MANAGER, Role.FINANCE],
        "finance": [Role.FINANCE],
        "admin": [Role.ADMIN],
        "leaver": [Role.AGENT],
    }.items():
        email = f"{name}@partner.example.cn"
        new = NewUser(email=email, name=name, roles=roles, password=SecretStr(PASSWORD))
        made[name] = (await users.add(new)).email
    await users.disable(made["leaver"])
    owners = await users.case_owners()
    assert [person.email for person in owners] == [made["agent"], made["manager"]]
    assert await users.case_owner(" Agent@Partner.example.CN ", "agent") == made["agent"]
    for wrong in ("agent.wnag@partner.example.cn", made["finance"], made["leaver"], "", "x"):
        with pytest.raises(Refused, match=r"^owner: "):
            await users.case_owner(wrong, "owner")


async def test_a_manager_reassigns_only_to_a_person_of_the_list(stack: Stack) -> None:
    data = open_case(owner=AGENT)
    await stack.service.cases.open(data)
    page = f"/cases/{data.case_id}"
    manager = await signed_in(stack.app, MANAGER)
    shown = (await manager.get(page)).text
    picker = shown[
        shown.index('name="agent"') : shown.index("</select>", shown.index('name="agent"'))
    ]
    assert f'value="{OTHER_AGENT}"' in picker and "李客服" in picker
    assert f'value="{MANAGER}"' in picker and FINANCE not in picker
    for typed in ("agent.wnag@partner.example.cn", FINANCE, "not an address", ""):
        refused = await act(manager, page, "assign", agent=typed)
        assert refused.status_code == 409, typed
        assert "客服（agent）：不是工作台在职的客服或经理" in refused.text
        assert (await stack.service.cases.show(data.case_id)).owner == AGENT
    done = await act(manager, page, "assign", agent=OTHER_AGENT.upper())
    assert done.status_code == 303
    assert (await stack.service.cases.show(data.case_id)).owner == OTHER_AGENT
    english = await signed_in(stack.app, OTHER_AGENT)  # an agent: no picker, and refused
    assert 'name="agent"' not in (await english.get(page)).text
    assert (await act(english, page, "assign", agent=AGENT)).status_code == 403


async def _admin(stack: Stack) -> str:
    return await account(stack, Role.ADMIN, name="钱管理员")


async def test_an_admin_adds_a_person_who_signs_in_with_the_password_shown_once(
    stack: Stack,
) -> None:
    admin = await signed_in(stack.app, await _admin(stack))
    home = await admin.get("/")
    assert home.headers["location"] == "/admin/users"
    page = await admin.get("/admin/users")
    assert page.status_code == 200 and AGENT in page.text and "人员" in page.text
    token = csrf_of(page.text)
    email = f"new-{uuid.uuid4().hex[:6]}@partner.example.cn"
    fields = {"email": email, "name": "孙新人", "locale": "en-US", "csrf_token": token}
    added = await admin.post("/admin/users", data={**fields, "roles": ["agent", "manager"]})
    assert added.status_code == 200 and added.headers["cache-control"] == "no-store"
    password = ONE_TIME.findall(added.text)
    assert len(password) == 1 and len(password[0]) >= 12
    assert password[0] not in (await admin.get("/admin/users")).text  # shown once
    newcomer = browser(stack.app, "10.9.0.1")
    assert (await try_password(newcomer, email, password[0])).status_code == 303
    assert "孙新人" in (await newcomer.get("/queues/mine")).text
    again = await admin.post("/admin/users", data={**fields, "roles": "agent"})
    assert again.status_code == 409 and "此邮箱已有账号" in again.text
    bad = {**fields, "email": "not-an-address", "name": ""}
    wrong = await admin.post("/admin/users", data=bad)
    assert wrong.status_code == 422
    problems = dict(re.findall(r'data-problem="([a-z_]+)">([^<]+)<', wrong.text))
    assert problems["email"].startswith("邮箱 (email): 必须是邮箱地址")
    assert problems["name"] == "姓名 (name): 必填"
    assert "角色 (roles): 必填" in wrong.text
    assert ONE_TIME.search(wrong.text) is None


async def test_disabling_ends_the_person_s_session_at_once(stack: Stack) -> None:
    admin = await signed_in(stack.app, await _admin(stack))
    leaver = await account(stack, Role.AGENT)
    their = await signed_in(stack.app, leaver, "10.9.0.2")
    assert (await their.get("/queues/mine")).status_code == 200
    token = csrf_of((await admin.get("/admin/users")).text)
    done = await admin.post("/admin/users/disable", data={"email": leaver, "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == "/admin/users?done=disable"
    listed = (await admin.get("/admin/users")).text
    row = listed[listed.index(f'data-email="{leaver}"') :]
    assert "已停用" in row[: row.index("</tr>")]
    gone = await their.get("/queues/mine")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    assert (await try_password(browser(stack.app, "10.9.0.3"), leaver)).status_code == 401
    enabled = await admin.post("/admin/users/enable", data={"email": leaver, "csrf_token": token})
    assert enabled.status_code == 303
    back = await signed_in(stack.app, leaver, "10.9.0.4")
    reset = await admin.post("/admin/users/password", data={"email": leaver, "csrf_token": token})
    assert reset.status_code == 200 and "其现有会话均已结束" in reset.text
    (new_password,) = ONE_TIME.findall(reset.text)
    assert (await back.get("/queues/mine")).status_code == 303  # the reset ended it
    assert (await try_password(browser(stack.app, "10.9.0.5"), leaver)).status_code == 401
    fresh = browser(stack.app, "10.9.0.6")
    assert (await try_password(fresh, leaver, new_password)).status_code == 303


async def test_an_admin_changes_roles_but_not_their_own_way_out(stack: Stack) -> None:
    email = await _admin(stack)
    admin = await signed_in(stack.app, email)
    person = await account(stack, Role.FINANCE)
    token = csrf_of((await admin.get("/admin/users")).text)
    roles = {"email": person, "csrf_token": token, "roles": ["agent", "admin"]}
    assert (await admin.post("/admin/users/roles", data=roles)).status_code == 303
    accounts = {a.person.email: a for a in await Users(stack.settings).accounts()}
    assert accounts[person].person.roles == {Role.AGENT, Role.ADMIN}
    none = await admin.post("/admin/users/roles", data={**roles, "roles": []})
    assert none.status_code == 422 and "请至少选择一个角色" in none.text
    for change, fields in (("disable", {}), ("roles", {"roles": ["agent"]})):
        mine = await admin.post(
            f"/admin/users/{change}", data={"email": email, "csrf_token": token, **fields}
        )
        assert mine.status_code == 409 and "不能停用自己的账号" in mine.text
    unknown = {"email": "nobody@partner.example.cn", "csrf_token": token}
    assert (await admin.post("/admin/users/enable", data=unknown)).status_code == 404
    assert (await admin.post("/admin/users/delete", data=unknown)).status_code == 404
    accounts = {a.person.email: a for a in await Users(stack.settings).accounts()}
    assert accounts[email].person.roles == {Role.ADMIN} and not accounts[email].disabled


@pytest.mark.parametrize("who", [AGENT, MANAGER, FINANCE])
async def test_no_one_but_an_admin_reaches_the_people(stack: Stack, who: str) -> None:
    client = await signed_in(stack.app, who)
    assert (await client.get("/admin/users")).status_code == 403
    assert 'href="/admin/users"' not in (await client.get("/payables")).text
    token = csrf_of((await client.get("/payables")).text)
    target = await account(stack, Role.AGENT)
    for change in ("disable", "password", "roles"):
        answer = await client.post(
            f"/admin/users/{change}", data={"email": target, "csrf_token": token, "roles": "admin"}
        )
        assert answer.status_code == 403
    added = {"email": f"x-{uuid.uuid4().hex[:6]}@p.cn", "name": "x", "roles": "admin"}
    assert (
        await client.post("/admin/users", data={**added, "csrf_token": token})
    ).status_code == 403
    accounts = {a.person.email: a for a in await Users(stack.settings).accounts()}
    assert accounts[target].person.roles == {Role.AGENT} and not accounts[target].disabled
    assert added["email"] not in accounts


def test_the_cli_grants_the_admin_role(tmp_path: Path) -> None:
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path}/users.db"
    upgrade(url)
    env = {"DATABASE_URL": url, "WORKSPACE_PASSWORD": PASSWORD}
    args = ["user", "add", "it@partner.example.cn", "--name", "IT", "--role", "agent"]
    assert CliRunner().invoke(starter.app, args, env=env).exit_code == 0
    granted = ["user", "role", "it@partner.example.cn", "--role", "admin", "--role", "agent"]
    result = CliRunner().invoke(starter.app, granted, env=env)
    assert result.exit_code == 0 and "admin, agent" in result.output

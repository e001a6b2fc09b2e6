"""需要处理 and the manager's email, without a server: the invoice's rules clear a reply's flag
when an agent files a dispute or a promise, and say what still waits once a flag clears; the
manager's needs-attention email (a failed step, a flag, a suspension to approve) goes to every
manager in their own language, with the link to the workspace page where they act and no
command line, and to the policy's address only when no manager has an account (SQLite and
PostgreSQL); the reasons read the same in the email, the alert and the workspace."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage as EmailFile
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session, sessionmaker

from activities.alerts import links
from activities.email import EmailActivities
from activities.rendering import TemplateRenderer
from activities.senders import FileOutboxSender
from activities.staff import TO_EVERY_MANAGER, StaffDirectory
from core.models import (
    AccountView,
    Attention,
    CollectionsReply,
    CollectionsStatus,
    EmailMessage,
    EmailTemplate,
    Locale,
    NoticeState,
    OpenDispute,
    PromiseToPay,
    TriageReply,
)
from db.tables import WorkspaceUser
from tests.factories import make_collections_view, make_customer, make_email_message
from tests.test_collections_rules import START, opened
from tests.test_email_activity import TEMPLATES, send
from web.actions.attention import REASONS
from web.i18n import translations
from workflows.collections.rules import Collections, Unflag
from workflows.effects import Flag

WORKSPACE = "https://billing.partner.cn"
POLICY_ADDRESS = "billing-manager@partner.example.cn"
# what a staff email must not say: the CLI's commands and options
CLI = ("starter.py", "--reason", "--decision", "approve-suspension", "retry-step", "skip-step")


# ---------------------------------------------------------------------------- the rules


def replied(state: Collections) -> None:
    effects = state.customer_replied(CollectionsReply(text="我们已付款", by="ap@c.cn"), START)
    assert any(isinstance(e, Flag) and e.reason is Attention.REPLY_TRIAGE for e in effects)


def test_filing_a_dispute_after_a_reply_clears_its_flag() -> None:
    state = opened()
    replied(state)
    dispute = OpenDispute(description="金额不符", by="agent@partner.example.cn")
    effects = state.open_dispute(dispute, "G000123456-D1", START + timedelta(hours=1))
    assert Unflag() in effects and state.waiting_on_a_person() is None


def test_a_promise_after_a_reply_clears_its_flag() -> None:
    state = opened()
    replied(state)
    promise = PromiseToPay(until=START + timedelta(days=5), by="agent@partner.example.cn")
    assert Unflag() in state.promise(promise, START)
    assert state.waiting_on_a_person() is None


def test_a_triage_clears_the_flag() -> None:
    state = opened()
    replied(state)
    done = state.triage_done(TriageReply(decision="no-action", by="agent@partner.example.cn"))
    assert Unflag() in done and state.waiting_on_a_person() is None


def asking_approval() -> Collections:
    """An invoice of the shipped policy (a manager approves) at its suspension step."""
    state = opened("24x7")
    state.notice = NoticeState.DELIVERED  # the account delivered the final notice
    for _ in range(20):
        due = state.next_due()
        assert due is not None
        effects = state.fire(due, due.at)
        if state.approval_asked_at is not None:
            assert any(
                isinstance(e, Flag) and e.reason is Attention.SUSPENSION_APPROVAL for e in effects
            )
            return state
    raise AssertionError("the shipped policy never asked a manager")


def test_a_suspension_still_waiting_is_said_again_once_another_flag_clears() -> None:
    state = asking_approval()
    replied(state)  # the reply's flag takes the place of the approval's
    state.triage_done(TriageReply(decision="no-action", by="agent@partner.example.cn"))
    still = state.waiting_on_a_person()
    assert still is not None and still.reason is Attention.SUSPENSION_APPROVAL
    assert not any(word in still.why for word in CLI)
    # a dispute pauses the policy: nothing can be approved meanwhile, nothing waits
    state.open_dispute(OpenDispute(description="x", by="a@p.cn"), "D1", START + timedelta(days=9))
    assert state.status is CollectionsStatus.PAUSED_DISPUTE and state.waiting_on_a_person() is None


def test_the_reasons_read_the_same_in_the_email_the_alert_and_the_workspace() -> None:
    """One wording per reason: the templates' (email and alert) in each language, and the
    workspace's catalog says the same in zh-CN; every reason has its words everywhere."""
    env = Environment(loader=FileSystemLoader(TEMPLATES))
    english = env.get_template("email/en-US/_attention.txt").module
    chinese = env.get_template("email/zh-CN/_attention.txt").module
    catalog = translations(Locale.ZH_CN)
    assert set(REASONS) == set(Attention)
    for reason, msgid in REASONS.items():
        assert english.reasons[reason.value] == msgid  # type: ignore[attr-defined]
        assert chinese.reasons[reason.value] == catalog.gettext(msgid)  # type: ignore[attr-defined]
        assert reason.value in chinese.titles and reason.value in english.titles  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- the email


def person(
    factory: sessionmaker[Session],
    email: str,
    roles: list[str],
    locale: Locale,
    disabled: bool = False,
) -> None:
    with factory() as session:
        session.add(
            WorkspaceUser(
                email=email,
                name=email.partition("@")[0],
                roles=roles,
                locale=locale.value,
                password_hash="$argon2id$not-used",
                disabled=disabled,
            )
        )
        session.commit()


def activities(
    factory: sessionmaker[Session], outbox: Path, staff_locale: Locale
) -> EmailActivities:
    return EmailActivities(
        TemplateRenderer(TEMPLATES),
        FileOutboxSender(outbox),
        factory,
        from_address="billing-support@partner.example.cn",
        from_name="账单支持",
        staff=StaffDirectory(factory, WORKSPACE + "/", staff_locale),
    )


def approval_asked(**data: str) -> EmailMessage:
    """The email a collections workflow queues when its suspension waits for a manager (the
    customer's locale is en-US: the manager's own is what counts)."""
    invoice = make_collections_view(approval_asked_at=START, stage="awaiting-approval")
    extra = {
        "step": f"invoice {invoice.invoice_id} is due for suspension: a manager approves or "
        "refuses it",
        "error": "",
        "reason": Attention.SUSPENSION_APPROVAL.value,
        **data,
    }
    return make_email_message(
        EmailTemplate.MANAGER_NEEDS_ATTENTION,
        key=f"collections-{invoice.invoice_id}/run-1/7-manager_needs_attention",
        to=POLICY_ADDRESS,
        locale=Locale.EN_US,
        case=None,
        collections=invoice,
        extra=extra,
    )


def outbox_emails(outbox: Path) -> list[EmailFile]:
    """The emails the file outbox wrote."""
    found = []
    for path in sorted(outbox.glob("*.eml")):
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailFile)
        found.append(parsed)
    return found


def received(outbox: Path) -> dict[str, EmailFile]:
    """The outbox's emails by recipient."""
    return {str(email["To"]): email for email in outbox_emails(outbox)}


def text_of(email: EmailFile) -> str:
    body = email.get_body(("plain",))
    html = email.get_body(("html",))
    assert body is not None and html is not None
    return f"{email['Subject']}\n{body.get_content()}\n{html.get_content()}"


def test_every_manager_gets_it_in_their_language_with_the_page_s_link(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    person(session_factory, "zhao@partner.example.cn", ["manager"], Locale.ZH_CN)
    person(session_factory, "smith@partner.example.cn", ["manager", "finance"], Locale.EN_US)
    person(session_factory, "wang@partner.example.cn", ["agent"], Locale.ZH_CN)
    person(session_factory, "gone@partner.example.cn", ["manager"], Locale.ZH_CN, disabled=True)
    email = activities(session_factory, tmp_path, Locale.ZH_CN)
    message = approval_asked()
    first = send(email, message)
    again = send(email, message)  # a retried activity sends nobody twice
    assert again.duplicate and again.provider_message_id == first.provider_message_id
    got = received(tmp_path)
    # the managers, not the policy's address (it is the fallback), not an agent, nobody disabled
    assert sorted(got) == ["smith@partner.example.cn", "zhao@partner.example.cn"]
    page = f"{WORKSPACE}/collections/{message.subject_id}"
    chinese, english = (
        text_of(got["zhao@partner.example.cn"]),
        text_of(got["smith@partner.example.cn"]),
    )
    assert "暂停服务待审批" in chinese and "等待经理批准或拒绝" in chinese
    assert "suspension awaits approval" in english and "approve or refuse it" in english
    for text in (chinese, english):
        assert page in text and f"{WORKSPACE}/queues/needs-attention" in text
        assert not any(word in text for word in CLI), text
    # the zh-CN copy carries no English sentence (the step's English is the en-US copy's)
    assert "is due for suspension" not in chinese and "manager" not in chinese


def test_a_failed_step_links_to_its_page_where_a_manager_retries_it(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    person(session_factory, "zhao@partner.example.cn", ["manager"], Locale.ZH_CN)
    message = approval_asked(
        step="Email customer: collections reminder (zh-CN)",
        error="RenderFailed: email collections_reminder does not render",
        reason=Attention.FAILED_STEP.value,
    ).model_copy(update={"collections": make_collections_view()})
    send(activities(session_factory, tmp_path, Locale.ZH_CN), message)
    text = text_of(received(tmp_path)["zhao@partner.example.cn"])
    assert "步骤失败" in text and "排除原因后重试该步骤" in text
    assert "RenderFailed" in text  # the error itself, for whoever fixes it
    assert f"{WORKSPACE}/collections/{message.subject_id}" in text
    assert not any(word in text for word in CLI)


@pytest.mark.parametrize(
    ("account", "expected"),
    [(None, Locale.EN_US), (["finance"], Locale.ZH_CN)],
    ids=["no-account-staff-locale", "an-account-its-locale"],
)
def test_without_a_manager_the_policy_s_address_gets_it(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    account: list[str] | None,
    expected: Locale,
) -> None:
    """No manager has an account: the policy's address, in its account's language if it has
    one, else the staff's (STAFF_ALERTS_LOCALE, here en-US)."""
    if account is not None:
        person(session_factory, POLICY_ADDRESS, account, Locale.ZH_CN)
    send(activities(session_factory, tmp_path, Locale.EN_US), approval_asked())
    got = received(tmp_path)
    assert list(got) == [POLICY_ADDRESS]
    subject = str(got[POLICY_ADDRESS]["Subject"])
    assert subject.startswith("[需要处理]" if expected is Locale.ZH_CN else "[Needs attention]")


def test_an_old_build_s_email_without_a_reason_still_renders(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    person(session_factory, "zhao@partner.example.cn", ["manager"], Locale.ZH_CN)
    old = approval_asked()
    data = old.data.model_copy(update={"reason": None})
    send(activities(session_factory, tmp_path, Locale.ZH_CN), old.model_copy(update={"data": data}))
    text = text_of(received(tmp_path)["zhao@partner.example.cn"])
    assert "等待经理处理" in text and f"{WORKSPACE}/collections/" in text


def test_the_account_s_link_is_its_customer_page() -> None:
    """An account has no page of its own: its customer's, where a manager marks it handled."""
    message = approval_asked().model_copy(update={"collections": None})
    customer = make_customer()
    account = AccountView(tenant_id=customer.tenant_id, workflow_id="account-1", customer=customer)
    found = links(message.model_copy(update={"account": account}), WORKSPACE)
    assert found["page"] == f"{WORKSPACE}/customers/{customer.tenant_id}#attention"


# ------------------------------------------------------------------ every other staff email


@pytest.mark.parametrize(
    "template", sorted(TO_EVERY_MANAGER - {EmailTemplate.MANAGER_NEEDS_ATTENTION})
)
def test_every_manager_email_reaches_each_manager_in_their_language(
    session_factory: sessionmaker[Session], tmp_path: Path, template: EmailTemplate
) -> None:
    """An SLA breach, a hand-off, fraud, Partner Center's refusal, 21Vianet overdue: each
    manager's own copy in their language (the customer's is en-US), with the page's link."""
    person(session_factory, "zhao@partner.example.cn", ["manager"], Locale.ZH_CN)
    person(session_factory, "smith@partner.example.cn", ["manager"], Locale.EN_US)
    message = make_email_message(template, to=POLICY_ADDRESS, locale=Locale.EN_US)
    send(activities(session_factory, tmp_path, Locale.ZH_CN), message)
    got = received(tmp_path)
    assert sorted(got) == ["smith@partner.example.cn", "zhao@partner.example.cn"]
    page = links(message, WORKSPACE)["page"]
    chinese = text_of(got["zhao@partner.example.cn"])
    assert page in chinese and page in text_of(got["smith@partner.example.cn"])
    assert "在工作台打开" in chinese and "Open it in the workspace" not in chinese


@pytest.mark.parametrize(
    ("account", "expected"),
    [(Locale.EN_US, Locale.EN_US), (Locale.ZH_CN, Locale.ZH_CN), (None, Locale.ZH_CN)],
    ids=["agent-reads-english", "agent-reads-chinese", "team-mailbox-staff-locale"],
)
def test_an_agent_s_email_is_in_the_agent_s_language_not_the_customer_s(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    account: Locale | None,
    expected: Locale,
) -> None:
    """The case's owner is told in the language of their account; a team mailbox (no account)
    in the staff's; the customer's language (here the other one) never decides."""
    agent = "wang@partner.example.cn"
    if account is not None:
        person(session_factory, agent.upper(), ["agent"], account)  # addresses match in any case
    customer_locale = Locale.ZH_CN if expected is Locale.EN_US else Locale.EN_US
    message = make_email_message(EmailTemplate.OWNER_NEW_CASE, to=agent, locale=customer_locale)
    first = send(activities(session_factory, tmp_path, Locale.ZH_CN), message)
    assert first.key == message.key  # one address: the email's own key, as before
    got = received(tmp_path)
    assert list(got) == [agent]
    text = text_of(got[agent])
    assert ("在工作台打开" in text) is (expected is Locale.ZH_CN)
    assert links(message, WORKSPACE)["page"] in text

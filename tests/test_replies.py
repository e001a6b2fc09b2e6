"""An agent's public reply: its letter in both languages (the agent's words escaped, the subject
kept in the thread with the case number), the canned replies' placeholders, the email activity's
files read back from the store by digest (a lost one fails the email for a person, never
silently), all without a server; the canned replies' table on SQLite and PostgreSQL; the CLI's
`case reply` with a file against the dev server."""

from __future__ import annotations

import asyncio
import hashlib
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from typer.testing import CliRunner

import starter
from activities.email import EmailActivities
from activities.rendering import TemplateRenderer
from activities.senders import FileOutboxSender
from core.files import content_path
from core.macros import MacroForm, fill, unknown_placeholders
from core.models import AttachedFile, EmailTemplate, EventKind, Locale, Withdraw
from core.settings import Settings
from db.migrate import upgrade
from db.session import shared_sessions
from service import Service
from service.errors import AlreadyExists, NotFound
from service.macros import Macros, case_values
from tests.factories import CASE_ID, make_case_view, make_email_message
from tests.workflow_support import open_case

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> {{ 7*7 }} {% raw %}'


def reply(locale: Locale, **data: Any) -> Any:
    extra = {"text": HOSTILE, **data}
    return make_email_message(EmailTemplate.CASE_REPLY, locale=locale, extra=extra)


@pytest.mark.parametrize("locale", list(Locale))
def test_the_letter_wraps_the_agents_words_escaped_in_the_letterhead(locale: Locale) -> None:
    email = TemplateRenderer(TEMPLATES).render_message(reply(locale))
    assert "<script>" not in email.html and "<img" not in email.html
    assert "&lt;script&gt;" in email.html and "{{ 7*7 }}" in email.html  # text, not a template
    assert HOSTILE in email.text  # the text part is the agent's words as written
    assert CASE_ID in email.text and CASE_ID in email.html  # the letterhead's footer
    greeting = "尊敬的" if locale is Locale.ZH_CN else "Dear"
    assert greeting in email.text


@pytest.mark.parametrize(
    ("locale", "begins"), [(Locale.ZH_CN, "回复：【工单 "), (Locale.EN_US, "Re: [Case ")]
)
def test_the_subject_is_the_threads_by_default_and_keeps_the_case_number(
    locale: Locale, begins: str
) -> None:
    renderer = TemplateRenderer(TEMPLATES)
    default = renderer.render_message(reply(locale)).subject
    acknowledged = renderer.render_message(
        make_email_message(EmailTemplate.CASE_ACKNOWLEDGED, locale=locale)
    ).subject
    assert default.startswith(begins) and default.endswith(acknowledged)
    own = renderer.render_message(reply(locale, subject="贷项通知单 <b>")).subject
    assert CASE_ID in own and own.endswith("贷项通知单 <b>")
    kept = renderer.render_message(reply(locale, subject=f"关于 {CASE_ID} 的说明")).subject
    assert kept == f"关于 {CASE_ID} 的说明"


def test_placeholders_fill_once_and_unknown_ones_are_refused_by_name() -> None:
    view = make_case_view()
    values = case_values(view, "王芳")
    text = fill("{customer_name}：工单 {case_id}，金额 { amount }，{agent_name}", values)
    assert text.startswith(view.details.customer.name) and "王芳" in text and "¥" in text
    # a value that looks like a placeholder stays as it is: one pass, nothing evaluated
    assert fill("{customer_name}", {"customer_name": "{case_id}"}) == "{case_id}"
    assert unknown_placeholders("{case_id} {name} {0} {case_id.__class__}") == [
        "name",
        "0",
        "case_id.__class__",
    ]
    with pytest.raises(ValidationError, match=r"\{name\}, \{0\}"):
        MacroForm(name="x", locale=Locale.ZH_CN, text="{case_id} {name} {0}")


async def test_canned_replies_are_kept_per_language_and_name(database_url: str) -> None:
    macros = Macros(Settings(database_url=database_url))
    form = MacroForm(name="已开票", locale=Locale.ZH_CN, text="您好 {customer_name}")
    added = await macros.add(form, "manager.zhao@partner.example.cn")
    await macros.add(form.model_copy(update={"locale": Locale.EN_US}), "m@p.cn")
    with pytest.raises(AlreadyExists):
        await macros.add(form, "m@p.cn")
    changed = form.model_copy(update={"text": "您好 {customer_name}，发票 {invoice_number}"})
    await macros.edit(added.id, changed, "m@p.cn")
    assert [m.locale for m in await macros.all()] == [Locale.EN_US, Locale.ZH_CN]
    filled = await macros.filled(added.id, make_case_view(), "王芳")
    assert "{" not in filled.text and make_case_view().details.customer.name in filled.text
    await macros.delete(added.id)
    assert [m.locale for m in await macros.all(Locale.ZH_CN)] == []
    with pytest.raises(NotFound):
        await macros.delete(added.id)


def _activity(tmp_path: Path, files: Path) -> tuple[EmailActivities, FileOutboxSender]:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(url)
    sender = FileOutboxSender(tmp_path / "outbox")
    activities = EmailActivities(
        TemplateRenderer(TEMPLATES),
        sender,
        shared_sessions(url),
        "billing-support@partner.example.cn",
        "账单支持",
        files=files,
    )
    return activities, sender


def test_the_email_activity_attaches_the_files_it_names_from_the_store(tmp_path: Path) -> None:
    data = b"%PDF-1.4 credit note"
    digest = hashlib.sha256(data).hexdigest()
    store = tmp_path / "attachments"
    content_path(store, digest).parent.mkdir(parents=True)
    content_path(store, digest).write_bytes(data)
    named = AttachedFile(
        sha256=digest, name="贷项通知单.pdf", content_type="application/pdf", size=9
    )
    activities, sender = _activity(tmp_path, store)
    message = reply(Locale.ZH_CN, attachments=[named.model_dump()])
    ActivityEnvironment().run(activities.send_email, message)
    sent = message_from_bytes(sender.path_for(message.key).read_bytes(), policy=policy.default)
    [attached] = list(sent.iter_attachments())
    assert attached.get_filename() == "贷项通知单.pdf" and attached.get_content() == data

    lost = AttachedFile(sha256="0" * 64, name="lost.pdf", content_type="application/pdf", size=1)
    again = reply(Locale.ZH_CN, attachments=[lost.model_dump()]).model_copy(update={"key": "k2"})
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(activities.send_email, again)
    assert failed.value.non_retryable and "lost.pdf" in str(failed.value)


async def test_the_cli_replies_with_a_file_and_is_refused_on_a_closed_case(
    dev_env: WorkflowEnvironment, running: Settings, tmp_path: Path
) -> None:
    service = Service(dev_env.client, running)
    data = open_case()
    await service.cases.open(data)
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
        "DATABASE_URL": running.database_url,
        "ATTACHMENTS_DIR": str(running.attachments_dir),
    }
    receipt = tmp_path / "receipt.pdf"
    receipt.write_bytes(b"%PDF-1.4 receipt")
    args = ["case", "reply", data.case_id, "Please find the receipt attached."]
    sent = await asyncio.to_thread(
        CliRunner().invoke,
        starter.app,
        [*args, "--locale", "en-US", "--subject", "Receipt", "--attach", str(receipt)],
        env=env,
    )
    assert sent.exit_code == 0, sent.output
    view = await service.cases.show(data.case_id)
    [replied] = [e for e in view.timeline if e.kind is EventKind.REPLIED]
    assert replied.data == {"subject": "Receipt", "locale": "en-US", "attachments": receipt.name}
    files = await service.attachments.of(data.case_id)
    assert [(f.name, f.direction.value) for f in files] == [(receipt.name, "outbound")]
    await service.cases.act(data.case_id, Withdraw(reason="duplicate", by="agent@p.cn"))
    refused = await asyncio.to_thread(CliRunner().invoke, starter.app, args, env=env)
    assert refused.exit_code == 1 and "new case" in refused.output

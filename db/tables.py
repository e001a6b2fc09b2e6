"""The tables: cases and collections with their event logs, emails, escalations, Partner Center."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Model, TimestampedModel, UtcDateTime

AMOUNT = Numeric(14, 2)


def table(model: type[Model]) -> Table:
    """A mapped class's table, for Core statements where the ORM's unit of work costs too much."""
    return cast(Table, model.__table__)


class CustomerColumns:
    """Who a case or an unpaid invoice is about (core.models.Customer), as the reports read it."""

    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    customer_name: Mapped[str] = mapped_column(String(500))
    customer_email: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(8))


class Case(CustomerColumns, TimestampedModel):
    __tablename__ = "cases"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(36))
    invoice_id: Mapped[str | None] = mapped_column(String(64), index=True)
    category: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    disputed_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(320))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(32))
    credit_amount: Mapped[Decimal | None] = mapped_column(AMOUNT)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # the fapiao task finance has open on the case (issue, reissue, red-letter) and what the
    # fapiao tasks page shows of it
    fapiao_task: Mapped[str | None] = mapped_column(String(16), index=True)
    fapiao_task_data: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # the highest event seq stored: lets a replayed persist skip what is already there
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    # a duplicate (status merged): the case its request continues under; a reply to its
    # thread goes there
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)

    # the case as its page shows it (core.models.CaseView, without the timeline), written with the
    # row: the workspace reads it instead of asking the workflow (NULL: written by an older build)
    view: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class CaseLink(TimestampedModel):
    """Two related cases, both ways: one row each way, written and deleted together
    (service/links.py). No foreign key: a case opened by an email may be linked before its first
    save lands."""

    __tablename__ = "case_links"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    other_case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    linked_by: Mapped[str] = mapped_column(String(320))


class Fapiao(TimestampedModel):
    """A fapiao issued for a bill, as finance recorded it: blue, or red-letter reversing a blue.
    A bill has an issued fapiao while one of its blue ones is not reversed."""

    __tablename__ = "fapiao"

    number: Mapped[str] = mapped_column(String(20), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    issued_on: Mapped[date] = mapped_column(Date)
    buyer_name: Mapped[str] = mapped_column(String(500))
    buyer_tax_id: Mapped[str] = mapped_column(String(20))
    reverses: Mapped[str | None] = mapped_column(String(20), index=True)
    # a red-letter fapiao that reverses its blue one in full (a reissue, a fapiao withdrawn); a
    # credit's is partial, and the bill keeps its fapiao for the rest
    in_full: Mapped[bool] = mapped_column(Boolean, default=False)
    case_id: Mapped[str | None] = mapped_column(String(64), index=True)
    recorded_by: Mapped[str] = mapped_column(String(200))


class TimelineEvent:
    """The columns of one timeline event (core.models.CaseEvent); a log adds what it belongs to.
    Append-only: a row is inserted once per (owner, seq) and never updated."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class CaseEventRow(TimelineEvent, Model):
    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_case_events_case_id_seq"),)

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)


class EmailLog(TimestampedModel):
    """One row per dedup key: the email is sent at most once for it."""

    __tablename__ = "email_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    case_id: Mapped[str | None] = mapped_column(String(64), index=True)
    template: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(998), default="")
    # pending -> sent | rejected
    status: Mapped[str] = mapped_column(String(16), index=True)
    processor: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # what SendGrid's Event Webhook last said of it that counts (service/email_events.py)
    delivery: Mapped[str | None] = mapped_column(String(16))
    delivery_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class EmailEvent(TimestampedModel):
    """One SendGrid Event Webhook event, once (by its ``sg_event_id``)."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sg_event_id: Mapped[str] = mapped_column(String(100), unique=True)
    dedup_key: Mapped[str] = mapped_column(String(255), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    # an undelivered email's workflow has been told (else the next post of the event tells it)
    routed: Mapped[bool] = mapped_column(Boolean, default=False)


class EmailThread(TimestampedModel):
    """The workflow of each thread token (core/threads.py): where a reply to its emails goes."""

    __tablename__ = "email_thread"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128))


class CaseRating(TimestampedModel):
    """A customer's satisfaction rating of a case (core/ratings.py): one per case, the latest
    given wins. ``source_key`` is what gave it (the inbound message's digest, the link's token):
    the same source again changes nothing."""

    __tablename__ = "case_ratings"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(8))  # email | link
    source_key: Mapped[str] = mapped_column(String(128))
    rated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class CaseAttachment(TimestampedModel):
    """A file of one of a case's emails, kept in the attachment store (intake/attachments.py) by
    its sha256: the workspace serves a stored file only through a row of its case. ``direction``:
    the customer's email (inbound) or ours (outbound); ``source``: the inbound message's digest, or
    our email's dedup key. The same bytes come once per case and direction (the first name kept)."""

    __tablename__ = "case_attachments"
    __table_args__ = (
        UniqueConstraint(
            "case_id", "direction", "sha256", name="uq_case_attachments_case_id_direction"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # no foreign key: a case opened by an email lists its files before its first save lands
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))  # intake.attachments.safe_name
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(255))  # as its email declared it
    source: Mapped[str] = mapped_column(String(255))


class InboundMail(TimestampedModel):
    """One row per inbound message (by the digest of its bytes): it acts once, however often it
    is posted; ``outcome`` is empty until it has acted."""

    __tablename__ = "inbound_mail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), index=True, default="")
    workflow_id: Mapped[str | None] = mapped_column(String(128), index=True)
    outcome: Mapped[str | None] = mapped_column(String(32), index=True)
    # SendGrid's verdicts on its sender (core/verdicts.py); none for the CLI's file or the folder
    spf: Mapped[str | None] = mapped_column(String(32))
    dkim: Mapped[str | None] = mapped_column(String(500))
    # what a person needs to act on it (empty for an unreadable message, and for older rows)
    sender: Mapped[str] = mapped_column(String(320), default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    text: Mapped[str] = mapped_column(Text, default="")  # its new text, bounded (service.inbound)
    size: Mapped[int] = mapped_column(Integer, default=0)  # of the whole message, in bytes
    # the files of a message that waits for a person, kept in the attachment store: sha256, name,
    # size, content_type, refused (why one was not kept)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # a person filed it (attached it to a case, or marked it handled): it waits no more
    handled_by: Mapped[str | None] = mapped_column(String(320))
    handled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class VianetEscalation(TimestampedModel):
    __tablename__ = "vianet_escalations"
    __table_args__ = (
        UniqueConstraint("case_id", "escalation_no", name="uq_vianet_escalations_case_id_no"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)
    escalation_no: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(1))
    reason: Mapped[str] = mapped_column(Text)
    request_title: Mapped[str] = mapped_column(String(500), default="")
    request_body: Mapped[str] = mapped_column(Text, default="")
    escalated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ticket_number: Mapped[str | None] = mapped_column(String(40), index=True)
    ticket_recorded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    response: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PartnerCenterAction(TimestampedModel):
    """One suspend or reactivate per key: tried until it is done, then answered from this row."""

    __tablename__ = "partner_center_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    invoice_id: Mapped[str] = mapped_column(String(255), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    subscription_id: Mapped[str] = mapped_column(String(36), index=True)
    # the status asked for: active | suspended
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    backend: Mapped[str] = mapped_column(String(32))
    # pending -> done | failed (a permanent error; a later attempt may still finish it)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    changed: Mapped[bool | None] = mapped_column(Boolean)
    # the call made, or in dry-run the call that would have been made
    request: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Collections(CustomerColumns, TimestampedModel):
    """One invoice in collections: the CollectionsWorkflow's latest state."""

    __tablename__ = "collections"

    invoice_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    stage: Mapped[str] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_due: Mapped[Decimal] = mapped_column(AMOUNT)
    paid: Mapped[Decimal] = mapped_column(AMOUNT)
    credited: Mapped[Decimal] = mapped_column(AMOUNT)
    balance: Mapped[Decimal] = mapped_column(AMOUNT)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    subscription_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    suspended_subscriptions: Mapped[list[str]] = mapped_column(JSON, default=list)
    suspended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    data_deletion_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fraud: Mapped[bool] = mapped_column(Boolean, default=False)
    linked_case_id: Mapped[str | None] = mapped_column(String(64))
    promised_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_step: Mapped[str | None] = mapped_column(String(64))
    next_step_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)


class CollectionsEventRow(TimelineEvent, Model):
    __tablename__ = "collections_events"
    __table_args__ = (
        UniqueConstraint("invoice_id", "seq", name="uq_collections_events_invoice_id_seq"),
    )

    invoice_id: Mapped[str] = mapped_column(ForeignKey("collections.invoice_id"), index=True)


class Account(CustomerColumns, TimestampedModel):
    """One customer tenant: the AccountWorkflow's holds on its subscriptions and its overrides."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the tenant id
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    # each hold: subscription_id, reason (non-payment or fraud), invoice_id, placed_at, by
    holds: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    suspended_subscriptions: Mapped[list[str]] = mapped_column(JSON, default=list)
    fraud: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the customer's credit balance, the readable copy of the account's ledger (LedgerView):
    # balances per currency, refunds, credit on its way to invoices
    ledger: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    has_credit: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    refunds_awaiting: Mapped[int] = mapped_column(Integer, default=0, index=True)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)


class AccountEventRow(TimelineEvent, Model):
    __tablename__ = "account_events"
    __table_args__ = (
        UniqueConstraint("account_id", "seq", name="uq_account_events_account_id_seq"),
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)


class VianetInvoice(TimestampedModel):
    """An invoice 21Vianet sent the partner: the VianetInvoiceWorkflow's latest state."""

    __tablename__ = "vianet_invoices"

    invoice_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    # unpaid -> overdue -> paid
    status: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    due_date: Mapped[date] = mapped_column(Date, index=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_by: Mapped[str] = mapped_column(String(200))
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    paid_reference: Mapped[str | None] = mapped_column(String(500))
    paid_by: Mapped[str | None] = mapped_column(String(200))
    # how many workflow events the stored state includes: a stale retry never overwrites a newer one
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)


class IntakeRequest(TimestampedModel):
    """A signed request to the HTTP intake, by its caller's idempotency key: claimed while it is
    carried out, then its answer kept, so the same key gets the same answer from any API process
    and after a restart. A request that failed for now (5xx) is forgotten: its retry runs."""

    __tablename__ = "intake_requests"
    __table_args__ = (
        UniqueConstraint("caller", "idempotency_key", name="uq_intake_requests_caller_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(255))
    body_sha256: Mapped[str] = mapped_column(String(64))
    # pending (being carried out) -> done (the answer below is final)
    state: Mapped[str] = mapped_column(String(16), index=True)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)


class WorkspaceUser(TimestampedModel):
    """A local account of the workspace (`starter.py user add`): for `make run` and small teams;
    people who sign in with Entra ID are not stored."""

    __tablename__ = "workspace_users"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower case
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # agent, manager, finance
    locale: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    # a disabled account signs in no more and its sessions end (`starter.py user disable`)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WorkspaceSession(Model):
    """A signed-in person's session. The cookie carries only its token, so signing out, disabling
    the account and the maximum lifetime end it at once, in every workspace process."""

    __tablename__ = "workspace_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    email: Mapped[str] = mapped_column(String(320), index=True)
    # a local account's name and roles are read from workspace_users at every request; an Entra
    # ID sign-in's are kept here, from its groups claim at sign-in
    local: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    locale: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)  # WEB_SESSION_MAX_HOURS from here
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)  # WEB_SESSION_IDLE_MINUTES from here


class SignInFailures(Model):
    """The recent failed sign-ins of an account or of a client address: after a few, sign-in
    waits. In the database, so that every workspace process counts the same failures."""

    __tablename__ = "sign_in_failures"

    subject: Mapped[str] = mapped_column(String(400), primary_key=True)  # account:…, address:…
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class StaffAlert(TimestampedModel):
    """One alert to one group robot, queued by the email activity beside a staff email and posted
    by the worker's dispatcher (activities/alert_dispatch.py): once per (email, robot), however
    often the activity runs. ``pending -> sent | failed``; a pending row is *claimed* by one
    dispatcher at a time until ``claimed_until`` (a dispatcher that died frees it then)."""

    __tablename__ = "staff_alerts"
    __table_args__ = (
        UniqueConstraint("dedup_key", "robot", name="uq_staff_alerts_dedup_key_robot"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(255))  # the staff email's
    robot: Mapped[str] = mapped_column(String(64), index=True)  # core.alerts.Robot.name
    kind: Mapped[str] = mapped_column(String(32))
    template: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(128))  # the case, invoice, ...
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    # pending -> sent | failed (refused for good, or never answered within the give-up time)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # not tried before
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class ReplyMacro(TimestampedModel):
    """A canned reply (a macro): a named text in one language with placeholders for the case's
    fields (service/macros.py), kept by managers, picked by agents in a case's reply composer."""

    __tablename__ = "reply_macros"
    __table_args__ = (UniqueConstraint("name", "locale", name="uq_reply_macros_name_locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(320))


class StatementLineRow(TimestampedModel):
    """One credit line of an imported bank statement, by its transaction reference (unique for
    ever: the same statement imported again records nothing new). Its allocations are written
    before the payments are made and `recorded` set after: an import stopped half-way makes the
    same payments again (same ids, same amounts) when it is run again. A line that waits for
    finance (ambiguous, unmatched, overpaid, refused) is the finance queue."""

    __tablename__ = "statement_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    layout: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(String(255))
    row: Mapped[int] = mapped_column(Integer)
    booked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    payer_name: Mapped[str] = mapped_column(String(200), default="")
    payer_account: Mapped[str] = mapped_column(String(64), default="")
    remark: Mapped[str] = mapped_column(String(500), default="")
    # matched | overpaid | ambiguous | unmatched | refused
    status: Mapped[str] = mapped_column(String(16), index=True)
    why: Mapped[str] = mapped_column(String(64))  # intake.matching.Why
    rest: Mapped[Decimal] = mapped_column(AMOUNT)  # what no bill has taken
    # each: invoice_id, amount, payment_id
    allocations: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    # each: invoice_id, customer_name, balance, why
    candidates: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    refusal: Mapped[str | None] = mapped_column(Text)
    imported_by: Mapped[str] = mapped_column(String(320))
    matched_by: Mapped[str | None] = mapped_column(String(320))
    matched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PayerAccount(TimestampedModel):
    """A bank account a customer pays from, taught when finance matches a line from it: the next
    transfer from it is the customer's."""

    __tablename__ = "payer_accounts"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    payer_name: Mapped[str] = mapped_column(String(200), default="")
    learnt_by: Mapped[str] = mapped_column(String(320))

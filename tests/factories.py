"""Realistic billing cases for tests: a customer in China disputing a 21Vianet Azure invoice, and
the same customer's unpaid invoice going through the collections policy.

Every factory takes keyword overrides for its model's fields and validates the result, so a test
states only what matters to it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from core.models import (
    About,
    AccountView,
    CaseDetails,
    CaseEvent,
    CaseStatus,
    CaseView,
    Category,
    CollectionsStatus,
    CollectionsView,
    Customer,
    EmailMessage,
    EmailTemplate,
    EscalationView,
    EventKind,
    Locale,
    OpenCase,
    Outcome,
    Priority,
    ResolutionView,
    Severity,
    SlaClockView,
    VianetInvoiceStatus,
    VianetInvoiceView,
    payment_failure,
)

CASE_ID = "BC-20250303-0042"
TENANT_ID = "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64"
SUBSCRIPTION_ID = "a7c4e2d9-1b3f-4c8a-8e6d-5f0b9c2a7e13"
INVOICE_ID = "G012345678"
OWNER = "li.na@partner.example.cn"
# 09:30 in Beijing on a Monday
OPENED_AT = datetime(2025, 3, 3, 1, 30, tzinfo=UTC)

DESCRIPTION = (
    "2025年2月的发票 G012345678 中，虚拟机费用比上月高出 ¥12,340.00。\n"
    "我们已于 2 月 10 日删除了这些虚拟机，请核实并更正。"
)
# The collections example: the March invoice fails at 09:00 in Beijing; suspension on day 10.
COLLECTIONS_INVOICE_ID = "G024681357"
SECOND_SUBSCRIPTION_ID = "5d1e7b3a-9c2f-4a6e-b8d4-2f7c0e1a9b56"
FAILED_AT = datetime(2025, 4, 8, 1, 0, tzinfo=UTC)
SUSPENDED_AT = FAILED_AT + timedelta(days=10)
AMOUNT_DUE = Decimal("48760.00")
PAYMENT_FAILURE = "卡片余额不足（银行返回代码 51）"
FRAUD_REASON = "同一租户在 48 小时内新建 37 台 GPU 虚拟机，付款卡已被发卡行报告为盗用。"
# The partner's own March invoice from 21Vianet, due on the 25th.
VIANET_INVOICE_NUMBER = "VN2025030088"
VIANET_DUE_DATE = date(2025, 3, 25)
QUESTION = "请提供被删除虚拟机所在的订阅 ID，以及删除操作的大致时间（精确到小时）。"


def make_customer(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "tenant_id": TENANT_ID,
        "name": "上海云帆信息科技有限公司",
        "email": "finance@yunfan.example.cn",
        "locale": Locale.ZH_CN,
    }
    return Customer.model_validate({**fields, **overrides})


def make_case_details(**overrides: Any) -> CaseDetails:
    fields: dict[str, Any] = {
        "customer": make_customer(),
        "subscription_id": SUBSCRIPTION_ID,
        "invoice_id": INVOICE_ID,
        "category": Category.INVOICE_DISPUTE,
        "disputed_amount": Decimal("12340.00"),
        "currency": "CNY",
        "description": DESCRIPTION,
        "priority": Priority.HIGH,
    }
    return CaseDetails.model_validate({**fields, **overrides})


def make_open_case(**overrides: Any) -> OpenCase:
    fields: dict[str, Any] = {
        "case_id": CASE_ID,
        "details": make_case_details(),
        "owner": OWNER,
        "opened_by": "zhang.wei@partner.example.cn",
    }
    return OpenCase.model_validate({**fields, **overrides})


def make_event(
    seq: int, kind: EventKind, actor: str, text: str = "", **overrides: Any
) -> CaseEvent:
    fields: dict[str, Any] = {
        "seq": seq,
        "at": OPENED_AT + timedelta(minutes=20 * (seq - 1)),
        "kind": kind,
        "actor": actor,
        "text": text,
    }
    return CaseEvent.model_validate({**fields, **overrides})


def _opening_events() -> list[CaseEvent]:
    return [
        make_event(
            1, EventKind.OPENED, "zhang.wei@partner.example.cn", "客户来电反映 2 月账单异常"
        ),
        make_event(2, EventKind.ASSIGNED, "zhang.wei@partner.example.cn", OWNER),
        make_event(3, EventKind.INFO_REQUESTED, OWNER, QUESTION),
        make_event(
            4,
            EventKind.CUSTOMER_REPLIED,
            "customer",
            "订阅 ID 见附件，删除时间约为 2 月 10 日 15 时。",
        ),
    ]


def make_sla_clocks(opened_at: datetime = OPENED_AT) -> list[SlaClockView]:
    return [
        SlaClockView(
            name="first response",
            target=timedelta(hours=4),
            due_at=None,
            paused=False,
            met_at=opened_at + timedelta(minutes=40),
            breached=False,
        ),
        SlaClockView(
            name="resolution",
            target=timedelta(days=1),
            due_at=opened_at + timedelta(days=1, hours=2),
            paused=False,
            met_at=None,
            breached=False,
        ),
    ]


def make_case_view(**overrides: Any) -> CaseView:
    """An open case, assigned, one question asked and answered; no escalation or resolution."""
    fields: dict[str, Any] = {
        "case_id": CASE_ID,
        "workflow_id": f"billing-case-{CASE_ID}",
        "status": CaseStatus.OPEN,
        "details": make_case_details(),
        "owner": OWNER,
        "opened_at": OPENED_AT,
        "opened_by": "zhang.wei@partner.example.cn",
        "sla": make_sla_clocks(),
        "timeline": _opening_events(),
    }
    return CaseView.model_validate({**fields, **overrides})


def make_escalation(**overrides: Any) -> EscalationView:
    fields: dict[str, Any] = {
        "severity": Severity.B,
        "reason": "合作伙伴无法在合作伙伴中心查看该发票的计费明细，需要世纪互联核实计量数据。",
        "escalated_at": OPENED_AT + timedelta(hours=3),
        "ticket_number": "2503030010001234",
        "ticket_recorded_at": OPENED_AT + timedelta(hours=3, minutes=25),
    }
    return EscalationView.model_validate({**fields, **overrides})


def make_escalated_case_view(**overrides: Any) -> CaseView:
    escalation = make_escalation()
    timeline = [
        *_opening_events(),
        make_event(5, EventKind.ESCALATED, OWNER, escalation.reason, at=escalation.escalated_at),
        make_event(
            6,
            EventKind.VIANET_TICKET,
            OWNER,
            escalation.ticket_number or "",
            at=escalation.ticket_recorded_at,
        ),
    ]
    fields: dict[str, Any] = {
        "status": CaseStatus.WAITING_ON_VIANET,
        "escalations": [escalation],
        "timeline": timeline,
    }
    return make_case_view(**{**fields, **overrides})


def make_resolution(**overrides: Any) -> ResolutionView:
    fields: dict[str, Any] = {
        "outcome": Outcome.CREDIT_ISSUED,
        "summary": "世纪互联确认 2 月 10 日后仍有计量数据上报，属计费错误，已批准全额贷项。",
        "credit_amount": Decimal("12340.00"),
        "resolved_by": OWNER,
        "resolved_at": OPENED_AT + timedelta(days=2),
        "customer_told_at": OPENED_AT + timedelta(days=2, minutes=1),
    }
    return ResolutionView.model_validate({**fields, **overrides})


def make_resolved_case_view(**overrides: Any) -> CaseView:
    fields: dict[str, Any] = {"status": CaseStatus.RESOLVED, "resolution": make_resolution()}
    return make_escalated_case_view(**{**fields, **overrides})


def sample_extra(template: EmailTemplate) -> dict[str, Any]:
    """The per-email details the workflow passes in ``EmailMessage.extra`` for ``template``."""
    due_at = (OPENED_AT + timedelta(days=1, hours=2)).isoformat()
    samples: dict[EmailTemplate, dict[str, Any]] = {
        EmailTemplate.INFO_REQUESTED: {"question": QUESTION},
        EmailTemplate.CASE_RESOLVED: {"reopen_days": "7"},
        EmailTemplate.FAPIAO_CONFIRM_RED_LETTER: {
            "blue_numbers": ["26312000000012345678"],
            "reminder": "1",
        },
        EmailTemplate.CASE_REOPENED: {"reason": "贷项金额与争议金额不一致，少了 ¥340.00。"},
        EmailTemplate.OWNER_SLA_REMINDER: {"clock": "resolution", "due_at": due_at},
        EmailTemplate.MANAGER_SLA_BREACH: {"clock": "resolution", "due_at": due_at},
        EmailTemplate.OWNER_FILE_ESCALATION: {
            "request_title": "账单争议 Billing dispute | G012345678",
            "request_body": "严重性 Severity: B\n主题 Topic: 计费 Billing",
        },
        EmailTemplate.OWNER_EMAIL_BOUNCED: {
            "bounced_address": "finance@yunfan.example.cn",
            "bounced_template": EmailTemplate.INFO_REQUESTED.value,
            "error": "SendGrid 400: The to email does not contain a valid address.",
        },
        EmailTemplate.OWNER_CASE_UPDATE: {"text": "客户回复：订阅 ID 见附件。"},
        EmailTemplate.CASE_MERGED: {"into_case_id": "BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N"},
        EmailTemplate.CASE_REPLY: {
            "text": "您好，贷项通知单已开具，请查收附件。\n如有疑问请直接回复。",
            "subject": "贷项通知单",
            "attachments": [
                {
                    "sha256": "ab" * 32,
                    "name": "贷项通知单.pdf",
                    "content_type": "application/pdf",
                    "size": 2048,
                }
            ],
        },
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED: {
            "failure": payment_failure(PAYMENT_FAILURE).value
        },
        EmailTemplate.COLLECTIONS_FINAL_NOTICE: {"suspension_date": SUSPENDED_AT.isoformat()},
        EmailTemplate.COLLECTIONS_DELETION_WARNING: {"days_left": "50"},
        EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED: {"amount": "20000.00"},
        EmailTemplate.COLLECTIONS_REACTIVATED: {
            "amount": str(AMOUNT_DUE),
            "reactivated": [SUBSCRIPTION_ID, SECOND_SUBSCRIPTION_ID],
        },
        EmailTemplate.MANAGER_PARTNER_CENTER_ERROR: {
            "subscription_id": SECOND_SUBSCRIPTION_ID,
            "error": "412 Precondition Failed: the If-Match etag does not match the subscription.",
            "action": "suspend",
        },
        EmailTemplate.MANAGER_FRAUD_REPORTED: {
            "reason": FRAUD_REASON,
            "by": "wang.fang@partner.example.cn",
        },
        EmailTemplate.CREDIT_RECEIVED: {
            "amount": "20000.00",
            "currency": "CNY",
            "remaining": "20500.00",
            "invoice_id": COLLECTIONS_INVOICE_ID,
        },
        EmailTemplate.CREDIT_APPLIED: {
            "amount": "1200.00",
            "currency": "CNY",
            "remaining": "7050.00",
            "invoice_id": COLLECTIONS_INVOICE_ID,
            "invoice_balance": "1800.00",
        },
        EmailTemplate.CREDIT_REFUNDED: {
            "amount": "6000.00",
            "currency": "CNY",
            "remaining": "1050.00",
        },
        EmailTemplate.FINANCE_VIANET_INVOICE_DUE: {"days_left": "3"},
        EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE: {"days_overdue": "1"},
        EmailTemplate.MANAGER_NEEDS_ATTENTION: {
            "step": "Email customer: case resolved (zh-CN)",
            "error": "DataRefused: the database refused the case's row: value too long",
        },
    }
    return samples.get(template, {})


def make_collections_view(**overrides: Any) -> CollectionsView:
    """An unpaid invoice three days after the payment failed: reminded, final notice next."""
    fields: dict[str, Any] = {
        "invoice_id": COLLECTIONS_INVOICE_ID,
        "workflow_id": f"collections-{COLLECTIONS_INVOICE_ID}",
        "status": CollectionsStatus.ACTIVE,
        "stage": "reminder",
        "customer": make_customer(),
        "subscription_ids": [SUBSCRIPTION_ID, SECOND_SUBSCRIPTION_ID],
        "currency": "CNY",
        "amount_due": AMOUNT_DUE,
        "paid": Decimal("0.00"),
        "credited": Decimal("0.00"),
        "balance": AMOUNT_DUE,
        "first_failed_at": FAILED_AT,
        "failures": [f"billing-run-20250408:{COLLECTIONS_INVOICE_ID}"],
        "next_step": "final-notice",
        "next_step_at": FAILED_AT + timedelta(days=7),
    }
    return CollectionsView.model_validate({**fields, **overrides})


def make_suspended_collections_view(**overrides: Any) -> CollectionsView:
    """Both subscriptions suspended on day 10; their data goes 90 days later."""
    fields: dict[str, Any] = {
        "stage": "suspension",
        "suspended_subscriptions": [SUBSCRIPTION_ID, SECOND_SUBSCRIPTION_ID],
        "suspended_at": SUSPENDED_AT,
        "data_deletion_at": SUSPENDED_AT + timedelta(days=90),
        "next_step": "deletion-warning",
        "next_step_at": SUSPENDED_AT + timedelta(days=40),
    }
    return make_collections_view(**{**fields, **overrides})


def collections_for(template: EmailTemplate, **overrides: Any) -> CollectionsView:
    """The unpaid invoice in the state in which ``template`` is sent."""
    paid = {"paid": AMOUNT_DUE, "balance": Decimal("0.00"), "next_step": None, "next_step_at": None}
    # reported on day 2: suspended at once, whatever the policy's day
    fraud = {
        "stage": "fraud",
        "fraud": True,
        "suspended_at": FAILED_AT + timedelta(days=2),
        "data_deletion_at": FAILED_AT + timedelta(days=92),
        "next_step": None,
        "next_step_at": None,
    }
    suspended: dict[EmailTemplate, dict[str, Any]] = {
        EmailTemplate.COLLECTIONS_SUSPENDED: {},
        EmailTemplate.COLLECTIONS_DELETION_WARNING: {
            "stage": "deletion-warning",
            "next_step": "last-deletion-warning",
            "next_step_at": SUSPENDED_AT + timedelta(days=80),
        },
        EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED: fraud,
        EmailTemplate.MANAGER_FRAUD_REPORTED: fraud,
        EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF: {
            "status": CollectionsStatus.HANDED_OFF,
            "stage": "hand-off",
            "next_step": None,
            "next_step_at": None,
        },
        # the first subscription was suspended, Partner Center refused the second
        EmailTemplate.MANAGER_PARTNER_CENTER_ERROR: {"suspended_subscriptions": [SUBSCRIPTION_ID]},
    }
    if template in suspended:
        return make_suspended_collections_view(**{**suspended[template], **overrides})
    states: dict[EmailTemplate, dict[str, Any]] = {
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED: {
            "stage": "payment-failed",
            "next_step": "reminder",
            "next_step_at": FAILED_AT + timedelta(days=3),
        },
        EmailTemplate.COLLECTIONS_FINAL_NOTICE: {
            "stage": "final-notice",
            "next_step": "suspension",
            "next_step_at": SUSPENDED_AT,
        },
        EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED: {
            "paid": Decimal("20000.00"),
            "balance": AMOUNT_DUE - Decimal("20000.00"),
        },
        EmailTemplate.COLLECTIONS_REACTIVATED: {
            **paid,
            "status": CollectionsStatus.PAID,
            "stage": "paid",
            "suspended_at": SUSPENDED_AT,
        },
        EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED: {
            "status": CollectionsStatus.PAUSED_PROMISE,
            "stage": "promise-to-pay",
            "promised_until": FAILED_AT + timedelta(days=14),
            "next_step": "final-notice",
            "next_step_at": FAILED_AT + timedelta(days=18),
        },
        EmailTemplate.COLLECTIONS_CLOSED: {
            "status": CollectionsStatus.CREDITED,
            "stage": "credited",
            "credited": AMOUNT_DUE,
            "balance": Decimal("0.00"),
            "linked_case_id": CASE_ID,
            "next_step": None,
            "next_step_at": None,
        },
    }
    return make_collections_view(**{**states.get(template, {}), **overrides})


def make_vianet_invoice_view(**overrides: Any) -> VianetInvoiceView:
    """The partner's 21Vianet invoice, recorded on the 1st, reminded three days before it is due."""
    fields: dict[str, Any] = {
        "invoice_number": VIANET_INVOICE_NUMBER,
        "workflow_id": f"vianet-invoice-{VIANET_INVOICE_NUMBER}",
        "status": VianetInvoiceStatus.UNPAID,
        "amount": Decimal("1286400.00"),
        "currency": "CNY",
        "due_date": VIANET_DUE_DATE,
        "recorded_at": datetime(2025, 3, 1, 2, 0, tzinfo=UTC),
        "recorded_by": "zhao.min@partner.example.cn",
        "finance_email": "finance@partner.example.cn",
        "manager_email": "billing-manager@partner.example.cn",
        "remind_days_before": 3,
        "reminders_sent": 1,
        "next_reminder": "due-date",
        "next_reminder_at": datetime(2025, 3, 25, 1, 0, tzinfo=UTC),
    }
    return VianetInvoiceView.model_validate({**fields, **overrides})


def vianet_invoice_for(template: EmailTemplate, **overrides: Any) -> VianetInvoiceView:
    """The 21Vianet invoice in the state in which ``template`` is sent."""
    if template is EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE:
        overdue = {
            "status": VianetInvoiceStatus.OVERDUE,
            "reminders_sent": 2,
            "next_reminder": None,
            "next_reminder_at": None,
            "escalated_at": datetime(2025, 3, 26, 1, 0, tzinfo=UTC),
        }
        return make_vianet_invoice_view(**{**overdue, **overrides})
    return make_vianet_invoice_view(**overrides)


def make_email_message(template: EmailTemplate, **overrides: Any) -> EmailMessage:
    """``template`` about the case, the unpaid invoice or the 21Vianet invoice it is sent for,
    with its sample data (``extra=`` replaces the data's fields)."""
    about: dict[str, Any]
    if template.about is About.COLLECTIONS:
        about, subject_id = {"collections": collections_for(template)}, COLLECTIONS_INVOICE_ID
    elif template.about is About.VIANET_INVOICE:
        about, subject_id = {"vianet_invoice": vianet_invoice_for(template)}, VIANET_INVOICE_NUMBER
    elif template.about is About.ACCOUNT:
        customer = make_customer()
        view = AccountView(
            tenant_id=customer.tenant_id, workflow_id=f"account-{customer.tenant_id}",
            customer=customer,
        )  # fmt: skip
        about, subject_id = {"account": view}, customer.tenant_id
    else:
        about, subject_id = {"case": case_for(template)}, CASE_ID
    extra = overrides.pop("extra", sample_extra(template))
    fields: dict[str, Any] = {
        "key": f"{subject_id}/{template.value}/1",
        "to": "finance@yunfan.example.cn" if template.to_customer else OWNER,
        "locale": Locale.ZH_CN,
        **about,
        "data": {"template": template, **extra},
    }
    return EmailMessage.model_validate({**fields, **overrides})


def case_for(template: EmailTemplate, **overrides: Any) -> CaseView:
    """A case in the state in which ``template`` is sent."""
    if template is EmailTemplate.CASE_RESOLVED:
        return make_resolved_case_view(**overrides)
    if template is EmailTemplate.CASE_CLOSED:
        closed = {"status": CaseStatus.CLOSED, "closed_at": OPENED_AT + timedelta(days=9)}
        return make_resolved_case_view(**{**closed, **overrides})
    if template is EmailTemplate.OWNER_FILE_ESCALATION:
        pending = {
            "status": CaseStatus.ESCALATION_PENDING,
            "escalations": [make_escalation(ticket_number=None, ticket_recorded_at=None)],
        }
        return make_escalated_case_view(**{**pending, **overrides})
    if template in (EmailTemplate.CASE_ESCALATED, EmailTemplate.OWNER_ESCALATION_REMINDER):
        return make_escalated_case_view(**overrides)
    states: dict[EmailTemplate, dict[str, Any]] = {
        EmailTemplate.CUSTOMER_REMINDER: {
            "status": CaseStatus.WAITING_ON_CUSTOMER,
            "customer_reminders_sent": 1,
        },
        EmailTemplate.OWNER_CUSTOMER_SILENT: {
            "status": CaseStatus.WAITING_ON_CUSTOMER,
            "customer_reminders_sent": 2,
        },
        EmailTemplate.CASE_REOPENED: {"reopen_count": 1},
        EmailTemplate.CASE_WITHDRAWN: {
            "status": CaseStatus.WITHDRAWN,
            "closed_at": OPENED_AT + timedelta(days=1),
        },
        EmailTemplate.CASE_MERGED: {
            "status": CaseStatus.MERGED,
            "closed_at": OPENED_AT + timedelta(days=1),
            "merged_into": "BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N",
        },
    }
    return make_case_view(**{**states.get(template, {}), **overrides})

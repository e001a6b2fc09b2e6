"""Test doubles for the activities the workflows call, registered under the real activity names."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.models import (
    CaseDetails,
    CasePolicy,
    Category,
    Customer,
    EmailMessage,
    EmailSent,
    EmailTemplate,
    EscalationRequest,
    Locale,
    OpenCase,
    PersistCase,
    PrepareEscalation,
    Priority,
    RecordEscalation,
)


def open_case(
    *,
    priority: Priority = Priority.NORMAL,
    amount: str = "12340.00",
    locale: Locale = Locale.ZH_CN,
    policy: CasePolicy | None = None,
    owner: str | None = "agent.li@partner.example.cn",
) -> OpenCase:
    case_id = f"T{uuid.uuid4().hex[:12]}"
    return OpenCase(
        case_id=case_id,
        details=CaseDetails(
            customer=Customer(
                tenant_id=str(uuid.uuid4()),
                name="上海示例科技有限公司",
                email="finance@customer.example.cn",
                locale=locale,
            ),
            subscription_id=str(uuid.uuid4()),
            invoice_id="G000123456",
            category=Category.INVOICE_DISPUTE,
            disputed_amount=Decimal(amount),
            description="October invoice charges a VM we deleted in September.",
            priority=priority,
        ),
        owner=owner,
        opened_by="agent.li@partner.example.cn",
        policy=policy or CasePolicy(),
    )


@dataclass
class FakeActivities:
    """Records what the workflow asked for; `reject` lists templates whose email bounces."""

    emails: list[EmailMessage] = field(default_factory=list)
    persisted: list[PersistCase] = field(default_factory=list)
    escalations: list[RecordEscalation] = field(default_factory=list)
    reject: set[EmailTemplate] = field(default_factory=set)
    task_queue: str = field(default_factory=lambda: f"cases-{uuid.uuid4()}")

    def templates(self) -> list[EmailTemplate]:
        return [e.template for e in self.emails]

    def all(self) -> list[Callable[..., Any]]:
        @activity.defn(name="send_email")
        async def send_email(message: EmailMessage) -> EmailSent:
            if message.template in self.reject:
                raise ApplicationError(
                    f"550 mailbox unavailable: {message.to}",
                    type="EmailRejected",
                    non_retryable=True,
                )
            self.emails.append(message)
            return EmailSent(key=message.key, provider_message_id=f"<{message.key}>")

        @activity.defn(name="persist_case")
        async def persist_case(data: PersistCase) -> None:
            self.persisted.append(data)

        @activity.defn(name="prepare_escalation")
        async def prepare_escalation(data: PrepareEscalation) -> EscalationRequest:
            return EscalationRequest(
                title=f"[{data.severity.value}] Billing dispute {data.case.case_id}",
                body=f"Reason: {data.reason}",
            )

        @activity.defn(name="record_escalation")
        async def record_escalation(data: RecordEscalation) -> None:
            self.escalations.append(data)

        return [send_email, persist_case, prepare_escalation, record_escalation]

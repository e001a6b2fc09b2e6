"""What a manager reads in the Temporal UI before opening a payload: the summary and the static
details a workflow starts with. Only ids, categories and amounts: a summary shows wherever the
workflow is listed or opened, so the customer's name, email and words stay in the payloads."""

from __future__ import annotations

from core.formatting import money
from core.models import BillingFailure, Category, OpenCase, RecordVianetInvoice

CATEGORY_LABELS = {
    Category.INVOICE_DISPUTE: "Invoice dispute",
    Category.UNEXPECTED_CHARGE: "Unexpected charge",
    Category.REFUND_REQUEST: "Refund request",
    Category.PAYMENT: "Payment",
    Category.CREDIT_NOTE: "Credit note",
    Category.SUBSCRIPTION_CHANGE: "Subscription change",
    Category.BILLING_QUESTION: "Billing question",
    Category.FRAUD_CONCERN: "Fraud concern",
    Category.FAPIAO: "Fapiao",
}


def case_summary(data: OpenCase) -> str:
    """One line, e.g. `Invoice dispute · tenant 3f2c… · ¥12,340.00 · high`."""
    details = data.details
    return (
        f"{CATEGORY_LABELS[details.category]} · tenant {details.customer.tenant_id} · "
        f"{money(details.disputed_amount, details.currency)} · {details.priority.value}"
    )


def case_details(data: OpenCase) -> str:
    """Markdown shown under the summary: the ids an agent looks up, who opened it, from where."""
    details = data.details
    lines = [
        f"**Case {data.case_id}** · {CATEGORY_LABELS[details.category]} · "
        f"priority {details.priority.value}",
        "",
        f"- Invoice: {details.invoice_id or '-'}",
        f"- Subscription: {details.subscription_id or '-'}",
        f"- Tenant: {details.customer.tenant_id}",
        f"- Disputed: {money(details.disputed_amount, details.currency)}",
        f"- Opened by: {data.opened_by}",
    ]
    if data.collections_workflow_id:
        lines.append(f"- From collections: {data.collections_workflow_id}")
    return "\n".join(lines)


def collections_summary(failure: BillingFailure) -> str:
    return (
        f"Collections · invoice {failure.invoice_id} · tenant {failure.customer.tenant_id} · "
        f"{money(failure.amount_due, failure.currency)}"
    )


def collections_details(failure: BillingFailure) -> str:
    subscriptions = ", ".join(failure.subscription_ids)
    return "\n".join(
        [
            f"**Unpaid invoice {failure.invoice_id}** · "
            f"{money(failure.amount_due, failure.currency)}",
            "",
            f"- Tenant: {failure.customer.tenant_id}",
            f"- Subscriptions: {subscriptions}",
            f"- First failure: {failure.failure_id} at {failure.failed_at:%Y-%m-%d %H:%M %Z}",
        ]
    )


def vianet_invoice_summary(data: RecordVianetInvoice) -> str:
    return (
        f"21Vianet invoice {data.invoice_number} · {money(data.amount, data.currency)} · "
        f"due {data.due_date.isoformat()}"
    )

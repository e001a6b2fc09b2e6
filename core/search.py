"""Custom search attributes: what a manager filters on in the Temporal UI, the values a workflow
carries, and the saved queries (docs/managers.md, `starter.py workflow list`) written once.

Never a customer name, email address or free text here: search attributes are not encrypted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.service import RPCError, RPCStatusCode

from core.models import Attention, CaseDetails

CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
CASE_CATEGORY = SearchAttributeKey.for_keyword("CaseCategory")
CASE_PRIORITY = SearchAttributeKey.for_keyword("CasePriority")
ASSIGNED_AGENT = SearchAttributeKey.for_keyword("AssignedAgent")
CUSTOMER_TENANT_ID = SearchAttributeKey.for_keyword("CustomerTenantId")
INVOICE_ID = SearchAttributeKey.for_keyword("InvoiceId")
SLA_BREACHED = SearchAttributeKey.for_bool("SlaBreached")
ESCALATED_TO_VIANET = SearchAttributeKey.for_bool("EscalatedToVianet")
DISPUTED_AMOUNT = SearchAttributeKey.for_float("DisputedAmount")
COLLECTIONS_STAGE = SearchAttributeKey.for_keyword("CollectionsStage")
AMOUNT_DUE = SearchAttributeKey.for_float("AmountDue")
SUSPENDED = SearchAttributeKey.for_bool("SuspendedForNonPayment")
# any workflow: why a person must act now (an `Attention`: "failed-step", "suspension-approval"…);
# unset otherwise (a keyword: the dev server's visibility store holds at most three Bool
# attributes)
NEEDS_ATTENTION = SearchAttributeKey.for_keyword("NeedsAttention")
FAILED_STEP, STALLED = Attention.FAILED_STEP.value, Attention.STALLED.value
_ANY_REASON = ", ".join(f'"{reason.value}"' for reason in Attention)

ALL_KEYS = (
    CASE_STATUS,
    CASE_CATEGORY,
    CASE_PRIORITY,
    ASSIGNED_AGENT,
    CUSTOMER_TENANT_ID,
    INVOICE_ID,
    SLA_BREACHED,
    ESCALATED_TO_VIANET,
    DISPUTED_AMOUNT,
    COLLECTIONS_STAGE,
    AMOUNT_DUE,
    SUSPENDED,
    NEEDS_ATTENTION,
)

_CLI_TYPES = {
    "KEYWORD": "Keyword",
    "BOOL": "Bool",
    "DOUBLE": "Double",
    "TEXT": "Text",
    "INT": "Int",
}


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags that register every key on the Temporal dev server."""
    flags: list[str] = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return flags


async def register(client: Client, namespace: str) -> list[str]:
    """Add the keys the namespace lacks (idempotent); returns the names added."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as err:  # the time-skipping test server can add but not list
        if err.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}")
        for key in ALL_KEYS
        if key.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


# --------------------------------------------------------------------------- values


def case_attributes(
    details: CaseDetails,
    *,
    status: str = "open",
    owner: str | None = None,
    sla_breached: bool = False,
    escalated: bool = False,
) -> TypedSearchAttributes:
    """Every key a BillingCaseWorkflow carries: at its start, and on each change from inside."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(CASE_STATUS, status),
            SearchAttributePair(CASE_CATEGORY, details.category.value),
            SearchAttributePair(CASE_PRIORITY, details.priority.value),
            SearchAttributePair(ASSIGNED_AGENT, owner or "unassigned"),
            SearchAttributePair(CUSTOMER_TENANT_ID, details.customer.tenant_id),
            SearchAttributePair(INVOICE_ID, details.invoice_id or ""),
            SearchAttributePair(SLA_BREACHED, sla_breached),
            SearchAttributePair(ESCALATED_TO_VIANET, escalated),
            SearchAttributePair(DISPUTED_AMOUNT, float(details.disputed_amount)),
        ]
    )


def collections_attributes(
    *, invoice_id: str, tenant_id: str, stage: str, balance: Decimal, suspended: bool
) -> TypedSearchAttributes:
    """Every key a CollectionsWorkflow carries: at its start, and on each change from inside."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(INVOICE_ID, invoice_id),
            SearchAttributePair(CUSTOMER_TENANT_ID, tenant_id),
            SearchAttributePair(COLLECTIONS_STAGE, stage),
            SearchAttributePair(AMOUNT_DUE, float(balance)),
            SearchAttributePair(SUSPENDED, suspended),
        ]
    )


def account_attributes(*, tenant_id: str) -> TypedSearchAttributes:
    """Every key an AccountWorkflow carries: its tenant (the saved query `suspended` lists the
    invoices whose suspensions it holds, not the account)."""
    return TypedSearchAttributes([SearchAttributePair(CUSTOMER_TENANT_ID, tenant_id)])


def on_task_queues(task_queues: Sequence[str]) -> str:
    """A visibility filter for the workflows of these task queues (the pipeline's own)."""
    return "TaskQueue IN (" + ", ".join(f'"{queue}"' for queue in task_queues) + ")"


async def count_needing_attention(client: Client, task_queues: Sequence[str]) -> dict[str, int]:
    """Running workflows of the task queues a person must act on, by reason (a visibility count:
    Temporal's, eventually consistent, so polled on a slow interval)."""
    counts: dict[str, int] = {}
    for reason in Attention:
        query = (
            f'{NEEDS_ATTENTION.name} = "{reason}" AND ExecutionStatus = "Running" '
            f"AND {on_task_queues(task_queues)}"
        )
        counts[reason.value] = (await client.count_workflows(query)).count
    return counts


# --------------------------------------------------------------------------- saved queries


@dataclass(frozen=True)
class SavedQuery:
    query: str  # Temporal's list filter, as pasted into the UI
    shows: str  # what a manager sees with it


SAVED_QUERIES: dict[str, SavedQuery] = {
    "sla-breached": SavedQuery(
        'SlaBreached = true AND ExecutionStatus = "Running"', "open cases past an SLA target"
    ),
    "waiting-on-21vianet": SavedQuery(
        'CaseStatus = "waiting-on-21vianet"', "cases whose 21Vianet ticket awaits an answer"
    ),
    "escalated": SavedQuery(
        'EscalatedToVianet = true AND ExecutionStatus = "Running"',
        "open cases escalated to 21Vianet (ticket to file, or waiting on 21Vianet)",
    ),
    "unassigned": SavedQuery(
        'AssignedAgent = "unassigned" AND ExecutionStatus = "Running"', "open cases nobody owns"
    ),
    "suspended": SavedQuery(
        "SuspendedForNonPayment = true", "invoices whose subscriptions are suspended now"
    ),
    "disputed-over-10k": SavedQuery(
        'DisputedAmount > 10000 AND ExecutionStatus = "Running"',
        "open cases disputing more than 10,000",
    ),
    "needs-attention": SavedQuery(
        f'NeedsAttention IN ({_ANY_REASON}) AND ExecutionStatus = "Running"',
        "workflows waiting for a person: a failed step to retry or skip, a suspension to approve, "
        "a reply to triage, an overdue 21Vianet invoice…",
    ),
    "unpaid-over-10k": SavedQuery(
        'AmountDue > 10000 AND ExecutionStatus = "Running"',
        "invoices in collections with more than 10,000 unpaid",
    ),
}

_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def resolve_query(name_or_query: str) -> str:
    """A saved query's filter by name, or the text itself as a raw filter."""
    text = name_or_query.strip()
    if text in SAVED_QUERIES:
        return SAVED_QUERIES[text].query
    if _NAME.fullmatch(text):  # a name, not a filter: say which names exist
        raise ValueError(
            f"no saved query {text!r}; saved: {', '.join(SAVED_QUERIES)} (or a raw filter such "
            "as 'CaseStatus = \"open\"')"
        )
    return text

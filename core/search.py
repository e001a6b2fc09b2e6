"""Custom search attributes: what a manager filters on in the Temporal UI.

Never a customer name, email address or free text here: search attributes are not encrypted.
"""

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

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

"""Customer accounts as the service offers them: look at one (holds, overrides), a manager lifts a
fraud hold or sets a customer's overrides, and an operator hands the suspensions of collections
that started before accounts existed over to them."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle

from core.ids import account_workflow_id
from core.models import (
    AccountOverrides,
    AccountView,
    CollectionsPolicy,
    LiftFraud,
    SetOverrides,
)
from core.settings import Settings, SettingsError, load_collections_policy
from service.calls import Named, attempt
from service.errors import Refused
from workflows.account import AccountWorkflow


def named(tenant_id: str) -> Named:
    return Named(
        account_workflow_id(tenant_id),
        f"account of tenant {tenant_id}",
        f"tenant {tenant_id} has no account (none of its invoices has been suspended)",
    )


def overridden(policy: CollectionsPolicy, overrides: AccountOverrides) -> str:
    """The line a collections records when a customer's overrides shaped its policy."""
    parts = []
    if overrides.policy_file:
        parts.append(f"policy {overrides.policy_file}")
    if overrides.exempt_from_suspension:
        parts.append("exempt from suspension")
    elif overrides.extra_grace_days and policy.suspension_day is not None:
        parts.append(f"suspension {overrides.extra_grace_days} day(s) later")
    return "customer overrides: " + ", ".join(parts)


class Accounts:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def _handle(self, tenant_id: str) -> WorkflowHandle[AccountWorkflow, AccountView]:
        return self._client.get_workflow_handle_for(
            AccountWorkflow.run, account_workflow_id(tenant_id)
        )

    async def show(self, tenant_id: str) -> AccountView:
        view: AccountView = await attempt(
            self._client, named(tenant_id), self._handle(tenant_id).query(AccountWorkflow.view)
        )
        return view

    async def lift_fraud(self, tenant_id: str, data: LiftFraud) -> AccountView:
        """A manager lifts the account's fraud holds (or one invoice's): what nothing else holds
        is reactivated."""
        update = self._handle(tenant_id).execute_update(AccountWorkflow.lift_fraud, data)
        view: AccountView = await attempt(self._client, named(tenant_id), update)
        return view

    async def set_overrides(self, tenant_id: str, data: SetOverrides) -> AccountView:
        """A manager changes how this customer differs from the policy; invoices that fail from
        now on start with it (a running collections keeps the policy it started with, but an
        exempt account never suspends for non-payment)."""
        if data.overrides.policy_file:
            self.policy_file(data.overrides.policy_file)  # refused here if it cannot be read
        update = self._handle(tenant_id).execute_update(AccountWorkflow.set_overrides, data)
        view: AccountView = await attempt(self._client, named(tenant_id), update)
        return view

    def policy_file(self, name: str) -> CollectionsPolicy:
        path = self._settings.collections_policy_file.parent / name
        try:
            return load_collections_policy(path)
        except SettingsError as err:  # the file is missing, or its line and key are named
            raise Refused(f"overrides.policy_file: {name}: {err}") from None

    def for_customer(
        self, policy: CollectionsPolicy, stored: dict[str, Any] | None
    ) -> tuple[CollectionsPolicy, str | None]:
        """The policy a new collections of a customer starts with, given the overrides their
        accounts row has (`stored`, read with the invoice's own row: one query a failure), and
        the line saying how they shaped it (None: the partner's policy as it is)."""
        overrides = AccountOverrides.model_validate(stored) if stored else AccountOverrides()
        if overrides == AccountOverrides():
            return policy, None
        if overrides.policy_file:
            policy = self.policy_file(overrides.policy_file)
        shaped = policy.for_customer(overrides.exempt_from_suspension, overrides.extra_grace_days)
        return shaped, overridden(policy, overrides)

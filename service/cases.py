"""Billing cases as the service offers them: open, act (every agent action is a validated update),
show."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateStage
from temporalio.service import RPCError

from core import search, ui
from core.ids import case_workflow_id, new_case_id
from core.models import (
    AddNote,
    Assign,
    BuyerMustConfirm,
    CaseForm,
    CaseOpened,
    CasePolicy,
    CaseView,
    Confirm,
    CustomerReply,
    Escalate,
    FapiaoRecorded,
    LinkCase,
    Merge,
    MergeCase,
    MergedIn,
    OpenCase,
    Reopen,
    Reply,
    RequestFapiao,
    RequestInfo,
    Resolve,
    UnlinkCase,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from core.priority import PEOPLE
from core.settings import Settings
from service.calls import Named, attempt, start
from service.errors import AlreadyExists, Ended, NotFound, Refused
from workflows.billing_case import BillingCaseWorkflow

CaseAction = (
    Assign
    | AddNote
    | UpdateContact
    | Reply
    | RequestInfo
    | CustomerReply
    | Resolve
    | Escalate
    | VianetTicket
    | VianetResponse
    | Confirm
    | Reopen
    | Withdraw
    | RequestFapiao
    | BuyerMustConfirm
    | FapiaoRecorded
    | Merge
    | MergedIn
    | LinkCase
    | UnlinkCase
)
# each action is the update of the same meaning
UPDATES: dict[type[CaseAction], Any] = {
    Assign: BillingCaseWorkflow.assign,
    AddNote: BillingCaseWorkflow.note,
    UpdateContact: BillingCaseWorkflow.update_contact,
    Reply: BillingCaseWorkflow.reply,
    RequestInfo: BillingCaseWorkflow.request_info,
    CustomerReply: BillingCaseWorkflow.customer_reply,
    Resolve: BillingCaseWorkflow.resolve,
    Escalate: BillingCaseWorkflow.escalate,
    VianetTicket: BillingCaseWorkflow.vianet_ticket,
    VianetResponse: BillingCaseWorkflow.vianet_response,
    Confirm: BillingCaseWorkflow.confirm,
    Reopen: BillingCaseWorkflow.reopen,
    Withdraw: BillingCaseWorkflow.withdraw,
    RequestFapiao: BillingCaseWorkflow.fapiao,
    BuyerMustConfirm: BillingCaseWorkflow.fapiao,
    FapiaoRecorded: BillingCaseWorkflow.fapiao,
    Merge: BillingCaseWorkflow.merge,
    MergedIn: BillingCaseWorkflow.merged_in,
    LinkCase: BillingCaseWorkflow.link,
    UnlinkCase: BillingCaseWorkflow.unlink,
}


# Updates that answer once their step is done (the resolution delivered or bounced, the
# 21Vianet request rendered), so the agent's screen needs no query after them. Should the step
# take longer (a provider retrying), the agent gets the case as it is after this many seconds.
ANSWER_WAIT = 20.0
ANSWERED_WHEN_DONE: frozenset[type[CaseAction]] = frozenset({Resolve, Escalate})


def _not_merged(view: CaseView) -> Refused:
    where = f" into case {view.merged_into}" if view.merged_into else ""
    return Refused(f"cannot merge case {view.case_id}: it is {view.status.value}{where}")


def named(case_id: str) -> Named:
    return Named(case_workflow_id(case_id), f"case {case_id}", f"no case {case_id}")


class Cases:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        # a credit's resolution learns the bill's issued fapiao here (service/fapiao.py)
        self.before_resolve: Callable[[str, Resolve], Awaitable[Resolve]] | None = None

    def prepare(
        self, form: CaseForm, policy: CasePolicy | None = None, *, case_id: str | None = None
    ) -> OpenCase:
        """The workflow's input for a form, under a new case id (or the one its intake request
        gives it: `core.ids.request_case_id`)."""
        return form.open_case(case_id or new_case_id(), policy or self._settings.case_policy())

    async def open(self, data: OpenCase) -> CaseOpened:
        """Start the case: the customer is acknowledged, the owner told. AlreadyExists when the
        case id was ever used. Answers without asking the workflow: `show` for the whole case."""
        started = await start(
            self._client,
            BillingCaseWorkflow.run,
            data,
            named(data.case_id),
            self._settings.cases_task_queue,
            priority=PEOPLE,
            static_summary=ui.case_summary(data),
            static_details=ui.case_details(data),
            search_attributes=search.case_attributes(data.details, owner=data.owner),
        )
        if not started:
            raise AlreadyExists(f"case {data.case_id} already exists")
        return CaseOpened(case_id=data.case_id, workflow_id=case_workflow_id(data.case_id))

    async def act(
        self, case_id: str, action: CaseAction, *, update_id: str | None = None
    ) -> CaseView:
        """One agent action; the case as it is after it (without its timeline). The same
        `update_id` again is answered with the first outcome, not run again."""
        handle = self._client.get_workflow_handle_for(
            BillingCaseWorkflow.run, case_workflow_id(case_id)
        )
        if isinstance(action, Resolve) and self.before_resolve is not None:
            action = await self.before_resolve(case_id, action)
        update = UPDATES[type(action)]
        if type(action) in ANSWERED_WHEN_DONE:
            call = self._answer_within(handle, update, action, update_id)
        else:
            call = handle.execute_update(update, action, id=update_id)
        view: CaseView = await attempt(self._client, named(case_id), call)
        return view

    @staticmethod
    async def _answer_within(
        handle: WorkflowHandle[Any, CaseView],
        update: Any,
        action: CaseAction,
        update_id: str | None,
    ) -> CaseView:
        accepted = await handle.start_update(
            update, action, id=update_id, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        try:
            return await asyncio.wait_for(accepted.result(), ANSWER_WAIT)
        except TimeoutError:  # accepted, its step still under way: the case as it is now
            view = await handle.query(BillingCaseWorkflow.view)
            return view.model_copy(update={"timeline": []})

    async def merge(self, case_id: str, form: MergeCase) -> CaseView:
        """Merge duplicate `case_id` into `form.into`: the duplicate ends (status merged, its
        customer told once that the request continues under the target), the target lists it
        (its emails, files and timeline referenced, nothing of its money or SLA taken). Refused,
        naming the field, into itself, a case that has ended, another customer's, or no case;
        the same merge again changes nothing (one that stopped half-way is finished)."""
        if form.into == case_id:
            raise Refused("into: a case cannot merge into itself; nothing was changed")
        duplicate = await self.show(case_id)
        try:
            target = await self.show(form.into)
        except NotFound:
            raise Refused(f"into: no case {form.into}; nothing was changed") from None
        if duplicate.status.is_final and duplicate.merged_into != form.into:
            raise _not_merged(duplicate)
        if not duplicate.status.is_final:
            merge = Merge(
                into=form.into,
                into_tenant_id=target.details.customer.tenant_id,
                into_status=target.status,
                by=form.by,
            )
            # the target in the id: of two people merging it into two cases at once, the second
            # is refused by the rules (it is merged), not answered with the first's outcome
            try:
                duplicate = await self.act(case_id, merge, update_id=f"merge/{case_id}/{form.into}")
            except Ended:  # merged meanwhile, and its run is over: into this target, or not
                duplicate = await self.show(case_id)
                if duplicate.merged_into != form.into:
                    raise _not_merged(duplicate) from None
        # the same merge again, or one that stopped half-way: the target lists it, once
        if case_id not in target.merged_cases:
            told = MergedIn(case_id=case_id, by=form.by)
            await self.act(form.into, told, update_id=f"merged-in/{case_id}")
        return duplicate

    async def attention(self, case_id: str) -> str | None:
        """What the case's NeedsAttention search attribute says (`search.FAILED_STEP`, ...),
        answered by Temporal's server without a worker; None when unset, or when Temporal does
        not answer."""
        handle = self._client.get_workflow_handle(case_workflow_id(case_id))
        try:
            described = await handle.describe()
        except RPCError:
            return None
        return described.typed_search_attributes.get(search.NEEDS_ATTENTION)

    async def show(self, case_id: str) -> CaseView:
        handle = self._client.get_workflow_handle_for(
            BillingCaseWorkflow.run, case_workflow_id(case_id)
        )
        return await attempt(self._client, named(case_id), handle.query(BillingCaseWorkflow.view))

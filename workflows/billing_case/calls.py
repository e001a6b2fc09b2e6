"""The case's updates about other cases (Temporal handlers, no rules: rules.py decides): merging a
duplicate into another case, being merged into, a related case linked or unlinked."""

from __future__ import annotations

from abc import ABC, abstractmethod

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.models import CaseView, LinkCase, Merge, MergedIn, UnlinkCase
    from workflows.billing_case.rules import CaseAction


class OtherCases(ABC):
    """Mixed into BillingCaseWorkflow: each update checks its action against the rules, then
    takes it."""

    @abstractmethod
    def _check(self, action: CaseAction) -> None: ...

    @abstractmethod
    def _take(self, action: CaseAction) -> CaseView: ...

    @workflow.update
    def merge(self, data: Merge) -> CaseView:
        return self._take(data)

    @merge.validator
    def _check_merge(self, data: Merge) -> None:
        self._check(data)

    @workflow.update
    def merged_in(self, data: MergedIn) -> CaseView:
        return self._take(data)

    @merged_in.validator
    def _check_merged_in(self, data: MergedIn) -> None:
        self._check(data)

    @workflow.update
    def link(self, data: LinkCase) -> CaseView:
        return self._take(data)

    @link.validator
    def _check_link(self, data: LinkCase) -> None:
        self._check(data)

    @workflow.update
    def unlink(self, data: UnlinkCase) -> CaseView:
        return self._take(data)

    @unlink.validator
    def _check_unlink(self, data: UnlinkCase) -> None:
        self._check(data)

"""Merging a duplicate and linking related cases, in the case's rules (no server): the random weeks
of tests/test_case_rules.py with a merge among them, then each refusal naming its field; and the
links' table (service/links.py) on SQLite and PostgreSQL, its workflows' notes taken by a
stand-in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from sqlalchemy.orm import Session, sessionmaker

from core.models import (
    MERGEABLE_STATUSES,
    CaseStatus,
    CaseView,
    Escalate,
    EventKind,
    LinkCase,
    Merge,
    MergedIn,
    Outcome,
    Priority,
    Resolve,
    Severity,
    UnlinkCase,
)
from core.models.email import CaseMerged
from core.settings import Settings
from service.errors import Ended, NotFound, Refused
from service.links import Links
from tests.rules_support import RULES_EXAMPLES, RULES_STEPS
from tests.test_case_rules import AGENT, ANY_ACTION, CaseMachine, opened
from tests.test_reports import NOW, _case
from workflows.billing_case.rules import Case, CaseAction, Effect
from workflows.effects import Email, Record

TARGET = "BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N"


def merge_into(case: Case, *, status: CaseStatus = CaseStatus.OPEN, tenant: str = "") -> Merge:
    return Merge(
        into=TARGET,
        into_tenant_id=tenant or case.details.customer.tenant_id,
        into_status=status,
        by=AGENT,
    )


class MergeMachine(CaseMachine):
    """The case's random weeks, in which an agent may try to merge it into another of the
    customer's cases (open or not, the customer's or another's) at any moment."""

    merged_letters = 0

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Email) and isinstance(effect.data, CaseMerged):
                self.merged_letters += 1
                assert effect.to == str(self.case.details.customer.email)
        super().apply(effects)

    @rule(
        status=st.sampled_from([CaseStatus.OPEN, CaseStatus.RESOLVED, CaseStatus.CLOSED]),
        ours=st.booleans(),
    )
    def merge(self, status: CaseStatus, ours: bool) -> None:
        before = self.case.model_dump()
        action = merge_into(self.case, status=status, tenant="" if ours else str(uuid.uuid4()))
        refused = self.case.refusal(action, self.now)
        if refused is not None:
            assert self.case.model_dump() == before
            if status.is_final or not ours:
                assert refused.startswith(("into: ", "cannot merge"))
            return
        assert ours and not status.is_final and self.case.collections_workflow_id is None
        assert self.case.status in MERGEABLE_STATUSES  # not escalated, not resolved
        self.act(action)

    @rule(other=st.sampled_from([TARGET, "BC-OTHER-1"]), unlink=st.booleans())
    def link_case(self, other: str, unlink: bool) -> None:
        self.act((UnlinkCase if unlink else LinkCase)(other=other, by=AGENT))

    @rule(duplicate=st.sampled_from(["BC-DUP-1", "BC-DUP-2"]))
    def merged_in(self, duplicate: str) -> None:
        self.act(MergedIn(case_id=duplicate, by=AGENT))

    @invariant()
    def a_merge_is_one_letter_and_the_end(self) -> None:
        """Merged: the customer had exactly one letter of it, the clocks stopped, no timer is
        left, every action is refused; never merged: no such letter."""
        case = self.case
        if case.status is not CaseStatus.MERGED:
            assert self.merged_letters == 0 and case.merged_into is None
            return
        assert self.merged_letters == 1 and case.merged_into == TARGET
        assert case.first_response_sla.running_since is None
        assert case.resolution_sla.running_since is None
        assert case.next_due() is None
        assert all(case.refusal(action, self.now) for action in ANY_ACTION)
        assert case.refusal(merge_into(case), self.now) is not None
        kinds = [record.kind for _, record in self.timeline]
        assert kinds.count(EventKind.MERGED) == 1

    @invariant()
    def a_duplicate_merged_in_is_listed_once(self) -> None:
        assert len(self.case.merged_cases) == len(set(self.case.merged_cases))
        merged_in = [r for _, r in self.timeline if r.kind is EventKind.MERGED_IN]
        assert len(merged_in) == len(self.case.merged_cases)


TestMergeRules = MergeMachine.TestCase
# a few of the case machine's weeks (50 of 700): the rest of its rules are proved there
TestMergeRules.settings = settings(
    max_examples=max(1, RULES_EXAMPLES // 14),
    stateful_step_count=RULES_STEPS,
    deadline=None,
)


# --------------------------------------------------------------------------- rules, one by one


def test_a_merge_closes_the_duplicate_with_one_letter_naming_the_target() -> None:
    case = opened()
    at = case.opened_at + timedelta(hours=2)
    action = merge_into(case)
    assert case.refusal(action, at) is None
    effects = case.take(action, at)
    letters = [e for e in effects if isinstance(e, Email)]
    assert [type(e.data) for e in letters] == [CaseMerged]
    assert letters[0].data.into_case_id == TARGET  # type: ignore[attr-defined]
    assert letters[0].to == str(case.details.customer.email)
    records = [e for e in effects if isinstance(e, Record)]
    assert [(r.kind, r.data) for r in records] == [(EventKind.MERGED, {"into": TARGET})]
    assert case.status is CaseStatus.MERGED and case.closed_at == at
    assert case.merged_into == TARGET and case.next_due() is None
    # its money stays its own: nothing is credited or moved
    assert case.resolution is None and case.details.disputed_amount > 0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"into": "SELF"}, "into: a case cannot merge into itself"),
        ({"into_status": CaseStatus.CLOSED}, "into: case BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N is closed"),
        ({"into_status": CaseStatus.WITHDRAWN}, "is withdrawn; a case merges only into one"),
        ({"into_status": CaseStatus.MERGED}, "is merged; a case merges only into one still open"),
        ({"into_tenant_id": "00000000-0000-4000-8000-000000000000"}, "another customer's"),
    ],
)
def test_a_merge_is_refused_naming_the_field_and_changes_nothing(
    change: dict[str, object], words: str
) -> None:
    case = opened()
    if change.get("into") == "SELF":
        change = {"into": case.case_id}
    action = merge_into(case).model_copy(update=change)
    before = case.model_dump()
    refused = case.refusal(action, case.opened_at)
    assert refused is not None and words in refused
    assert refused.startswith("into: ")
    assert case.model_dump() == before


def test_a_case_that_ended_or_disputes_an_invoice_in_collections_merges_into_nothing() -> None:
    case = opened()
    case.take(merge_into(case), case.opened_at)
    again = case.refusal(merge_into(case), case.opened_at)
    assert again == f"cannot merge case {case.case_id}: it is merged"
    disputing = opened()
    disputing.link_collections("collections-G000123456", disputing.opened_at)
    refused = disputing.refusal(merge_into(disputing), disputing.opened_at)
    assert refused is not None and "collections-G000123456" in refused


@pytest.mark.parametrize(
    "work",
    [
        Escalate(reason="计量数据有误", severity=Severity.B, by=AGENT),
        Resolve(outcome=Outcome.EXPLAINED, summary="已说明", by=AGENT),
    ],
)
def test_a_case_with_work_of_its_own_is_not_the_duplicate(work: Escalate | Resolve) -> None:
    """Escalated to 21Vianet, or resolved: the other case merges into it, not it into another."""
    case = opened()
    case.take(work, case.opened_at)
    refused = case.refusal(merge_into(case), case.opened_at)
    assert refused is not None and "merge the other case into this one" in refused


def test_the_target_lists_a_duplicate_once_and_sends_no_letter() -> None:
    case = opened()
    told = MergedIn(case_id="BC-DUP-1", by=AGENT)
    first = case.take(told, case.opened_at)
    assert [(r.kind, r.data) for r in first if isinstance(r, Record)] == [
        (EventKind.MERGED_IN, {"case": "BC-DUP-1"})
    ]
    assert not [e for e in first if isinstance(e, Email)]
    assert case.take(told, case.opened_at) == [] and case.merged_cases == ["BC-DUP-1"]
    itself = MergedIn(case_id=case.case_id, by=AGENT)
    assert case.refusal(itself, case.opened_at) == "case_id: a case cannot merge into itself"


def test_links_are_a_line_on_the_timeline_never_a_letter_nor_to_itself() -> None:
    case = opened()
    for action, kind in (
        (LinkCase(other=TARGET, by=AGENT), EventKind.CASE_LINKED),
        (UnlinkCase(other=TARGET, by=AGENT), EventKind.CASE_UNLINKED),
    ):
        effects = case.take(action, case.opened_at)
        assert [(e.kind, e.data) for e in effects if isinstance(e, Record)] == [
            (kind, {"case": TARGET})
        ]
        assert len(effects) == 1
    itself = LinkCase(other=case.case_id, by=AGENT)
    assert case.refusal(itself, case.opened_at) == "other: a case cannot be linked to itself"


# --------------------------------------------------------------------------- the links' table


@dataclass
class StandInCases:
    """The cases' workflows as the links see them: each note taken, or the case has ended."""

    ended: set[str] = field(default_factory=set)
    taken: list[tuple[str, CaseAction]] = field(default_factory=list)

    async def act(self, case_id: str, action: CaseAction) -> CaseView:
        if case_id in self.ended:
            raise Ended(f"case {case_id} has ended (completed): it takes no more actions")
        self.taken.append((case_id, action))
        return None  # type: ignore[return-value]


def _rows(session_factory: sessionmaker[Session], tenant: str, *ids: str) -> None:
    with session_factory() as session:
        for n, case_id in enumerate(ids):
            row = _case(case_id, CaseStatus.OPEN, Priority.NORMAL, timedelta(hours=n), now=NOW)
            row.tenant_id = tenant
            session.add(row)
        session.commit()


async def test_a_link_shows_both_ways_once_and_undoes_both_ways(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    tenant, stranger = str(uuid.uuid4()), str(uuid.uuid4())
    _rows(session_factory, tenant, "C1", "C2", "C3")
    _rows(session_factory, stranger, "S1")
    cases = StandInCases(ended={"C2"})
    links = Links(Settings(database_url=database_url), cases)  # type: ignore[arg-type]

    linked = await links.link("C1", LinkCase(other="C2", by=AGENT))
    assert [row.case_id for row in linked] == ["C2"]
    assert [row.case_id for row in await links.of("C2")] == ["C1"]
    # only C1 is still running: its timeline notes it; C2 keeps the link all the same
    assert cases.taken == [("C1", LinkCase(other="C2", by=AGENT))]
    again = await links.link("C2", LinkCase(other="C1", by=AGENT))  # from the other side
    assert [row.case_id for row in again] == ["C1"] and len(cases.taken) == 1
    await links.link("C1", LinkCase(other="S1", by=AGENT))  # another customer's: allowed
    assert {row.case_id for row in await links.of("C1")} == {"C2", "S1"}

    with pytest.raises(Refused, match=r"^other: a case cannot be linked to itself"):
        await links.link("C1", LinkCase(other="C1", by=AGENT))
    with pytest.raises(Refused, match=r"^other: no case C9"):
        await links.link("C1", LinkCase(other="C9", by=AGENT))
    with pytest.raises(NotFound, match="no case C9"):
        await links.link("C9", LinkCase(other="C1", by=AGENT))

    assert await links.unlink("C2", UnlinkCase(other="C1", by=AGENT)) == []
    assert [row.case_id for row in await links.of("C1")] == ["S1"]
    assert cases.taken[-1] == ("C1", UnlinkCase(other="C2", by=AGENT))
    taken = len(cases.taken)
    await links.unlink("C2", UnlinkCase(other="C1", by=AGENT))  # not linked: nothing changes
    assert len(cases.taken) == taken

    offered = await links.of_customer(tenant, but="C1")
    assert [row.case_id for row in offered] == ["C2", "C3"]  # the latest opened first

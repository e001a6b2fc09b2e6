"""Customer satisfaction (CSAT) in the managers' report: the ratings customers gave their cases
(``case_ratings``, one per case), per agent (the case's owner) and per month (Asia/Shanghai)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.formatting import CHINA_STANDARD_TIME
from core.ratings import SATISFIED
from db.tables import Case, CaseRating
from reporting.figures import Rate

UNASSIGNED = "(unassigned)"


@dataclass(frozen=True)
class Satisfaction:
    """The ratings of one agent, one month or all: how many, their average, how many 4 or 5."""

    label: str
    ratings: int
    average: Decimal | None  # to two places; None without ratings
    satisfied: Rate

    @classmethod
    def of(cls, label: str, scores: Iterable[int]) -> Satisfaction:
        given = list(scores)
        average = (
            (Decimal(sum(given)) / Decimal(len(given))).quantize(Decimal("0.01")) if given else None
        )
        kept = sum(1 for score in given if score >= SATISFIED)
        return cls(label, len(given), average, Rate(kept, len(given)))


@dataclass(frozen=True)
class Csat:
    by_agent: list[Satisfaction]  # most ratings first
    by_month: list[Satisfaction]  # oldest month first
    total: Satisfaction


def month(moment: datetime) -> str:
    """The month of a moment in Beijing time, as 2026-12."""
    return f"{moment.astimezone(CHINA_STANDARD_TIME):%Y-%m}"


def csat(session: Session, since: datetime | None) -> Csat:
    """The ratings given since `since` (all of them without it)."""
    query = select(CaseRating.score, CaseRating.rated_at, Case.owner).join(
        Case, Case.case_id == CaseRating.case_id
    )
    if since is not None:
        query = query.where(CaseRating.rated_at >= since)
    rows = session.execute(query).all()
    agents: dict[str, list[int]] = defaultdict(list)
    months: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        agents[row.owner or UNASSIGNED].append(row.score)
        months[month(row.rated_at)].append(row.score)
    return Csat(
        by_agent=sorted(
            (Satisfaction.of(agent, scores) for agent, scores in agents.items()),
            key=lambda s: (-s.ratings, s.label),
        ),
        by_month=[Satisfaction.of(m, months[m]) for m in sorted(months)],
        total=Satisfaction.of("All", (row.score for row in rows)),
    )

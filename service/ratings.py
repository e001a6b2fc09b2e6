"""Customers' satisfaction ratings of their cases, as ``case_ratings`` keeps them: one per case, the
latest given wins, each written once per source (the inbound message's digest, the link's token).

A rating is no action on the case: its workflow may have ended long ago, so it is never signalled;
the workspace's case page and the report read the table.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.ratings import SCORES
from core.settings import Settings
from db.tables import Case, CaseRating, table
from service.calls import reading
from service.errors import NotFound

RATINGS = table(CaseRating)
TRIES = 3  # of a write that meets another at the same case's row


class Channel(StrEnum):
    EMAIL = "email"
    LINK = "link"


@dataclass(frozen=True)
class GivenRating:
    case_id: str
    score: int
    channel: Channel
    rated_at: datetime
    locale: str  # the case's customer's: the link's answer is in it


class Ratings:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def record(
        self, case_id: str, score: int, channel: Channel, source_key: str, rated_at: datetime
    ) -> GivenRating:
        """Keep the rating as the case's, unless a later one is kept already; the same source
        again changes nothing. NotFound when the case is not in the database; ValueError for a
        score outside 1–5."""
        if score not in SCORES:
            raise ValueError(f"score: {score} is not 1 to 5")
        return await asyncio.to_thread(
            self._record, case_id, score, channel, source_key[:128], rated_at
        )

    async def of(self, case_id: str) -> GivenRating | None:
        return await asyncio.to_thread(self._of, case_id)

    async def locale_of(self, case_id: str) -> str:
        """The language of the case's customer; NotFound when the case is not in the database."""
        return await asyncio.to_thread(self._locale_of, case_id)

    def _locale_of(self, case_id: str) -> str:
        with reading(self._settings.database_url) as session:
            locale = session.scalar(select(Case.locale).where(Case.case_id == case_id))
        if locale is None:
            raise NotFound(f"case {case_id}: not found")
        return str(locale)

    def _record(
        self, case_id: str, score: int, channel: Channel, key: str, rated_at: datetime
    ) -> GivenRating:
        values = {"score": score, "channel": channel.value, "source_key": key}
        for _ in range(TRIES):
            self._locale_of(case_id)  # NotFound before anything is written
            with reading(self._settings.database_url) as session:
                kept = session.execute(
                    select(RATINGS.c.source_key, RATINGS.c.rated_at).where(
                        RATINGS.c.case_id == case_id
                    )
                ).first()
                now = datetime.now(UTC)
                try:
                    if kept is None:
                        session.execute(
                            insert(RATINGS),
                            {
                                "case_id": case_id,
                                "rated_at": rated_at,
                                "created_at": now,
                                "updated_at": now,
                                **values,
                            },
                        )
                    elif kept.source_key != key and rated_at >= kept.rated_at:
                        # compare-and-set on the source: of two writers, one wins, the other reads
                        changed = session.execute(
                            update(RATINGS)
                            .where(
                                RATINGS.c.case_id == case_id,
                                RATINGS.c.source_key == kept.source_key,
                            )
                            .values(rated_at=rated_at, updated_at=now, **values)
                        )
                        if cast(CursorResult[Any], changed).rowcount != 1:
                            session.rollback()
                            continue
                    session.commit()
                except IntegrityError:  # another writer inserted the case's row first
                    session.rollback()
                    continue
            given = self._of(case_id)
            assert given is not None
            return given
        raise RuntimeError(f"case {case_id}: its rating kept changing under {TRIES} writes")

    def _of(self, case_id: str) -> GivenRating | None:
        with reading(self._settings.database_url) as session:
            row = session.execute(
                select(RATINGS.c.score, RATINGS.c.channel, RATINGS.c.rated_at, Case.locale)
                .join(Case, Case.case_id == RATINGS.c.case_id)
                .where(RATINGS.c.case_id == case_id)
            ).first()
        if row is None:
            return None
        return GivenRating(case_id, row.score, Channel(row.channel), row.rated_at, row.locale)

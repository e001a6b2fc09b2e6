"""Fapiao as the service offers them: the fapiao recorded per bill (which bills have an issued
fapiao), an agent's request to finance on a case, and what finance records on a case's task. The
product records and reminds; it never calls a tax system (docs/fapiao.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from core.models import (
    BuyerMustConfirm,
    CaseView,
    FapiaoKind,
    FapiaoRecorded,
    FapiaoTaskKind,
    RecordFapiao,
    RequestFapiao,
    Resolve,
)
from core.settings import Settings
from db.tables import Fapiao, table
from service.calls import reading
from service.cases import Cases
from service.errors import AlreadyExists, Ended, NotFound, Refused

FAPIAO = table(Fapiao)


class Fapiaos:
    def __init__(self, settings: Settings, cases: Cases) -> None:
        self._settings = settings
        self._cases = cases

    # ------------------------------------------------------------------ the record

    async def record(self, data: RecordFapiao) -> RecordFapiao:
        """Keep one fapiao of a bill. AlreadyExists when its number is recorded; Refused when a
        red-letter one reverses a fapiao that is not the same bill's blue one."""
        await asyncio.to_thread(self._insert, [data])
        return data

    async def of_bill(self, invoice_id: str) -> list[RecordFapiao]:
        return await asyncio.to_thread(self._of_bill, invoice_id)

    async def issued(self, invoice_id: str | None) -> list[str]:
        """The bill's blue fapiao not reversed in full: what a credit on it must reverse in red."""
        if not invoice_id:
            return []
        found = await self.of_bill(invoice_id)
        gone = {f.reverses for f in found if f.kind is FapiaoKind.RED and f.in_full}
        return [
            f.fapiao_number
            for f in found
            if f.kind is FapiaoKind.BLUE and f.fapiao_number not in gone
        ]

    def _of_bill(self, invoice_id: str) -> list[RecordFapiao]:
        query = (
            select(FAPIAO)
            .where(FAPIAO.c.invoice_id == invoice_id)
            .order_by(FAPIAO.c.issued_on, FAPIAO.c.number)
        )
        with reading(self._settings.database_url) as session:
            rows = session.execute(query).all()
        return [
            RecordFapiao(
                fapiao_number=row.number,
                invoice_id=row.invoice_id,
                kind=FapiaoKind(row.kind),
                issued_on=row.issued_on,
                buyer_name=row.buyer_name,
                buyer_tax_id=row.buyer_tax_id,
                reverses=row.reverses,
                in_full=row.in_full,
                case_id=row.case_id,
                recorded_by=row.recorded_by,
            )
            for row in rows
        ]

    def _insert(self, fapiao: list[RecordFapiao]) -> None:
        now = datetime.now(UTC)
        with reading(self._settings.database_url) as session:
            for data in fapiao:
                if data.reverses is None:
                    continue
                blue = session.execute(
                    select(FAPIAO).where(FAPIAO.c.number == data.reverses)
                ).first()
                if (
                    blue is None
                    or blue.kind != FapiaoKind.BLUE.value
                    or blue.invoice_id != data.invoice_id
                ):
                    raise Refused(
                        f"reverses: {data.reverses} is not a blue fapiao recorded for bill "
                        f"{data.invoice_id}. Nothing was recorded."
                    )
            try:
                for data in fapiao:
                    session.execute(
                        insert(FAPIAO).values(
                            number=data.fapiao_number,
                            invoice_id=data.invoice_id,
                            kind=data.kind.value,
                            issued_on=data.issued_on,
                            buyer_name=data.buyer_name,
                            buyer_tax_id=data.buyer_tax_id,
                            reverses=data.reverses,
                            in_full=data.in_full,
                            case_id=data.case_id,
                            recorded_by=data.recorded_by,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                session.commit()
            except IntegrityError:
                session.rollback()
                numbers = ", ".join(f.fapiao_number for f in fapiao)
                raise AlreadyExists(
                    f"fapiao_number: {numbers} is already recorded. Nothing was recorded."
                ) from None

    def _forget(self, numbers: list[str], case_id: str) -> None:
        with reading(self._settings.database_url) as session:
            session.execute(
                delete(FAPIAO).where(FAPIAO.c.number.in_(numbers), FAPIAO.c.case_id == case_id)
            )
            session.commit()

    # ------------------------------------------------------------------ on a case

    async def invoice_of(self, case_id: str) -> str | None:
        """The bill a case is about, as the case says (its row may not be written yet)."""
        return (await self._cases.show(case_id)).details.invoice_id

    async def with_fapiao(self, case_id: str, action: Resolve) -> Resolve:
        """A credit's resolution with the bill's issued fapiao, which it must reverse first."""
        if not action.credit_amount:
            return action
        issued = await self.issued(await self.invoice_of(case_id))
        return action.model_copy(update={"blue_fapiao": issued})

    async def request(self, case_id: str, data: RequestFapiao) -> CaseView:
        """An agent asks finance for a fapiao; a reissue or red-letter one reverses the bill's
        issued fapiao."""
        if data.kind.reverses:
            issued = await self.issued(await self.invoice_of(case_id))
            data = data.model_copy(update={"blue_numbers": issued})
        return await self._cases.act(case_id, data)

    async def buyer_must_confirm(self, case_id: str, data: BuyerMustConfirm) -> CaseView:
        return await self._cases.act(case_id, data)

    async def record_on_case(
        self, case_id: str, data: FapiaoRecorded, issued_on: date | None = None
    ) -> CaseView:
        """Finance records the fapiao of the case's task: kept per bill first, then the case
        goes on (a refusal takes the record back: nothing changes)."""
        view = await self._cases.show(case_id)
        task = view.fapiao_task
        if task is None:
            raise Refused(f"case {case_id} has no fapiao task open")
        invoice = task.invoice_id or view.details.invoice_id
        if not invoice:
            raise Refused(f"case {case_id} names no bill: its fapiao cannot be recorded")
        day = issued_on or datetime.now(UTC).date()
        buyer = task.buyer
        first = task.blue_numbers[0] if task.blue_numbers else None
        known = await self.of_bill(invoice)
        on_blue = next((f for f in known if f.fapiao_number == first), None)
        name = (
            buyer.name if buyer else (on_blue.buyer_name if on_blue else view.details.customer.name)
        )
        tax_id = buyer.tax_id if buyer else (on_blue.buyer_tax_id if on_blue else "")
        common = {
            "invoice_id": invoice,
            "issued_on": day,
            "case_id": case_id,
            "recorded_by": data.by,
        }
        rows: list[RecordFapiao] = []
        try:
            if task.kind is FapiaoTaskKind.RED_LETTER:
                rows.append(
                    RecordFapiao(
                        fapiao_number=data.fapiao_number,
                        kind=FapiaoKind.RED,
                        reverses=first,
                        in_full=not task.for_credit,
                        buyer_name=on_blue.buyer_name if on_blue else name,
                        buyer_tax_id=on_blue.buyer_tax_id if on_blue else tax_id,
                        **common,
                    )
                )
            else:
                if task.kind is FapiaoTaskKind.REISSUE and data.red_fapiao_number and first:
                    rows.append(
                        RecordFapiao(
                            fapiao_number=data.red_fapiao_number,
                            kind=FapiaoKind.RED,
                            reverses=first,
                            in_full=True,
                            buyer_name=on_blue.buyer_name if on_blue else name,
                            buyer_tax_id=on_blue.buyer_tax_id if on_blue else tax_id,
                            **common,
                        )
                    )
                rows.append(
                    RecordFapiao(
                        fapiao_number=data.fapiao_number,
                        kind=FapiaoKind.BLUE,
                        buyer_name=name,
                        buyer_tax_id=tax_id,
                        **common,
                    )
                )
        except ValueError as err:
            raise Refused(f"{err}. Nothing was recorded.") from None
        # kept already by this case (the same call again, after a timeout): not twice
        ours = {f.fapiao_number for f in known if f.case_id == case_id}
        rows = [r for r in rows if r.fapiao_number not in ours]
        await asyncio.to_thread(self._insert, rows)
        try:
            return await self._cases.act(case_id, data)
        except (Refused, NotFound, Ended):  # the case said no: nothing changes
            await asyncio.to_thread(self._forget, [r.fapiao_number for r in rows], case_id)
            raise

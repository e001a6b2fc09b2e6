"""Customer email coming in: one function for every way it arrives (SendGrid Inbound Parse, the
CLI's `inbound FILE.eml`, the drop folder), which finds the email's thread and acts on it once.

The thread is found by its signed token (core/threads.py) in the recipient, else in
``In-Reply-To``/``References``. In a case: a working case records the reply (``customer_reply``:
a case waiting on the customer runs its clocks again, the owner is told); a resolved case in its
reopen window is confirmed by a reply beginning with a confirmation word (a setting) and reopened
by any other, the reply its reason; a reply after the case ended opens a new case, linked by a note.
A reply to a duplicate merged into another case acts on that case (the cases table says which).
A satisfaction rating (core/ratings.py) to a resolved or ended case is kept as the case's: a reply
that is a rating alone ("5分，非常满意，谢谢！") does nothing else (no case, no reopening; with a
confirmation word it confirms too); one that says more acts as any reply, its rating kept too.
A reply acts only when it comes from the thread's customer, their address exactly (a colleague's
or a stranger's is noted on a case, and holds no invoice's suspension), and SendGrid's SPF and
DKIM verdicts do not say its sender was forged (core/verdicts.py: noted on a case, never acts);
auto-replies and our own mail coming back are recorded and never act. No thread: a known customer's
email opens a case; an unknown sender's is recorded for a person.

A message is read in a worker thread, READERS at a time, within intake.mail's bounds and its
READ_SECONDS: the event loop answers other requests meanwhile, and a message not read by then is
recorded as unreadable, like one that is not an email. The database is read in threads too. The
usual reply, its customer's to a working case, is one round trip to Temporal (no query first).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client

from core.ids import CASE, COLLECTIONS, VIANET_INVOICE, request_case_id
from core.models import (
    AddNote,
    CaseForm,
    CaseStatus,
    CaseView,
    Category,
    CollectionsReply,
    Confirm,
    CustomerReply,
    Locale,
    Reopen,
)
from core.models.case import FAPIAO_WAITS, WORKING_STATUSES
from core.ratings import Rating, read_rating
from core.settings import Settings
from core.threads import tokens_in
from core.verdicts import Verdicts
from db.tables import Case, EmailThread, InboundMail, table
from intake.mail import READ_SECONDS, MailError, parse_mail
from intake.mail import InboundMail as Mail
from service.attachments import Attachments, Direction
from service.calls import reading, signal_if_running
from service.cases import Cases
from service.collections import Collections
from service.errors import AlreadyExists, Ended, NotFound, Refused
from service.ratings import Channel, Ratings

MAX_BYTES = 30 * 1024 * 1024  # SendGrid Inbound Parse's limit on a whole message
READERS = 2  # messages read at once (the product runs on a few cores)
TEXT_CHARS = 8_000  # of a reply, kept in the case's timeline
MERGE_HOPS = 5  # a duplicate merged into a case merged in turn: followed this far
ACTOR = "customer (email)"
OTHER_SENDER = "another sender (email)"
UNVERIFIED_SENDER = "unverified sender (email)"
# the first keyword found decides the category of a case opened by email
KEYWORDS: tuple[tuple[Category, tuple[str, ...]], ...] = (
    (Category.FRAUD_CONCERN, ("盗刷", "欺诈", "fraud")),
    (Category.REFUND_REQUEST, ("退款", "refund")),
    (Category.FAPIAO, ("开票", "抬头", "税号", "数电票", "重开发票", "fapiao")),
    (Category.CREDIT_NOTE, ("红字", "贷项", "credit note")),
    (Category.UNEXPECTED_CHARGE, ("扣费", "多扣", "重复扣", "unexpected charge")),
    (Category.INVOICE_DISPUTE, ("发票", "账单有误", "invoice")),
    (Category.PAYMENT, ("付款", "支付", "payment")),
    (Category.SUBSCRIPTION_CHANGE, ("订阅", "subscription")),
)
_NEGATION = re.compile(r"^(?:不|没|沒|未|无|無|not\b|no\b|don'?t\b)", re.IGNORECASE)
_LEADING = re.compile(r"^[\s\W_]+")
INBOUND = table(InboundMail)
log = logging.getLogger("service.inbound")


class Outcome(StrEnum):
    REPLIED = "replied"  # customer_reply on a working case
    CONFIRMED = "confirmed"
    REOPENED = "reopened"
    NOTED = "noted"  # a note on a case that takes no reply now; a collections reply to triage
    OTHER_SENDER = "other-sender"  # not the thread's customer: noted on a case, acts on nothing
    UNVERIFIED = "unverified"  # SPF or DKIM failed for its sender: noted on a case, acts on nothing
    NEW_CASE = "new-case"  # no thread: a known customer's email opened a case
    FOLLOW_UP = "follow-up"  # the thread had ended: a new case, linked to the old one
    RATED = "rated"  # a rating alone of a resolved or ended case: kept, and acts on nothing else
    AUTO_REPLY = "auto-reply"  # recorded, never acts
    LOOP = "loop"  # our own mail, or a message seen before: recorded, never acts
    UNMATCHED = "unmatched"  # no thread and an unknown sender: recorded for a person
    UNREADABLE = "unreadable"  # not an email: recorded, never acts
    REFUSED = "refused"  # its workflow refused it or has gone: recorded for a person


# listed for a person (service/inbox.py): never on a workflow, or not on a case's timeline
WAITS = (Outcome.UNMATCHED, Outcome.UNREADABLE, Outcome.REFUSED)
OFF_CASE = (Outcome.OTHER_SENDER, Outcome.UNVERIFIED)


@dataclass(frozen=True)
class Claim:
    """One inbound message this call acts on: its digest, and when it first came."""

    digest: str
    first_received: datetime

    @property
    def update_id(self) -> str:
        return f"inbound-{self.digest[:40]}"


@dataclass(frozen=True)
class Received:
    outcome: Outcome
    workflow_id: str | None = None
    case_id: str | None = None
    duplicate: bool = False  # the same message came before: it acted then, not again


def _printable(value: str, keep: str = "") -> str:
    """``value`` without control and format characters (PostgreSQL refuses NUL in text), but
    those in ``keep``."""
    return "".join(
        c for c in value if c in keep or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
    )


def _text(value: str) -> str:
    """A reply as a case's timeline holds it: no control characters, bounded."""
    return _printable(value, "\n\t").strip()[:TEXT_CHARS] or "(empty)"


def confirms(reply: str, words: list[str]) -> bool:
    """Whether the reply's first line begins with a confirmation word (and no negation)."""
    first = _LEADING.sub("", reply.strip().split("\n", 1)[0]).lower()
    first = re.sub(r"^(?:我|i)\s*", "", first)
    if _NEGATION.match(first):
        return False
    return any(first.startswith(word.lower()) for word in words if word)


def category_of(text: str) -> Category:
    lowered = text.lower()
    for category, keywords in KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return category
    return Category.BILLING_QUESTION  # the "other": a question an agent sorts


def same_address(sender: str, customer: str) -> bool:
    """Whether two addresses are one mailbox: exactly, but for case, Unicode normalization and
    how the domain is written (an internationalized domain as Unicode or as xn--). Never by
    domain: on qq.com or 163.com that would be everyone."""
    return _mailbox(sender) == _mailbox(customer)


def waits_for_person(received: Received) -> bool:
    """Whether the message is listed for a person (service/inbox.py): on no case's timeline."""
    workflow_id = received.workflow_id or ""
    return (
        received.outcome in WAITS
        or (received.outcome in OFF_CASE and not workflow_id.startswith(CASE))
        or (received.outcome is Outcome.NOTED and workflow_id.startswith(VIANET_INVOICE))
    )


def _mailbox(address: str) -> str:
    local, _, domain = unicodedata.normalize("NFC", address.strip()).rpartition("@")
    with contextlib.suppress(UnicodeError):  # not a domain IDNA writes: compared as it is
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}".lower()


class Inbound:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        cases: Cases,
        collections: Collections,
        ratings: Ratings,
        attachments: Attachments,
    ) -> None:
        self._client = client
        self._settings = settings
        self._cases = cases
        self._collections = collections
        self._ratings = ratings
        self._threads = settings.email_threads()
        self._attachments = attachments
        self._readers = asyncio.Semaphore(READERS)
        # the inbound record's writes, one at a time: SQLite takes one writer, and a writer that
        # finds it taken sleeps up to 100 ms between tries (docs/performance.md, scenario 6)
        self._writing = asyncio.Lock()

    async def receive(
        self, raw: bytes, envelope_to: tuple[str, ...] = (), verdicts: Verdicts | None = None
    ) -> Received:
        """Act on one inbound email, once; `verdicts`: SendGrid's on its sender, recorded with
        it. Refused when it is larger than SendGrid's limit;
        Unavailable when the database or Temporal cannot be reached (nothing recorded as done:
        the same call may be made again). SettingsError without EMAIL_THREAD_SECRET."""
        self._settings.inbound_threads()  # never a thread that anyone could name
        if len(raw) > MAX_BYTES:
            raise Refused(f"email: larger than {MAX_BYTES // (1024 * 1024)} MB")
        digest = await asyncio.to_thread(lambda: hashlib.sha256(raw).hexdigest())
        mail = await self._read(raw, envelope_to)
        verdicts = verdicts or Verdicts()
        async with self._writing:
            claimed = await asyncio.to_thread(self._claim, digest, mail, len(raw), verdicts)
        if isinstance(claimed, Received):
            return claimed
        try:
            received = await self._act(Claim(digest, claimed), mail, verdicts)
        except (Refused, NotFound, Ended):
            # the workflow would not take it (its state moved on, or it is gone): the message is
            # recorded for a person, and never posted back to us for ever
            received = Received(Outcome.REFUSED)
        files: list[dict[str, str | int]] = []
        if mail is not None and mail.attachments and waits_for_person(received):
            files = await self._attachments.stored(mail.attachments)  # for the person
        async with self._writing:
            await asyncio.to_thread(self._finish, digest, received, files)
        return received

    async def _read(self, raw: bytes, envelope_to: tuple[str, ...]) -> Mail | None:
        """The message, read in a worker thread; None when it is no readable email, or is not
        read within READ_SECONDS (its reading stops at that deadline too)."""
        async with self._readers:
            reading = asyncio.to_thread(parse_mail, raw, envelope_to, seconds=READ_SECONDS)
            try:
                return await asyncio.wait_for(reading, READ_SECONDS)
            except MailError:
                return None
            except TimeoutError:
                log.warning("an email of %d bytes not read within %.0f s", len(raw), READ_SECONDS)
                return None

    async def _list_attachments(self, case_id: str, mail: Mail, claim: Claim) -> None:
        """Keep the attachments in the store as the case's, and list them in its timeline."""
        if not mail.attachments:
            return
        stored = await self._attachments.keep(
            case_id, Direction.INBOUND, claim.digest, mail.attachments
        )
        lines = "\n".join(s.line() for s in stored)
        note = AddNote(text=f"attachments of the customer's email:\n{lines}", by=ACTOR)
        await self._cases.act(case_id, note, update_id=f"{claim.update_id}-attachments")

    # ------------------------------------------------------------------ the record

    def _claim(
        self, digest: str, mail: Mail | None, size: int, verdicts: Verdicts
    ) -> Received | datetime:
        """The earlier outcome of the same message, or when it was first received once it is
        ours to act on (its sender, subject and text recorded for a person)."""
        message_id = mail.message_id if mail else ""
        now = datetime.now(UTC)
        with reading(self._settings.database_url) as session:
            row = session.execute(
                select(INBOUND.c.outcome, INBOUND.c.workflow_id, INBOUND.c.created_at).where(
                    INBOUND.c.digest == digest
                )
            ).first()
            if row is not None:
                # an earlier post that acted is answered from the record; one that stopped half-way
                # acts again (its updates and its case id are the same: each happens once)
                if row.outcome:
                    return Received(Outcome(row.outcome), row.workflow_id, duplicate=True)
                return row.created_at  # type: ignore[no-any-return]
            try:
                session.execute(
                    insert(INBOUND),
                    {
                        "digest": digest,
                        "message_id": message_id[:255],
                        "spf": verdicts.spf,
                        "dkim": verdicts.dkim,
                        "sender": _printable(mail.from_address)[:320] if mail else "",
                        "sender_name": _printable(mail.from_name)[:200] if mail else "",
                        "subject": _printable(mail.subject)[:998] if mail else "",
                        "text": _text(mail.reply or mail.text) if mail else "",
                        "size": size,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                session.commit()
            except IntegrityError:
                session.rollback()  # the same message posted twice at once: the other acts
                return Received(Outcome.LOOP, duplicate=True)
        return now

    def _finish(self, digest: str, received: Received, files: list[dict[str, str | int]]) -> None:
        with reading(self._settings.database_url) as session:
            session.execute(
                update(INBOUND)
                .where(INBOUND.c.digest == digest)
                .values(
                    outcome=received.outcome.value,
                    workflow_id=received.workflow_id,
                    files=files,
                    updated_at=datetime.now(UTC),
                )
            )
            session.commit()

    def _seen_before(self, digest: str, message_id: str) -> bool:
        if not message_id:
            return False
        with reading(self._settings.database_url) as session:
            found = session.execute(
                select(INBOUND.c.id)
                .where(INBOUND.c.message_id == message_id[:255], INBOUND.c.digest != digest)
                .limit(1)
            ).first()
        return found is not None

    def _thread_of(self, mail: Mail) -> str | None:
        """The workflow of the first token that is ours, signed under one of our secrets."""
        candidates = tokens_in(*mail.recipients, mail.in_reply_to, *mail.references)
        if not candidates:
            return None
        threads = table(EmailThread)
        with reading(self._settings.database_url) as session:
            rows = session.execute(
                select(threads.c.token, threads.c.workflow_id).where(
                    threads.c.token.in_(candidates)
                )
            ).all()
        found = {row.token: row.workflow_id for row in rows}
        for token in candidates:
            workflow_id = found.get(token)
            if workflow_id and self._threads.verified(token, workflow_id):
                return str(workflow_id)
        return None

    def _case_row(self, case_id: str) -> Case | None:
        """The case's row; a merged duplicate's is its target's (followed MERGE_HOPS at most)."""
        with reading(self._settings.database_url) as session:
            row = session.get(Case, case_id)
            for _ in range(MERGE_HOPS):
                if row is None or not row.merged_into:
                    break
                row = session.get(Case, row.merged_into)
            return row

    def _known_customer(self, address: str) -> Case | None:
        with reading(self._settings.database_url) as session:
            return session.scalars(
                select(Case)
                .where(Case.customer_email == address)
                .order_by(Case.opened_at.desc())
                .limit(1)
            ).first()

    # ------------------------------------------------------------------ acting

    async def _act(self, claim: Claim, mail: Mail | None, verdicts: Verdicts) -> Received:
        if mail is None:
            return Received(Outcome.UNREADABLE)
        ours = str(self._settings.email_from).lower()
        if mail.from_address == ours or await asyncio.to_thread(
            self._seen_before, claim.digest, mail.message_id
        ):
            return Received(Outcome.LOOP)
        workflow_id = await asyncio.to_thread(self._thread_of, mail)
        if mail.auto_reply:
            return Received(Outcome.AUTO_REPLY, workflow_id)
        unverified = verdicts.problem(mail.from_address)
        if workflow_id is not None and workflow_id.startswith(CASE):
            return await self._to_case(workflow_id.removeprefix(CASE), mail, claim, unverified)
        if unverified is not None:  # its From may be forged: recorded, and acts on nothing
            return Received(Outcome.UNVERIFIED, workflow_id)
        if workflow_id is not None and workflow_id.startswith(COLLECTIONS):
            return await self._to_collections(workflow_id, mail)
        if workflow_id is not None:  # a 21Vianet invoice's thread (to our finance team)
            return Received(Outcome.NOTED, workflow_id)
        known = await asyncio.to_thread(self._known_customer, mail.from_address)
        if known is None:
            return Received(Outcome.UNMATCHED)
        return await self._open_case(known, mail, claim)

    async def _to_collections(self, workflow_id: str, mail: Mail) -> Received:
        """A reply to a notice holds the invoice's suspension for triage: only its customer's."""
        invoice = await self._collections.show(workflow_id.removeprefix(COLLECTIONS))
        if not same_address(mail.from_address, str(invoice.customer.email)):
            return Received(Outcome.OTHER_SENDER, workflow_id)
        reply = CollectionsReply(text=_text(mail.reply), by=f"{ACTOR} {mail.from_address}")
        await signal_if_running(self._client, workflow_id, "customer_replied", reply)
        return Received(Outcome.NOTED, workflow_id)

    async def _to_case(
        self, case_id: str, mail: Mail, claim: Claim, unverified: str | None
    ) -> Received:
        row = await asyncio.to_thread(self._case_row, case_id)
        case_id = row.case_id if row is not None else case_id  # a duplicate's: its target's
        if unverified is None:
            replied = await self._reply_to_working_case(row, mail, claim)
            if replied is not None:
                return replied
        case = await self._cases.show(case_id)
        update_id = claim.update_id
        text = _text(mail.reply)
        if unverified is not None:
            why = f"email failing its sender checks ({unverified}), from {mail.from_address}"
            note = AddNote(text=f"{why}: {text}", by=UNVERIFIED_SENDER)
            return await self._noted(case, note, update_id, Outcome.UNVERIFIED)
        if not same_address(mail.from_address, str(case.details.customer.email)):
            note = AddNote(
                text=f"email from another sender ({mail.from_address}): {text}", by=OTHER_SENDER
            )
            return await self._noted(case, note, update_id, Outcome.OTHER_SENDER)
        rating = await self._rated(case, mail, claim)
        if not case.status.is_final:  # listed first: a confirmation closes the case
            await self._list_attachments(case_id, mail, claim)
        if case.status.is_final:
            if rating is not None and rating.alone:
                return Received(Outcome.RATED, case.workflow_id, case_id)
            return await self._follow_up(case, mail, claim)
        if case.status is CaseStatus.RESOLVED:
            if confirms(text, self._settings.inbound_confirm_words):
                await self._cases.act(case_id, Confirm(by=ACTOR), update_id=update_id)
                return Received(Outcome.CONFIRMED, case.workflow_id, case_id)
            if rating is not None and rating.alone:  # satisfied or not, it objects to nothing
                return Received(Outcome.RATED, case.workflow_id, case_id)
            await self._cases.act(case_id, Reopen(reason=text, by=ACTOR), update_id=update_id)
            return Received(Outcome.REOPENED, case.workflow_id, case_id)
        if case.status in WORKING_STATUSES | FAPIAO_WAITS:
            await self._cases.act(case_id, CustomerReply(text=text, by=ACTOR), update_id=update_id)
            return Received(Outcome.REPLIED, case.workflow_id, case_id)
        # resolving (the resolution on its way): the reply waits for the agent as a note
        return await self._noted(case, AddNote(text=f"customer email: {text}", by=ACTOR), update_id)

    async def _reply_to_working_case(
        self, row: Case | None, mail: Mail, claim: Claim
    ) -> Received | None:
        """The usual reply in one round trip: its customer writing to a working case, as the
        cases table has it (the workflow saves a person's action there before it answers it).
        None where the table says otherwise, or where the workflow refuses the reply (or has
        ended) for a status it has moved to since: then the workflow's own view decides, under
        the same update ids (a refused update leaves none behind)."""
        if (
            row is None
            or CaseStatus(row.status) not in WORKING_STATUSES
            or not same_address(mail.from_address, row.customer_email)
        ):
            return None
        case_id = row.case_id
        reply = CustomerReply(text=_text(mail.reply), by=ACTOR)
        try:
            await self._list_attachments(case_id, mail, claim)
            view = await self._cases.act(case_id, reply, update_id=claim.update_id)
        except (Refused, Ended, NotFound):
            return None
        return Received(Outcome.REPLIED, view.workflow_id, case_id)

    async def _rated(self, case: CaseView, mail: Mail, claim: Claim) -> Rating | None:
        """The reply's rating of a resolved or ended case, kept as the case's (once per message,
        dated when it first came); None for any other case or reply."""
        if not (case.status.is_final or case.status is CaseStatus.RESOLVED):
            return None
        names = (mail.from_name, case.details.customer.name)
        rating = read_rating(mail.reply, names, self._settings.inbound_confirm_words)
        if rating is None:
            return None
        try:
            await self._ratings.record(
                case.case_id, rating.score, Channel.EMAIL, claim.digest, claim.first_received
            )
        except NotFound:  # its row is not written yet: the reply still acts as a reply
            log.warning("case %s: no row to keep its rating in", case.case_id)
            return None
        return rating

    async def _noted(
        self, case: CaseView, note: AddNote, update_id: str, outcome: Outcome = Outcome.NOTED
    ) -> Received:
        await self._cases.act(case.case_id, note, update_id=update_id)
        return Received(outcome, case.workflow_id, case.case_id)

    async def _follow_up(self, case: CaseView, mail: Mail, claim: Claim) -> Received:
        details = case.details
        form = CaseForm(
            tenant_id=details.customer.tenant_id,
            name=details.customer.name,
            email=details.customer.email,
            locale=details.customer.locale,
            category=details.category,
            invoice_id=details.invoice_id,
            subscription_id=details.subscription_id,
            description=_text(mail.reply),
            opened_by=ACTOR,
        )
        opened = await self._open(form, claim)
        note = AddNote(text=f"follow-up of case {case.case_id}, which had ended", by=ACTOR)
        await self._cases.act(opened, note, update_id=claim.update_id)
        await self._list_attachments(opened, mail, claim)
        return Received(Outcome.FOLLOW_UP, f"{CASE}{opened}", opened)

    async def _open_case(self, known: Case, mail: Mail, claim: Claim) -> Received:
        text = _text(mail.reply)
        form = CaseForm(
            tenant_id=known.tenant_id,
            name=known.customer_name,
            email=mail.from_address,
            locale=Locale(known.locale),
            category=category_of(f"{mail.subject}\n{text}"),
            description=text,
            opened_by=ACTOR,
        )
        opened = await self._open(form, claim)
        await self._list_attachments(opened, mail, claim)
        return Received(Outcome.NEW_CASE, f"{CASE}{opened}", opened)

    async def _open(self, form: CaseForm, claim: Claim) -> str:
        """The new case's id: the same for the same message, so a retry opens no second case."""
        case_id = request_case_id(claim.first_received, "email", claim.digest)
        with contextlib.suppress(AlreadyExists):  # an earlier attempt at this message opened it
            await self._cases.open(self._cases.prepare(form, case_id=case_id))
        return case_id

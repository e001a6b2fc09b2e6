"""`mail`: customers' emails taken in without SendGrid, one file or a watched drop folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cli.common import call, console, fail, plain, settings_or_exit, sub_app
from core.settings import SettingsError
from intake import mailbox
from intake.mailbox import TryLater
from intake.mailboxes import mailbox_for
from service import Service
from service.errors import ServiceError, Unavailable

mail_app = sub_app("Customers' emails in: one .eml file, or a mailbox watched.")


@mail_app.command()
def receive(
    file: Annotated[Path, typer.Argument(help="the email as a .eml file (the whole message)")],
) -> None:
    """Take a customer's email as SendGrid Inbound Parse would: its thread's case moves (a reply,
    a confirmation, a reopening), or a new case opens. The same file again acts no more."""
    try:
        raw = file.read_bytes()
    except OSError as err:
        fail(f"{file}: {err.strerror or err}")
    received = call(lambda service: service.inbound.receive(raw), settings_or_exit(inbound=True))
    where = f" ({received.workflow_id})" if received.workflow_id else ""
    again = " — received before: nothing more done" if received.duplicate else ""
    console.print(plain(f"{received.outcome.value}{where}{again}"))


@mail_app.command()
def watch(
    folder: Annotated[
        Path | None,
        typer.Argument(help="a drop folder to read, whatever INBOUND_BACKEND says"),
    ] = None,
) -> None:
    """Receive every email that comes into the mailbox INBOUND_BACKEND names, as `mail receive`
    does, until stopped (`make run` runs this): the drop folder (INBOUND_DIR; each file moves to
    done/, or to failed/ with the reason beside it) or the shared mailbox over IMAP (each message
    moves to IMAP_PROCESSED_FOLDER, or to IMAP_FAILED_FOLDER with a note giving the reason)."""
    settings = settings_or_exit(inbound=True)
    try:
        source = mailbox_for(settings, folder)
    except SettingsError as err:
        fail(f"settings: {err}", code=2)

    async def run() -> None:
        service = await Service.connect(settings)

        async def receive(raw: bytes) -> str:
            try:
                received = await service.inbound.receive(raw)
            except Unavailable as err:
                raise TryLater(str(err)) from None
            return received.outcome.value + (
                f" ({received.workflow_id})" if received.workflow_id else ""
            )

        def report(name: str, outcome: str) -> None:
            console.print(plain(f"inbound {name}: {outcome}"))

        console.print(plain(f"watching {source.described}"))
        try:
            await mailbox.watch(source.mailbox, receive, report, source.interval)
        finally:
            await source.mailbox.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except ServiceError as err:
        fail(str(err))

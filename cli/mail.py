"""`mail`: customers' emails taken in without SendGrid, one file or a watched drop folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cli.common import call, console, fail, plain, settings_or_exit, sub_app
from intake import mailbox
from intake.drop_folder import FolderMailbox
from intake.mailbox import TryLater
from service import Service
from service.errors import ServiceError, Unavailable

mail_app = sub_app("Customers' emails in: one .eml file, or a drop folder watched.")


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
        Path | None, typer.Argument(help="the drop folder (default INBOUND_DIR, var/inbound)")
    ] = None,
) -> None:
    """Receive every .eml file put into the drop folder, as `mail receive` does, until stopped
    (`make run` runs this). Each file moves to done/, or to failed/ with the reason beside it."""
    settings = settings_or_exit(inbound=True)
    where = folder or settings.inbound_dir

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

        console.print(plain(f"watching {where} for .eml files"))
        await mailbox.watch(FolderMailbox(where), receive, report)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except ServiceError as err:
        fail(str(err))

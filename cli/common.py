"""What every command shares: input checked into a payload, one service call, errors as exit codes.

Input is checked before anything is sent (exit 2, naming the field); a refused action changes
nothing and says why (exit 1). Customer text is printed as plain text.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.codec import CodecError
from core.models import CaseEvent
from core.settings import Settings, SettingsError, load_settings
from service import Service
from service.errors import ServiceError

T = TypeVar("T")
console = Console(highlight=False)
# C0 and C1 controls but newline and tab, and the bidi controls: never sent to the terminal
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _default_actor() -> str:
    try:
        return os.environ.get("AGENT_EMAIL") or getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        return "operator"


DEFAULT_ACTOR = _default_actor()
By = Annotated[str, typer.Option("--by", help="Who acts (default: $AGENT_EMAIL or your login).")]
ByCustomer = Annotated[str, typer.Option("--by", help="Who acts for the customer.")]


def sub_app(help: str) -> typer.Typer:
    """One noun's commands."""
    return typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False)


def plain(value: object, style: str = "") -> Text:
    """Text as given, never read as markup; control characters shown as U+FFFD."""
    return Text(_UNPRINTABLE.sub("\ufffd", str(value)), style=style)


def build(model: type[T], **fields: Any) -> T:
    """Validate CLI input into a payload; on error name the field and change nothing."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        fail(f"invalid input: {problems}", code=2)


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(Text.assemble(("error:", "red"), " ", plain(message)))
    raise typer.Exit(code)


def settings_or_exit(*, inbound: bool = False) -> Settings:
    """`inbound`: for a command that takes customers' email (it needs EMAIL_THREAD_SECRET)."""
    try:
        settings = load_settings()
        settings.collections_policy(), settings.case_policy()
        if inbound:
            settings.inbound_threads()
    except SettingsError as err:
        fail(f"settings: {err}", code=2)
    return settings


def call(action: Callable[[Service], Awaitable[T]], settings: Settings | None = None) -> T:
    """Connect, do one thing through the service, and turn its errors into exit codes."""
    settings = settings or settings_or_exit()

    async def run() -> T:
        return await action(await Service.connect(settings))

    try:
        return asyncio.run(run())
    except ServiceError as err:
        fail(str(err))
    except SettingsError as err:  # e.g. no payload encryption key
        fail(f"settings: {err}", code=2)
    except CodecError as err:  # a payload sealed with a key this machine does not hold
        fail(f"encryption: {err}")


def utc_now() -> datetime:
    return datetime.now(UTC)


def attention_row(head: Table, needs_attention: str | None) -> None:
    if needs_attention:
        head.add_row("Attention", plain(needs_attention, "bold red"))


def timeline_table(events: list[CaseEvent], count: int = 0) -> Table:
    """The events a view has: the last ones (the database has them all, long texts whole)."""
    shown = f"last {len(events)} of {count} events" if count > len(events) else "events"
    table = Table("#", "When (UTC)", "What", "Who", "Details", title=f"Timeline: {shown}")
    for event in events:
        extra = " ".join(f"{k}={v}" for k, v in event.data.items())
        table.add_row(
            str(event.seq),
            f"{event.at:%m-%d %H:%M}",
            event.kind.value,
            plain(event.actor),
            plain(" ".join(filter(None, [event.text, extra]))),
        )
    return table

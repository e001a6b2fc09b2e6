"""`python -m demo`: seed the demo partner into the running stack (`make demo` runs it once the
worker is up) and print who to sign in as and what will happen in the next minutes."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from core.settings import SettingsError, load_settings
from demo.seed import (
    APPROVE_NOW,
    ASKS_SOON,
    PASSWORD,
    PAY_TO_REACTIVATE,
    STAFF,
    DemoError,
    Seeded,
    seed,
)
from service import Service
from service.errors import ServiceError


def tour(seeded: Seeded, workspace: str) -> str:
    def counted(counter: Counter[str]) -> str:
        return f"{counter.total()}: " + ", ".join(f"{n} {k}" for k, n in sorted(counter.items()))

    people = "\n".join(
        f"  {email:<34} {name} ({', '.join(role.value for role in roles)})"
        for email, (name, roles, _) in STAFF.items()
    )
    return f"""
The demo partner (docs/demo.md walks it)
  customers    {seeded.customers}
  cases        {counted(seeded.cases)}
  invoices     {counted(seeded.invoices)}
  inbox        {seeded.inbox} emails from unknown senders; {seeded.macros} canned replies
  policy       config/collections_policy.demo.toml: a policy day lasts a minute

Sign in at {workspace} with the password {PASSWORD} as
{people}

What to do, and what happens by itself
  now          the manager approves the suspension of {APPROVE_NOW} (催收 → the invoice)
  now          finance records the payment of {PAY_TO_REACTIVATE}: its subscription is reactivated
  in 3 min     {ASKS_SOON} asks the manager to approve its suspension
  in 3-10 min  the fresh invoices get their reminder, then their final notice
  every email  is a file in the outbox above, in the customer's language
"""


async def main() -> int:
    try:
        settings = load_settings()
        service = await Service.connect(settings)
        seeded = await seed(service)
    except (DemoError, SettingsError, ServiceError) as exc:
        print(f"error: the demo was not seeded: {exc}", file=sys.stderr)
        return 1
    print(tour(seeded, f"{settings.workspace_url()}/"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

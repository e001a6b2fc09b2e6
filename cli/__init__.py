"""The operators' CLI, one sub-app per noun: parsing and printing only, over the service layer.

Every command has --help. Input is checked before anything is sent (exit 2, naming the field); a
refused action changes nothing and says why (exit 1). Customer text is printed as plain text.
"""

from __future__ import annotations

import typer

from cli.accounts import account_app
from cli.cases import case_app
from cli.fapiao import fapiao_app
from cli.imports import import_app, statement
from cli.invoices import invoice_app
from cli.mail import mail_app
from cli.reports import report_app
from cli.users import users_app
from cli.vianet import vianet_app
from cli.workflows import workflow_app

app = typer.Typer(
    help="Billing support for a Partner Center operated by 21Vianet partner.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for name, noun in (
    ("case", case_app),
    ("invoice", invoice_app),
    ("account", account_app),
    ("vianet", vianet_app),
    ("fapiao", fapiao_app),
    ("mail", mail_app),
    ("import", import_app),
    ("report", report_app),
    ("workflow", workflow_app),
    ("user", users_app),
):
    app.add_typer(noun, name=name)
# the name finance knows it by (DESIGN.md): the same command as `import statement`
app.command("import-statement")(statement)


def main() -> None:
    app()

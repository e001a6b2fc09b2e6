"""A form's problems in the person's language: each names its field (the label, and the model's
field name the API and the CLI use) and says what is wrong with a message the page translates.
Pydantic's own (English) message is kept only for the logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from core.formatting import NotAnAmount, parse_amount
from core.ids import new_ulid
from web.actions import Field, Kind
from web.i18n import _

REQUIRED = _("is required")
NOT_VALID = _("is not valid")
NOT_AN_OWNER = _("is not an active agent or manager of the workspace: pick one from the list")
# the messages of the validators in core/models/shared.py, by how they begin
CHECKS = (
    ("must not be empty", REQUIRED),
    ("must be one line", _("must be one line")),
    ("must be at most", _("is too long")),
    ("must not contain", _("contains a character that is not allowed (a control character)")),
    ("must have at most two decimal places", _("has at most two decimal places (fen)")),
    ("must be greater than 0", _("must be greater than 0")),
    ("must be a finite amount", _("must be an amount, e.g. 4300.00")),
    # a resolution's amount and its outcome (core/models/case_actions.py Resolve)
    (
        "credit_amount: outcome",
        _("goes with the outcome: an amount for a credit or a refund, none else"),
    ),
)
BY_TYPE = {
    "missing": REQUIRED,
    "string_too_short": REQUIRED,
    "too_short": REQUIRED,
    "string_too_long": _("is too long"),
    "decimal_parsing": _("must be an amount, e.g. 4300.00"),
    "decimal_type": _("must be an amount, e.g. 4300.00"),
    "decimal_max_places": _("has at most two decimal places (fen)"),
    "greater_than_equal": _("must not be negative"),
    "less_than_equal": _("is too large"),
    "enum": _("must be one of the list"),
    "literal_error": _("must be one of the list"),
}
# a value of the wrong shape, by the field's kind
BY_KIND = {
    Kind.EMAIL: _("must be an email address, e.g. finance@customer.example.cn"),
    Kind.MONEY: _("must be an amount, e.g. 4300.00"),
    Kind.SELECT: _("must be one of the list"),
    Kind.PERSON: NOT_AN_OWNER,
}
# a value of the wrong shape, by the field's name (the patterns of core/models/shared.py)
BY_NAME = {
    "tenant_id": _("must be a tenant id (a GUID, e.g. 3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64)"),
    "subscription_id": _("must be a subscription id (a GUID)"),
    "invoice_id": _("may hold letters, digits, - and _ only (at most 64)"),
    "currency": _("must be three capital letters, e.g. CNY"),
    "fapiao_number": _("must be the 20 digits of a fully digitalised e-invoice (数电票) number"),
    "red_fapiao_number": _(
        "must be the 20 digits of a fully digitalised e-invoice (数电票) number"
    ),
    # merging and linking (web/actions/cases.py): the other case, picked from the list
    "into": _("must be a case id: pick the case from the list"),
    "other": _("must be a case id: pick the case from the list"),
}


@dataclass(frozen=True)
class Problem:
    field: str  # the model's field, as the API and the CLI name it
    label: str  # the form's label (a message id)
    message: str  # a message id


def problem(field: Field, message: str) -> Problem:
    return Problem(field.name, field.label, message)


def problems_of(err: ValidationError, fields: tuple[Field, ...]) -> list[Problem]:
    """Each error of `err`, once per field, named by the form's field."""
    known = {field.name: field for field in fields}
    found: dict[str, Problem] = {}
    for error in err.errors():
        name = str(error["loc"][0]) if error["loc"] else _named(error, known)
        field = known.get(name, Field(name or "input", name or _("input")))
        found.setdefault(name, problem(field, _message(error, field)))
    return list(found.values())


def _named(error: ErrorDetails, known: dict[str, Field]) -> str:
    """The field a model's own check names first ("credit_amount: outcome … needs an amount")."""
    detail = str(error.get("msg", "")).removeprefix("Value error, ")
    name = detail.split(":", 1)[0]
    return name if name in known else ""


def _message(error: ErrorDetails, field: Field) -> str:
    kind = error["type"]
    if kind in BY_TYPE:
        return BY_TYPE[kind]
    detail = str(error.get("msg", "")).removeprefix("Value error, ")
    for begins, message in CHECKS:
        if detail.startswith(begins):
            return message
    return BY_NAME.get(field.name) or BY_KIND.get(field.kind) or NOT_VALID


class BadFields(ValueError):
    """A form's fields that are wrong before its model sees them (an amount that is no amount)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def read_amounts(values: dict[str, Any], fields: tuple[Field, ...]) -> dict[str, Any]:
    """`values` with each money field's text read as people type amounts (`parse_amount`:
    "4,300.00", "¥4,300.00", "4300"); raises BadFields naming each one that is no amount."""
    read = dict(values)
    wrong: list[Problem] = []
    for field in fields:
        text = values.get(field.name)
        if field.kind is not Kind.MONEY or not isinstance(text, str) or not text:
            continue
        try:
            read[field.name] = parse_amount(text)
        except NotAnAmount:
            wrong.append(problem(field, BY_KIND[Kind.MONEY]))
    if wrong:
        raise BadFields(wrong)
    return read


def new_request_key() -> str:
    """A form's one-time key (a ULID): the same form sent twice is one action."""
    return new_ulid()


def sent_values(form: Any, fields: tuple[Field, ...]) -> dict[str, str]:
    """What the form gave for each field, trimmed (to show it again beside its problem)."""
    return {field.name: str(form.get(field.name, "")).strip() for field in fields}

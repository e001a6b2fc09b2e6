"""Canned replies (macros): a named text in one language with placeholders for the case's fields,
filled in by a plain substitution of `{name}` (never a template language run on people's text).
An unknown placeholder is refused when the macro is saved, naming it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import field_validator

from core.models.shared import Locale, LongText, Strict, free_text

# what a macro may name, each filled from the case and the agent who uses it
PLACEHOLDERS = ("case_id", "customer_name", "invoice_number", "amount", "agent_name")
# `{name}`: anything between braces with no brace or line break inside is meant as a placeholder
_PLACEHOLDER = re.compile(r"\{([^{}\n]*)\}")

MacroName = Annotated[str, free_text(max_chars=100, max_bytes=400, multiline=False)]


def placeholders(text: str) -> list[str]:
    """The placeholders `text` names, in order, each once."""
    return list(dict.fromkeys(match.group(1).strip() for match in _PLACEHOLDER.finditer(text)))


def unknown_placeholders(text: str) -> list[str]:
    return [name for name in placeholders(text) if name not in PLACEHOLDERS]


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each known placeholder replaced by its value (an unknown one left as written)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        return values[name] if name in PLACEHOLDERS and name in values else match.group(0)

    return _PLACEHOLDER.sub(value, text)


class MacroForm(Strict):
    """A macro as a manager saves it."""

    name: MacroName
    locale: Locale
    text: LongText

    @field_validator("text")
    @classmethod
    def _known_placeholders(cls, text: str) -> str:
        unknown = unknown_placeholders(text)
        if unknown:
            named = ", ".join(f"{{{name}}}" for name in unknown)
            known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
            raise ValueError(f"unknown placeholders {named} (known: {known})")
        return text

"""Figures the report's parts share."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Rate:
    part: int
    whole: int

    @property
    def percent(self) -> Decimal | None:
        """To one decimal place; None when there is nothing to divide by."""
        if not self.whole:
            return None
        return (Decimal(self.part * 100) / Decimal(self.whole)).quantize(Decimal("0.1"))

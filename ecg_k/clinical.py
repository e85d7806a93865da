"""Clinical thresholds of the product (DESIGN.md): inclusive boundaries, saved in every model card."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Thresholds(BaseModel):
    """K+ cut-offs in mmol/L: hypokalemia <= 3.5, hyperkalemia >= 5.5, critical < 2.5 or > 6.5."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hypokalemia: float = 3.5
    hyperkalemia: float = 5.5
    critical_low: float = 2.5
    critical_high: float = 6.5

"""ECG lead names: canonical order and resolution **by name**, never by position.

MIMIC-IV-ECG stores I, II, III, aVR, aVF, aVL, V1-V6 (aVF before aVL); PTB-XL, CinC 2021 and PTB use the
standard order, PTB in lower case. Every reader maps names through :func:`canonical_lead_name`.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MIMIC_LEAD_ORDER: tuple[str, ...] = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")

_BY_KEY = {name.upper(): name for name in STANDARD_LEADS}


class MissingLeadError(ValueError):
    """A requested lead is not in the record."""


def canonical_lead_name(name: str) -> str:
    """Map a lead name to its canonical spelling (case-insensitive); unknown names are returned stripped."""
    stripped = name.strip()
    return _BY_KEY.get(stripped.upper(), stripped)


def lead_key(name: str) -> str:
    """What two lead names must differ in to be distinct: compatibility-normalised (NFKC: full-width and
    Roman-numeral look-alikes become letters), without whitespace, case-folded after upper-casing (so the
    dotless ``ı``, which upper-cases to ``I``, is ``I``)."""
    return "".join(unicodedata.normalize("NFKC", name).split()).upper().casefold()


def repeated_leads(names: Sequence[str]) -> list[str]:
    """The names in ``names`` that another name repeats up to case, whitespace or Unicode look-alikes
    (:func:`lead_key`), e.g. ``["I", " i"]``; empty when all are distinct."""
    counts = Counter(lead_key(name) for name in names)
    return [name for name in names if counts[lead_key(name)] > 1]


def parse_leads(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``"I,II"``, ``"all"`` or a sequence into canonical lead names, validated and de-duplicated."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    if len(items) == 1 and items[0].strip().lower() in {"all", "12"}:
        return STANDARD_LEADS
    names = tuple(canonical_lead_name(item) for item in items if item.strip())
    unknown = [n for n in names if n not in STANDARD_LEADS]
    if not names or unknown:
        raise ValueError(f"unknown lead name(s) {unknown or spec!r}; choose from {', '.join(STANDARD_LEADS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"lead names repeat in {spec!r}")
    return names


def lead_indices(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions of ``wanted`` leads in ``available``, matched by canonical name."""
    index = {canonical_lead_name(name): i for i, name in enumerate(available)}
    missing = [name for name in wanted if canonical_lead_name(name) not in index]
    if missing:
        raise MissingLeadError(f"lead(s) {missing} not in record (has {list(available)})")
    return [index[canonical_lead_name(name)] for name in wanted]

from __future__ import annotations

import pytest

from ecg_k.leads import (
    MIMIC_LEAD_ORDER,
    STANDARD_LEADS,
    MissingLeadError,
    canonical_lead_name,
    lead_indices,
    parse_leads,
)


def test_canonical_names_are_case_insensitive() -> None:
    assert [canonical_lead_name(n) for n in ("i", "AVF", " avl ", "v6")] == ["I", "aVF", "aVL", "V6"]


def test_mimic_order_resolves_avf_and_avl_by_name() -> None:
    assert lead_indices(MIMIC_LEAD_ORDER, ["aVL", "aVF"]) == [5, 4]
    assert lead_indices(STANDARD_LEADS, ["aVL", "aVF"]) == [4, 5]


def test_missing_lead_raises() -> None:
    with pytest.raises(MissingLeadError, match="V7|aVL"):
        lead_indices(("I", "II"), ["aVL"])


@pytest.mark.parametrize("spec", ["", "I,X", "I,I"])
def test_parse_leads_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_leads(spec)


def test_parse_leads_all() -> None:
    assert parse_leads("all") == STANDARD_LEADS
    assert parse_leads("ii, avf") == ("II", "aVF")

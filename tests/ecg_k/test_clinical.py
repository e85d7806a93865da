"""Flags and interpretation codes at every boundary (conventions.md section 5, method.md section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecg_k.clinical import flag, interpretation_code, is_critical, reported_value
from ecg_k.potassium import Flag, Thresholds

EPS = 1e-6
# (K+, interpretation code): each boundary, and just either side of it.
BOUNDARIES = [
    (1.5, "LL"),
    (2.5 - EPS, "LL"),
    (2.5, "L"),
    (2.5 + EPS, "L"),
    (3.5 - EPS, "L"),
    (3.5, "L"),
    (3.5 + EPS, "N"),
    (4.2, "N"),
    (5.5 - EPS, "N"),
    (5.5, "H"),
    (5.5 + EPS, "H"),
    (6.5 - EPS, "H"),
    (6.5, "H"),
    (6.5 + EPS, "HH"),
    (9.0, "HH"),
]
FLAG_OF_CODE = {"LL": Flag.HYPOKALEMIA, "L": Flag.HYPOKALEMIA, "N": Flag.NORMAL,
                "H": Flag.HYPERKALEMIA, "HH": Flag.HYPERKALEMIA}


@pytest.mark.parametrize(("k", "code"), BOUNDARIES)
def test_interpretation_flag_and_critical_at_boundaries(k: float, code: str) -> None:
    assert interpretation_code(k) == code
    assert flag(k) is FLAG_OF_CODE[code]
    assert is_critical(k) is (code in ("LL", "HH"))


@pytest.mark.parametrize(("k", "code"), [(2.5, "L"), (3.5, "L"), (5.5, "H"), (6.5, "H")])
def test_float32_model_outputs_hit_the_boundaries_exactly(k: float, code: str) -> None:
    assert interpretation_code(np.float32(k)) == code


def test_flag_values_are_the_wire_strings() -> None:
    assert [f.value for f in Flag] == ["hypokalemia", "normal", "hyperkalemia"]
    assert Flag.NORMAL == "normal"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_not_called_normal(bad: float) -> None:
    for fn in (interpretation_code, flag, is_critical, reported_value):
        with pytest.raises(ValueError, match="finite"):
            fn(bad)


def test_reported_value_is_what_gets_flagged() -> None:
    assert reported_value(3.5004) == 3.5
    assert interpretation_code(reported_value(3.5004)) == "L"  # shown as 3.50, so flagged L, not N
    assert reported_value(3.506) == 3.51
    assert interpretation_code(reported_value(3.506)) == "N"


def test_custom_thresholds_are_used() -> None:
    strict = Thresholds(hypokalemia=3.0, hyperkalemia=5.0, critical_low=2.0, critical_high=6.0)
    assert interpretation_code(3.2, strict) == "N"
    assert interpretation_code(5.0, strict) == "H"
    assert interpretation_code(6.2, strict) == "HH"
    assert flag(3.0, strict) is Flag.HYPOKALEMIA
    assert is_critical(1.9, strict) and not is_critical(2.0, strict)


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="critical_low < hypokalemia < hyperkalemia < critical_high"):
        Thresholds(hypokalemia=5.6)
    assert Thresholds().model_dump() == {
        "hypokalemia": 3.5, "hyperkalemia": 5.5, "critical_low": 2.5, "critical_high": 6.5,
    }

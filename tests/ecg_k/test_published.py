"""Published few-shot figures: the directions the accuracy benchmark compares against."""

from __future__ import annotations

import pytest

from benchmarks.accuracy import ROWS
from ecg_k.evaluation.published import PUBLISHED_ECG_KA_DIR, PUBLISHED_FEW_SHOT, PublishedFewShot


def test_every_published_row_is_a_benchmark_row() -> None:
    assert set(PUBLISHED_FEW_SHOT) <= set(ROWS)


def test_ecg_ka_dir_directions_come_from_the_paper_table() -> None:
    (dist,) = PUBLISHED_FEW_SHOT["dist"]
    assert (dist.vanilla, dist.method) == (1.771, 1.329)
    assert dist.change == pytest.approx(1.329 / 1.771 - 1)
    assert PUBLISHED_FEW_SHOT["ranksim"][0].change > 0 > PUBLISHED_FEW_SHOT["lds"][0].change
    assert PUBLISHED_FEW_SHOT["bmse+dist"][0].method == PUBLISHED_ECG_KA_DIR["BMSE + Dist Loss"]["mae"][3]


def test_change_is_relative_to_the_papers_own_vanilla() -> None:
    assert PublishedFewShot("x", 10.0, 8.0).change == pytest.approx(-0.2)
    assert PublishedFewShot("x", 10.0, 12.5).change == pytest.approx(0.25)

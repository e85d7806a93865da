"""Monitoring aggregates (SQL GROUP BY on SQLite and PostgreSQL) against the same numbers computed from the
raw rows, and the drift and lab-confirmed summaries against independent formulas."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats

from dashboard import monitoring
from dashboard.monitoring import Window
from ecg_k.conformal import in_segments
from ecg_k.data.lab_comments import LabComment
from ecg_k.db.models import LabConfirmation, Prediction
from ecg_k.db.session import session_scope
from ecg_k.evaluation.regions import ShotRegions
from tests.dashboard.conftest import N_PREDICTIONS, SEED_END, Seeded

FIRST_DAY, LAST_DAY = date(2025, 3, 10), date(2025, 3, 24)


def _rows(seeded: Seeded) -> pd.DataFrame:
    """Every prediction with its lab value (NaN without), read row by row through the ORM."""
    with session_scope(seeded.database_url) as session:
        labs = {lab.prediction_id: lab.k_value for lab in session.scalars(sa.select(LabConfirmation))}
        return pd.DataFrame([{
            "model_id": p.model_version_id, "created": p.created_at, "flag": p.flag.value if p.flag else "unable",
            "critical": p.critical, "k": p.k_estimate, "low": p.interval_low, "high": p.interval_high,
            "segments": p.interval_segments,
            "lab": labs.get(p.id, np.nan)} for p in session.scalars(sa.select(Prediction))])


def _window(seeded: Seeded, first: date = FIRST_DAY, last: date = LAST_DAY,
            models: tuple[int, ...] | None = None) -> Window:
    return Window.of_days(first, last, models or (seeded.champion_id, seeded.challenger_id))


def _inside(rows: pd.DataFrame, window: Window) -> pd.DataFrame:
    keep = ((rows["created"] >= window.start) & (rows["created"] < window.end)
            & rows["model_id"].isin(window.model_ids))
    return rows[keep]


def test_span_and_window(seeded_db: Seeded) -> None:
    with session_scope(seeded_db.database_url) as session:
        first, last = monitoring.prediction_span(session)
    assert last == SEED_END.date() and (last - first).days == 30
    window = _window(seeded_db)
    assert (window.start.isoformat(), window.end.isoformat()) == ("2025-03-10T00:00:00+00:00",
                                                                  "2025-03-25T00:00:00+00:00")
    with pytest.raises(ValueError, match="ends .* before it starts"):
        Window.of_days(LAST_DAY, FIRST_DAY, (1,))
    with pytest.raises(ValueError, match="at least one model version"):
        Window.of_days(FIRST_DAY, LAST_DAY, ())


def test_served_counts_per_day_flag_and_bin_match_the_rows(seeded_db: Seeded) -> None:
    rows = _rows(seeded_db)
    window = _window(seeded_db)
    inside = _inside(rows, window)
    with session_scope(seeded_db.database_url) as session:
        counts = monitoring.served_counts(session, window)
    assert counts["n"].sum() == len(inside) and 0 < len(inside) < N_PREDICTIONS
    daily = monitoring.daily_flag_counts(counts).set_index(["day", "flag"])["n"]
    expected_daily = inside.groupby([inside["created"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize(),
                                     "flag"]).size()
    assert daily.to_dict() == expected_daily.to_dict()
    flags = monitoring.flag_counts(counts).set_index(["model_id", "flag"])
    assert flags["n"].to_dict() == inside.groupby(["model_id", "flag"]).size().to_dict()
    assert flags["critical"].sum() == inside["critical"].sum()
    histogram = monitoring.prediction_histogram(counts).set_index(["model_id", "bin"])["n"]
    expected_bins = inside.assign(bin=np.rint(inside["k"] * 10).astype(int)).groupby(["model_id", "bin"]).size()
    assert histogram.to_dict() == expected_bins.to_dict()


def test_flag_rates_are_shares_per_model(seeded_db: Seeded) -> None:
    with session_scope(seeded_db.database_url) as session:
        counts = monitoring.flag_counts(monitoring.served_counts(session, _window(seeded_db)))
    names = {seeded_db.champion_id: "champion", seeded_db.challenger_id: "challenger"}
    rates = monitoring.flag_rates(counts, names).set_index("model")
    champion = counts[counts["model_id"] == seeded_db.champion_id]
    assert rates.loc["champion", "predictions"] == champion["n"].sum()
    share_n = champion.loc[champion["flag"] == "N", "n"].sum() / champion["n"].sum()
    assert rates.loc["champion", "N"] == pytest.approx(share_n)
    assert rates[["LL", "L", "N", "H", "HH", "unable"]].sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])
    assert rates.loc["champion", "critical"] == pytest.approx(champion["critical"].sum() / champion["n"].sum())
    assert monitoring.flag_rates(counts.iloc[:0], names).empty


def test_one_model_and_an_empty_window(seeded_db: Seeded) -> None:
    window = _window(seeded_db, models=(seeded_db.challenger_id,))
    empty = _window(seeded_db, date(2024, 1, 1), date(2024, 1, 31))
    with session_scope(seeded_db.database_url) as session:
        counts = monitoring.served_counts(session, window)
        assert set(counts["model_id"]) == {seeded_db.challenger_id}
        assert monitoring.served_counts(session, empty).empty and monitoring.confirmed_errors(session, empty).empty
    assert monitoring.drift(monitoring.prediction_histogram(counts.iloc[:0]), _regions(seeded_db)) is None


def _regions(seeded: Seeded, model_id: int | None = None) -> ShotRegions:
    with session_scope(seeded.database_url) as session:
        return monitoring.model_regions(session, model_id or seeded.champion_id)


def test_lab_confirmed_error_and_coverage_by_region_of_the_lab_value(seeded_db: Seeded) -> None:
    rows = _rows(seeded_db)
    window = _window(seeded_db)
    with session_scope(seeded_db.database_url) as session:
        confirmed = monitoring.confirmed_errors(session, window)
    regions = _regions(seeded_db)
    table = monitoring.confirmed_by_region(confirmed[confirmed["model_id"] == seeded_db.champion_id], regions)
    labelled = _inside(rows, window).dropna(subset=["lab"])
    labelled = labelled[labelled["model_id"] == seeded_db.champion_id]
    labs = labelled["lab"].to_numpy()
    labelled = labelled.assign(region=regions.region_of(labs),
                               clinical=np.where(labs <= 3.5, "hypo", np.where(labs >= 5.5, "hyper", "normal")))
    table = table.set_index("region")
    assert table.loc["overall", "n"] == len(labelled) > 20
    assert table.loc["hypo", "n"] + table.loc["normal", "n"] + table.loc["hyper", "n"] == len(labelled)
    for region in ("overall", "hypo", "normal", "hyper", "many", "median", "few"):
        column = "clinical" if region in ("hypo", "normal", "hyper") else "region"
        part = labelled if region == "overall" else labelled[labelled[column] == region]
        assert table.loc[region, "n"] == len(part)
        assert table.loc[region, "mae"] == pytest.approx((part["k"] - part["lab"]).abs().mean(), rel=1e-9)
        assert table.loc[region, "bias"] == pytest.approx((part["k"] - part["lab"]).mean(), rel=1e-9)
        covered = [in_segments(lab, segments) for lab, segments in zip(part["lab"], part["segments"], strict=True)]
        assert table.loc[region, "coverage"] == pytest.approx(np.mean(covered))


def test_drift_against_the_training_labels(seeded_db: Seeded) -> None:
    rows = _rows(seeded_db)
    window = _window(seeded_db)
    with session_scope(seeded_db.database_url) as session:
        histogram = monitoring.prediction_histogram(monitoring.served_counts(session, window))
    regions = _regions(seeded_db)
    result = monitoring.drift(histogram[histogram["model_id"] == seeded_db.champion_id], regions)
    served = _inside(rows, window).query("model_id == @seeded_db.champion_id")["k"].to_numpy()
    bins = np.rint(served * 10) / 10
    train_k = np.array(sorted(regions.train_counts)) / 10
    train_n = np.array([regions.train_counts[b] for b in sorted(regions.train_counts)])
    assert result.n == served.size
    assert result.wasserstein == pytest.approx(stats.wasserstein_distance(bins, train_k, v_weights=train_n))
    assert result.mean_estimate == pytest.approx(bins.mean()) and result.mean_label == pytest.approx(
        np.average(train_k, weights=train_n))
    table = result.table.set_index("k")
    assert table.sum().to_numpy() == pytest.approx([1.0, 1.0])
    p, q = (np.maximum(table[column].to_numpy(), monitoring.PSI_FLOOR)
            for column in ("served estimates", "training labels"))
    assert result.psi == pytest.approx(float(((p - q) * np.log(p / q)).sum())) and result.psi > 0
    identical = pd.DataFrame({"bin": list(regions.train_counts), "n": list(regions.train_counts.values())})
    same = monitoring.drift(identical, regions)
    assert same.wasserstein == pytest.approx(0, abs=1e-12) and same.psi == pytest.approx(0, abs=1e-12)


def test_model_regions_need_a_card_with_shot_regions(seeded_db: Seeded) -> None:
    with session_scope(seeded_db.database_url) as session, pytest.raises(ValueError, match="no registered model"):
        monitoring.model_regions(session, 999)


def test_haemolysed_labs_stay_out_of_the_confirmed_error(seeded_db: Seeded) -> None:
    window = _window(seeded_db)
    with session_scope(seeded_db.database_url) as session:
        before = int(monitoring.confirmed_errors(session, window)["n"].sum())
        lab = session.scalars(sa.select(LabConfirmation)
                              .join(Prediction, LabConfirmation.prediction_id == Prediction.id)
                              .where(window.where()).order_by(LabConfirmation.id)).first()
        assert lab is not None
        lab.comment_class = LabComment.HEMOLYSED
    with session_scope(seeded_db.database_url) as session:
        assert int(monitoring.confirmed_errors(session, window)["n"].sum()) == before - 1

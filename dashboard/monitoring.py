"""Live monitoring of served predictions: SQL aggregates over a date window and model versions, and the
numbers derived from them (flag rates, drift against the training labels, error and prediction-set coverage on
lab-confirmed predictions by true-K+ region and shot region).

Every query aggregates in the database (GROUP BY day, flag, 0.1 mmol/L bin), so a page reads a few hundred
rows whatever the number of predictions; only the per-bin tables are combined here with the model card's
shot regions. Dates are UTC days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session

from ecg_k.data.lab_comments import LabComment
from ecg_k.db.models import LabConfirmation, ModelVersion, Prediction
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.model_card import parse_model_card
from ecg_k.potassium import (
    CLINICAL_REGIONS,
    DEFAULT_THRESHOLDS,
    LABEL_STEP,
    REGIONS,
    Interpretation,
    Thresholds,
    bin_value,
    clinical_region_of_bins,
)

FLAG_ORDER = (*(code.value for code in Interpretation), "unable")
"""Interpretation codes in K+ order; ``unable`` = no estimate (quality gate)."""
PSI_FLOOR = 1e-4
"""Share given to an empty bin in the population stability index (which is undefined at 0)."""


@dataclass(frozen=True)
class Window:
    """Predictions created in ``[start, end)`` (UTC) by the model versions ``model_ids``."""

    start: datetime
    end: datetime
    model_ids: tuple[int, ...]

    @classmethod
    def of_days(cls, first: date, last: date, model_ids: tuple[int, ...]) -> Window:
        """The UTC days ``first`` to ``last``, both included."""
        if last < first:
            raise ValueError(f"the date range ends ({last}) before it starts ({first})")
        if not model_ids:
            raise ValueError("choose at least one model version")
        start = datetime.combine(first, time(), tzinfo=UTC)
        return cls(start, datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC), tuple(model_ids))

    def where(self) -> sa.ColumnElement[bool]:
        return sa.and_(Prediction.created_at >= self.start, Prediction.created_at < self.end,
                       Prediction.model_version_id.in_(self.model_ids))


def _utc_day(session: Session) -> sa.ColumnElement[object]:
    """The UTC calendar day of ``Prediction.created_at`` (SQLite stores naive UTC; PostgreSQL timestamptz)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", Prediction.created_at))
    return sa.func.date(Prediction.created_at)


def _bin(column: QueryableAttribute[float] | QueryableAttribute[float | None]) -> sa.ColumnElement[int]:
    """The 0.1 mmol/L bin index ``round(10·K)`` of a K+ column, computed in the database."""
    return sa.cast(sa.func.round(column / LABEL_STEP), sa.Integer)


def prediction_span(session: Session) -> tuple[date, date] | None:
    """First and last UTC day with a prediction, or None for an empty table."""
    first, last = session.execute(sa.select(sa.func.min(Prediction.created_at),
                                            sa.func.max(Prediction.created_at))).one()
    return None if first is None else (first.astimezone(UTC).date(), last.astimezone(UTC).date())


def model_regions(session: Session, model_id: int) -> ShotRegions:
    """The shot regions (training label counts) in the card of registered model ``model_id``."""
    card = session.scalar(sa.select(ModelVersion.card).where(ModelVersion.id == model_id))
    if card is None:
        raise ValueError(f"no registered model version with id {model_id}")
    return parse_model_card(card, source=f"the card of model version {model_id}").shot_regions


def _flag_name(flag: Interpretation | None) -> str:
    return "unable" if flag is None else flag.value


def served_counts(session: Session, window: Window) -> pd.DataFrame:
    """Predictions per model version, UTC day, flag and 0.1 mmol/L bin of the estimate, in one pass over the
    window: ``model_id, day, flag, bin, n, critical`` (``bin`` is missing for unable-to-estimate). The
    per-day, per-flag and per-bin views below are sums of it (a few thousand rows at most)."""
    day = _utc_day(session).label("day")
    k_bin = _bin(Prediction.k_estimate).label("bin")
    query = (sa.select(Prediction.model_version_id, day, Prediction.flag, k_bin, sa.func.count(),
                       sa.func.sum(sa.case((Prediction.critical, 1), else_=0)))
             .where(window.where()).group_by(Prediction.model_version_id, day, Prediction.flag, k_bin))
    rows = [(m, pd.Timestamp(str(d)), _flag_name(f), b, n, int(c or 0))
            for m, d, f, b, n, c in session.execute(query)]
    frame = pd.DataFrame(rows, columns=["model_id", "day", "flag", "bin", "n", "critical"])
    return frame.astype({"bin": "Int64", "n": "int64", "critical": "int64"})


def daily_flag_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Predictions per UTC day and flag: ``day, flag, n``."""
    return counts.groupby(["day", "flag"])["n"].sum().reset_index()


def flag_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Predictions per model version and flag, and how many were critical: ``model_id, flag, n, critical``."""
    return counts.groupby(["model_id", "flag"], as_index=False)[["n", "critical"]].sum()


def flag_rates(counts: pd.DataFrame, names: dict[int, str]) -> pd.DataFrame:
    """One row per model version (from :func:`flag_counts`): ``predictions``, the share of critical values
    and of each flag."""
    columns = ["model", "predictions", "critical", *FLAG_ORDER]
    if counts.empty:
        return pd.DataFrame(columns=columns)
    wide = counts.pivot_table(index="model_id", columns="flag", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=list(FLAG_ORDER), fill_value=0)
    total = wide.sum(axis=1)
    out = wide.div(total, axis=0)
    out["predictions"] = total
    out["critical"] = counts.groupby("model_id")["critical"].sum() / total
    out["model"] = [names.get(model_id, str(model_id)) for model_id in out.index]
    return out.reset_index(drop=True)[columns]


def prediction_histogram(counts: pd.DataFrame) -> pd.DataFrame:
    """Estimates per model version and 0.1 mmol/L bin: ``model_id, bin, n`` (unable-to-estimate excluded)."""
    estimated = counts.dropna(subset=["bin"])
    return estimated.groupby(["model_id", "bin"])["n"].sum().reset_index().astype({"bin": "int64"})


def confirmed_errors(session: Session, window: Window) -> pd.DataFrame:
    """Lab-confirmed estimates per model version and lab-value bin: ``model_id, bin, n, abs_error, error,
    covered`` (sums of |estimate − lab|, of estimate − lab, and of labs inside the prediction set as decided at
    confirmation; inside the interval for predictions stored before sets were). Labs marked haemolysed are
    left out: their K+ is falsely high, so they would count as the model's error."""
    lab = LabConfirmation.k_value
    k_bin = _bin(lab).label("bin")
    difference = Prediction.k_estimate - lab
    in_hull = sa.and_(lab >= Prediction.interval_low, lab <= Prediction.interval_high)
    in_set = sa.case((LabConfirmation.in_prediction_set.is_(None), in_hull),
                     else_=LabConfirmation.in_prediction_set)
    covered = sa.case((in_set, 1), else_=0)
    query = (sa.select(Prediction.model_version_id, k_bin, sa.func.count(),
                       sa.func.sum(sa.func.abs(difference)), sa.func.sum(difference), sa.func.sum(covered))
             .join(LabConfirmation, LabConfirmation.prediction_id == Prediction.id)
             .where(window.where(), Prediction.k_estimate.is_not(None),
                    LabConfirmation.comment_class != LabComment.HEMOLYSED)
             .group_by(Prediction.model_version_id, k_bin))
    return pd.DataFrame.from_records(session.execute(query).all(),
                                     columns=["model_id", "bin", "n", "abs_error", "error", "covered"])


@dataclass(frozen=True)
class Drift:
    """The served estimates' distribution against the training labels of the model."""

    table: pd.DataFrame
    """``k, served estimates, training labels``: shares per 0.1 mmol/L bin over the union of both."""
    wasserstein: float
    """Earth mover's distance between the two binned distributions (mmol/L)."""
    psi: float
    """Population stability index (> 0.25 is usually read as a major shift)."""
    mean_estimate: float
    mean_label: float
    n: int


def drift(histogram: pd.DataFrame, regions: ShotRegions) -> Drift | None:
    """Drift of one model's estimates (``bin, n`` rows) against its training labels (None without any)."""
    if histogram.empty or histogram["n"].sum() == 0:
        return None
    served = histogram.groupby("bin")["n"].sum()
    training = pd.Series(regions.train_counts, dtype=float)
    bins = np.arange(min(served.index.min(), training.index.min()),
                     max(served.index.max(), training.index.max()) + 1)
    p = served.reindex(bins, fill_value=0).to_numpy(dtype=float)
    q = training.reindex(bins, fill_value=0).to_numpy(dtype=float)
    p, q = p / p.sum(), q / q.sum()
    k = bin_value(bins)
    wasserstein = float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() * LABEL_STEP)
    pf, qf = np.maximum(p, PSI_FLOOR), np.maximum(q, PSI_FLOOR)
    psi = float(((pf - qf) * np.log(pf / qf)).sum())
    table = pd.DataFrame({"k": k, "served estimates": p, "training labels": q})
    return Drift(table, wasserstein, psi, float((p * k).sum()), float((q * k).sum()), int(served.sum()))


def confirmed_by_region(confirmed: pd.DataFrame, regions: ShotRegions,
                        thresholds: Thresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """One model's lab-confirmed error and set coverage by the region of the *lab* value (as on the audit
    page): ``region, n, mae, bias, coverage`` for overall, hypo, normal, hyper (the true-K+ regions the
    intervals guarantee) and many, median, few (NaN where a region has no lab)."""
    bins = confirmed["bin"].to_numpy(dtype=np.int64)
    tagged = confirmed.assign(region=regions.region_of_bins(bins),
                              clinical=clinical_region_of_bins(bins, thresholds))
    rows = []
    for region in ("overall", *CLINICAL_REGIONS, *REGIONS):
        column = "clinical" if region in CLINICAL_REGIONS else "region"
        part = tagged if region == "overall" else tagged[tagged[column] == region]
        n = int(part["n"].sum())
        rows.append({"region": region, "n": n,
                     "mae": part["abs_error"].sum() / n if n else math.nan,
                     "bias": part["error"].sum() / n if n else math.nan,
                     "coverage": part["covered"].sum() / n if n else math.nan})
    return pd.DataFrame(rows)

"""Each page's logic through Streamlit's AppTest (the real page scripts, in-process, no browser) on the
seeded database: what it shows, its filters, and the review form with sign-in."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

import dashboard
from ecg_k.data.lab_comments import LabComment
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import AuditEvent, LabConfirmation, Prediction, Review, Verdict
from ecg_k.db.session import session_scope
from ecg_k.settings import get_settings
from tests.dashboard.conftest import SEED_END, Seeded

APP = Path(dashboard.__file__).with_name("app.py")
MONITORING, REVIEW = "views/live_monitoring.py", "views/review_queue.py"


def _open(page: str | None = None, signed_in_with: str | None = None) -> AppTest:
    """The app after its first run, on ``page``, optionally signed in through the sidebar form."""
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    if signed_in_with is not None:
        app.sidebar.text_input[0].input(signed_in_with)
        app.sidebar.button[0].click().run()
    if page is not None:
        app.switch_page(page).run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


def _metric(app: AppTest, label: str) -> str:
    return next(metric.value for metric in app.metric if metric.label == label)


def _card(seeded: Seeded, name: str) -> dict:
    return json.loads((seeded.runs[name] / "model_card.json").read_text())


def test_audit_page_shows_both_models_numbers(dashboard_env: Seeded) -> None:
    app = _open()
    assert app.title[0].value == "Model audit"
    assert (app.selectbox[0].value, app.selectbox[1].value) == (dashboard_env.champion_id,
                                                                dashboard_env.challenger_id)
    dist, vanilla = (_card(dashboard_env, name)["metrics"] for name in ("dist", "vanilla"))
    assert [metric.value for metric in app.metric if metric.label == "MAE, few-shot"] == [
        f"{dist['test']['few']['mae']:.3f}", f"{vanilla['test']['few']['mae']:.3f}"]
    regions = app.dataframe[0].value
    assert regions.loc["few", "MAE dist-seed2 (champion)"] == dist["test"]["few"]["mae"]
    assert regions.loc["few", "MAE vanilla-seed1 (challenger)"] == vanilla["test"]["few"]["mae"]
    assert regions.loc["bMAE", "MAE dist-seed2 (champion)"] == dist["test"]["bmae"]
    assert regions.loc["overall", "n"] == 1120
    # regions, 2 per-bin, 2 histograms, sorted, 2 scatter, clinical, set coverage, reliability
    assert len(app.get("vega_lite_chart")) == 11
    coverage = app.dataframe[-1].value.set_index(["model", "region"])
    assert {"hypo", "normal", "hyper", "few"} <= set(coverage.index.get_level_values("region"))
    assert coverage.loc[("dist-seed2 (champion)", "overall"), "n"] == 1120
    clinical = app.dataframe[-2].value
    assert list(clinical["rule"]) == ["K >= 5.5", "K >= 5.5", "K <= 3.5", "K <= 3.5"]
    assert clinical.iloc[0]["sensitivity"].startswith(f"{dist['test']['hyper']['sensitivity']:.2f} [")

    app.radio[0].set_value("val").run()
    assert app.dataframe[0].value.loc["few", "MAE dist-seed2 (champion)"] == dist["val"]["few"]["mae"]
    app.button_group[0].set_value("many").run()
    sorted_summary = app.dataframe[3].value
    assert sorted_summary.loc["dist-seed2 (champion)", "n"] == dist["val"]["many"]["n"]
    app.toggle[0].set_value(True).run()
    assert len(app.dataframe[-2].value) == 12  # six cut-offs, two models

    app.selectbox[1].select_index(0).run()  # "nothing"
    assert not app.exception
    assert list(app.dataframe[0].value.columns) == ["n", "MAE dist-seed2 (champion)", "GM dist-seed2 (champion)"]
    assert len(app.get("vega_lite_chart")) == 8


def test_audit_page_without_models_says_how_to_register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database_url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(database_url)
    monkeypatch.setenv("ECGK_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        app = _open()
        assert "No model is registered yet" in app.info[0].value
        app.switch_page(MONITORING).run()
        assert "No predictions yet" in app.info[0].value
        app.switch_page(REVIEW).run()
        assert _metric(app, "Flagged predictions waiting for a lab value") == "0"
        assert app.success[0].value == "Nothing is waiting for review."
    finally:
        get_settings.cache_clear()


def test_unmigrated_database_is_a_message_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGK_DATABASE_URL", f"sqlite:///{tmp_path / 'blank.db'}")
    get_settings.cache_clear()
    try:
        app = _open()
        assert "is unavailable or not migrated (`ecgk db upgrade`)" in app.error[0].value
    finally:
        get_settings.cache_clear()


def _count(seeded: Seeded, *where: sa.ColumnElement[bool]) -> int:
    with session_scope(seeded.database_url) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Prediction).where(*where)))


def test_monitoring_page_counts_and_filters(dashboard_env: Seeded) -> None:
    app = _open(MONITORING)
    last = SEED_END.date()
    first = last - timedelta(days=29)
    assert app.date_input[0].value == (first, last)
    start = SEED_END.replace(hour=0, minute=0) - timedelta(days=29)
    assert _metric(app, "Predictions") == f"{_count(dashboard_env, Prediction.created_at >= start):,}"
    assert len(app.tabs) == 2 and len(app.get("vega_lite_chart")) == 5
    psi = [metric for metric in app.metric if metric.label == "PSI"]
    assert len(psi) == 2 and all(float(metric.value) > 0 for metric in psi)

    app.multiselect[0].set_value([dashboard_env.challenger_id]).run()
    challenger = _count(dashboard_env, Prediction.created_at >= start,
                        Prediction.model_version_id == dashboard_env.challenger_id)
    assert _metric(app, "Predictions") == f"{challenger:,}" and len(app.tabs) == 1
    app.multiselect[0].set_value([]).run()
    assert app.warning[0].value == "choose at least one model version"


def test_review_page_is_read_only_without_a_reviewer_key(dashboard_env: Seeded) -> None:
    app = _open(REVIEW)
    waiting = _metric(app, "Flagged predictions waiting for a lab value")
    assert int(waiting) > 10 and "Sign in with a reviewer key" in app.info[0].value
    assert next(button for button in app.button if button.label == "Submit review").disabled
    chosen = app.selectbox[0].value
    with session_scope(dashboard_env.database_url) as session:
        reads = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "prediction.read")).all()
    assert [(event.resource, event.actor) for event in reads] == [(f"prediction:{chosen}", "anonymous")]

    client = _open(REVIEW, signed_in_with=dashboard_env.keys["client"])
    assert "Read-only: role client may not record labs or verdicts." in client.sidebar.warning[0].value
    assert next(button for button in client.button if button.label == "Submit review").disabled
    wrong = _open(signed_in_with="ecgk_000000000000_nope")
    assert wrong.sidebar.error[0].value == "Invalid or revoked API key."


def test_reviewer_signs_in_and_submits_a_lab_and_verdict(dashboard_env: Seeded) -> None:
    app = _open(REVIEW, signed_in_with=dashboard_env.keys["reviewer"])
    assert app.sidebar.success[0].value == "Signed in as test reviewer (reviewer)"
    waiting = int(_metric(app, "Flagged predictions waiting for a lab value"))
    chosen = app.selectbox[0].value

    lab_comment, verdict = app.radio[0], app.radio[1]
    assert lab_comment.label == "Lab comment" and lab_comment.value == LabComment.NONE
    verdict.set_value(Verdict.AGREE)
    app.button(key="FormSubmitter:review-Submit review").click().run()
    assert "Not saved: a lab K+ is needed to agree with the estimate" in [error.value for error in app.error]

    app.number_input[0].set_value(6.3)
    app.radio[0].set_value(LabComment.HEMOLYSED)
    app.radio[1].set_value(Verdict.DISAGREE)
    app.text_area[0].input("estimate too low")
    app.button(key="FormSubmitter:review-Submit review").click().run()
    assert not app.exception
    saved = f"Saved lab K⁺ 6.3 mmol/L and verdict 'disagree' for prediction {str(chosen)[:8]}."
    assert app.success[0].value == saved
    assert _metric(app, "Flagged predictions waiting for a lab value") == str(waiting - 1)
    with session_scope(dashboard_env.database_url) as session:
        lab = session.scalars(sa.select(LabConfirmation).where(LabConfirmation.prediction_id == chosen)).one()
        review = session.scalars(sa.select(Review).where(Review.prediction_id == chosen)).one()
        actions = session.scalars(sa.select(AuditEvent.action).where(
            AuditEvent.resource == f"prediction:{chosen}", AuditEvent.outcome == "success")).all()
    assert (lab.k_value, lab.confirmed_by) == (6.3, dashboard_env.key_ids["reviewer"])
    assert lab.comment_class is LabComment.HEMOLYSED
    assert (review.verdict, review.comment) == (Verdict.DISAGREE, "estimate too low")
    assert sorted(actions) == ["lab.confirm", "prediction.read", "review.add", "review.submit"]

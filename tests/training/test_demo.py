"""The demo end to end at toy size: synth -> ingest -> stage 1 -> stage 2 -> evaluate -> export -> register ->
API and dashboard on loopback -> predictions and confirmed labs -> a retraining run and its gate decision."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from ecg_k.db.models import AuditEvent, GateDecision, LabConfirmation, ModelStatus, ModelVersion, Prediction
from ecg_k.db.session import session_scope
from training.demo import DemoPlan, run_demo
from training.demo_serving import demo_database_url

PLAN = DemoPlan(n_ecgs=300, workers=1, model="tiny", stage1_epochs=1, stage1_batch=16, stage2_epochs=2,
                stage2_batch=64, new_patients=6)  # Dist Loss refuses batches below 64


def _count(session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_demo_runs_every_step_and_a_rerun_resumes(tmp_path: Path) -> None:
    champion_run = run_demo(tmp_path, PLAN)
    runs = tmp_path / "runs"
    assert (runs / "comparison" / "comparison.md").is_file()
    for method in ("vanilla", "dist"):
        assert json.loads((runs / method / "model_card.json").read_text())["method"] == method
    with session_scope(demo_database_url(tmp_path)) as session:
        statuses = {version.card["method"]: version.status for version in session.scalars(sa.select(ModelVersion))
                    if version.card["stage"] in (1, 2) and "retrain" not in version.card}
        assert statuses == {"vanilla": ModelStatus.RETIRED, "dist": ModelStatus.CHAMPION}
        assert _count(session, Prediction) == 4 + PLAN.new_patients
        assert _count(session, LabConfirmation) == PLAN.new_patients
        decisions = list(session.scalars(sa.select(GateDecision)))
        assert len(decisions) == 1 and "few-shot MAE" in json.dumps(decisions[0].criteria)
        actions = set(session.scalars(sa.select(AuditEvent.action)))
        assert {"model.promote", "prediction.create", "lab.create", "model.gate"} <= actions
        champion = session.scalars(sa.select(ModelVersion).where(ModelVersion.status == ModelStatus.CHAMPION)).one()
    assert champion_run == Path(champion.path).parent
    assert "Application startup complete" in (tmp_path / "api.log").read_text()
    assert (tmp_path / "dashboard.log").is_file()
    sha = json.loads((runs / "dist" / "model_card.json").read_text())["onnx"]["sha256"]
    run_demo(tmp_path, PLAN)  # a rerun resumes the training steps instead of starting over
    assert json.loads((runs / "dist" / "model_card.json").read_text())["onnx"]["sha256"] == sha

"""``ecgk retrain`` end to end on SQLite: confirmed labs in the database -> challenger -> both models evaluated
-> gate decision recorded and audited; a challenger worse in the few-shot region is refused; reruns with no
new data do nothing; the lock keeps runs apart. Plus the gate and the subject assignment on numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ecg_k.cli import app, load_plugins
from ecg_k.data.lab_comments import LabComment
from ecg_k.data.store import COHORT, labels_path
from ecg_k.db.api_keys import create_api_key
from ecg_k.db.ecg_store import EcgStore, store_ecg
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import (
    AuditEvent,
    GateDecision,
    LabConfirmation,
    ModelStatus,
    ModelVersion,
    Prediction,
    Review,
    Role,
    Verdict,
)
from ecg_k.db.registry import get_champion, promote, register_model
from ecg_k.db.session import create_db_engine, session_scope
from ecg_k.evaluation.regions import shot_regions
from ecg_k.potassium import Interpretation, ShotRegion
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.common import CodeVersion
from ecg_k.records.dataset import read_manifest
from ecg_k.records.run import RunDataset, RunRecord, TrainSchedule, write_run_record
from ecg_k.settings import get_settings
from tests.ecg_k.db.conftest import PostgresServer, postgres_server  # noqa: F401  (fixture)
from tests.training.conftest import _labels, _signals, write_toy_dataset
from training.config import TrainConfig
from training.evaluate import evaluate_run
from training.export import MODEL_CARD, export_run
from training.retrain import RetrainConfig, RetrainError, challenger_plan
from training.retrain_data import (
    HOLDOUT,
    LOCKED,
    TRAIN,
    UNKEYED,
    assign,
    collect_confirmed,
    holdout_draw,
    locked_subjects,
)
from training.retrain_gate import GateConfig, few_improvement_ci, gate
from training.retrain_lock import RetrainBusyError, retrain_lock
from training.trainer import Trainer

runner = CliRunner()
ECG_TIME = datetime(2180, 3, 1, 8, 0, tzinfo=UTC)


def _labels_with_hyperkalemia(rng: np.random.Generator, n: int) -> np.ndarray:
    """The toy labels with one in six moved to 5.5-7.5 mmol/L, so the gate's sensitivity check has cases."""
    labels = _labels(rng, n)
    high = rng.random(n) < 1 / 6
    labels[high] = np.round(rng.uniform(5.5, 7.5, int(high.sum())), 1)
    return labels


@pytest.fixture(scope="module")
def champion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny vanilla stage-1 model trained on a toy dataset with hyperkalemia, evaluated and exported."""
    root = tmp_path_factory.mktemp("retrain-champion")
    dataset = write_toy_dataset(root / "dataset", {"train": 256, "val": 64, "test": 64},
                                sample_labels=_labels_with_hyperkalemia)
    run = root / "run"
    Trainer(TrainConfig(data=dataset, out=run, model="tiny", epochs=8, batch_size=32, lr=1e-2, device="cpu"),
            progress=False).run()
    evaluate_run(run, n_boot=20, device="cpu")
    export_run(run)
    return run


@dataclass
class Registry:
    """A fresh database with the champion registered and promoted, and the settings pointing at it."""

    home: Path
    database_url: str
    champion_run: Path
    reviewer_id: int

    @property
    def dataset(self) -> Path:
        return self.champion_run.parent / "dataset"

    def count(self, model: type) -> int:
        with session_scope(self.database_url) as session:
            return session.scalar(sa.select(sa.func.count()).select_from(model))

    def actions(self) -> list[str]:
        with session_scope(self.database_url) as session:
            return list(session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def registry(tmp_path: Path, champion_run: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    database_url = f"sqlite:///{tmp_path / 'ecgk.db'}"
    monkeypatch.setenv("ECGK_HOME", str(tmp_path))
    monkeypatch.setenv("ECGK_DATABASE_URL", database_url)
    monkeypatch.delenv("ECGK_ECG_STORE", raising=False)
    get_settings.cache_clear()
    upgrade(database_url)
    with session_scope(database_url) as session:
        version = register_model(session, champion_run / MODEL_CARD, actor="test")
        promote(session, version.name, version.version, actor="test")
        reviewer = create_api_key(session, Role.REVIEWER, actor="test").key.id
    yield Registry(tmp_path, database_url, champion_run, reviewer)
    get_settings.cache_clear()


@dataclass(frozen=True)
class Case:
    """One confirmed prediction to seed: subject key, lab K+, lab time minus ECG time."""

    patient_id: str | None
    k_value: float
    delta_min: float = 10.0
    unusable: bool = False
    hemolysed: bool = False


def seed(registry: Registry, cases: list[Case], seed_value: int = 0, ecgs: np.ndarray | None = None) -> np.ndarray:
    """Store an ECG (toy signal carrying the case's K+, in mV) and a confirmed prediction per case."""
    rng = np.random.default_rng(seed_value)
    if ecgs is None:
        ecgs = _signals(rng, np.array([case.k_value for case in cases], dtype=np.float32)).astype(np.float32)
    store = EcgStore(registry.home / "ecg-store")
    with session_scope(registry.database_url) as session:
        champion = get_champion(session)
        for index, (case, signal) in enumerate(zip(cases, ecgs, strict=True)):
            record = store_ecg(session, store, np.ascontiguousarray(signal), 500.0, ["I"])
            ecg_time = ECG_TIME + timedelta(hours=index)
            prediction = Prediction(
                model_version=champion, model_status=ModelStatus.CHAMPION, ecg_sha256=record.sha256,
                k_estimate=4.2, interval_low=3.6, interval_high=4.8, flag=Interpretation.NORMAL, critical=False,
                shot_region=ShotRegion.MANY, quality={}, patient_id=case.patient_id, ecg_time=ecg_time,
                latency_ms=1.0,
            )
            session.add(prediction)
            session.flush()
            session.add(LabConfirmation(prediction_id=prediction.id, k_value=case.k_value, itemid=50971,
                                        lab_time=ecg_time + timedelta(minutes=case.delta_min),
                                        comment_class=LabComment.HEMOLYSED if case.hemolysed else LabComment.NONE,
                                        confirmed_by=registry.reviewer_id))
            if case.unusable:
                session.add(Review(prediction_id=prediction.id, reviewer_id=registry.reviewer_id,
                                   verdict=Verdict.UNUSABLE_ECG))
    return ecgs


def retrain(*args: str) -> tuple[int, str]:
    load_plugins()
    result = runner.invoke(app, ["retrain", "--no-progress", "--n-boot", "20", "--device", "cpu", *args])
    return result.exit_code, result.output


def test_gate_promotes_only_when_every_criterion_holds() -> None:
    champion = {"few": {"mae": 1.30}, "overall": {"mae": 0.80}, "hyper": {"sensitivity": 0.60}}
    config = GateConfig()  # delta 0 mmol/L on the CI's lower bound, epsilon 5 %
    better = {"few": {"mae": 1.20}, "overall": {"mae": 0.83}, "hyper": {"sensitivity": 0.65}}
    assert gate(champion, better, config, [0.01, 0.19]).passed
    boundary = {"few": {"mae": 1.28}, "overall": {"mae": 0.84}, "hyper": {"sensitivity": 0.60}}
    assert gate(champion, boundary, config, [1e-6, 0.04]).passed  # exactly 5 % worse, equal sensitivity

    noisy = gate(champion, better, config, [-0.01, 0.21])  # the point estimate improves, its CI includes 0
    assert not noisy.passed and [c.passed for c in noisy.checks] == [False, True, True]
    assert noisy.checks[0].improvement_ci95 == [-0.01, 0.21] and "does not clear" in noisy.reasons[0]
    assert not gate(champion, better, GateConfig(delta=0.02), [0.01, 0.19]).passed
    overall_worse = gate(champion, {**better, "overall": {"mae": 0.8401}}, config, [0.01, 0.19])
    assert [c.passed for c in overall_worse.checks] == [True, False, True]
    less_sensitive = gate(champion, {**better, "hyper": {"sensitivity": 0.59}}, config, [0.01, 0.19])
    assert [c.passed for c in less_sensitive.checks] == [True, True, False]


def test_gate_fails_closed_on_undefined_numbers() -> None:
    champion = {"few": {"mae": 1.30}, "overall": {"mae": 0.80}, "hyper": {"sensitivity": None}}
    challenger = {"few": {"mae": 0.90}, "overall": {"mae": 0.70}, "hyper": {"sensitivity": None}}
    result = gate(champion, challenger, GateConfig(), [0.2, 0.6])
    assert not result.passed and [c.passed for c in result.checks] == [True, True, False]
    assert "undefined" in result.reasons[0]
    no_ci = gate({**champion, "hyper": {"sensitivity": 0.5}}, {**challenger, "hyper": {"sensitivity": 0.5}},
                 GateConfig(), None)
    assert [c.passed for c in no_ci.checks] == [False, True, True]


def test_few_improvement_ci_is_paired_over_subjects() -> None:
    """A challenger better by 0.3 mmol/L on every few-shot sample: the paired CI is exactly [0.3, 0.3]; one
    worse on half the subjects and better on the others straddles 0."""
    rng = np.random.default_rng(0)
    train = np.round(np.concatenate([rng.normal(4.2, 0.3, 2000), [2.5, 2.6, 6.5, 6.6]]), 1)
    labels = np.round(np.concatenate([rng.uniform(2.5, 3.0, 40), rng.uniform(6.0, 6.6, 40),
                                      rng.normal(4.2, 0.2, 80)]), 1)
    subjects = np.repeat(np.arange(80), 2)
    champion = labels + rng.choice([-1, 1], labels.size) * 0.8
    challenger = labels + np.sign(champion - labels) * 0.5
    regions = shot_regions(train)
    ci = few_improvement_ci(labels, champion, challenger, subjects, regions, 200)
    assert ci == pytest.approx([0.3, 0.3])
    mixed = np.where(subjects % 2 == 0, labels + np.sign(champion - labels) * 1.1, challenger)
    low, high = few_improvement_ci(labels, champion, mixed, subjects, regions, 200)
    assert low < 0 < high


def test_subject_assignment_never_trains_on_locked_or_unkeyed_subjects() -> None:
    locked = {"1001", "1002"}
    assert assign("1001", locked, 0.2) == LOCKED and assign(None, locked, 0.2) == UNKEYED
    keys = [f"p-{i}" for i in range(2000)]
    assignments = [assign(key, locked, 0.2) for key in keys]
    assert assignments == [assign(key, locked, 0.2) for key in keys]  # stable from run to run
    assert set(assignments) == {TRAIN, HOLDOUT}
    assert 0.17 < assignments.count(HOLDOUT) / len(keys) < 0.23
    assert all(assign(key, locked, 0.0) == TRAIN for key in keys[:50])
    assert holdout_draw("p-1") == holdout_draw("p-1") != holdout_draw("p-2")


def test_haemolysed_confirmed_labs_never_feed_retraining(registry: Registry) -> None:
    seed(registry, [Case("p-ok", 5.9), Case("p-lysed", 7.2, hemolysed=True), Case("p-checked", 6.6)])
    manifest = read_manifest(registry.dataset)
    with session_scope(registry.database_url) as session:
        confirmed = collect_confirmed(session, EcgStore(registry.home / "ecg-store"),
                                      manifest.preprocess, manifest.config.cohort, set(), 0.0)
    assert confirmed.skipped == {"hemolysed_lab": 1}
    assert confirmed.cases["subject"].tolist() == ["p-ok", "p-checked"] and len(confirmed.signals) == 2
    assert registry.count(LabConfirmation) == 3  # the haemolysed lab stays on record


def test_every_held_out_split_of_the_base_is_locked(tmp_path: Path) -> None:
    sizes = {"train": 20, "val": 5, "cal": 5, "test": 5, "test_natural": 5}
    dataset = write_toy_dataset(tmp_path / "five", sizes)
    cohort = pd.read_parquet(dataset / COHORT)
    held_out = set(cohort.loc[cohort["split"] != "train", "subject_id"].astype(str))
    assert locked_subjects(dataset) == held_out
    assert not held_out & set(cohort.loc[cohort["split"] == "train", "subject_id"].astype(str))


def _base_subjects(dataset: Path, *splits: str) -> list[str]:
    cohort = pd.read_parquet(dataset / COHORT)
    return cohort.loc[cohort["split"].isin(splits), "subject_id"].astype(str).tolist()


@pytest.mark.slow
def test_retrain_end_to_end_records_both_models_and_the_decision(registry: Registry) -> None:
    test_subjects = _base_subjects(registry.dataset, "test")[:3]
    labels = np.round(np.linspace(2.5, 6.5, 30), 1)
    cases = [Case(f"p-{i}", float(k)) for i, k in enumerate(labels)]
    cases += [Case(subject, 5.8) for subject in test_subjects]  # the leak guard: evaluated, never trained on
    cases += [Case(None, 3.1), Case(None, 4.4)]  # no subject key: evaluated only
    cases += [Case("p-late", 4.0, delta_min=90.0), Case("p-early", 4.0, delta_min=-61.0)]  # outside +-60 min
    cases += [Case("p-absurd", 12.0), Case("p-bad-ecg", 4.0, unusable=True)]
    cases += [Case("p-lysed", 7.2, hemolysed=True)]  # kept for the record, never trained on
    ecgs = seed(registry, cases)
    seed(registry, [Case("p-0", 2.6, delta_min=30.0)], ecgs=ecgs[:1])  # same ECG again, a farther lab

    code, output = retrain()
    assert code == 0, output
    run_dir = next((registry.home / "retrain").iterdir())
    record = json.loads((run_dir / "retrain.json").read_text())
    confirmed = pd.read_parquet(run_dir / "confirmed.parquet")
    expected = {TRAIN: sum(assign(f"p-{i}", set(), 0.2) == TRAIN for i in range(30)), LOCKED: 3, UNKEYED: 2}
    expected[HOLDOUT] = 30 - expected[TRAIN]
    assert confirmed["assignment"].value_counts().to_dict() == {k: v for k, v in expected.items() if v}
    run = record["criteria"]["retrain"]
    assert run["confirmed"] == expected
    assert run["confirmed_skipped"] == {"no_lab_in_window": 2, "implausible_k": 1, "reviewed_unusable": 1,
                                        "duplicate_ecg": 1, "hemolysed_lab": 1}
    assert "p-lysed" not in set(confirmed["subject"])
    assert confirmed.loc[confirmed["subject"] == "p-0", "k_value"].tolist() == [pytest.approx(2.5)]  # nearest lab

    merged = run_dir / "dataset"
    assert len(np.load(labels_path(merged, "train"))) == 256 + expected[TRAIN]
    cohort = pd.read_parquet(merged / COHORT)
    added = cohort[cohort["source"] == "confirmed"]
    assert set(added["split"]) == {"train"} and len(added) == expected[TRAIN]
    assert set(added["k_comment"]) == {"none"}
    assert set(added["subject_id"]) == {f"p-{i}" for i in range(30) if assign(f"p-{i}", set(), 0.2) == TRAIN}
    assert not set(added["subject_id"]) & set(_base_subjects(registry.dataset, "val", "test"))
    assert (cohort[cohort["source"] == "base"]["split"].value_counts().to_dict()
            == {"train": 256, "val": 64, "test": 64})
    for split in ("val", "test"):
        assert np.array_equal(np.load(labels_path(merged, split)), np.load(labels_path(registry.dataset, split)))

    metrics = record["metrics"]
    for model in ("champion", "challenger"):
        assert metrics[model]["test"]["overall"]["n"] == 64
        assert metrics[model]["gate"]["overall"]["n"] == 64  # this dataset has no cal split: the gate uses val
        assert metrics[model]["confirmed"]["overall"]["n"] == expected[HOLDOUT] + 5
    assert metrics["champion"]["test"]["overall"]["mae"] != metrics["challenger"]["test"]["overall"]["mae"]
    assert metrics["champion"]["test"]["hyper"]["n_positive"] > 5  # the sensitivity check has cases
    with session_scope(registry.database_url) as session:
        decision = session.scalars(sa.select(GateDecision)).one()
        assert decision.passed is all(check["passed"] for check in decision.criteria["checks"])
        assert record["outcome"]["status"] == ("promoted" if decision.passed else "refused")
        assert decision.challenger.status is (ModelStatus.CHAMPION if decision.passed else ModelStatus.CHALLENGER)
        assert decision.challenger.version == record["outcome"]["challenger"] and decision.actor.startswith("cli:")
        champion_card = json.loads((registry.champion_run / MODEL_CARD).read_text())
        assert decision.champion.version == champion_card["version"] != decision.challenger.version
        criteria = decision.criteria
        assert [check["name"] for check in criteria["checks"]] == [
            "few-shot MAE", "overall MAE", "hyperkalemia sensitivity"]
        assert criteria["metrics"]["challenger"]["test"]["few"]["mae"] == pytest.approx(
            metrics["challenger"]["test"]["few"]["mae"])
        assert criteria["forced"] is False and criteria["gate"]["delta"] == 0.0
        assert criteria["gate"]["split"] == "val" and criteria["gate"]["fallback_to_val"] is True
        assert criteria["checks"][0]["improvement_ci95"] is not None
        card = decision.challenger.card
        assert card["retrain"]["data_fingerprint"] == run["data_fingerprint"]
        assert card["training_data"]["path"] == str(merged)
    promotion = ["model.promote"] if record["outcome"]["status"] == "promoted" else []
    audited = ["model.register", "model.gate", *promotion, "model.retrain"]
    assert registry.actions()[-len(audited):] == audited

    before = {model: registry.count(model) for model in (GateDecision, ModelVersion, AuditEvent)}
    code, output = retrain()
    assert code == 0 and "nothing to do" in output, output
    assert {model: registry.count(model) for model in before} == before
    assert len(list((registry.home / "retrain").iterdir())) == 1


@pytest.mark.slow
def test_challenger_worse_in_the_few_shot_region_is_refused_and_can_be_forced(registry: Registry) -> None:
    seed(registry, [Case(f"p-{i}", float(k)) for i, k in enumerate(np.round(np.linspace(2.2, 7.0, 24), 1))])
    # A challenger that cannot learn: its re-initialised head stays at the mean K+, so it misses the tails.
    code, output = retrain("-o", "lr=1e-9", "-o", "epochs=1")
    assert code == 0 and "\nrefused: gate refused" in output, output
    with session_scope(registry.database_url) as session:
        decision = session.scalars(sa.select(GateDecision)).one()
        few = decision.criteria["checks"][0]
        assert few["name"] == "few-shot MAE" and few["passed"] is False
        assert few["challenger"] > few["limit"] + 0.1  # clearly worse, not a near miss
        assert get_champion(session).id == decision.champion_id
        detail = session.scalars(sa.select(AuditEvent.detail).where(AuditEvent.action == "model.retrain")).one()
        assert detail["decision"] == "refused" and detail["forced"] is False
        challenger = decision.challenger.version

    code, output = retrain("--force-promote")  # same data: no retraining, the refused challenger is promoted
    assert code == 0 and "forced" in output, output
    with session_scope(registry.database_url) as session:
        assert get_champion(session).version == challenger
        forced = session.scalars(sa.select(GateDecision).order_by(GateDecision.id.desc())).first()
        assert forced.passed is False and forced.criteria["forced"] is True
        assert forced.criteria["forced_from_gate_decision"] == decision.id
    assert registry.actions()[-3:] == ["model.gate", "model.promote", "model.retrain"]
    assert len(list((registry.home / "retrain").iterdir())) == 1

    code, output = retrain()  # the champion was made from this data: nothing to do
    assert code == 0 and "nothing to do" in output, output


def test_a_running_retrain_holds_the_lock(registry: Registry) -> None:
    seed(registry, [Case("p-1", 4.0), Case("p-2", 5.0)])
    with retrain_lock(registry.home, registry.database_url):
        code, output = retrain()
    assert code == 3 and "another ecgk retrain is running" in output and "pid" in output, output
    assert registry.count(GateDecision) == 0 and not (registry.home / "retrain").exists()
    # The lock file of a finished (or crashed) run is no obstacle: the kernel dropped its flock.
    (registry.home / "retrain.lock").write_text("pid 999999 on elsewhere since 2180-01-01\n")
    with retrain_lock(registry.home, registry.database_url):
        assert "pid" in (registry.home / "retrain.lock").read_text()


def test_a_killed_retrain_leaves_no_record_and_the_rerun_completes(registry: Registry) -> None:
    seed(registry, [Case("p-1", 4.0), Case("p-2", 5.0), Case("p-3", 6.2)])
    env = os.environ | {"ECGK_HOME": str(registry.home), "ECGK_DATABASE_URL": registry.database_url}
    args = [sys.executable, "-m", "ecg_k", "retrain", "--no-progress", "--device", "cpu", "-o", "epochs=500"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((registry.home / "retrain").glob("*/challenger/checkpoint.pt")):
        assert process.poll() is None, "the run ended before it could be killed mid-training"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-training: no chance to clean up
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert registry.count(GateDecision) == 0 and registry.count(ModelVersion) == 1  # nothing half-recorded
    code, output = retrain()  # the kernel released the lock; the rerun starts afresh in a new run directory
    assert code == 0, output
    assert registry.count(GateDecision) == 1 and registry.actions()[-1] == "model.retrain"
    assert len(list((registry.home / "retrain").iterdir())) == 2


def test_postgresql_advisory_lock_spans_hosts(postgres_server: PostgresServer, tmp_path: Path) -> None:  # noqa: F811
    url = postgres_server.url("postgres")
    with retrain_lock(tmp_path / "host-a", url):
        with pytest.raises(RetrainBusyError, match="database's retraining lock"):
            with retrain_lock(tmp_path / "host-b", url):
                pass
    with retrain_lock(tmp_path / "host-b", url):  # released with the first run
        pass


def test_nothing_to_train_on_and_bad_input(registry: Registry, tmp_path: Path) -> None:
    code, output = retrain()
    assert code == 0 and "nothing to do: 0 confirmed case(s) to train on" in output, output
    seed(registry, [Case(None, 4.0)])  # evaluable, but no subject key: never trained on
    code, output = retrain()
    assert code == 0 and "nothing to do" in output and "'unkeyed': 1" in output, output
    for args, message in [
        (["--delta", "-1"], "invalid option --delta: Input should be greater than or equal to 0"),
        (["--holdout-fraction", "1"], "invalid option --holdout-fraction:"),
        (["-o", "epochs=0"], "invalid option -o epochs:"),
        (["--data", str(tmp_path / "missing")], "is not an ecg-k dataset"),
        (["--champion-run", str(tmp_path)], "is not the champion's training run"),
        (["--url", f"sqlite:///{tmp_path / 'empty.db'}"], "run `ecgk db upgrade`"),
    ]:
        code, output = retrain(*args)
        assert code == 2 and message in output, (args, output)
    with session_scope(registry.database_url) as session:
        session.execute(sa.update(ModelVersion).values(status=ModelStatus.RETIRED))
    code, output = retrain()
    assert code == 2 and "no champion" in output
    assert registry.count(GateDecision) == 0


def _fake_run(root: Path, **train: object) -> Path:
    """A run directory with a config.json (the champion's recipe) and a best.pt placeholder."""
    root.mkdir(parents=True)
    config = TrainConfig.model_validate({"data": "/d", "out": root, "model": "tiny", **train})
    _, schedule = config.resolve(n_train=256)
    write_run_record(root, RunRecord(
        train=config.model_dump(mode="json"), schedule=TrainSchedule.model_validate(schedule), method_phases=[],
        stage_phases=[], dataset=RunDataset(path="/d", counts={"train": 256}, preprocess=PreprocessConfig()),
        runtime={}, code_version=CodeVersion(package="test")))
    (root / "best.pt").write_bytes(b"")
    return root


def test_challenger_plan_follows_the_champions_recipe(tmp_path: Path) -> None:
    stage1 = _fake_run(tmp_path / "s1", method="vanilla", epochs=7, lr=0.003)
    stage2 = _fake_run(tmp_path / "s2", method="dist", stage=2, init=str(stage1), epochs=4, batch_size=64,
                       dist={"dist_weight": 0.5, "bw_method": 0.3})
    run, data = tmp_path / "run", tmp_path / "run" / "dataset"
    config = RetrainConfig(out=tmp_path, overrides={"dist": {"dist_weight": 2.0}})

    (head,) = challenger_plan(stage2, data, run, config)  # stage 2 on the champion's own backbone
    assert (head.method, head.stage, head.init, head.epochs, head.batch_size) == ("dist", 2, stage1, 4, 64)
    assert (head.data, head.out) == (data, run / "challenger")
    assert (head.dist.dist_weight, head.dist.bw_method) == (2.0, 0.3)  # -o merges into the recipe
    first, second = challenger_plan(stage2, data, run, config.model_copy(update={"full": True}))
    assert (first.method, first.stage, first.init, first.epochs, first.lr) == ("vanilla", 1, None, 7, 0.003)
    assert (second.stage, second.init, second.out) == (2, run / "stage1", run / "challenger")

    (from_stage1,) = challenger_plan(stage1, data, run, RetrainConfig(out=tmp_path))
    assert (from_stage1.method, from_stage1.stage, from_stage1.init) == ("dist", 2, stage1)
    assert (from_stage1.epochs, from_stage1.batch_size) == (None, None)  # stage 2's own step budget
    (full,) = challenger_plan(stage1, data, run, RetrainConfig(out=tmp_path, full=True))
    assert (full.method, full.stage, full.init) == ("vanilla", 1, None)
    with pytest.raises(RetrainError, match="no stage-2 method; use --full"):
        challenger_plan(_fake_run(tmp_path / "inv", method="inv"), data, run, RetrainConfig(out=tmp_path))
    (stage1 / "best.pt").unlink()
    with pytest.raises(RetrainError, match="stage-1 run .* is gone"):
        challenger_plan(stage2, data, run, config)


def test_a_broken_audit_chain_stops_the_run_before_labs_are_trusted(registry: Registry) -> None:
    seed(registry, [Case("s-1", 6.1)])
    engine = create_db_engine(registry.database_url)
    try:
        with engine.begin() as connection:  # an operator rewrites who created the reviewer's key
            connection.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            connection.exec_driver_sql("UPDATE audit_events SET actor = 'cli:someone-else' WHERE seq = 1")
    finally:
        engine.dispose()
    code, output = retrain()
    assert code == 2 and "audit chain is broken" in output and "seq=1" in output, output
    assert registry.count(GateDecision) == 0

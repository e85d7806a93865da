"""The dataset manifest, run record and run metrics: one writer and one reader each, round trips, the previous
format read through the same reader, other formats and unknown keys refused with what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_k.data.cohort import CohortConfig
from ecg_k.data.errors import DataInputError
from ecg_k.evaluation.regions import ShotRule
from ecg_k.evaluation.report import evaluate_predictions
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.common import CodeVersion
from ecg_k.records.dataset import DatasetManifest, IngestConfig, read_manifest, write_manifest
from ecg_k.records.run import (
    RunDataset,
    RunError,
    RunMetrics,
    RunRecord,
    TrainSchedule,
    read_run_metrics,
    read_run_record,
    write_run_metrics,
    write_run_record,
)

TRAIN = np.round(np.clip(np.random.default_rng(0).normal(4.2, 0.5, 500), 1.5, 10), 1)


def _manifest() -> DatasetManifest:
    config = IngestConfig(cohort=CohortConfig(), preprocess=PreprocessConfig(leads="I,II"))
    return DatasetManifest(status="complete", config=config, preprocess_digest=config.preprocess.digest(),
                           counts={"train": 3, "val": 1}, label_histogram={"train": {"4.1": 3}, "val": {"4.0": 1}},
                           checksums={"cohort.parquet": "0" * 64})


def _record() -> RunRecord:
    schedule = TrainSchedule(batch_size=16, batch_size_source="auto", epochs=10, epochs_source="set",
                             steps_per_epoch=3, total_steps=30, min_steps=1500, n_train=48, world_size=1)
    return RunRecord(train={"data": "/d", "method": "dist", "stage": 2, "model": "tiny"}, schedule=schedule,
                     method_phases=[], stage_phases=[], runtime={"device": "cpu"},
                     dataset=RunDataset(path="/d", counts={"train": 48}, preprocess=PreprocessConfig()),
                     code_version=CodeVersion(package="0.1.0"))


def _metrics(rule: ShotRule) -> RunMetrics:
    y = np.round(np.linspace(2.5, 6.5, 41), 1)
    frame = pd.DataFrame({"split": ["test"] * y.size + ["val"] * y.size, "y": np.r_[y, y],
                          "y_hat": np.r_[y + 0.2, y - 0.1]})
    return RunMetrics.model_validate(evaluate_predictions(frame, rule.regions(TRAIN), "dist", n_boot=0))


def test_manifest_round_trips_and_names_one_preprocessing(tmp_path: Path) -> None:
    manifest = _manifest()
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert manifest.preprocess.leads == ("I", "II")
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["format"] == "ecg-k-dataset/1" and "retrain" not in on_disk  # absent parts stay absent


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "ecg-k-dataset/0"}, r"has format 'ecg-k-dataset/0'; this code reads 'ecg-k-dataset/1'"),
    ({"preprocessing": {}}, r"preprocessing: Extra inputs are not permitted"),
    ({"preprocess_digest": "f" * 64}, r"is not the digest .* of config.preprocess"),
    ({"status": "half"}, r"status: Input should be 'cohort', 'partial' or 'complete'"),
])
def test_manifest_reader_refuses_what_it_cannot_trust(tmp_path: Path, change: dict[str, object],
                                                       message: str) -> None:
    write_manifest(tmp_path, _manifest())
    payload = json.loads((tmp_path / "manifest.json").read_text()) | change
    (tmp_path / "manifest.json").write_text(json.dumps(payload))
    with pytest.raises(DataInputError, match=message):
        read_manifest(tmp_path)


def test_no_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataInputError, match="is not an ecg-k dataset"):
        read_manifest(tmp_path)


def test_run_record_round_trips_and_reads_the_previous_format(tmp_path: Path) -> None:
    record = _record()
    write_run_record(tmp_path, record)
    assert read_run_record(tmp_path) == record
    assert (record.method, record.stage, record.data) == ("dist", 2, Path("/d"))
    legacy = {k: v for k, v in json.loads((tmp_path / "config.json").read_text()).items() if k != "format"}
    (tmp_path / "config.json").write_text(json.dumps(legacy))  # written before the format field existed
    assert read_run_record(tmp_path) == record
    (tmp_path / "config.json").write_text(json.dumps(legacy | {"format": "ecg-k-run/9"}))
    with pytest.raises(RunError, match="has format 'ecg-k-run/9'; this code reads 'ecg-k-run/1'"):
        read_run_record(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"train": {"method": "dist"}}))
    with pytest.raises(RunError, match=r"train: Value error, train lacks \['data', 'model', 'stage'\]"):
        read_run_record(tmp_path)
    with pytest.raises(RunError, match="is not a training run"):
        read_run_record(tmp_path / "nowhere")


def test_run_metrics_keep_the_regions_evaluate_computed(tmp_path: Path) -> None:
    rule = ShotRule(name="relative", many=0.6, few=0.3)
    metrics = _metrics(rule)
    write_run_metrics(tmp_path, metrics)
    saved = read_run_metrics(tmp_path)
    assert saved == metrics and saved.regions == rule.regions(TRAIN)
    assert (saved.regions.many, saved.regions.few) == (0.6, 0.3)
    assert saved.other_regions.rule == "count" and (saved.other_regions.many, saved.other_regions.few) == (100, 20)
    assert list(saved.splits) == ["val", "test"] and saved.as_dict()["test"] == metrics.splits["test"]
    legacy = {k: v for k, v in json.loads((tmp_path / "metrics.json").read_text()).items() if k != "format"}
    (tmp_path / "metrics.json").write_text(json.dumps(legacy))
    assert read_run_metrics(tmp_path) == metrics
    (tmp_path / "metrics.json").write_text(json.dumps(legacy | {"shot_rule": "count", "extra": 1}))
    with pytest.raises(RunError, match="extra: Extra inputs are not permitted"):
        read_run_metrics(tmp_path)
    with pytest.raises(RunError, match="run `ecgk evaluate --run"):
        read_run_metrics(tmp_path / "unevaluated")

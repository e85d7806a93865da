"""A small contract-valid dataset directory whose signals carry K+ (a tone whose amplitude and frequency
follow the label), so a tiny Net1D learns it in a few CPU steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_k.data.cohort import CohortConfig
from ecg_k.data.store import labels_path, signals_path
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.dataset import DatasetManifest, IngestConfig, write_manifest

N_SAMPLES = 5000


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    mixture = np.where(rng.random(n) < 0.8, rng.normal(4.2, 0.4, n), rng.normal(3.2, 0.8, n))
    return np.round(np.clip(mixture, 2.0, 7.5), 1).astype(np.float32)


def _signals(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    t = np.arange(N_SAMPLES) / 500.0
    amp = (labels[:, None] - 2.0) / 2.0
    noise = 0.1 * rng.standard_normal((len(labels), N_SAMPLES))
    x = amp * np.sin(2 * np.pi * (1.0 + 0.5 * labels[:, None]) * t) + noise
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True) * (0.5 + 0.2 * labels[:, None])
    return x[:, None, :].astype(np.float16)


def write_toy_dataset(root: Path, sizes: dict[str, int], seed: int = 0,
                      sample_labels: Callable[[np.random.Generator, int], np.ndarray] = _labels) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    histogram: dict[str, dict[str, int]] = {}
    for split, n in sizes.items():
        labels = sample_labels(rng, n)
        np.save(signals_path(root, split), _signals(rng, labels))
        np.save(labels_path(root, split), labels)
        histogram[split] = {f"{k:.1f}": int(c) for k, c in zip(*np.unique(labels, return_counts=True), strict=True)}
        rows.append(pd.DataFrame({
            "subject_id": rng.integers(10_000_000, 19_999_999, n),
            "study_id": np.arange(n) + 40_000_000 + len(rows) * n,
            "ecg_time": pd.Timestamp("2180-01-01"), "ecg_path": "files/x", "k_value": labels,
            "k_time": pd.Timestamp("2180-01-01"), "k_itemid": 50971, "delta_min": 0.0, "split": split,
        }))
    pd.concat(rows, ignore_index=True).to_parquet(root / "cohort.parquet", index=False)
    config = IngestConfig(cohort=CohortConfig(), preprocess=PreprocessConfig(leads="I"))  # one lead, as written
    write_manifest(root, DatasetManifest(status="complete", config=config, counts=sizes, label_histogram=histogram))
    return root


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "dataset", {"train": 256, "val": 64, "test": 64})

"""The dataset directory contract (DESIGN.md): file names, manifest I/O, split arrays.

``D/cohort.parquet``, ``D/{split}.signals.npy`` (float16, ``(n, leads, samples)``, row i = i-th cohort
row of that split), ``D/{split}.labels.npy`` (float32), ``D/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecg_k.data.errors import DataInputError
from ecg_k.data.splits import SPLITS

MANIFEST = "manifest.json"
COHORT = "cohort.parquet"
REJECTED = "rejected.parquet"
DATASET_FORMAT = "ecg-k-dataset/1"


def signals_path(root: Path, split: str) -> Path:
    return root / f"{split}.signals.npy"


def labels_path(root: Path, split: str) -> Path:
    return root / f"{split}.labels.npy"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (the format of every manifest and card)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and rename, so a crash or a full disk never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_json(tmp, payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write a parquet file through a temporary file and rename (the previous file survives a failed write)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a dataset directory, with a clear error when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        raise DataInputError(f"{root} is not an ecg-k dataset (no {MANIFEST})")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def present_splits(root: Path) -> tuple[str, ...]:
    """The non-empty splits of a dataset, in :data:`~ecg_k.data.splits.SPLITS` order (a dataset written before
    ``cal`` and ``test_natural`` existed has only train, val and test)."""
    counts = read_manifest(root).get("counts", {})
    return tuple(split for split in SPLITS if counts.get(split, 0) > 0)


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Signals (read-only float16 memmap) and labels of one split of a complete dataset."""
    manifest = read_manifest(root)
    if manifest.get("status") != "complete":
        raise DataInputError(f"dataset {root} is not complete (status {manifest.get('status')!r})")
    if not signals_path(root, split).is_file():
        raise DataInputError(f"dataset {root} has no {split!r} split (splits: {', '.join(present_splits(root))})")
    signals = np.load(signals_path(root, split), mmap_mode="r")
    labels = np.load(labels_path(root, split))
    if len(signals) != len(labels):
        raise DataInputError(f"{root}: {split} has {len(signals)} signals but {len(labels)} labels")
    return signals, labels

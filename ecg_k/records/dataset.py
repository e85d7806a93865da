"""``D/manifest.json``, the record of a dataset directory: what it was built from and with, and what it holds.

Written by ``ecgk ingest`` (:mod:`ecg_k.data.ingest`) and by the retraining job's merged dataset
(``training.retrain_data``) through :func:`write_manifest`; read by training, evaluation, export, retraining
and the service's demo through :func:`read_manifest`. The preprocessing config lives in one place,
``config.preprocess``, and its digest (``preprocess_digest``) must match it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ecg_k.data.cohort import CohortConfig
from ecg_k.data.errors import DataInputError
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.common import CodeVersion
from ecg_k.records.jsonio import check_format, describe, read_object, write_record
from ecg_k.signal_quality import SignalQualityConfig

MANIFEST = "manifest.json"
DATASET_FORMAT: Final = "ecg-k-dataset/1"
"""The manifest format this code writes and reads."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(_Record):
    """Everything that determines the dataset's content (saved in the manifest)."""

    cohort: CohortConfig = Field(default_factory=CohortConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    signal_quality: SignalQualityConfig = Field(default_factory=SignalQualityConfig)
    shard_size: int = Field(default=256, ge=1, description="Records per resumable shard.")


class DatasetInputs(_Record):
    """The source files an ingested dataset was built from (a rerun resumes only on the same ones)."""

    ecg_root: str
    record_list: dict[str, str] = Field(description="path and sha256 of record_list.csv")
    labevents: dict[str, str | int] = Field(description="path and size in bytes of labevents")


class RetrainOrigin(_Record):
    """Where a retraining run's merged dataset came from: the base dataset and the confirmed cases added."""

    base_dataset: str
    base_manifest_sha256: str
    confirmed: dict[str, int]
    confirmed_skipped: dict[str, int]
    data_fingerprint: str


class DatasetManifest(_Record):
    """The manifest of a dataset directory (DESIGN.md "On-disk contracts").

    ``counts``, ``label_histogram`` and ``checksums`` are always there; the cohort statistics (``skipped``,
    ``per_bin``, ``labs``, ``demographics``, …) only in an ingested dataset, ``retrain`` only in a merged one.
    """

    format: Literal["ecg-k-dataset/1"] = DATASET_FORMAT
    status: Literal["cohort", "partial", "complete"]
    created: str | None = None
    config: IngestConfig
    preprocess_digest: str | None = None
    inputs: DatasetInputs | None = None
    counts: dict[str, int]
    subjects: dict[str, int] | None = None
    skipped: dict[str, int] | None = None
    ecgs_in_record_list: int | None = None
    discarded_holdout_pairs: int | None = None
    balanced_k_per_bin: dict[str, int] | None = None
    balanced_cap_per_bin: dict[str, Any] | None = None
    per_bin: dict[str, Any] | None = None
    warnings: list[str] | None = None
    labs: dict[str, Any] | None = None
    lab_comments: dict[str, Any] | None = None
    label_histogram: dict[str, dict[str, int]]
    demographics: dict[str, Any] | None = None
    elapsed_s: dict[str, float] | None = None
    retrain: RetrainOrigin | None = None
    checksums: dict[str, str] = Field(default_factory=dict)
    code_version: CodeVersion | None = None

    @model_validator(mode="after")
    def _digest_matches(self) -> DatasetManifest:
        if self.preprocess_digest is not None and self.preprocess_digest != self.preprocess.digest():
            raise ValueError(f"preprocess_digest {self.preprocess_digest} is not the digest "
                             f"{self.preprocess.digest()} of config.preprocess")
        return self

    @property
    def preprocess(self) -> PreprocessConfig:
        """The preprocessing every ECG of this dataset went through (the one the model must be served with)."""
        return self.config.preprocess


def write_manifest(root: Path, manifest: DatasetManifest) -> None:
    """Write ``root/manifest.json`` (atomically)."""
    write_record(root / MANIFEST, manifest)


def read_manifest(root: Path) -> DatasetManifest:
    """The manifest of dataset directory ``root``; a :class:`DataInputError` when there is none, when its format
    is not :data:`DATASET_FORMAT` or when it does not validate."""
    path = root / MANIFEST
    if not path.is_file():
        raise DataInputError(f"{root} is not an ecg-k dataset (no {MANIFEST})")
    try:
        payload = read_object(path, "dataset manifest")
        check_format(payload, DATASET_FORMAT, "dataset manifest", path)
        return DatasetManifest.model_validate(payload)
    except ValidationError as error:
        raise DataInputError(f"dataset manifest {path} is not valid: {describe(error)}") from error
    except ValueError as error:
        raise DataInputError(f"{error}; rebuild the dataset with `ecgk ingest`") from error

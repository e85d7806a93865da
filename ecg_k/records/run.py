"""A training run's records: ``R/config.json`` (:class:`RunRecord`, written by ``ecgk train``) and
``R/metrics.json`` (:class:`RunMetrics`, written by ``ecgk evaluate``).

``RunMetrics`` holds the run's shot regions, computed once by ``ecgk evaluate`` with its
:class:`~ecg_k.evaluation.regions.ShotRule` (custom cut-offs included); export, the report, retraining and the dashboard
load them from here or from the model card and never recompute them from the training labels.

Files written before these records had a ``format`` (the same layout without it) are read as the current
format; any other format is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from ecg_k.evaluation.regions import SHOT_RULES, ShotRegions, ShotRuleName
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.common import CodeVersion
from ecg_k.records.jsonio import RecordError, check_format, describe, read_object, record_payload, write_record

RUN_CONFIG = "config.json"
METRICS = "metrics.json"
RUN_FORMAT: Final = "ecg-k-run/1"
METRICS_FORMAT: Final = "ecg-k-metrics/1"
EVALUATED_SPLITS = ("val", "cal", "test", "test_natural")
"""Splits a metrics record may hold (older datasets have only val and test)."""


class RunError(RecordError):
    """A run directory that is missing, unfinished or foreign."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainSchedule(_Record):
    """What ``ecgk train`` resolved its step budget to (also in the model card as ``train_schedule``)."""

    batch_size: int = Field(ge=1)
    batch_size_source: Literal["set", "auto"]
    epochs: int = Field(ge=1)
    epochs_source: Literal["set", "auto"]
    steps_per_epoch: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    min_steps: int = Field(ge=0)
    n_train: int = Field(ge=0)
    world_size: int = Field(ge=1)


class RunDataset(_Record):
    """The dataset a run trained on, as its manifest stated it then."""

    path: str
    counts: dict[str, int]
    preprocess: PreprocessConfig
    checksums: dict[str, str] = Field(default_factory=dict)


class RunRecord(_Record):
    """``R/config.json``: the config as asked (``train``, the ``TrainConfig`` of ``training.config``: automatic
    batch size and epochs stay automatic), the schedule it resolved to, the method's phases, the dataset it saw,
    where it ran and the code version."""

    format: Literal["ecg-k-run/1"] = RUN_FORMAT
    train: dict[str, Any]
    schedule: TrainSchedule
    method_phases: list[dict[str, Any]]
    stage_phases: list[dict[str, Any]]
    dataset: RunDataset
    runtime: dict[str, Any]
    code_version: CodeVersion

    @field_validator("train")
    @classmethod
    def _train_names_the_run(cls, value: dict[str, Any]) -> dict[str, Any]:
        missing = {"data", "method", "stage", "model"} - set(value)
        if missing:
            raise ValueError(f"train lacks {sorted(missing)}")
        return value

    @property
    def method(self) -> str:
        return str(self.train["method"])

    @property
    def stage(self) -> int:
        return int(self.train["stage"])

    @property
    def data(self) -> Path:
        """The dataset directory the run was trained on."""
        return Path(self.train["data"])


class RunMetrics(_Record):
    """``R/metrics.json`` (DESIGN.md): per evaluated split the region, regression and detection metrics (as
    :func:`ecg_k.evaluation.report.evaluate_predictions` lays them out), the shot rule and the regions of both
    rules on the training labels, the interval report and what was evaluated."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    format: Literal["ecg-k-metrics/1"] = METRICS_FORMAT
    method: str
    shot_rule: ShotRuleName
    shot_regions: dict[ShotRuleName, ShotRegions]
    n_train: int = Field(ge=1)
    val: dict[str, Any] | None = None
    cal: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    test_natural: dict[str, Any] | None = None
    intervals: dict[str, Any] | None = None
    run: dict[str, Any] | None = None

    @field_validator("shot_regions", mode="before")
    @classmethod
    def _parse_regions(cls, value: Any) -> dict[str, ShotRegions]:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping rule -> regions, got {type(value).__name__}")
        return {rule: regions if isinstance(regions, ShotRegions) else ShotRegions.from_dict(regions)
                for rule, regions in value.items()}

    @field_serializer("shot_regions")
    def _dump_regions(self, value: dict[str, ShotRegions]) -> dict[str, dict[str, Any]]:
        return {rule: regions.to_dict() for rule, regions in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> RunMetrics:
        if set(self.shot_regions) != set(SHOT_RULES):
            raise ValueError(f"shot_regions must hold the regions of each rule {list(SHOT_RULES)}, "
                             f"got {sorted(self.shot_regions)}")
        for rule, regions in self.shot_regions.items():
            if regions.rule != rule:
                raise ValueError(f"shot_regions[{rule!r}] holds regions of rule {regions.rule!r}")
        if not self.splits:
            raise ValueError("no evaluated split")
        return self

    @property
    def regions(self) -> ShotRegions:
        """The run's shot regions (its rule and cut-offs), as ``ecgk evaluate`` computed them."""
        return self.shot_regions[self.shot_rule]

    @property
    def other_regions(self) -> ShotRegions:
        """The other rule's regions (its published cut-offs on the same training counts), reported for comparison."""
        return next(regions for rule, regions in self.shot_regions.items() if rule != self.shot_rule)

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        """The evaluated splits' metrics, in :data:`EVALUATED_SPLITS` order."""
        return {split: values for split in EVALUATED_SPLITS if (values := getattr(self, split)) is not None}

    def as_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` layout (splits at the top level), for report tables that index it."""
        return record_payload(self)


def _read(path: Path, what: str, expected: str) -> dict[str, Any]:
    """The record's JSON object, the previous format (the same layout without ``format``) migrated."""
    try:
        payload = read_object(path, what)
        if "format" not in payload:
            payload = {**payload, "format": expected}
        check_format(payload, expected, what, path)
    except RecordError as error:
        raise RunError(str(error)) from error
    return payload


def write_run_record(run: Path, record: RunRecord) -> None:
    """Write ``run/config.json`` (atomically)."""
    write_record(run / RUN_CONFIG, record)


_R = TypeVar("_R", bound=BaseModel)


def _load(path: Path, record: type[_R], what: str, expected_format: str, missing: str) -> _R:
    """The ``record`` in ``path``; a :class:`RunError` saying ``missing`` when there is no such file, or
    naming the first problem of an invalid one."""
    if not path.is_file():
        raise RunError(missing)
    try:
        return record.model_validate(_read(path, what, expected_format))
    except ValidationError as error:
        raise RunError(f"{what} {path} is not valid: {describe(error)}") from error


def read_run_record(run: Path) -> RunRecord:
    """``run/config.json``; a :class:`RunError` when ``run`` is not a training run or the record is invalid."""
    return _load(run / RUN_CONFIG, RunRecord, "run record", RUN_FORMAT,
                 f"{run} is not a training run (no {RUN_CONFIG})")


def write_run_metrics(run: Path, metrics: RunMetrics) -> None:
    """Write ``run/metrics.json`` (atomically)."""
    write_record(run / METRICS, metrics)


def read_run_metrics(run: Path) -> RunMetrics:
    """``run/metrics.json``; a :class:`RunError` when the run has not been evaluated or the record is invalid."""
    return _load(run / METRICS, RunMetrics, "run metrics", METRICS_FORMAT,
                 f"{run} has no {METRICS}; run `ecgk evaluate --run {run}` first")

"""``ecgk retrain``: one batch run of champion/challenger retraining, safe to schedule (docs/retraining.md).

1. Lock (:mod:`training.retrain_lock`); read the champion, its training run and the base dataset.
2. Verify the audit chain (``ecgk audit verify``): labs are trusted only while the trail that records who
   confirmed them, and the predictions they confirm, is intact; a broken chain stops the run.
   Collect the lab-confirmed predictions and assign their subjects (:mod:`training.retrain_data`); stop
   with "nothing to do" when no case can be trained on, or when this data was already tried against this
   champion (or made it).
3. Write the merged dataset; train the challenger from the champion: stage 2 (the champion's backbone, the
   head retrained with the champion's stage-2 method) by default, or end to end with ``full``.
4. Evaluate, export (parity-checked ONNX + model card); evaluate champion and challenger through their ONNX
   files on the locked test set and on the confirmed cases kept out of training; gate
   (:mod:`training.retrain_gate`).
5. Register the challenger, record the decision and promote it when the gate passed or an operator forced
   it, audited, in one transaction; write ``retrain.json`` in the run directory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from ecg_k.cli import console
from ecg_k.data.store import load_split, write_parquet_atomic
from ecg_k.db.audit import record_audit, verify_chain
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.models import AuditOutcome, GateDecision, ModelStatus, ModelVersion
from ecg_k.db.registry import (
    RETRAIN_CRITERIA_KEY,
    find_retrain_decision,
    find_version,
    get_champion,
    record_retrain,
    register_model,
)
from ecg_k.db.session import session_scope
from ecg_k.evaluation.regions import ShotRule
from ecg_k.inference import OnnxModel
from ecg_k.losses.methods import METHODS, get_method
from ecg_k.model_card import RetrainProvenance, load_model_card, parse_model_card
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.common import CodeVersion
from ecg_k.records.dataset import read_manifest
from ecg_k.records.jsonio import write_json_atomic
from ecg_k.records.run import RUN_CONFIG, read_run_record
from ecg_k.version import code_version
from training.config import TrainConfig
from training.evaluate import evaluate_run
from training.export import MODEL_CARD, MODEL_FILE, export_run
from training.retrain_data import (
    HOLDOUT,
    LOCKED,
    TRAIN,
    UNKEYED,
    ConfirmedCases,
    RetrainDataError,
    collect_confirmed,
    data_fingerprint,
    locked_subjects,
    resolve_base_dataset,
    write_merged_dataset,
)
from training.retrain_gate import (
    GateConfig,
    GateResult,
    evaluate_model,
    few_improvement_ci,
    gate,
    gate_split,
    predict_arrays,
    split_subjects,
    summarize,
)
from training.retrain_lock import retrain_lock
from training.trainer import BEST, Trainer

RUN_RECORD = "retrain.json"
CONFIRMED_FILE = "confirmed.parquet"
CHALLENGER_DIR = "challenger"
STAGE1_DIR = "stage1"
Status = Literal["nothing_to_do", "refused", "promoted", "forced"]


class RetrainConfig(BaseModel):
    """The options of one run (``ecgk retrain`` flags)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path = Field(description="Root of the run directories.")
    data: Path | None = Field(default=None, description="Base dataset (default: the champion's, or its base).")
    champion_run: Path | None = Field(default=None, description="Champion's training run (default: beside its ONNX).")
    full: bool = Field(default=False, description="Retrain end to end instead of the head only.")
    gate: GateConfig = Field(default_factory=GateConfig)
    holdout_fraction: float = Field(default=0.2, ge=0, lt=1, description="Confirmed subjects kept for evaluation.")
    window_min: float | None = Field(default=None, gt=0, description="Pairing window (default: the dataset's).")
    min_cases: int = Field(default=1, ge=1, description="Fewest trainable confirmed cases worth a run.")
    force_promote: bool = Field(default=False, description="Promote even when the gate refuses (audited).")
    rerun: bool = Field(default=False, description="Run even when this data was already tried.")
    n_boot: int = Field(default=200, ge=0, description="Bootstrap resamples for the clinical CIs.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    overrides: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields for the challenger.")
    progress: bool = True


class RetrainOutcome(BaseModel):
    """What a run did."""

    status: Status
    message: str
    data_fingerprint: str
    run_dir: Path | None = None
    gate_decision_id: int | None = None
    challenger: str | None = None


class RetrainError(ValueError):
    """A run that cannot start (no champion, foreign run directory, bad option)."""


def champion_run_dir(champion: ModelVersion, override: Path | None) -> Path:
    """The champion's training run: ``override`` or the directory of its ONNX file; it must hold the
    selected weights and have exported exactly the champion's ONNX file."""
    run = override or Path(champion.path).parent
    for name in (RUN_CONFIG, BEST):
        if not (run / name).is_file():
            raise RetrainError(f"{run} is not the champion's training run (no {name}); pass --champion-run RUN")
    card = run / MODEL_CARD
    if card.is_file() and load_model_card(card).onnx.sha256 != champion.sha256:
        raise RetrainError(f"{run} exported another model than the champion {champion.version}")
    return run


def _stage2_method(champion_method: str) -> str:
    """The method whose head phase follows a stage-1 champion's phase (vanilla -> dist, X -> X+dist)."""
    name = "dist" if champion_method == "vanilla" else f"{champion_method}+dist"
    if name not in METHODS or get_method(name).phases[0] != get_method(champion_method).phases[0]:
        raise RetrainError(f"the champion ({champion_method}, stage 1) has no stage-2 method; use --full")
    return name


def challenger_plan(champion_run: Path, dataset: Path, run_dir: Path, config: RetrainConfig) -> list[TrainConfig]:
    """The training runs that make the challenger, last one = the challenger, all from the champion's recipe
    (its ``config.json``) on ``dataset``, with ``config.overrides`` on top."""
    train = read_run_record(champion_run).train
    common = {"data": dataset, "device": config.device}

    def make(recipe: dict[str, Any], **changes: Any) -> TrainConfig:
        values = {**recipe, **common, **changes}
        for key, value in config.overrides.items():  # -o dist.dist_weight=2 keeps the recipe's other dist fields
            values[key] = {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) \
                else value
        return TrainConfig.model_validate(values)

    if train["stage"] == 2:
        init = Path(train["init"])
        if not (init / BEST).is_file():
            raise RetrainError(f"the champion's stage-1 run {init} is gone (no {BEST}); it holds the backbone")
        if not config.full:
            return [make(train, out=run_dir / CHALLENGER_DIR, init=init)]
        stage1 = read_run_record(init).train
        return [make(stage1, out=run_dir / STAGE1_DIR, init=None),
                make(train, out=run_dir / CHALLENGER_DIR, init=run_dir / STAGE1_DIR)]
    if config.full:
        return [make(train, out=run_dir / CHALLENGER_DIR, init=None)]
    return [make(train, out=run_dir / CHALLENGER_DIR, stage=2, method=_stage2_method(train["method"]),
                 init=champion_run, batch_size=None, epochs=None)]  # stage 2 has its own step budget


def _check_preprocessing(champion: ModelVersion, base: Path) -> PreprocessConfig:
    preprocessing = read_manifest(base).preprocess
    if preprocessing.digest() != champion.preprocessing_digest:
        raise RetrainDataError(f"the base dataset {base} was preprocessed differently from the champion "
                               f"{champion.version}; pass the champion's dataset with --data")
    return preprocessing


def _open(version_path: Path, sha256: str, device: str) -> OnnxModel:
    model = OnnxModel(version_path.with_name(MODEL_CARD), version_path, use_cuda=device != "cpu")
    if model.card.onnx.sha256 != sha256:
        raise RetrainDataError(f"{version_path} is not the registered model (sha256 {model.card.onnx.sha256})")
    return model


def _say(message: str) -> None:
    console.print(message, soft_wrap=True)


class Retraining:
    """One run (see the module docstring); :meth:`run` holds the lock for its whole length."""

    def __init__(self, config: RetrainConfig, database_url: str, store: EcgStore, home: Path, actor: str) -> None:
        self.config, self.database_url, self.store, self.home, self.actor = config, database_url, store, home, actor

    def run(self) -> RetrainOutcome:
        with retrain_lock(self.home, self.database_url):
            return self._locked()

    def _locked(self) -> RetrainOutcome:
        cfg = self.config
        chain = verify_chain(self.database_url)
        if chain.broken is not None:
            raise RetrainDataError(f"the audit chain is broken, so the confirmed labs cannot be trusted: "
                                   f"{chain.broken} (run `ecgk audit verify`)")
        _say(f"audit chain intact: {chain.events} event(s), head {chain.head_hash[:12]}")
        with session_scope(self.database_url) as session:
            champion = get_champion(session)
            if champion is None:
                raise RetrainError("no champion in the registry: register and promote a model first")
            champion_run = champion_run_dir(champion, cfg.champion_run)
            base = cfg.data or self._base_of(champion)
            preprocessing = _check_preprocessing(champion, base)
            cohort = read_manifest(base).config.cohort
            if cfg.window_min is not None:
                cohort = cohort.model_copy(update={"window_min": cfg.window_min})
            _say(f"champion {champion.name} {champion.version} (run {champion_run}); base dataset {base}")
            confirmed = collect_confirmed(session, self.store, preprocessing, cohort, locked_subjects(base),
                                          cfg.holdout_fraction)
            params = {"holdout_fraction": cfg.holdout_fraction, "window_min": cohort.window_min,
                      "itemids": list(cohort.itemids), "k_range": [cohort.k_min, cohort.k_max],
                      "preprocessing_digest": preprocessing.digest()}
            fingerprint = data_fingerprint(base, confirmed, params)
            counts = confirmed.counts()
            _say(f"confirmed cases: {counts} (skipped: {confirmed.skipped or 'none'}); data {fingerprint[:12]}")
            run_dir = cfg.out / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{fingerprint[:8]}"
            plan = challenger_plan(champion_run, run_dir / "dataset", run_dir, cfg)  # bad options fail here
            seen = None if cfg.rerun else find_retrain_decision(session, fingerprint, champion)
            if seen is not None:
                return self._seen(session, seen, champion, fingerprint)
            if counts[TRAIN] < cfg.min_cases:
                return RetrainOutcome(status="nothing_to_do", data_fingerprint=fingerprint, message=(
                    f"nothing to do: {counts[TRAIN]} confirmed case(s) to train on, at least {cfg.min_cases} needed"))
        try:
            return self._train_and_decide(champion, base, confirmed, fingerprint, params, run_dir, plan)
        except BaseException as err:
            with session_scope(self.database_url) as session:
                record_audit(session, self.actor, "model.retrain", f"retrain:{run_dir.name}", AuditOutcome.FAILURE,
                             None, {"error": type(err).__name__, "data_fingerprint": fingerprint})
            raise

    @staticmethod
    def _base_of(champion: ModelVersion) -> Path:
        """The base dataset behind the champion's training data (its model card names it)."""
        path = parse_model_card(champion.card, source=f"model card of {champion.version}").training_data.path
        if not path:
            raise RetrainError(f"the model card of {champion.version} names no training dataset; pass --data")
        return resolve_base_dataset(Path(path))

    def _seen(self, session: Session, seen: GateDecision, champion: ModelVersion, fingerprint: str) -> RetrainOutcome:
        """Nothing new; with ``force_promote``, promote the challenger that run refused (audited)."""
        refused = seen.champion_id == champion.id and not seen.passed
        what = ("the champion was trained on this data" if seen.challenger_id == champion.id else
                f"this data was already tried against the champion ({'refused' if refused else 'passed'})")
        message = f"nothing to do: {what}, gate decision {seen.id} (--rerun retrains anyway)"
        if not (self.config.force_promote and refused and seen.challenger.status is ModelStatus.CHALLENGER):
            return RetrainOutcome(status="nothing_to_do", data_fingerprint=fingerprint, message=message,
                                  gate_decision_id=seen.id)
        criteria = {**seen.criteria, "forced_from_gate_decision": seen.id}
        decision = record_retrain(session, seen.challenger, champion, passed=False, forced=True, criteria=criteria,
                                  actor=self.actor)
        return RetrainOutcome(status="forced", data_fingerprint=fingerprint, gate_decision_id=decision.id,
                              challenger=seen.challenger.version, message=(
                                  f"forced promotion of {seen.challenger.version}, refused by gate decision "
                                  f"{seen.id} (now decision {decision.id})"))

    def _train_and_decide(self, champion: ModelVersion, base: Path, confirmed: ConfirmedCases, fingerprint: str,
                          params: dict[str, Any], run_dir: Path, plan: list[TrainConfig]) -> RetrainOutcome:
        cfg = self.config
        console.rule(f"retraining run {run_dir}")
        dataset = write_merged_dataset(base, run_dir / "dataset", confirmed, fingerprint)
        write_parquet_atomic(confirmed.cases, run_dir / CONFIRMED_FILE)
        _say(f"merged dataset {dataset}: base train + {confirmed.counts()[TRAIN]} confirmed case(s)")
        for step, train_config in enumerate(plan, 1):
            _say(f"training {step}/{len(plan)}: {train_config.method} stage {train_config.stage} -> {train_config.out}")
            Trainer(train_config, progress=cfg.progress).run()
        challenger_run = plan[-1].out
        champion_card = parse_model_card(champion.card, source=f"model card of {champion.version}")
        regions = champion_card.shot_regions  # the challenger is evaluated and gated under the champion's rule
        evaluate_run(challenger_run, shot_rule=ShotRule(name=regions.rule, many=regions.many, few=regions.few),
                     n_boot=cfg.n_boot, device=cfg.device)
        provenance = RetrainProvenance(
            data_fingerprint=fingerprint, run_dir=str(run_dir.resolve()), base_dataset=str(base),
            mode="full" if cfg.full else "stage2", method=plan[-1].method, confirmed=confirmed.counts(),
            confirmed_skipped=confirmed.skipped, params=params,
            champion={"version": champion.version, "sha256": champion.sha256},
            code_version=CodeVersion.model_validate(code_version()))
        card = export_run(challenger_run, retrain=provenance)
        run_info = provenance.model_dump(mode="json")

        split = gate_split(base)
        _say(f"evaluating champion and challenger (ONNX) on the gate split ({split}), the locked test set "
             "(reported only) and the confirmed cases")
        gate_signals, gate_labels = load_split(base, split)
        test_signals, test_labels = load_split(base, "test")
        held_cases, held_signals = confirmed.of(HOLDOUT, LOCKED, UNKEYED)
        sets = {"gate": (gate_signals, gate_labels), "test": (test_signals, test_labels),
                "confirmed": (held_signals, held_cases["k_value"].to_numpy(np.float32))}
        models = {"champion": _open(Path(champion.path), champion.sha256, cfg.device),
                  "challenger": _open(challenger_run / MODEL_FILE, card.onnx.sha256, cfg.device)}
        metrics = {name: evaluate_model(model, sets, regions, cfg.n_boot) for name, model in models.items()}
        champion_hat, challenger_hat = (predict_arrays(models[n], gate_signals) for n in ("champion", "challenger"))
        improvement = few_improvement_ci(gate_labels, champion_hat, challenger_hat, split_subjects(base, split),
                                         regions, max(cfg.n_boot, 1))
        result = gate(metrics["champion"]["gate"], metrics["challenger"]["gate"], cfg.gate, improvement)
        for check in result.checks:
            _say(f"  {'pass' if check.passed else 'FAIL'}  {check.reason}")
        criteria = self._criteria(result, metrics, run_info, split)
        with session_scope(self.database_url) as session:
            challenger = find_version(session, card.name, card.version) or register_model(
                session, challenger_run / MODEL_CARD, actor=self.actor)
            decision = record_retrain(session, challenger, session.get_one(ModelVersion, champion.id),
                                      passed=result.passed, forced=cfg.force_promote, criteria=criteria,
                                      actor=self.actor)
            decision_id = decision.id
        promoted = result.passed or cfg.force_promote
        status: Status = "refused" if not promoted else "promoted" if result.passed else "forced"
        message = {"promoted": f"gate passed: {card.version} is the champion",
                   "forced": f"gate refused but promotion forced: {card.version} is the champion",
                   "refused": f"gate refused {card.version}: " + "; ".join(result.reasons)}[status]
        outcome = RetrainOutcome(status=status, message=message, data_fingerprint=fingerprint, run_dir=run_dir,
                                 gate_decision_id=decision_id, challenger=card.version)
        write_json_atomic(run_dir / RUN_RECORD, {"outcome": outcome.model_dump(mode="json"), "criteria": criteria,
                                                 "metrics": metrics})
        return outcome

    def _criteria(self, result: GateResult, metrics: dict[str, Any], run_info: dict[str, Any],
                  split: str) -> dict[str, Any]:
        """What the gate decision row keeps: margins, checks, the summary metrics and the run."""
        return {
            "gate": {**self.config.gate.model_dump(), "set": f"{split} split of the base dataset",
                     "split": split, "fallback_to_val": split == "val",
                     "reported_only": "locked balanced test set"},
            "checks": [check.model_dump() for check in result.checks],
            "reasons": result.reasons,
            "metrics": {name: {split: summarize(values) for split, values in by_split.items()}
                        for name, by_split in metrics.items()},
            RETRAIN_CRITERIA_KEY: run_info,
        }

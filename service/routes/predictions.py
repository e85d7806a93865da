"""``/v1/predictions``: score an ECG (JSON, WFDB upload, batch) and read a stored estimate."""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session, defer

from ecg_k.clinical import reported_value
from ecg_k.data.waveforms import read_wfdb
from ecg_k.db.ecg_store import record_ecg
from ecg_k.db.models import ModelVersion, Prediction, Role, utcnow
from ecg_k.leads import repeated_leads
from ecg_k.potassium import RELIABILITY_NOTES
from ecg_k.quality import QualityError, SkipReason, check_finite
from ecg_k.scoring import score_estimate
from service.audit import AuditScope, audit_failures, audited, commit_audited, request_id_of
from service.auth import Caller, Client, Principal
from service.deps import RuntimeDep
from service.runtime import Runtime
from service.schemas import (
    PSEUDONYM_PATTERN,
    BatchIn,
    BatchItemOut,
    BatchOut,
    EcgIn,
    Interval,
    ModelRef,
    PredictionOut,
    Probabilities,
    Unusable,
    UnusableResponse,
    UtcTime,
)
from service.strict import JsonBody

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])

UNUSABLE: dict[int | str, dict[str, Any]] = {status.HTTP_422_UNPROCESSABLE_CONTENT: {
    "model": UnusableResponse, "description": "Unusable ECG (reason) or invalid request."}}
WFDB_RECORD = "record"
WFDB_SIGNAL_SUFFIXES = (".dat", ".mat")
MAX_WFDB_HEADER_BYTES = 64 * 1024


def unusable(reason: SkipReason | str, message: str) -> HTTPException:
    """A 422 whose ``detail`` holds a machine-readable ``reason`` (no number for an unusable ECG)."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, {"reason": str(reason), "message": message})


def prediction_out(row: Prediction) -> PredictionOut:
    """The response form of a stored prediction: every field as stored when it was served (its interpretation,
    region, set and coverage), never scored again."""
    assert row.k_estimate is not None and row.interval_low is not None and row.interval_high is not None
    value = reported_value(row.k_estimate)
    assert row.shot_region is not None and row.flag is not None
    region = row.shot_region
    version = row.model_version
    return PredictionOut(
        id=row.id, request_id=row.request_id, k_estimate=value,
        interval=Interval(low=round(row.interval_low, 2), high=round(row.interval_high, 2),
                          segments=None if row.interval_segments is None else [
                              (low, high) for low, high in row.interval_segments],
                          coverage=row.interval_coverage, method=row.interval_method),
        probabilities=Probabilities(hyperkalemia=row.p_hyper, hypokalemia=row.p_hypo),
        flag=row.flag.flag, interpretation=row.flag,
        critical=row.critical, shot_region=region, reliability_note=RELIABILITY_NOTES[region],
        model=ModelRef(name=version.name, version=version.version, sha256=version.sha256,
                       status=row.model_status.value),
        ecg_sha256=row.ecg_sha256, patient_id=row.patient_id, ecg_time=row.ecg_time, created_at=row.created_at,
    )


class Scored:
    """A raw ECG, its model input and (after :func:`_estimate`) its estimate."""

    def __init__(self, signal: np.ndarray, fs: float, lead_names: list[str], model_input: np.ndarray,
                 ecg_time: datetime | None, patient_id: str | None) -> None:
        self.signal, self.fs, self.lead_names, self.model_input = signal, fs, lead_names, model_input
        self.ecg_time, self.patient_id = ecg_time, patient_id
        self.estimate = float("nan")


def _prepare(runtime: Runtime, signal: np.ndarray, fs: float, lead_names: list[str],
             ecg_time: datetime | None, patient_id: str | None) -> Scored:
    """The card's preprocessing and quality gate; :class:`QualityError` for an unusable ECG.

    Every lead must be finite as float32 (the stored form), not only those the model reads, and no two lead
    names may differ only in case, whitespace or Unicode look-alikes (``duplicate_lead``: which one would win?).
    """
    repeated = repeated_leads(lead_names)
    if repeated:
        raise QualityError(SkipReason.DUPLICATE_LEAD, f"lead names {repeated[:12]!r:.200} name the same lead "
                                                      "(compared without case, whitespace or look-alikes)")
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    check_finite(signal, tuple(lead_names))
    return Scored(signal, fs, lead_names, runtime.model.preprocess(signal, fs, lead_names), ecg_time, patient_id)


def _from_json(runtime: Runtime, ecg: EcgIn) -> Scored:
    names, rows = ecg.named_rows()
    return _prepare(runtime, np.asarray(rows, dtype=np.float64), ecg.sampling_rate, names, ecg.ecg_time,
                    ecg.patient_id)


def _estimate(runtime: Runtime, items: list[Scored]) -> None:
    """One ONNX Runtime run over all items."""
    estimates = runtime.model.predict(np.stack([item.model_input for item in items]))
    for item, estimate in zip(items, estimates, strict=True):
        item.estimate = float(estimate)


def _served_version(session: Session, runtime: Runtime) -> ModelVersion:
    """The served model's registry row, read in the transaction that records its predictions (so the status
    stored is the one committed with them; once per transaction, the session's identity map serves the rest).
    The card (a large JSON document) is the model's own, not reread."""
    version = session.get(ModelVersion, runtime.model_version_id, options=[defer(ModelVersion.card)])
    assert version is not None
    return version


def _prediction_values(runtime: Runtime, item: Scored, sha256: str, principal: Principal, request: Request,
                       started: float) -> dict[str, Any]:
    """The ``predictions`` row of a scored ECG whose blob is stored under ``sha256``, but for the served
    version's ``model_status``, which the caller reads in the transaction that stores the row."""
    card = runtime.model.card
    score = score_estimate(card, item.estimate, runtime.settings.interval_coverage)
    prediction = score.prediction_set
    return {
        "id": uuid.uuid4(), "model_version_id": runtime.model_version_id,
        "api_key_id": principal.key_id, "ecg_sha256": sha256, "request_id": request_id_of(request),
        "k_estimate": score.estimate, "interval_low": prediction.low, "interval_high": prediction.high,
        "interval_segments": [list(segment) for segment in prediction.segments],
        "interval_coverage": prediction.coverage, "interval_method": prediction.method,
        "p_hyper": score.p_hyper, "p_hypo": score.p_hypo,
        "flag": score.interpretation, "critical": score.critical, "shot_region": score.region,
        "quality": {"fs": item.fs, "n_samples": int(item.signal.shape[1]), "leads": item.lead_names,
                    "preprocessing_digest": card.preprocessing_digest},
        "patient_id": item.patient_id, "ecg_time": item.ecg_time, "created_at": utcnow(),
        "latency_ms": (time.perf_counter() - started) * 1e3,
    }


def _store(session: Session, runtime: Runtime, item: Scored, principal: Principal, request: Request,
           started: float) -> Prediction:
    """Store the ECG and its prediction; the caller's transaction commits both."""
    version = _served_version(session, runtime)
    sha256 = runtime.store.put(item.signal, item.fs, item.lead_names)
    record_ecg(session, sha256, item.signal.shape, item.fs, item.lead_names)
    row = Prediction(**_prediction_values(runtime, item, sha256, principal, request, started),
                     model_status=version.status)
    session.add(row)
    session.flush()
    return row


@contextmanager
def _stage(request: Request, name: str) -> Iterator[None]:
    """Time one stage of a single-ECG prediction (``ecgk_prediction_stage_seconds``)."""
    start = time.perf_counter()
    yield
    request.app.state.metrics.stages.labels(name).observe(time.perf_counter() - start)


def _serve_one(request: Request, runtime: Runtime, principal: Principal, item: Scored,
               started: float) -> PredictionOut:
    """Score one ECG, write its blob (fsynced, in this worker thread), then group-commit its ECG row, its
    prediction (with the served version's status read in that transaction) and its audit event; the response
    exists only once all three are committed. The database already answered this request's authentication,
    so a database that is down refuses the request before any blob is written."""
    with _stage(request, "predict"):
        _estimate(runtime, [item])
    with _stage(request, "blob"):
        sha256 = runtime.store.put(item.signal, item.fs, item.lead_names)
    values = _prediction_values(runtime, item, sha256, principal, request, started)

    def write(scope: AuditScope) -> ModelVersion:
        version = _served_version(scope.session, runtime)
        record_ecg(scope.session, sha256, item.signal.shape, item.fs, item.lead_names)
        scope.session.execute(sa.insert(Prediction).values(**values, model_status=version.status))
        scope.detail = {"model_version_id": version.id, "interpretation": values["flag"].value}
        return version

    with _stage(request, "commit"):
        version = commit_audited(request, runtime.settings.database_url, "prediction.create",
                                 f"prediction:{values['id']}", write)
    out = prediction_out(Prediction(**values, model_status=version.status, model_version=version))  # transient
    request.app.state.metrics.predictions.labels(out.flag.value, out.interpretation.value).inc()
    return out


def _detail_of(err: QualityError) -> dict[str, Any]:
    return {"reason": err.reason.value, "message": str(err)}


async def ecg_body(request: Request, principal: Client) -> EcgIn:
    """The JSON body as :class:`EcgIn`, parsed and validated in one pass by pydantic-core.

    FastAPI's own body handling runs ``json.loads`` and then validates the Python objects; for a 12-lead
    10 s ECG (~450 kB of floats) that costs ~15 ms, against ~3 ms here. Depends on the caller so that a
    422 comes after authentication (and is audited), as for the other routes.
    """
    body = await request.body()
    try:
        with _stage(request, "parse"):
            return EcgIn.model_validate_json(body)
    except ValidationError as err:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in err.errors(include_url=False)]
        ) from None


ECG_BODY_OPENAPI = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/EcgIn"}}}}}


@router.post("", status_code=status.HTTP_201_CREATED, responses=UNUSABLE, openapi_extra=ECG_BODY_OPENAPI,
             dependencies=[JsonBody])
def create_prediction(ecg: Annotated[EcgIn, Depends(ecg_body)], request: Request, runtime: RuntimeDep,
                      principal: Client) -> PredictionOut:
    """Estimate K+ from one ECG in mV (JSON); 422 with the reason for an unusable ECG."""
    return predict_ecg(request, runtime, principal, ecg)


def predict_ecg(request: Request, runtime: Runtime, principal: Principal, ecg: EcgIn) -> PredictionOut:
    """The pipeline of one ECG (preprocess, gate, estimate, store, audit), whichever door it came through:
    ``POST /v1/predictions`` and the Open Inference Protocol's infer (service.routes.inference_v2)."""
    started = time.perf_counter()
    with audit_failures(request, runtime.settings.database_url, "prediction.create", lambda: "prediction"):
        try:
            with _stage(request, "preprocess"):
                item = _from_json(runtime, ecg)
        except QualityError as err:
            raise unusable(err.reason, str(err)) from err
        return _serve_one(request, runtime, principal, item, started)


def _wfdb_header(text: str, signal_file: str) -> str:
    """The uploaded header with its record name and every signal file name replaced by fixed ones."""
    lines = text.splitlines()
    content = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if not content:
        raise unusable(SkipReason.UNREADABLE, "the WFDB header holds no record line")
    record_line = lines[content[0]].split()
    if "/" in record_line[0]:
        raise unusable(SkipReason.UNREADABLE, "multi-segment WFDB records are not accepted")
    n_signals = int(record_line[1]) if len(record_line) > 1 and re.fullmatch(r"\d{1,6}", record_line[1]) else 0
    if n_signals < 1 or len(content) < 1 + n_signals:
        raise unusable(SkipReason.UNREADABLE, "the WFDB header declares no signals or lacks signal lines")
    named = {lines[i].split()[0] for i in content[1: 1 + n_signals]}
    if len(named) != 1:
        raise unusable(SkipReason.UNREADABLE, f"the WFDB header's signal lines name {len(named)} files; "
                                              "upload one signal file that holds every signal")
    lines[content[0]] = " ".join([WFDB_RECORD, *record_line[1:]])
    for i in content[1: 1 + n_signals]:
        fields = lines[i].split()
        lines[i] = " ".join([signal_file, *fields[1:]])
    return "\n".join(lines) + "\n"


@router.post("/wfdb", status_code=status.HTTP_201_CREATED, responses=UNUSABLE)
def create_prediction_wfdb(
    request: Request,
    runtime: RuntimeDep,
    principal: Client,
    header: Annotated[UploadFile, File(description="WFDB header (.hea).")],
    signal: Annotated[UploadFile, File(description="WFDB signal file (.dat, or CinC's .mat).")],
    ecg_time: Annotated[UtcTime | None, Form(description="When the ECG was recorded (with offset).")] = None,
    patient_id: Annotated[str | None, Form(pattern=PSEUDONYM_PATTERN)] = None,
) -> PredictionOut:
    """Estimate K+ from a WFDB record uploaded as multipart ``header`` + ``signal``."""
    started = time.perf_counter()
    with audit_failures(request, runtime.settings.database_url, "prediction.create", lambda: "prediction"):
        suffix = Path(signal.filename or "").suffix.lower()
        signal_file = WFDB_RECORD + (suffix if suffix in WFDB_SIGNAL_SUFFIXES else ".dat")
        raw_header = header.file.read(MAX_WFDB_HEADER_BYTES + 1)
        if len(raw_header) > MAX_WFDB_HEADER_BYTES:
            raise unusable(SkipReason.UNREADABLE, f"the WFDB header exceeds {MAX_WFDB_HEADER_BYTES} bytes")
        try:
            header_text = raw_header.decode("ascii")
        except UnicodeDecodeError as err:
            raise unusable(SkipReason.UNREADABLE, "the WFDB header is not ASCII text") from err
        with tempfile.TemporaryDirectory(prefix="ecgk-wfdb-") as folder:
            directory = Path(folder)
            (directory / f"{WFDB_RECORD}.hea").write_text(_wfdb_header(header_text, signal_file))
            (directory / signal_file).write_bytes(signal.file.read())
            try:
                record = read_wfdb(directory / WFDB_RECORD)
                item = _prepare(runtime, record.signal, record.fs, list(record.lead_names), ecg_time, patient_id)
            except QualityError as err:  # without the temporary folder's name, which is the server's business
                raise unusable(err.reason, str(err).replace(f"{directory}/", "")) from err
        return _serve_one(request, runtime, principal, item, started)


@router.post("/batch", responses=UNUSABLE, dependencies=[JsonBody])
def create_predictions_batch(batch: BatchIn, request: Request, runtime: RuntimeDep,
                             principal: Client) -> BatchOut:
    """Estimate K+ for up to the batch cap of ECGs; unusable ones get a reason instead of a number."""
    started = time.perf_counter()
    cap = runtime.settings.batch_max
    with audited(request, runtime.settings.database_url, "prediction.batch", "prediction") as scope:
        if len(batch.ecgs) > cap:
            raise unusable("batch_too_large", f"{len(batch.ecgs)} ECGs in one batch; at most {cap} allowed")
        results: list[BatchItemOut] = []
        usable: list[tuple[int, Scored]] = []
        for index, ecg in enumerate(batch.ecgs):
            try:
                usable.append((index, _from_json(runtime, ecg)))
            except QualityError as err:
                results.append(BatchItemOut(index=index, error=Unusable(**_detail_of(err))))
        if usable:
            _estimate(runtime, [item for _, item in usable])
        for index, item in usable:
            row = _store(scope.session, runtime, item, principal, request, started)
            out = prediction_out(row)
            request.app.state.metrics.predictions.labels(out.flag.value, out.interpretation.value).inc()
            results.append(BatchItemOut(index=index, prediction=out))
        results.sort(key=lambda result: result.index)
        scope.detail = {"n": len(batch.ecgs), "scored": len(usable),
                        "prediction_ids": [str(r.prediction.id) for r in results if r.prediction]}
        return BatchOut(results=results)


def load_prediction(session: Session, prediction_id: uuid.UUID, principal: Principal) -> Prediction:
    """The prediction, or 404 when it does not exist or belongs to another client key (no BOLA)."""
    row = session.get(Prediction, prediction_id)
    if row is None or (principal.role is Role.CLIENT and row.api_key_id != principal.key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prediction {prediction_id}")
    return row


def read_audited(scope: AuditScope, prediction_id: uuid.UUID, principal: Principal) -> Prediction:
    """:func:`load_prediction` for a read; a prediction linked to a patient is audited as a patient read
    (IHE BALP): the event's detail names the patient pseudonym and the reader's role, so every read of a
    patient's data, an admin's included, can be listed by patient."""
    row = load_prediction(scope.session, prediction_id, principal)
    if row.patient_id is not None:
        scope.detail = {"patient_id": row.patient_id, "role": principal.role.value}
    return row


@router.get("/{prediction_id}", responses={404: {"description": "Unknown, or another client's."}})
def read_prediction(prediction_id: uuid.UUID, request: Request, runtime: RuntimeDep,
                    principal: Caller) -> PredictionOut:
    """A stored prediction (clients see only their own key's)."""
    with audited(request, runtime.settings.database_url, "prediction.read",
                 f"prediction:{prediction_id}") as scope:
        return prediction_out(read_audited(scope, prediction_id, principal))



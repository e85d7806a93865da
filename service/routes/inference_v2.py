"""The Open Inference Protocol (KServe V2) beside ``/v1``, so inference gateways and their clients (KServe,
Triton's ``tritonclient``, MLServer, Seldon) can call the service unchanged.

Same pipeline, auth, storage and audit as ``POST /v1/predictions`` (:func:`predict_ecg`); only the envelope
differs. The input tensor ``ECG`` is the raw ECG in mV, ``FP32`` (or ``FP64``) with shape ``[leads, samples]``,
as JSON ``data`` or as raw little-endian bytes after the JSON header (Triton's binary tensor extension,
``Inference-Header-Content-Length``). Request ``parameters``: ``sampling_rate`` (Hz, required), ``lead_names``
(comma-separated, in row order; required), ``patient_id`` and ``ecg_time`` (ISO 8601 with offset), optional.
Outputs (always JSON): ``K_ESTIMATE``, ``INTERVAL_LOW``, ``INTERVAL_HIGH`` (FP64, mmol/L: the same numbers as
``/v1``) and ``FLAG`` (BYTES); response ``parameters`` hold the prediction id, interpretation, shot region,
critical flag and interval coverage. Errors are ``{"error": "..."}`` with the HTTP status of ``/v1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ecg_k import __version__
from service.auth import Caller, Client
from service.deps import RuntimeDep
from service.routes.health import readiness_problem
from service.routes.predictions import predict_ecg
from service.runtime import Runtime
from service.schemas import EcgIn, PredictionOut

PREFIX = "/v2"
INPUT = "ECG"
INPUT_DATATYPES: dict[str, np.dtype[np.floating[Any]]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
OUTPUTS = {"K_ESTIMATE": "FP64", "INTERVAL_LOW": "FP64", "INTERVAL_HIGH": "FP64", "FLAG": "BYTES"}
HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "onnxruntime_onnx"

router = APIRouter(prefix=PREFIX, tags=["open inference protocol (v2)"])

ParameterValue = bool | int | float | str


class TensorIn(BaseModel):
    """One input tensor of an infer request."""

    name: str
    datatype: str
    shape: list[Annotated[int, Field(ge=0)]]
    data: list[Any] | None = None
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)


class OutputIn(BaseModel):
    """An output the caller asks for (all of them when none is named)."""

    name: str
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)


class InferIn(BaseModel):
    """The JSON part of an infer request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    inputs: list[TensorIn] = Field(min_length=1)
    outputs: list[OutputIn] | None = None


def protocol_error(status_code: int, detail: object, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error in the protocol's shape, ``{"error": message}``, from an HTTP error's detail."""
    if isinstance(detail, dict) and "message" in detail:  # an unusable ECG: "<reason>: <message>"
        message = f"{detail.get('reason', 'unusable')}: {detail['message']}"
    else:
        message = str(detail)
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


def is_protocol_path(path: str) -> bool:
    """Whether a request path belongs to this protocol (its errors take the protocol's shape)."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def _bad_request(message: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, message)


def _served(runtime: Runtime, name: str, version: str | None) -> None:
    """404 unless ``name`` (and ``version`` when given) is the model this process serves."""
    card = runtime.model.card
    if name != card.name or version not in (None, card.version):
        wanted = name if version is None else f"{name} version {version}"
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"model {wanted} is not served here (serving {card.name} version {card.version})")


@router.get("")
async def server_metadata() -> dict[str, object]:
    """Server name, version and protocol extensions."""
    return {"name": "ecg-k", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live")
async def server_live() -> dict[str, bool]:
    """200 while the process serves HTTP."""
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "Not ready."}})
def server_ready(request: Request) -> JSONResponse:
    """200 once the model is warmed up and the database answers (as ``/health/ready``); 503 otherwise."""
    problem = readiness_problem(request)
    if problem is None:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False, "error": problem}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get("/models/{name}/ready", responses={404: {"description": "Not this model, or not ready."}})
@router.get("/models/{name}/versions/{version}/ready", responses={404: {"description": "Not served."}})
def model_ready(request: Request, runtime: RuntimeDep, name: str, version: str | None = None) -> dict[str, object]:
    """200 when this model (version) is the one served and the process is ready."""
    _served(runtime, name, version)
    problem = readiness_problem(request)
    if problem is not None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, problem)
    return {"name": name, "ready": True}


@router.get("/models/{name}", responses={404: {"description": "Not served."}})
@router.get("/models/{name}/versions/{version}", responses={404: {"description": "Not served."}})
def model_metadata(runtime: RuntimeDep, principal: Caller, name: str, version: str | None = None
                   ) -> dict[str, object]:
    """The served model's name, version, input and outputs (any role)."""
    _served(runtime, name, version)
    card = runtime.model.card
    return {
        "name": card.name, "versions": [card.version], "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": [{"name": output, "datatype": datatype, "shape": [1]} for output, datatype in OUTPUTS.items()],
        "parameters": {"sha256": card.onnx.sha256, "unit": "mmol/L"},
    }


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request, with or without the binary tensor extension."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise _bad_request(f"{HEADER_LENGTH} must be a byte count within the body, got {header_length!r}")
    return body[: int(header_length)], body[int(header_length):]


def _signal(tensor: TensorIn, tail: bytes) -> np.ndarray:
    """The ECG tensor as a ``[leads, samples]`` float array, from JSON ``data`` or the binary tail."""
    if tensor.name != INPUT:
        raise _bad_request(f"unknown input {tensor.name!r}; the one input is {INPUT!r}")
    dtype = INPUT_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise _bad_request(f"input {INPUT} datatype {tensor.datatype!r}; expected one of {', '.join(INPUT_DATATYPES)}")
    if len(tensor.shape) != 2:
        raise _bad_request(f"input {INPUT} shape {tensor.shape}; expected [leads, samples]")
    count = tensor.shape[0] * tensor.shape[1]
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(tail) or size != count * dtype.itemsize:
            raise _bad_request(f"input {INPUT}: binary_data_size {size!r} does not match the shape {tensor.shape} "
                               f"as {tensor.datatype} and the {len(tail)} bytes sent")
        return np.frombuffer(tail, dtype=dtype).reshape(tensor.shape)
    if tensor.data is None or tail:
        raise _bad_request(f"input {INPUT} needs its data, as JSON or as binary_data_size bytes")
    try:
        values = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
    except (TypeError, ValueError) as err:
        raise _bad_request(f"input {INPUT}: data must be {count} numbers for the shape {tensor.shape}") from err
    return values.astype(dtype)


def _ecg(infer: InferIn, tail: bytes) -> EcgIn:
    """The request as the ``/v1`` body, validated by the same schema."""
    if len(infer.inputs) != 1:
        raise _bad_request(f"{len(infer.inputs)} inputs; send exactly one, {INPUT!r}")
    signal = _signal(infer.inputs[0], tail)
    parameters = infer.parameters
    lead_names = parameters.get("lead_names")
    if not isinstance(lead_names, str):
        raise _bad_request("parameter lead_names is required: the lead names in row order, comma-separated")
    fields = {"sampling_rate": parameters.get("sampling_rate"),
              "lead_names": [name.strip() for name in lead_names.split(",")], "signal": signal.tolist(),
              "patient_id": parameters.get("patient_id"), "ecg_time": parameters.get("ecg_time")}
    try:
        return EcgIn.model_validate(fields)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = f"input {INPUT}" if field == "signal" else f"parameter {field}" if field else "request"
        raise _bad_request(f"{where}: {first['msg']}") from None


def _output_names(requested: list[OutputIn] | None) -> list[str]:
    """The outputs to answer with: those requested, else all; 400 for an unknown one (before any scoring)."""
    names = list(OUTPUTS) if not requested else [output.name for output in requested]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise _bad_request(f"unknown outputs {unknown}; the outputs are {', '.join(OUTPUTS)}")
    return names


def _outputs(out: PredictionOut, names: list[str]) -> list[dict[str, object]]:
    """The requested output tensors of a prediction (the numbers ``/v1`` answers)."""
    values: dict[str, object] = {"K_ESTIMATE": out.k_estimate, "INTERVAL_LOW": out.interval.low,
                                 "INTERVAL_HIGH": out.interval.high, "FLAG": out.flag.value}
    return [{"name": name, "datatype": OUTPUTS[name], "shape": [1], "data": [values[name]]} for name in names]


INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not a valid infer request."}, 404: {"description": "Not served."},
    422: {"description": "Unusable ECG (reason: message)."}}


@router.post("/models/{name}/infer", responses=INFER_ERRORS)
@router.post("/models/{name}/versions/{version}/infer", responses=INFER_ERRORS)
async def infer(request: Request, runtime: RuntimeDep, principal: Client, name: str,
                version: str | None = None) -> Response:
    """Estimate K+ from one ECG tensor (client keys), stored and audited as ``POST /v1/predictions``."""
    _served(runtime, name, version)
    header, tail = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
    try:
        infer_in = InferIn.model_validate_json(header)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        raise _bad_request(f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}") from None
    ecg = _ecg(infer_in, tail)
    names = _output_names(infer_in.outputs)
    out = await run_in_threadpool(predict_ecg, request, runtime, principal, ecg)
    card = runtime.model.card
    body = {"model_name": card.name, "model_version": card.version, "id": infer_in.id or out.request_id,
            "parameters": {"prediction_id": str(out.id), "interpretation": out.interpretation.value,
                           "shot_region": out.shot_region.value, "critical": out.critical,
                           "coverage": out.interval.coverage, "unit": "mmol/L"},
            "outputs": _outputs(out, names)}
    return Response(json.dumps(body), media_type="application/json")

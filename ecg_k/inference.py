"""ONNX Runtime inference of an exported model (numpy + onnxruntime only: the service never imports torch).

:class:`OnnxModel` loads ``model_card.json`` and the ONNX file it names, refuses a file whose sha256 differs
from the card's (the bytes that are hashed are the bytes that are loaded), builds one
``InferenceSession`` with explicit thread counts, and applies the card's preprocessing with
:func:`ecg_k.preprocessing.preprocess`, the same implementation training used, then the card's
signal-quality gate (:func:`ecg_k.signal_quality.check_signal_quality`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ecg_k.model_card import ModelCard, load_model_card
from ecg_k.preprocessing import preprocess
from ecg_k.signal_quality import check_signal_quality

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
ORT_LOG_ERROR = 3
ORT_LOG_FATAL = 4
"""ORT severities: 3 keeps errors; only 4 hides the red ERROR onnxruntime-gpu logs when it falls back to
CPU for lack of CUDA libraries (install.md section 5), so 4 is used only when CUDA is requested and the
fallback is reported through :mod:`logging` instead. ORT's default logger is process-wide."""

logger = logging.getLogger(__name__)


class ModelIntegrityError(RuntimeError):
    """The ONNX file, or what it computes, does not match its model card: the model must not serve."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified_model(card_path: str | Path, onnx_path: str | Path | None = None) -> tuple[ModelCard, Path, bytes]:
    """The model card, the ONNX file's path and its bytes, once the file is found and its sha256 is the card's.

    ``onnx_path`` defaults to the file the card names, beside it. Raises :class:`ModelCardError` (a bad card),
    ``FileNotFoundError`` or :class:`ModelIntegrityError`; opens no ONNX Runtime session.
    """
    card_path = Path(card_path)
    card = load_model_card(card_path)
    path = Path(onnx_path) if onnx_path is not None else card_path.parent / card.onnx.file
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path} (model card {card_path})")
    data = path.read_bytes()
    actual = _sha256(data)
    if actual != card.onnx.sha256:
        raise ModelIntegrityError(
            f"{path}: sha256 {actual} does not match the model card's {card.onnx.sha256}; refusing to load it"
        )
    return card, path, data


class OnnxModel:
    """An exported K+ model behind one ONNX Runtime session.

    Thread safety: ``InferenceSession.run`` may be called from many threads at once on one session
    (microsoft/onnxruntime#114, #22967), and this object holds no other mutable state, so one instance is
    shared by all request threads of a process. ``intra_op_num_threads`` bounds the threads of one run;
    containers often misreport their CPUs, so it is always set explicitly (conventions.md section 3).
    """

    def __init__(
        self,
        card_path: str | Path,
        onnx_path: str | Path | None = None,
        *,
        intra_op_num_threads: int = 1,
        inter_op_num_threads: int = 1,
        use_cuda: bool = True,
    ) -> None:
        """Load the card, verify the ONNX file (default: the file the card names, beside it), open a session.

        CUDA is requested only when ``use_cuda`` and the installed onnxruntime lists it; whether it was
        obtained is read back from the session (:attr:`providers`), never assumed.
        """
        if intra_op_num_threads < 1 or inter_op_num_threads < 1:
            raise ValueError(
                f"thread counts must be >= 1, got intra_op_num_threads={intra_op_num_threads}, "
                f"inter_op_num_threads={inter_op_num_threads}"
            )
        self._card, path, data = read_verified_model(card_path, onnx_path)

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = inter_op_num_threads
        options.log_severity_level = ORT_LOG_ERROR
        requested = [CPU_PROVIDER]
        if use_cuda and CUDA_PROVIDER in ort.get_available_providers():
            requested.insert(0, CUDA_PROVIDER)
        ort.set_default_logger_severity(ORT_LOG_FATAL if CUDA_PROVIDER in requested else ORT_LOG_ERROR)
        self._session = ort.InferenceSession(data, sess_options=options, providers=requested)
        self._providers = tuple(self._session.get_providers())
        if CUDA_PROVIDER in requested and CUDA_PROVIDER not in self._providers:
            logger.warning("CUDA was requested but ONNX Runtime fell back to %s", self._providers)
        self._check_signature()
        logger.info("loaded model %s %s from %s on %s", self._card.name, self.version, path, self._providers)

    def _check_signature(self) -> None:
        """The session's input/output names and fixed input dimensions must be the card's."""
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        spec = self._card.input
        graph = ([i.name for i in inputs], [o.name for o in outputs])
        expected = ([spec.name], [self._card.output.name])
        if graph != expected:
            problem = f"inputs -> outputs {graph[0]} -> {graph[1]}, card says {expected[0]} -> {expected[1]}"
        elif tuple(inputs[0].shape[1:]) != spec.shape[1:]:
            problem = f"input shape {inputs[0].shape}, card says {list(spec.shape)}"
        else:
            return
        raise ModelIntegrityError(f"ONNX graph does not match its model card: {problem}")

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def input_name(self) -> str:
        return self._card.input.name

    @property
    def version(self) -> str:
        return self._card.version

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers the session actually uses, in priority order."""
        return self._providers

    @property
    def input_shape(self) -> tuple[int, int]:
        """(leads, samples) of one ECG as the model takes it."""
        return self._card.input.shape[1], self._card.input.shape[2]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        (output,) = self._session.run([self._card.output.name], {self.input_name: batch})
        if output.shape != (batch.shape[0],) or not np.isfinite(output).all():
            raise ModelIntegrityError(
                f"model returned shape {output.shape} (all finite: {bool(np.isfinite(output).all())}) for "
                f"a batch of {batch.shape[0]}; expected {batch.shape[0]} finite values"
            )
        estimates: np.ndarray = output
        return estimates

    def warm_up(self, batch_size: int = 1) -> float:
        """Run a zero batch of the card's input shape and check the output; return the seconds it took.

        The first run allocates ORT's buffers, so it belongs before readiness is reported, not in a request.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        start = time.perf_counter()
        self._run(np.zeros((batch_size, *self.input_shape), dtype=np.float32))
        return time.perf_counter() - start

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """K+ (mmol/L) of each ECG of a preprocessed float32 batch ``(B, leads, samples)``: shape ``(B,)``."""
        if not isinstance(batch, np.ndarray):
            raise ValueError(f"batch must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise ValueError(f"batch must be float32, got {batch.dtype}")
        leads, samples = self.input_shape
        if batch.ndim != 3 or batch.shape[0] < 1 or batch.shape[1:] != (leads, samples):
            raise ValueError(f"batch must have shape (B >= 1, {leads}, {samples}), got {batch.shape}")
        bad = ~np.isfinite(batch).all(axis=(1, 2))
        if bad.any():
            raise ValueError(f"batch has NaN/inf values in ECG(s) {np.flatnonzero(bad).tolist()}")
        return self._run(np.ascontiguousarray(batch))

    def preprocess(self, signals: np.ndarray, fs: float, lead_names: Sequence[str]) -> np.ndarray:
        """One raw ECG in mV ``(leads, samples)`` to the model input ``(leads, samples)`` with the card's
        preprocessing and signal-quality gate; raises :class:`ecg_k.quality.QualityError` for an unusable ECG
        (``low_quality`` when the input is not a usable ECG)."""
        config = self._card.preprocessing
        model_input = preprocess(np.asarray(signals), fs, lead_names, config)
        check_signal_quality(model_input, config.fs, self._card.signal_quality)
        return model_input

    def preprocess_and_predict(self, signals: np.ndarray, fs: float, lead_names: Sequence[str]) -> float:
        """K+ estimate (mmol/L) of one raw ECG in mV ``(leads, samples)`` sampled at ``fs`` Hz."""
        return float(self.predict(self.preprocess(signals, fs, lead_names)[None])[0])

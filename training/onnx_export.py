"""Export a trained model to one self-contained ONNX file and check it against PyTorch with ONNX Runtime.

ONNX contract (the service reads these names): input ``ecg``, float32 ``(batch, n_leads, n_samples)``
with a dynamic batch axis and a fixed length; output ``k_mmol_l``, float32 ``(batch,)``. The length is
fixed because Net1D's SAME padding is computed from the runtime length (method.md section 9).

The exporter is torch 2.13's dynamo exporter with ``external_data=False``: the registry hashes and ships
a single file, and a sidecar ``.onnx.data`` would silently break that (install.md section 4).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

ONNX_INPUT_NAME = "ecg"
ONNX_OUTPUT_NAME = "k_mmol_l"
MIN_OPSET = 18  # dynamo turns a lower request into 18 after a long traceback
EXAMPLE_BATCH = 2  # a batch of 1 would specialise the batch axis to a constant
# Loggers of the exporter and its optimiser: torchvision skips (WARNING) and per-pass INFO lines.
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")

logger = logging.getLogger(__name__)


class OnnxParityError(AssertionError):
    """The ONNX Runtime output differs from the PyTorch output beyond the tolerance."""


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's known noise (torchvision skips, FutureWarnings, progress) out of the output.

    Whatever it still prints to stdout is captured and logged at DEBUG.
    """
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    previous_levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for log, level in zip(loggers, previous_levels, strict=True):
            log.setLevel(level)
        if captured.getvalue():
            logger.debug("torch.onnx.export output:\n%s", captured.getvalue())


def export_onnx(model: nn.Module, path: str | Path, n_leads: int, n_samples: int, opset: int = 18) -> Path:
    """Write ``model`` (in eval mode) to ``path`` as one ONNX file with a dynamic batch axis; return the path.

    ``model`` maps ``(B, n_leads, n_samples)`` to ``(B,)``; its training mode is restored afterwards.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET}, got {opset}")
    if n_leads < 1 or n_samples < 1:
        raise ValueError(f"n_leads and n_samples must be positive, got {n_leads} and {n_samples}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(EXAMPLE_BATCH, n_leads, n_samples)
    with _eval_mode(model):
        with torch.no_grad():
            output_shape = tuple(model(example).shape)
        if output_shape != (EXAMPLE_BATCH,):
            raise ValueError(f"model must map (B, {n_leads}, {n_samples}) to (B,), got output {output_shape}")
        with _quiet_exporter():
            torch.onnx.export(
                model,
                (example,),
                path,
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=[ONNX_INPUT_NAME],
                output_names=[ONNX_OUTPUT_NAME],
                # Positional (one entry per forward argument), so the argument's Python name is free.
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
    logger.info("exported ONNX model to %s (%d bytes)", path, path.stat().st_size)
    return path


def verify_onnx_parity(
    model: nn.Module,
    path: str | Path,
    inputs: torch.Tensor | np.ndarray,
    rtol: float = 1e-4,
    atol: float = 0.0,
) -> float:
    """Run ``inputs`` through ``model`` (eval) and the ONNX file (ORT, CPU); return max |ORT - torch|.

    ORT keeps its default graph optimisations, as the service runs it: they are part of what is checked.

    Raises :class:`OnnxParityError` unless ``|ort - torch| <= atol + rtol * |torch|`` everywhere
    (NaN fails), as MONAI's ``convert_to_onnx(verify=True)`` checks.
    """
    array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
    batch = np.ascontiguousarray(array, dtype=np.float32)
    with _eval_mode(model), torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: batch})
    if actual.shape != expected.shape:
        raise OnnxParityError(f"ONNX output shape {actual.shape} differs from torch's {expected.shape}")
    reference = np.abs(expected.astype(np.float64))
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    failing = ~(diff <= atol + rtol * reference)  # written so that NaN fails
    max_abs = float(diff.max())
    if failing.any():
        max_rel = float((diff / np.maximum(reference, np.finfo(np.float32).tiny)).max())
        raise OnnxParityError(
            f"ONNX and torch outputs differ at {int(failing.sum())} of {failing.size} values: "
            f"max abs diff {max_abs:.3g}, max rel diff {max_rel:.3g} (rtol={rtol}, atol={atol})"
        )
    return max_abs

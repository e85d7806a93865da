"""OnnxModel on a real exported model: integrity check, providers, input validation, torch parity, real ECGs,
quality errors, thread safety, and an inference path that never imports torch."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from ecg_k.data.store import sha256_file
from ecg_k.data.waveforms import EcgRecord, read_wfdb
from ecg_k.inference import CPU_PROVIDER, CUDA_PROVIDER, ModelIntegrityError, OnnxModel
from ecg_k.model_card import ModelCard
from ecg_k.quality import QualityError, SkipReason


@pytest.fixture(scope="module")
def model(card_path: Path) -> OnnxModel:
    return OnnxModel(card_path, intra_op_num_threads=1, inter_op_num_threads=1)


@pytest.fixture(scope="module")
def cinc_records(tiny_cinc_dir: Path) -> list[EcgRecord]:
    return [read_wfdb(header.with_suffix("")) for header in sorted(tiny_cinc_dir.glob("*.hea"))]


def _copy_run(run: Path, target: Path) -> Path:
    """The card and ONNX file copied to ``target``; returns the card path."""
    target.mkdir()
    for name in ("model_card.json", "model.onnx"):
        shutil.copy(run / name, target / name)
    return target / "model_card.json"


def test_loads_and_reports_what_it_runs(model: OnnxModel, card: ModelCard) -> None:
    assert model.input_name == "ecg" and model.version == card.version
    assert model.providers == (CPU_PROVIDER,)  # the CPU wheel: the session's own answer
    assert model.input_shape == (1, 5000)
    assert model.warm_up() > 0
    assert model.warm_up(batch_size=3) > 0


def test_sha256_mismatch_is_refused_before_loading(
    exported_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card_path = _copy_run(exported_run, tmp_path / "run")
    onnx = tmp_path / "run" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    expected = json.loads(card_path.read_text())["onnx"]["sha256"]

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("InferenceSession was created for a file that failed its checksum")

    monkeypatch.setattr(ort, "InferenceSession", never)
    with pytest.raises(ModelIntegrityError) as info:
        OnnxModel(card_path)
    assert expected in str(info.value) and sha256_file(onnx) in str(info.value)


def test_explicit_onnx_path_and_missing_file(exported_run: Path, tmp_path: Path) -> None:
    card_path = _copy_run(exported_run, tmp_path / "run")
    moved = tmp_path / "elsewhere.onnx"
    (tmp_path / "run" / "model.onnx").rename(moved)
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        OnnxModel(card_path)
    assert OnnxModel(card_path, moved).version == json.loads(card_path.read_text())["version"]


def test_graph_that_does_not_match_its_card_is_refused(exported_run: Path, tmp_path: Path) -> None:
    card_path = _copy_run(exported_run, tmp_path / "run")
    raw = json.loads(card_path.read_text())
    raw["output"]["name"] = "k_other"
    card_path.write_text(json.dumps(raw))
    with pytest.raises(ModelIntegrityError, match="does not match its model card"):
        OnnxModel(card_path)


@pytest.mark.parametrize("listed", [True, False])
def test_cuda_requested_only_when_listed_and_provider_read_from_session(
    card_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, listed: bool
) -> None:
    """As onnxruntime-gpu on a machine without a GPU: CUDA is listed, requested, and the session falls
    back to CPU."""
    real_session = ort.InferenceSession
    seen: dict[str, Any] = {}

    def spy(model: bytes, sess_options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        seen.update(providers=providers, intra=sess_options.intra_op_num_threads,
                    inter=sess_options.inter_op_num_threads)
        return real_session(model, sess_options=sess_options, providers=[CPU_PROVIDER])

    available = [CUDA_PROVIDER, CPU_PROVIDER] if listed else [CPU_PROVIDER]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(ort, "InferenceSession", spy)
    with caplog.at_level(logging.WARNING, logger="ecg_k.inference"):
        model = OnnxModel(card_path, intra_op_num_threads=3, inter_op_num_threads=2)
    assert seen == {"providers": available, "intra": 3, "inter": 2}
    assert model.providers == (CPU_PROVIDER,)
    assert ("fell back" in caplog.text) is listed
    assert OnnxModel(card_path, use_cuda=False).providers == (CPU_PROVIDER,)
    assert seen["providers"] == [CPU_PROVIDER]


def test_thread_counts_must_be_positive(card_path: Path) -> None:
    with pytest.raises(ValueError, match="thread counts must be >= 1"):
        OnnxModel(card_path, intra_op_num_threads=0)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([[[0.0] * 5000]], "numpy array"),
        (np.zeros((1, 1, 5000), dtype=np.float64), "float32, got float64"),
        (np.zeros((1, 5000), dtype=np.float32), r"shape \(B >= 1, 1, 5000\), got \(1, 5000\)"),
        (np.zeros((0, 1, 5000), dtype=np.float32), "B >= 1"),
        (np.zeros((2, 2, 5000), dtype=np.float32), r"got \(2, 2, 5000\)"),
        (np.zeros((1, 1, 4999), dtype=np.float32), r"got \(1, 1, 4999\)"),
    ],
)
def test_predict_rejects_bad_batches(model: OnnxModel, batch: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.predict(batch)


def test_predict_rejects_non_finite_inputs_naming_the_ecg(model: OnnxModel) -> None:
    batch = np.zeros((3, 1, 5000), dtype=np.float32)
    batch[2, 0, 10] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf values in ECG\(s\) \[2\]"):
        model.predict(batch)


def test_onnx_equals_torch_on_the_same_preprocessed_input(
    model: OnnxModel, exported_run: Path, cinc_records: list[EcgRecord]
) -> None:
    import torch

    from training.run_io import load_best_net

    batch = np.stack([model.preprocess(r.signal, r.fs, r.lead_names) for r in cinc_records])
    onnx_out = model.predict(batch)
    with torch.no_grad():
        torch_out = load_best_net(exported_run)(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=0)


def test_real_cinc_record_through_preprocess_and_predict(
    model: OnnxModel, cinc_records: list[EcgRecord]
) -> None:
    record = cinc_records[0]
    assert record.fs == 500 and record.signal.shape[0] == 12
    estimate = model.preprocess_and_predict(record.signal, record.fs, record.lead_names)
    assert isinstance(estimate, float) and np.isfinite(estimate)
    assert estimate == model.predict(model.preprocess(record.signal, record.fs, record.lead_names)[None])[0]
    # Deterministic: the same input gives the same output.
    assert estimate == model.preprocess_and_predict(record.signal, record.fs, record.lead_names)
    # Leads are resolved by name: a record stored in another lead order gives the same estimate.
    order = np.arange(12)[::-1]
    names = [record.lead_names[i] for i in order]
    assert model.preprocess_and_predict(record.signal[order], record.fs, names) == estimate


def test_quality_errors_propagate(model: OnnxModel, cinc_records: list[EcgRecord]) -> None:
    flat = np.zeros((12, 5000))
    with pytest.raises(QualityError) as info:
        model.preprocess_and_predict(flat, 500.0, cinc_records[0].lead_names)
    assert info.value.reason is SkipReason.FLAT_LEAD
    with pytest.raises(QualityError) as info:
        model.preprocess_and_predict(cinc_records[0].signal[1:], 500.0, cinc_records[0].lead_names[1:])
    assert info.value.reason is SkipReason.MISSING_LEAD


def test_predict_from_8_threads_equals_sequential(model: OnnxModel, cinc_records: list[EcgRecord]) -> None:
    rng = np.random.default_rng(0)
    real = [model.preprocess(r.signal, r.fs, r.lead_names) for r in cinc_records]
    noise = [rng.standard_normal((2, 1, 5000)).astype(np.float32) for _ in range(27)]
    inputs = [x[None] for x in real] + noise
    sequential = [model.predict(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            threaded = list(pool.map(model.predict, inputs))
            for got, want in zip(threaded, sequential, strict=True):
                np.testing.assert_array_equal(got, want)


def test_inference_path_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import ecg_k.inference, ecg_k.fhir, ecg_k.model_card, ecg_k.clinical\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

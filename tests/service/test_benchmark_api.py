"""The API benchmarks' server (benchmarks/_api.py) accepts the client key it hands out; their latency summary
(benchmarks/_stats.py) and the ONNX Runtime latency benchmark measure what they say."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks._api import benchmark_api
from benchmarks._stats import median_p99
from benchmarks.onnx_latency import provider_figures
from ecg_k.settings import get_settings


@pytest.fixture
def no_shared_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process without ``ECGK_API_KEY_SECRET`` and with a home of its own, as on a user's machine."""
    monkeypatch.delenv("ECGK_API_KEY_SECRET", raising=False)
    monkeypatch.setenv("ECGK_HOME", str(tmp_path / "user-home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("no_shared_secret")
def test_benchmark_key_is_accepted_by_the_served_api(model_path: Path) -> None:
    with benchmark_api(model_path) as api:
        authorised = httpx.get(f"{api.base_url}/v1/models", headers={"X-API-Key": api.key}, timeout=30)
        tampered = api.key[:-1] + ("1" if api.key.endswith("0") else "0")  # another last digit, always
        wrong = httpx.get(f"{api.base_url}/v1/models", headers={"X-API-Key": tampered}, timeout=30)
    assert authorised.status_code == 200, authorised.text
    assert wrong.status_code == 401


def test_median_p99_ranks() -> None:
    assert median_p99([float(v) for v in range(200, 0, -1)]) == (100.5, 199.0)  # rank floor(0.99 n) = 198
    assert median_p99([3.0, 1.0, 2.0]) == (2.0, 3.0)  # fewer than 100: the largest
    with pytest.raises(ValueError, match="no values"):
        median_p99([])


def test_onnx_latency_measures_the_served_model_on_the_cpu_provider(model_path: Path) -> None:
    figures = provider_figures(model_path.with_name("model_card.json"), model_path, use_cuda=False, threads=1,
                               repeats=3)
    assert figures["providers"] == ["CPUExecutionProvider"]
    for batch in (1, 64):
        batch_figures = figures[f"batch_{batch}"]
        assert isinstance(batch_figures, dict)
        assert 0 < batch_figures["p50_ms"] <= batch_figures["p99_ms"]
        assert batch_figures["ecg_per_s"] == pytest.approx(batch / batch_figures["p50_ms"] * 1e3, rel=0.01)

"""The API benchmarks' server (benchmarks/_api.py) accepts the client key it hands out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks._api import benchmark_api
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

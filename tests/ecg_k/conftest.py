"""A real exported model (tiny Net1D, 1 epoch on the toy dataset) and its model card, built once per session
by the project's own train -> evaluate -> export chain for the runtime tests (card, inference, FHIR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecg_k.model_card import ModelCard, load_model_card
from tests.training.conftest import write_toy_dataset
from training.config import TrainConfig
from training.evaluate import evaluate_run
from training.export import MODEL_CARD, export_run
from training.trainer import Trainer


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory holding ``model.onnx`` and ``model_card.json`` (and ``best.pt`` for parity checks)."""
    root = tmp_path_factory.mktemp("exported")
    dataset = write_toy_dataset(root / "dataset", {"train": 256, "val": 64, "test": 64})
    run = root / "run"
    config = TrainConfig(data=dataset, out=run, model="tiny", epochs=1, batch_size=32, device="cpu")
    Trainer(config, progress=False).run()
    evaluate_run(run, n_boot=20, device="cpu")
    export_run(run)
    return run


@pytest.fixture(scope="session")
def card_path(exported_run: Path) -> Path:
    return exported_run / MODEL_CARD


@pytest.fixture(scope="session")
def card(card_path: Path) -> ModelCard:
    return load_model_card(card_path)

"""What a running service holds: its settings, the served model and the ECG store (``app.state.runtime``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.models import ModelVersion
from ecg_k.db.registry import find_version, get_champion, register_model
from ecg_k.db.session import get_engine, session_scope
from ecg_k.inference import ModelIntegrityError, OnnxModel
from ecg_k.model_card import ModelCard, load_model_card, parse_model_card
from ecg_k.settings import Settings
from service.auth_cache import KeyCache
from service.limits import RateLimiter

MODEL_CARD_FILE = "model_card.json"
SERVICE_ACTOR = "service"

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The served model (one shared ONNX Runtime session) and its registry row, once warmed up."""

    settings: Settings
    model: OnnxModel
    model_version_id: int
    store: EcgStore
    key_cache: KeyCache
    rate_limiter: RateLimiter
    ready: bool = False
    _cards: dict[int, ModelCard] = field(default_factory=dict)

    def card_of(self, version: ModelVersion) -> ModelCard:
        """The validated model card of a registered version (cached; the served one is the model's)."""
        if version.id == self.model_version_id:
            return self.model.card
        if version.id not in self._cards:
            self._cards[version.id] = parse_model_card(version.card, source=f"model card of {version.name}")
        return self._cards[version.id]

    def database_ok(self) -> bool:
        """Whether the database answers ``SELECT 1`` now."""
        try:
            with get_engine(self.settings.database_url).connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as err:
            logger.warning("database unreachable: %s", type(err).__name__)
            return False
        return True


def _resolve_version(settings: Settings) -> ModelVersion:
    """The version to serve: ``settings.model_path`` (registered on first use) or the champion."""
    with session_scope(settings.database_url) as session:
        if settings.model_path is None:
            champion = get_champion(session)
            if champion is None:
                raise RuntimeError("no champion model in the registry: promote one or pass --model PATH")
            return champion
        onnx_path = Path(settings.model_path)
        card_path = onnx_path.with_name(MODEL_CARD_FILE)
        card = load_model_card(card_path)
        version = find_version(session, card.name, card.version)
        if version is None:
            return register_model(session, card_path, actor=SERVICE_ACTOR, onnx_path=onnx_path)
        if version.sha256 != card.onnx.sha256:
            raise ModelIntegrityError(
                f"{onnx_path}: the registry holds {card.name} {card.version} with sha256 {version.sha256}, "
                f"the card beside the file says {card.onnx.sha256}"
            )
        return version


def load_runtime(settings: Settings) -> Runtime:
    """Resolve, verify (sha256 against the registry and the card), open and warm up the model."""
    version = _resolve_version(settings)
    onnx_path = Path(version.path) if settings.model_path is None else Path(settings.model_path)
    model = OnnxModel(
        onnx_path.with_name(MODEL_CARD_FILE),
        onnx_path,
        intra_op_num_threads=settings.ort_intra_op_threads,
        inter_op_num_threads=settings.ort_inter_op_threads,
        use_cuda=settings.use_cuda,
    )
    if model.card.onnx.sha256 != version.sha256:
        raise ModelIntegrityError(
            f"{onnx_path} hashes to {model.card.onnx.sha256}, the registry expects {version.sha256}"
        )
    seconds = model.warm_up()
    logger.info("model %s %s warmed up in %.1f ms on %s", version.name, version.version, seconds * 1e3,
                model.providers)
    return Runtime(
        settings=settings,
        model=model,
        model_version_id=version.id,
        store=EcgStore(settings.ecg_store),
        key_cache=KeyCache(settings.api_key_cache_s),
        rate_limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        ready=True,
    )

"""What a running service holds: its settings, the served model and the ECG store (``app.state.runtime``).

Hot swap: a :class:`Runtime` never changes its model. When the registry's champion changes,
:class:`ChampionWatcher` opens, sha256-verifies and warms up the new model off the request path, then replaces
``app.state.runtime`` with a copy serving it (one attribute assignment, atomic). A request takes the runtime
once, when it starts (``service.deps.get_runtime``), so it finishes with the model it started with and its
prediction row records the version that actually served it; the old session is freed with its last request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa
from starlette.datastructures import State

from ecg_k.db.api_keys import server_secret
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.models import ModelVersion
from ecg_k.db.registry import find_version, get_champion, register_model
from ecg_k.db.session import get_engine, session_scope
from ecg_k.inference import ModelIntegrityError, OnnxModel
from ecg_k.model_card import ModelCard, load_model_card, parse_model_card
from ecg_k.settings import Settings
from service.limits import FailedAuthLimiter, RateLimiter

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
    server_key: bytes
    rate_limiter: RateLimiter
    auth_failures: FailedAuthLimiter
    ready: bool = False
    _cards: dict[int, ModelCard] = field(default_factory=dict)

    def card_of(self, version: ModelVersion) -> ModelCard:
        """The validated model card of a registered version (cached; the served one is the model's)."""
        if version.id == self.model_version_id:
            return self.model.card
        if version.id not in self._cards:
            self._cards[version.id] = parse_model_card(version.card, source=f"model card of {version.name}")
        return self._cards[version.id]

    def serving(self, model: OnnxModel, model_version_id: int) -> Runtime:
        """A runtime serving ``model`` that shares everything else (server key, rate limiter, store, cards)."""
        return replace(self, model=model, model_version_id=model_version_id)

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


def open_model(version: ModelVersion, onnx_path: Path, settings: Settings) -> OnnxModel:
    """Open ``onnx_path`` (its card beside it), check that it is the registered ``version`` and warm it up."""
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
    return model


def load_runtime(settings: Settings) -> Runtime:
    """Resolve, verify (sha256 against the registry and the card), open and warm up the model."""
    version = _resolve_version(settings)
    onnx_path = Path(version.path) if settings.model_path is None else Path(settings.model_path)
    return Runtime(
        settings=settings,
        model=open_model(version, onnx_path, settings),
        model_version_id=version.id,
        store=EcgStore(settings.ecg_store),
        server_key=server_secret(settings),
        rate_limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        auth_failures=FailedAuthLimiter(settings.auth_failure_rate_per_s, settings.auth_failure_burst),
        ready=True,
    )


class ModelRefusedError(RuntimeError):
    """The registry's champion cannot be served (missing file, sha256 mismatch, failed warm-up)."""


class ChampionWatcher:
    """Keeps ``state.runtime`` serving the registry's champion (not used when a model is pinned).

    :meth:`check` runs in a worker thread, called every ``model_poll_s`` by the app and on demand by the
    admin reload route; a lock makes concurrent checks load a new model once. A champion that fails to load
    is refused with one error log line and the served model stays; a refused version is not retried by the
    poller (the admin reload retries it), so a broken file costs no reload per poll.
    """

    def __init__(self, state: State, on_swap: Callable[[Runtime], None]) -> None:
        self._state = state
        self._on_swap = on_swap
        self._lock = threading.Lock()
        self._refused: dict[int, str] = {}

    def check(self, retry_refused: bool = False) -> Runtime:
        """Serve the champion if it is not served yet; return the runtime serving now.

        Raises :class:`ModelRefusedError` when the champion cannot be served (the old model keeps serving).
        """
        with self._lock:
            current: Runtime = self._state.runtime
            with session_scope(current.settings.database_url) as session:
                champion = get_champion(session)
            if champion is None or champion.id == current.model_version_id:
                return current
            if champion.id in self._refused and not retry_refused:
                raise ModelRefusedError(self._refused[champion.id])
            served = current.model.card
            try:
                model = open_model(champion, Path(champion.path), current.settings)
            except (RuntimeError, OSError, ValueError) as err:
                message = (f"champion {champion.name} {champion.version} refused ({type(err).__name__}: {err}); "
                           f"still serving {served.name} {served.version}")
                if self._refused.get(champion.id) != message:
                    logger.error("%s", message)
                self._refused[champion.id] = message
                raise ModelRefusedError(message) from err
            fresh = current.serving(model, champion.id)
            self._state.runtime = fresh
            self._refused.pop(champion.id, None)
            logger.info("now serving champion %s %s (was %s %s)", champion.name, champion.version, served.name,
                        served.version)
            self._on_swap(fresh)
            return fresh

"""Model registry: registration checks the card's sha256, at most one champion, promotion is atomic and
audited, gate decisions are recorded."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ecg_k.db import registry
from ecg_k.db.models import AuditEvent, GateDecision, ModelStatus
from ecg_k.db.registry import (
    find_version,
    get_champion,
    list_versions,
    promote,
    record_gate_decision,
    register_model,
)
from ecg_k.db.session import get_engine, session_scope
from ecg_k.model_card import ModelCard, OnnxSpec, load_model_card, parse_model_card, write_model_card
from ecgk_demo.traffic import write_synthetic_run

ACTOR = "cli:test"


@functools.cache
def _synthetic_card() -> ModelCard:
    """A complete card (the synthetic registry's, written through the card's writer), made once."""
    with tempfile.TemporaryDirectory() as folder:
        return load_model_card(write_synthetic_run(Path(folder), "vanilla", per_bin=2, n_boot=0))


def write_model(root: Path, version: str, content: bytes | None = None, name: str = "ecg-k-net1d") -> Path:
    """A run directory with ``model.onnx`` (stand-in bytes) and its ``model_card.json``, written as export
    writes it (through :func:`ecg_k.model_card.write_model_card`)."""
    root.mkdir(parents=True, exist_ok=True)
    onnx = content if content is not None else f"onnx bytes of {version}".encode()
    (root / "model.onnx").write_bytes(onnx)
    card = _synthetic_card().model_copy(update={
        "name": name, "version": version,
        "onnx": OnnxSpec(file="model.onnx", sha256=hashlib.sha256(onnx).hexdigest(), opset=18)})
    write_model_card(root / "model_card.json", card)
    return root / "model_card.json"


def _audit(session: Session, action: str) -> list[AuditEvent]:
    query = sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    return list(session.scalars(query))


def test_register_stores_card_and_checked_hash(db_url: str, tmp_path: Path) -> None:
    card_path = write_model(tmp_path / "run1", "v1")
    with session_scope(db_url) as session:
        model = register_model(session, card_path, actor=ACTOR, request_id="req-9")
    with session_scope(db_url) as session:
        stored = find_version(session, "ecg-k-net1d", "v1")
        assert stored is not None and stored.id == model.id
        assert stored.status is ModelStatus.CHALLENGER
        assert stored.sha256 == hashlib.sha256(b"onnx bytes of v1").hexdigest()
        assert stored.path == str((tmp_path / "run1" / "model.onnx").resolve())
        assert stored.preprocessing_digest == _synthetic_card().preprocessing_digest
        assert stored.card == load_model_card(card_path).as_dict() and parse_model_card(stored.card).version == "v1"
        (event,) = _audit(session, "model.register")
        assert (event.actor, event.resource) == (ACTOR, "model_version:ecg-k-net1d/v1")
        assert event.request_id == "req-9"
        assert get_champion(session) is None


def test_register_accepts_an_explicit_onnx_path(db_url: str, tmp_path: Path) -> None:
    card_path = write_model(tmp_path / "run", "v1")
    moved = tmp_path / "elsewhere.onnx"
    (tmp_path / "run" / "model.onnx").rename(moved)
    with session_scope(db_url) as session:
        assert register_model(session, card_path, actor=ACTOR, onnx_path=moved).path == str(moved.resolve())


def test_register_refuses_a_file_that_does_not_match_the_card(db_url: str, tmp_path: Path) -> None:
    card_path = write_model(tmp_path / "run", "v1")
    (tmp_path / "run" / "model.onnx").write_bytes(b"tampered")
    with session_scope(db_url) as session, pytest.raises(ValueError, match="sha256 mismatch"):
        register_model(session, card_path, actor=ACTOR)
    with session_scope(db_url) as session:
        assert list_versions(session) == [] and _audit(session, "model.register") == []


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no-card", "no model card at"),
        ("not-json", "not valid JSON"),
        ("no-version", "version: Field required"),
        ("no-sha", "onnx.sha256: Field required"),
        ("unknown-key", "surprise: Extra inputs are not permitted"),
        ("old-format", "has format 'ecg-k-model-card/1'; this code reads 'ecg-k-model-card/2'"),
        ("no-onnx", "ONNX file not found"),
        ("nan", "not valid JSON: NaN is not a JSON number"),
    ],
)
def test_register_refuses_broken_cards(db_url: str, tmp_path: Path, breakage: str, message: str) -> None:
    card_path = write_model(tmp_path / "run", "v1")
    card = json.loads(card_path.read_text())
    if breakage == "no-card":
        card_path.unlink()
    elif breakage == "not-json":
        card_path.write_text("{not json")
    elif breakage == "no-version":
        card_path.write_text(json.dumps({k: v for k, v in card.items() if k != "version"}))
    elif breakage == "no-sha":
        card_path.write_text(json.dumps(card | {"onnx": {"file": "model.onnx"}}))
    elif breakage == "unknown-key":
        card_path.write_text(json.dumps(card | {"surprise": 1}))
    elif breakage == "old-format":
        card_path.write_text(json.dumps(card | {"format": "ecg-k-model-card/1"}))
    elif breakage == "no-onnx":
        (tmp_path / "run" / "model.onnx").unlink()
    else:
        card_path.write_text(json.dumps(card | {"metrics": {"test": {"few": {"mae": float("nan")}}}}))
    with session_scope(db_url) as session, pytest.raises(ValueError, match=message):
        register_model(session, card_path, actor=ACTOR)


def test_register_refuses_a_duplicate_version(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as session:
        register_model(session, write_model(tmp_path / "a", "v1"), actor=ACTOR)
    with session_scope(db_url) as session, pytest.raises(ValueError, match="already registered"):
        register_model(session, write_model(tmp_path / "b", "v1", content=b"other"), actor=ACTOR)


def test_promote_retires_the_previous_champion(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as session:
        for version in ("v1", "v2", "v3"):
            register_model(session, write_model(tmp_path / version, version), actor=ACTOR)
    with session_scope(db_url) as session:
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)
    with session_scope(db_url) as session:
        promote(session, "ecg-k-net1d", "v3", actor=ACTOR, request_id="req-3")
    with session_scope(db_url) as session:
        states = {m.version: m.status for m in list_versions(session)}
        assert states == {"v1": ModelStatus.RETIRED, "v2": ModelStatus.CHALLENGER, "v3": ModelStatus.CHAMPION}
        champion = get_champion(session)
        assert champion is not None and champion.version == "v3" and champion.promoted_at is not None
        assert find_version(session, "ecg-k-net1d", "v1").retired_at is not None
        first, second = _audit(session, "model.promote")
        assert first.detail["previous"] is None
        assert second.resource == "model_version:ecg-k-net1d/v3" and second.request_id == "req-3"
        assert second.detail == {"sha256": champion.sha256, "previous": "model_version:ecg-k-net1d/v1"}


def test_a_retired_version_can_be_promoted_back(db_url: str, tmp_path: Path) -> None:
    """Rollback: the older row (lower id) becomes champion again; the one-champion index is never violated."""
    with session_scope(db_url) as session:
        for version in ("v1", "v2"):
            register_model(session, write_model(tmp_path / version, version), actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)
        promote(session, "ecg-k-net1d", "v2", actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)
    with session_scope(db_url) as session:
        rolled_back = find_version(session, "ecg-k-net1d", "v1")
        assert rolled_back.status is ModelStatus.CHAMPION and rolled_back.retired_at is None
        assert find_version(session, "ecg-k-net1d", "v2").status is ModelStatus.RETIRED


def test_promote_refuses_unknown_and_current_champion(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as session:
        register_model(session, write_model(tmp_path / "v1", "v1"), actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)
    with session_scope(db_url) as session, pytest.raises(ValueError, match="not registered"):
        promote(session, "ecg-k-net1d", "v9", actor=ACTOR)
    with session_scope(db_url) as session, pytest.raises(ValueError, match="already the champion"):
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)


def test_promotion_is_atomic(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If anything fails after the status changes (here: writing the audit event), nothing changes."""
    with session_scope(db_url) as session:
        for version in ("v1", "v2"):
            register_model(session, write_model(tmp_path / version, version), actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)

    def audit_fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(registry, "record_audit", audit_fails)
    with pytest.raises(RuntimeError, match="audit store unavailable"), session_scope(db_url) as session:
        promote(session, "ecg-k-net1d", "v2", actor=ACTOR)
    with session_scope(db_url) as session:
        assert get_champion(session).version == "v1"
        assert find_version(session, "ecg-k-net1d", "v2").status is ModelStatus.CHALLENGER
        assert find_version(session, "ecg-k-net1d", "v1").retired_at is None
        assert len(_audit(session, "model.promote")) == 1


def test_the_database_allows_only_one_champion(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as session:
        for version in ("v1", "v2"):
            register_model(session, write_model(tmp_path / version, version), actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        find_version(session, "ecg-k-net1d", "v2").status = ModelStatus.CHAMPION  # bypassing promote()
    with get_engine(db_url).connect() as connection, pytest.raises(IntegrityError):
        connection.exec_driver_sql("UPDATE model_versions SET status = 'champion'")
    with session_scope(db_url) as session:
        assert [m.version for m in list_versions(session) if m.status is ModelStatus.CHAMPION] == ["v1"]


def test_list_versions_in_registration_order_and_by_name(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as session:
        register_model(session, write_model(tmp_path / "a", "v1"), actor=ACTOR)
        register_model(session, write_model(tmp_path / "b", "v2"), actor=ACTOR)
        register_model(session, write_model(tmp_path / "c", "v1", name="other-model"), actor=ACTOR)
    with session_scope(db_url) as session:
        assert [(m.name, m.version) for m in list_versions(session)] == [
            ("ecg-k-net1d", "v1"), ("ecg-k-net1d", "v2"), ("other-model", "v1")]
        assert [m.version for m in list_versions(session, "ecg-k-net1d")] == ["v1", "v2"]


def test_gate_decisions_are_recorded_and_audited(db_url: str, tmp_path: Path) -> None:
    criteria = {"few_mae": {"champion": 1.33, "challenger": 1.21}, "sensitivity_5_5": {"champion": 0.8,
                "challenger": 0.82}, "many_mae_margin": 0.05, "reasons": []}
    with session_scope(db_url) as session:
        register_model(session, write_model(tmp_path / "v1", "v1"), actor=ACTOR)
        register_model(session, write_model(tmp_path / "v2", "v2"), actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)
        challenger = find_version(session, "ecg-k-net1d", "v2")
        decision = record_gate_decision(session, challenger, passed=True, criteria=criteria, actor="retrain",
                                        request_id="job-1")
        with pytest.raises(ValueError, match="not a challenger"):
            record_gate_decision(session, get_champion(session), passed=True, criteria={}, actor="retrain")
        with pytest.raises(ValueError, match="not storable JSON"):
            record_gate_decision(session, challenger, passed=False, criteria={"x": float("inf")},
                                 actor="retrain")
    with session_scope(db_url) as session:
        stored = session.get(GateDecision, decision.id)
        assert stored.passed is True and stored.criteria == criteria
        assert stored.challenger.version == "v2" and stored.champion.version == "v1"
        (event,) = _audit(session, "model.gate")
        assert event.resource == "model_version:ecg-k-net1d/v2" and event.request_id == "job-1"
        assert event.detail == {"passed": True, "champion": "model_version:ecg-k-net1d/v1",
                                "gate_decision_id": decision.id}

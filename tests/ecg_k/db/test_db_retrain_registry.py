"""The registry side of ``ecgk retrain`` on SQLite and PostgreSQL: a run's decision is recorded and promoted
(or not) in one audited transaction, a run whose champion changed meanwhile records nothing, and the data a
champion was already tried on (or made from) is found again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.db.models import AuditEvent, GateDecision, ModelStatus, ModelVersion
from ecg_k.db.registry import (
    find_retrain_decision,
    find_version,
    get_champion,
    promote,
    record_retrain,
    register_model,
)
from ecg_k.db.session import session_scope
from tests.ecg_k.db.test_db_registry import ACTOR, write_model


def _criteria(fingerprint: str) -> dict[str, Any]:
    return {"checks": [], "retrain": {"data_fingerprint": fingerprint, "run_dir": "/runs/r1"}}


def _models(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as session:
        for version in ("v1", "v2", "v3"):
            register_model(session, write_model(tmp_path / version, version), actor=ACTOR)
        promote(session, "ecg-k-net1d", "v1", actor=ACTOR)


def _version(session: Session, version: str) -> ModelVersion:
    found = find_version(session, "ecg-k-net1d", version)
    assert found is not None
    return found


def test_refused_then_forced_then_seen(db_url: str, tmp_path: Path) -> None:
    _models(db_url, tmp_path)
    with session_scope(db_url) as session:
        v1, v2 = _version(session, "v1"), _version(session, "v2")
        refused = record_retrain(session, v2, v1, passed=False, forced=False, criteria=_criteria("f1"), actor=ACTOR)
        assert get_champion(session).version == "v1" and v2.status is ModelStatus.CHALLENGER
        assert refused.criteria["forced"] is False and refused.champion_id == v1.id
        assert find_retrain_decision(session, "f1", v1).id == refused.id
        assert find_retrain_decision(session, "f2", v1) is None  # new data
        forced = record_retrain(session, v2, v1, passed=False, forced=True, criteria=_criteria("f1"), actor=ACTOR)
    with session_scope(db_url) as session:
        v2 = _version(session, "v2")
        assert get_champion(session).version == "v2"
        assert find_retrain_decision(session, "f1", v2).id == forced.id  # the champion was made from f1
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.action.in_(
            ["model.gate", "model.promote", "model.retrain"])).order_by(AuditEvent.id)).all()
        assert [e.action for e in events] == ["model.promote",  # v1, by hand
                                              "model.gate", "model.retrain", "model.gate", "model.promote",
                                              "model.retrain"]
        assert [e.detail["decision"] for e in events if e.action == "model.retrain"] == ["refused", "forced"]
        assert events[-1].detail["data_fingerprint"] == "f1" and events[-1].actor == ACTOR


def test_passed_gate_promotes(db_url: str, tmp_path: Path) -> None:
    _models(db_url, tmp_path)
    with session_scope(db_url) as session:
        decision = record_retrain(session, _version(session, "v3"), _version(session, "v1"), passed=True,
                                  forced=False, criteria=_criteria("f9"), actor=ACTOR)
        assert decision.passed and get_champion(session).version == "v3"
        detail = session.scalars(sa.select(AuditEvent.detail).where(AuditEvent.action == "model.retrain")).one()
        assert detail["decision"] == "promoted"


def test_a_champion_changed_during_the_run_records_nothing(db_url: str, tmp_path: Path) -> None:
    _models(db_url, tmp_path)
    with session_scope(db_url) as session:
        v1 = _version(session, "v1")
        promote(session, "ecg-k-net1d", "v3", actor=ACTOR)  # meanwhile, by hand
    with pytest.raises(ValueError, match="v3 is the champion now: rerun"):
        with session_scope(db_url) as session:
            record_retrain(session, _version(session, "v2"), v1, passed=True, forced=False,
                           criteria=_criteria("f1"), actor=ACTOR)
    with pytest.raises(ValueError, match="data_fingerprint"):
        with session_scope(db_url) as session:
            record_retrain(session, _version(session, "v2"), _version(session, "v3"), passed=True, forced=False,
                           criteria={"checks": []}, actor=ACTOR)
    with session_scope(db_url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(GateDecision)) == 0
        assert get_champion(session).version == "v3"

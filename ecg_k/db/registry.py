"""Model registry: ONNX model versions with their model cards; one champion, challengers, retired ones.

A version enters as a challenger once its ONNX file matches the sha256 in its card. ``promote`` makes it
the champion and retires the previous one in the caller's transaction, together with an audit event; the
database's partial unique index guarantees at most one champion even under concurrent promotions.

A retraining run (``ecgk retrain``) records its gate decision and, when the gate passed or an operator forced
it, the promotion with :func:`record_retrain`; :func:`find_retrain_decision` tells it whether the same data
was already tried against the champion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.data.store import sha256_file
from ecg_k.db.audit import record_audit
from ecg_k.db.models import AuditOutcome, GateDecision, ModelStatus, ModelVersion, json_object, utcnow
from ecg_k.model_card import load_model_card


def _resource(version: ModelVersion) -> str:
    return f"model_version:{version.name}/{version.version}"


def register_model(
    session: Session,
    card_path: Path,
    *,
    actor: str,
    onnx_path: Path | None = None,
    request_id: str | None = None,
) -> ModelVersion:
    """Register the model of ``card_path`` (a ``model_card.json``) as a challenger.

    The card must validate (:func:`ecg_k.model_card.load_model_card`); the ONNX file is ``onnx_path`` or the
    card's ``onnx.file`` beside the card, and its sha256 must equal the card's ``onnx.sha256``. The registry
    stores the validated card.
    """
    card_path = Path(card_path)
    card = load_model_card(card_path)
    name, version, expected = card.name, card.version, card.onnx.sha256
    onnx_path = Path(onnx_path) if onnx_path is not None else card_path.parent / card.onnx.file
    if not onnx_path.is_file():
        raise ValueError(f"ONNX file not found: {onnx_path}")
    actual = sha256_file(onnx_path)
    if actual != expected:
        raise ValueError(f"sha256 mismatch: model card says {expected}, {onnx_path} is {actual}")
    if find_version(session, name, version) is not None:
        raise ValueError(f"model {name} version {version} is already registered")
    model = ModelVersion(
        name=name,
        version=version,
        sha256=actual,
        path=str(onnx_path.resolve()),
        preprocessing_digest=card.preprocessing_digest,
        card=json_object(card.as_dict(), f"model card {card_path}"),
        status=ModelStatus.CHALLENGER,
    )
    session.add(model)
    session.flush()
    record_audit(session, actor, "model.register", _resource(model), AuditOutcome.SUCCESS, request_id,
                 {"sha256": actual})
    return model


def find_version(session: Session, name: str, version: str) -> ModelVersion | None:
    """The registered version ``name``/``version``, or ``None``."""
    query = sa.select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    return session.scalars(query).one_or_none()


def get_champion(session: Session) -> ModelVersion | None:
    """The champion (the version the service serves), or ``None`` before the first promotion."""
    query = sa.select(ModelVersion).where(ModelVersion.status == ModelStatus.CHAMPION)
    return session.scalars(query).one_or_none()


def list_versions(session: Session, name: str | None = None) -> list[ModelVersion]:
    """Registered versions (of model ``name``, if given), oldest first."""
    query = sa.select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.id)
    if name is not None:
        query = query.where(ModelVersion.name == name)
    return list(session.scalars(query))


def promote(
    session: Session, name: str, version: str, *, actor: str, request_id: str | None = None
) -> ModelVersion:
    """Make ``name``/``version`` the champion and retire the previous champion, audited, in one transaction.

    A retired version may be promoted again (rollback). Commit or roll back with the caller's session.
    """
    target = session.scalars(
        sa.select(ModelVersion)
        .where(ModelVersion.name == name, ModelVersion.version == version)
        .with_for_update()
    ).one_or_none()
    if target is None:
        raise ValueError(f"model {name} version {version} is not registered")
    if target.status is ModelStatus.CHAMPION:
        raise ValueError(f"model {name} version {version} is already the champion")
    previous = session.scalars(
        sa.select(ModelVersion).where(ModelVersion.status == ModelStatus.CHAMPION).with_for_update()
    ).one_or_none()
    now = utcnow()
    if previous is not None:
        previous.status = ModelStatus.RETIRED
        previous.retired_at = now
        session.flush()  # retire first: the one-champion index is checked row by row
    target.status = ModelStatus.CHAMPION
    target.promoted_at = now
    target.retired_at = None
    session.flush()
    detail = {"sha256": target.sha256, "previous": None if previous is None else _resource(previous)}
    record_audit(session, actor, "model.promote", _resource(target), AuditOutcome.SUCCESS, request_id, detail)
    return target


def record_gate_decision(
    session: Session,
    challenger: ModelVersion,
    *,
    passed: bool,
    criteria: dict[str, Any],
    actor: str,
    request_id: str | None = None,
) -> GateDecision:
    """Record a retraining gate decision about ``challenger`` against today's champion, audited.

    ``criteria`` holds the compared metrics, margins and reasons. Promotion itself is :func:`promote`.
    """
    if challenger.status is not ModelStatus.CHALLENGER:
        raise ValueError(f"{_resource(challenger)} is {challenger.status.value}, not a challenger")
    champion = get_champion(session)
    decision = GateDecision(
        challenger=challenger,
        champion=champion,
        passed=bool(passed),
        criteria=json_object(criteria, "gate criteria"),
        actor=actor,
    )
    session.add(decision)
    session.flush()
    detail = {"passed": bool(passed), "champion": None if champion is None else _resource(champion),
              "gate_decision_id": decision.id}
    record_audit(
        session, actor, "model.gate", _resource(challenger), AuditOutcome.SUCCESS, request_id, detail
    )
    return decision


RETRAIN_CRITERIA_KEY = "retrain"
"""Key of the retraining run record inside a gate decision's ``criteria`` (``data_fingerprint``, run dir…)."""


def find_retrain_decision(session: Session, data_fingerprint: str, champion: ModelVersion) -> GateDecision | None:
    """The newest gate decision of a retraining run on the data ``data_fingerprint`` that either compared a
    challenger with ``champion`` or made ``champion`` (so that data is already in it); else ``None``."""
    decisions = session.scalars(
        sa.select(GateDecision)
        .where(sa.or_(GateDecision.champion_id == champion.id, GateDecision.challenger_id == champion.id))
        .order_by(GateDecision.id.desc())
    )
    for decision in decisions:
        run = decision.criteria.get(RETRAIN_CRITERIA_KEY)
        if isinstance(run, dict) and run.get("data_fingerprint") == data_fingerprint:
            return decision
    return None


def record_retrain(
    session: Session,
    challenger: ModelVersion,
    champion: ModelVersion,
    *,
    passed: bool,
    forced: bool,
    criteria: dict[str, Any],
    actor: str,
    request_id: str | None = None,
) -> GateDecision:
    """Record a retraining run's gate decision about ``challenger`` against ``champion`` and promote the
    challenger when the gate passed or an operator ``forced`` it, in the caller's transaction.

    Audited three ways: ``model.gate`` (the decision), ``model.promote`` (when promoted) and ``model.retrain``
    (the run: decision, forced, data fingerprint). If ``champion`` is no longer the champion (someone promoted
    another version during the run), nothing is recorded: the comparison no longer holds.
    """
    current = get_champion(session)
    if current is None or current.id != champion.id:
        now = "no champion" if current is None else f"{_resource(current)} is the champion now"
        raise ValueError(f"the challenger was compared with {_resource(champion)}, but {now}: rerun the retraining")
    run = criteria.get(RETRAIN_CRITERIA_KEY)
    if not isinstance(run, dict) or not isinstance(run.get("data_fingerprint"), str):
        raise ValueError(f"gate criteria of a retraining run need {RETRAIN_CRITERIA_KEY}.data_fingerprint")
    decision = record_gate_decision(session, challenger, passed=passed, criteria={**criteria, "forced": forced},
                                    actor=actor, request_id=request_id)
    promoted = passed or forced
    if promoted:
        promote(session, challenger.name, challenger.version, actor=actor, request_id=request_id)
    outcome = ("forced" if not passed else "promoted") if promoted else "refused"
    record_audit(session, actor, "model.retrain", _resource(challenger), AuditOutcome.SUCCESS, request_id,
                 {"decision": outcome, "forced": forced, "gate_decision_id": decision.id,
                  "champion": _resource(champion), "data_fingerprint": run["data_fingerprint"]})
    return decision

"""API keys: the plaintext is shown once and never stored; verification is exact; revocation is final."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from ecg_k.db.api_keys import create_api_key, list_api_keys, revoke_api_key, verify_api_key
from ecg_k.db.models import ApiKey, AuditEvent, Base, Role
from ecg_k.db.session import get_engine, session_scope

ACTOR = "cli:test"


def _everything_stored(db_url: str) -> str:
    """Every value in every table, as one text (to search for secrets)."""
    with get_engine(db_url).connect() as connection:
        tables = Base.metadata.sorted_tables
        return "\n".join(repr(tuple(row)) for table in tables for row in connection.execute(sa.select(table)))


def test_create_returns_the_plaintext_once_and_stores_only_a_salted_hash(db_url: str) -> None:
    with session_scope(db_url) as session:
        first = create_api_key(session, "client", actor=ACTOR, name="ward 7 integration")
        second = create_api_key(session, Role.CLIENT, actor=ACTOR)
    scheme, prefix, secret = first.plaintext.split("_")
    assert scheme == "ecgk" and prefix == first.key.prefix and len(secret) == 64
    stored = _everything_stored(db_url)
    for new in (first, second):
        assert new.plaintext not in stored
        assert new.plaintext.split("_")[2] not in stored
    with session_scope(db_url) as session:
        keys = list_api_keys(session)
        assert [(k.role, k.name) for k in keys] == [(Role.CLIENT, "ward 7 integration"), (Role.CLIENT, None)]
        assert keys[0].salt != keys[1].salt and keys[0].key_hash != keys[1].key_hash
        assert {len(k.salt) for k in keys} == {32} and {len(k.key_hash) for k in keys} == {64}
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "api_key.create")).all()
        assert [e.resource for e in events] == [f"api_key:{first.key.id}", f"api_key:{second.key.id}"]
        assert events[0].detail == {"role": "client", "prefix": prefix}


@pytest.mark.parametrize("role", list(Role))
def test_verify_returns_the_key_with_its_role(db_url: str, role: Role) -> None:
    with session_scope(db_url) as session:
        new = create_api_key(session, role.value, actor=ACTOR)
    with session_scope(db_url) as session:
        key = verify_api_key(session, new.plaintext)
        assert key is not None and key.id == new.key.id and key.role is role


def test_wrong_or_malformed_keys_fail(db_url: str) -> None:
    with session_scope(db_url) as session:
        new = create_api_key(session, "reviewer", actor=ACTOR)
        other = create_api_key(session, "admin", actor=ACTOR)
    scheme, prefix, secret = new.plaintext.split("_")
    wrong_secret = f"{scheme}_{prefix}_{'0' * 64}"
    swapped = f"{scheme}_{prefix}_{other.plaintext.split('_')[2]}"  # a valid secret under the wrong prefix
    unknown_prefix = f"{scheme}_{'f' * 12}_{secret}"
    with session_scope(db_url) as session:
        for attempt in (wrong_secret, swapped, unknown_prefix, new.plaintext[:-1], new.plaintext + "0",
                        f"xxxx_{prefix}_{secret}", f"{prefix}_{secret}", secret, "", "ecgk__", None, 42):
            assert verify_api_key(session, attempt) is None, attempt


def test_revoked_key_fails_and_revocation_is_audited(db_url: str) -> None:
    with session_scope(db_url) as session:
        new = create_api_key(session, "client", actor=ACTOR)
    with session_scope(db_url) as session:
        revoked = revoke_api_key(session, new.key.id, actor="cli:admin", request_id="req-7")
        assert revoked.revoked_at is not None and revoked.revoked_at <= datetime.now(UTC)
    with session_scope(db_url) as session:
        assert verify_api_key(session, new.plaintext) is None
        assert session.get(ApiKey, new.key.id).revoked_at is not None
        event = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "api_key.revoke")).one()
        assert (event.actor, event.resource) == ("cli:admin", f"api_key:{new.key.id}")
        assert event.request_id == "req-7"
    with session_scope(db_url) as session, pytest.raises(ValueError, match="already revoked"):
        revoke_api_key(session, new.key.id, actor=ACTOR)
    with session_scope(db_url) as session, pytest.raises(ValueError, match="no API key with id 999"):
        revoke_api_key(session, 999, actor=ACTOR)


@pytest.mark.parametrize(("role", "name", "message"), [
    ("root", None, "unknown role 'root'; expected one of client, reviewer, admin"),
    ("client", "", "key name must be 1-200 characters"),
    ("client", "x" * 201, "key name must be 1-200 characters"),
])
def test_create_rejects_bad_input(db_url: str, role: str, name: str | None, message: str) -> None:
    with session_scope(db_url) as session, pytest.raises(ValueError, match=message):
        create_api_key(session, role, actor=ACTOR, name=name)
    with session_scope(db_url) as session:
        assert list_api_keys(session) == []

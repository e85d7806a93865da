"""API keys: the plaintext is shown once and never stored; verification is exact; revocation is final."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecg_k.db.api_keys import (
    SCRYPT_DKLEN,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    server_secret,
    verify_api_key,
)
from ecg_k.db.migrate import downgrade, upgrade
from ecg_k.db.models import ApiKey, AuditEvent, Base, Role
from ecg_k.db.session import dispose_engines, get_engine, session_scope
from ecg_k.settings import Settings

ACTOR = "cli:test"


def _everything_stored(db_url: str) -> str:
    """Every value in every table, as one text (to search for secrets)."""
    with get_engine(db_url).connect() as connection:
        tables = Base.metadata.sorted_tables
        return "\n".join(repr(tuple(row)) for table in tables for row in connection.execute(sa.select(table)))


def test_create_returns_the_plaintext_once_and_stores_only_a_keyed_hash(db_url: str) -> None:
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
        assert keys[0].key_hash != keys[1].key_hash and {len(k.key_hash) for k in keys} == {64}
        assert {(k.hash_scheme, k.salt) for k in keys} == {("hmac-sha256", "")}
        # HMAC-SHA256 of the secret part under the server secret, as RFC 2104 defines it
        assert keys[0].key_hash == hmac.new(server_secret(), first.plaintext.split("_")[2].encode(),
                                            hashlib.sha256).hexdigest()
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


def test_a_key_hashed_under_another_server_secret_fails(db_url: str) -> None:
    with session_scope(db_url) as session:
        new = create_api_key(session, "client", actor=ACTOR, server_key=b"x" * 32)
    with session_scope(db_url) as session:
        assert verify_api_key(session, new.plaintext, server_key=b"x" * 32) is not None
        assert verify_api_key(session, new.plaintext, server_key=b"y" * 32) is None
        assert verify_api_key(session, new.plaintext) is None  # the session's secret


def test_a_check_costs_microseconds_not_scrypt(db_url: str) -> None:
    with session_scope(db_url) as session:
        new = create_api_key(session, "client", actor=ACTOR)
        verify_api_key(session, new.plaintext)
        start = time.perf_counter()
        for _ in range(100):
            assert verify_api_key(session, new.plaintext) is not None
        per_check = (time.perf_counter() - start) / 100
    assert per_check < 0.005  # scrypt alone took ~41 ms a check


def test_server_secret_file_is_created_once_private_and_shared(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", api_key_secret=None)
    first = server_secret(settings)
    path = tmp_path / "home" / "api-key.secret"
    assert len(first) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert server_secret(settings) == first == path.read_text().encode()
    assert server_secret(Settings(home=tmp_path / "home", api_key_secret="s" * 32)) == b"s" * 32
    assert list(path.parent.iterdir()) == [path]  # no staging file left


def test_keys_from_before_migration_0003_keep_working_and_are_rehashed(empty_db_url: str) -> None:
    """A scrypt key stored at revision 0001 verifies after the upgrade, once with scrypt, then keyed."""
    upgrade(empty_db_url, "0001")
    salt, secret, prefix = "ab" * 16, "cd" * 32, "0123456789ab"
    legacy = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=SCRYPT_DKLEN).hex()
    with get_engine(empty_db_url).begin() as connection:
        connection.execute(sa.text("INSERT INTO api_keys (prefix, salt, key_hash, role) "
                                   "VALUES (:prefix, :salt, :hash, 'client')"),
                           {"prefix": prefix, "salt": salt, "hash": legacy})
    dispose_engines()
    upgrade(empty_db_url)
    plaintext = f"ecgk_{prefix}_{secret}"
    with session_scope(empty_db_url) as session:
        assert session.scalars(sa.select(ApiKey)).one().hash_scheme == "scrypt"
        assert verify_api_key(session, f"ecgk_{prefix}_{'ef' * 32}") is None
        assert verify_api_key(session, plaintext) is not None
    with session_scope(empty_db_url) as session:
        key = session.scalars(sa.select(ApiKey)).one()
        assert (key.hash_scheme, key.salt) == ("hmac-sha256", "")
        assert key.key_hash == hmac.new(server_secret(), secret.encode(), hashlib.sha256).hexdigest()
        assert verify_api_key(session, plaintext) is not None
    downgrade(empty_db_url, "0001")  # the keyed key cannot work in older code: revoked, not silently broken
    with get_engine(empty_db_url).connect() as connection:
        assert connection.execute(sa.text("SELECT revoked_at IS NOT NULL FROM api_keys")).scalar_one()

"""API keys: ``ecgk_<prefix>_<secret>`` (hex), shown once; the database keeps the prefix and a salted hash.

The prefix (12 hex characters) is not secret: it finds the row. The secret (256 random bits) is hashed
with scrypt and a per-key 16-byte salt, and compared in constant time. Creating and revoking are audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.db.audit import record_audit
from ecg_k.db.models import ApiKey, AuditOutcome, Role, parse_member, utcnow

KEY_SCHEME = "ecgk"
PREFIX_BYTES = 6
SECRET_BYTES = 32
SALT_BYTES = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
_DUMMY_SALT = bytes(SALT_BYTES)


class NewApiKey(NamedTuple):
    """A freshly created key: the stored row and the plaintext, which is never available again."""

    key: ApiKey
    plaintext: str


def _hash_secret(secret: str, salt: bytes) -> str:
    """Hex scrypt digest of ``secret`` under ``salt``."""
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN
    )
    return digest.hex()


def key_actor(key_id: int) -> str:
    """The audit actor (and resource name) of API key ``key_id``: ``api_key:<id>``."""
    return f"api_key:{key_id}"


def parse_role(role: Role | str) -> Role:
    """``"client"`` -> ``Role.CLIENT``, with a clear error for anything else."""
    return parse_member(Role, role, "role")


def create_api_key(
    session: Session, role: Role | str, *, actor: str, name: str | None = None, request_id: str | None = None
) -> NewApiKey:
    """Create a key with ``role``; the returned plaintext is the only copy of the secret."""
    role = parse_role(role)
    if name is not None and not (name.strip() and len(name) <= 200):
        raise ValueError(f"key name must be 1-200 characters when given, got {name!r}")
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_hex(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    key = ApiKey(prefix=prefix, salt=salt.hex(), key_hash=_hash_secret(secret, salt), role=role, name=name)
    session.add(key)
    session.flush()
    record_audit(
        session, actor, "api_key.create", key_actor(key.id), AuditOutcome.SUCCESS, request_id,
        {"role": role.value, "prefix": prefix},
    )
    return NewApiKey(key, f"{KEY_SCHEME}_{prefix}_{secret}")


def _split_key(plaintext: object) -> tuple[str, str]:
    """``(prefix, secret)`` of a well-formed key; ``("", "")`` for anything else."""
    if not isinstance(plaintext, str):
        return "", ""
    scheme, _, rest = plaintext.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != 2 * PREFIX_BYTES or not secret:
        return "", ""
    return prefix, secret


def verify_api_key(session: Session, plaintext: str) -> ApiKey | None:
    """The active key that ``plaintext`` belongs to, or ``None`` (malformed, unknown, wrong or revoked).

    The hash is computed whether or not the prefix exists, so timing does not reveal which prefixes do.
    """
    prefix, secret = _split_key(plaintext)
    key = None
    if prefix:
        key = session.scalars(sa.select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    digest = _hash_secret(secret, bytes.fromhex(key.salt) if key is not None else _DUMMY_SALT)
    if key is None or key.revoked_at is not None:
        return None
    return key if hmac.compare_digest(digest, key.key_hash) else None


def revoke_api_key(session: Session, key_id: int, *, actor: str, request_id: str | None = None) -> ApiKey:
    """Revoke key ``key_id`` for good (the row stays, so predictions keep their owner)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ValueError(f"no API key with id {key_id}")
    if key.revoked_at is not None:
        raise ValueError(f"API key {key_id} was already revoked at {key.revoked_at.isoformat()}")
    key.revoked_at = utcnow()
    record_audit(session, actor, "api_key.revoke", key_actor(key.id), AuditOutcome.SUCCESS, request_id)
    return key


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.id)))

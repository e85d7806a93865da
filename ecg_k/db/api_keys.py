"""API keys: ``ecgk_<prefix>_<secret>`` (hex), shown once; the database keeps the prefix and a keyed hash.

The prefix (12 hex characters) is not secret: it finds the row. The secret (256 random bits) is stored as
HMAC-SHA256 under the server secret (:func:`server_secret`), compared in constant time. A random 256-bit
secret needs no slow hash (nothing to guess), so a check costs microseconds and no process caches keys:
a revoked key is refused on its next request by every worker. The server secret keeps a copied database
from being enough to check guessed keys offline. Creating and revoking are audited.

Keys created before the keyed hash (scheme ``scrypt``, migration 0003) keep working: the first successful
check re-hashes the secret with the keyed hash and drops the salt, so each old key pays scrypt once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.db.audit import record_audit
from ecg_k.db.models import KEYED_SHA256, LEGACY_SCRYPT, ApiKey, AuditOutcome, Role, parse_member, utcnow
from ecg_k.settings import Settings, get_settings

KEY_SCHEME = "ecgk"
PREFIX_BYTES = 6
SECRET_BYTES = 32
SERVER_SECRET_FILE = "api-key.secret"
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32


class NewApiKey(NamedTuple):
    """A freshly created key: the stored row and the plaintext, which is never available again."""

    key: ApiKey
    plaintext: str


def server_secret(settings: Settings | None = None) -> bytes:
    """The key of the API-key hashes: ``ECGK_API_KEY_SECRET``, else ``<home>/api-key.secret``.

    The file is created once (256 random bits, hex, mode 0600) by the first process that needs it; every
    process that creates or checks keys (API workers, dashboard, ``ecgk keys``) must see the same secret.
    Changing it invalidates every key.
    """
    settings = settings or get_settings()
    if settings.api_key_secret is not None:
        return settings.api_key_secret.get_secret_value().encode()
    path = Path(settings.home) / SERVER_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{SERVER_SECRET_FILE}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(staging, path)  # atomic, and the first writer wins when processes race
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    return path.read_text().strip().encode()


def keyed_hash(secret: str, server_key: bytes) -> str:
    """Hex HMAC-SHA256 of a key's secret part under the server secret."""
    return hmac.new(server_key, secret.encode(), hashlib.sha256).hexdigest()


def _scrypt(secret: str, salt_hex: str) -> str:
    """Hex scrypt digest of a legacy key (before migration 0003)."""
    return hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt_hex), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          dklen=SCRYPT_DKLEN).hex()


def key_actor(key_id: int) -> str:
    """The audit actor (and resource name) of API key ``key_id``: ``api_key:<id>``."""
    return f"api_key:{key_id}"


def parse_role(role: Role | str) -> Role:
    """``"client"`` -> ``Role.CLIENT``, with a clear error for anything else."""
    return parse_member(Role, role, "role")


def create_api_key(
    session: Session, role: Role | str, *, actor: str, name: str | None = None, request_id: str | None = None,
    server_key: bytes | None = None,
) -> NewApiKey:
    """Create a key with ``role``; the returned plaintext is the only copy of the secret.

    ``server_key`` defaults to this process's :func:`server_secret`.
    """
    role = parse_role(role)
    if name is not None and not (name.strip() and len(name) <= 200):
        raise ValueError(f"key name must be 1-200 characters when given, got {name!r}")
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_hex(SECRET_BYTES)
    key = ApiKey(prefix=prefix, hash_scheme=KEYED_SHA256, key_hash=keyed_hash(secret, server_key or server_secret()),
                 role=role, name=name)
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


def verify_api_key(session: Session, plaintext: object, server_key: bytes | None = None) -> ApiKey | None:
    """The active key that ``plaintext`` belongs to, or ``None`` (malformed, unknown, wrong or revoked).

    One indexed lookup and one HMAC, read from the database on every call (no cache). The HMAC is computed
    whether or not the prefix exists, so timing does not reveal which prefixes do. A legacy scrypt key that
    matches is re-hashed in ``session`` (the caller's commit stores it).
    """
    server_key = server_key or server_secret()
    prefix, secret = _split_key(plaintext)
    key = None
    if prefix:
        key = session.scalars(sa.select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    digest = keyed_hash(secret, server_key)
    if key is None or key.revoked_at is not None:
        return None
    if key.hash_scheme == LEGACY_SCRYPT:
        if not hmac.compare_digest(_scrypt(secret, key.salt), key.key_hash):
            return None
        key.hash_scheme, key.key_hash, key.salt = KEYED_SHA256, digest, ""
        return key
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

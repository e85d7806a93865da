"""Sign-in to the dashboard with an API key (the same keys as the API; ``ecgk keys create``).

Anyone who can reach the dashboard (loopback by default) may read it; writing lab values and verdicts
needs a key whose role may review (:data:`ecg_k.db.reviews.REVIEW_ROLES`). The session keeps the key's id
and role, never the key itself. Sign-ins are audited like the API's authentication: a refused key as
``auth`` / ``denied`` by ``anonymous``, an accepted one as ``auth`` / ``success`` by ``api_key:<id>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecg_k.db.api_keys import key_actor, verify_api_key
from ecg_k.db.audit import record_audit
from ecg_k.db.models import AuditOutcome, Role
from ecg_k.db.reviews import REVIEW_ROLES
from ecg_k.db.session import session_scope

ANONYMOUS = "anonymous"
SOURCE = "dashboard"
"""The door named in the audit detail of what the dashboard writes."""


@dataclass(frozen=True)
class SignedIn:
    """The key a dashboard session signed in with."""

    key_id: int
    role: Role
    name: str | None

    @property
    def actor(self) -> str:
        return key_actor(self.key_id)

    @property
    def can_review(self) -> bool:
        return self.role in REVIEW_ROLES

    @property
    def label(self) -> str:
        return f"{self.name or self.actor} ({self.role.value})"


def sign_in(database_url: str, plaintext: str) -> SignedIn | None:
    """The signed-in identity of API key ``plaintext``, or None (malformed, unknown, wrong or revoked)."""
    with session_scope(database_url) as session:
        key = verify_api_key(session, plaintext.strip())
        if key is None:
            record_audit(session, ANONYMOUS, "auth", "api_key", AuditOutcome.DENIED, None, {"source": SOURCE})
            return None
        record_audit(session, key_actor(key.id), "auth", "api_key", AuditOutcome.SUCCESS, None,
                     {"source": SOURCE, "role": key.role.value})
        return SignedIn(key.id, key.role, key.name)

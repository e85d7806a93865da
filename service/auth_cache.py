"""The authenticated caller and the short-lived cache of verified API keys."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from ecg_k.db.api_keys import key_actor
from ecg_k.db.models import Role


@dataclass(frozen=True)
class Principal:
    """The caller: an active API key's id and role."""

    key_id: int
    role: Role

    @property
    def actor(self) -> str:
        return key_actor(self.key_id)


def key_digest(api_key: str) -> str:
    """What the cache is keyed by: a sha256 of the key (the plaintext is never kept)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class KeyCache:
    """Verified keys by sha256 of the plaintext, each trusted until its expiry."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry[1] < time.monotonic():
                self._entries.pop(digest, None)
                return None
            return entry[0]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            self._entries[digest] = (principal, time.monotonic() + self._ttl_s)

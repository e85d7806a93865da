"""The content-addressed ECG store: round-trip, idempotence, atomic layout, corruption detected."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from ecg_k.db.ecg_store import EcgCorruptError, EcgNotFoundError, EcgStore, store_ecg
from ecg_k.db.models import EcgRecord
from ecg_k.db.session import session_scope

LEADS = ("I", "II", "V1")


@pytest.fixture
def store(tmp_path: Path) -> EcgStore:
    return EcgStore(tmp_path / "ecg-store")


@pytest.fixture
def signal() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((3, 5000)).astype(np.float32)


def test_put_get_round_trip(store: EcgStore, signal: np.ndarray) -> None:
    sha = store.put(signal, 500.0, LEADS)
    stored = store.get(sha)
    assert stored.signal.dtype == np.float32 and np.array_equal(stored.signal, signal)
    assert stored.fs == 500.0 and stored.lead_names == LEADS
    assert store.path_of(sha) == store.root / sha[:2] / f"{sha}.npz"
    assert sorted(p.name for p in store.root.rglob("*")) == [sha[:2], f"{sha}.npz"]  # no temporary left


def test_put_is_idempotent_and_content_addressed(store: EcgStore, signal: np.ndarray) -> None:
    sha = store.put(signal, 500.0, LEADS)
    path = store.path_of(sha)
    written = path.stat().st_mtime_ns
    assert store.put(signal.copy(), 500, list(LEADS)) == sha  # identical content, other objects
    assert store.put(np.asfortranarray(signal), 500.0, LEADS) == sha  # memory layout does not matter
    assert path.stat().st_mtime_ns == written
    assert len(list(store.root.rglob("*.npz"))) == 1
    changed = signal.copy()
    changed[1, 2500] += 1e-3
    others = {store.put(changed, 500.0, LEADS), store.put(signal, 250.0, LEADS),
              store.put(signal, 500.0, ("I", "II", "V2"))}
    assert sha not in others and len(others) == 3
    assert len(list(store.root.rglob("*.npz"))) == 4


def test_missing_blob_and_bad_address(store: EcgStore) -> None:
    with pytest.raises(EcgNotFoundError, match="no ECG stored under"):
        store.get("0" * 64)
    with pytest.raises(FileNotFoundError):  # an EcgNotFoundError is also a FileNotFoundError
        store.get("0" * 64)
    for bad in ("abc", "G" * 64, "A" * 64, "../" + "0" * 61):
        with pytest.raises(ValueError, match="not a sha256 address"):
            store.get(bad)


def test_corruption_is_detected(store: EcgStore, signal: np.ndarray) -> None:
    sha = store.put(signal, 500.0, LEADS)
    path = store.path_of(sha)
    original = path.read_bytes()

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF  # one byte inside the samples
    path.write_bytes(bytes(flipped))
    with pytest.raises(EcgCorruptError, match="corrupt|unreadable"):
        store.get(sha)

    path.write_bytes(original[: len(original) // 3])  # truncated
    with pytest.raises(EcgCorruptError, match="unreadable"):
        store.get(sha)

    other = signal[::-1].copy()
    np.savez(path, signal=other, fs=np.float64(500.0), lead_names=np.array(LEADS))  # valid, other content
    with pytest.raises(EcgCorruptError, match="its content hashes to"):
        store.get(sha)
    with pytest.raises(ValueError):  # an EcgCorruptError is also a ValueError
        store.get(sha)

    assert store.put(signal, 500.0, LEADS) == sha  # putting the content again repairs the blob
    assert np.array_equal(store.get(sha).signal, signal)


def test_the_address_is_a_sha256_of_the_canonical_content(store: EcgStore) -> None:
    signal = np.arange(6, dtype=np.float32).reshape(1, 6)
    header = b'{"dtype":"<f4","format":"ecg-k-ecg/1","fs":500.0,"lead_names":["I"],"shape":[1,6]}'
    expected = hashlib.sha256(header + b"\0" + signal.astype("<f4").tobytes()).hexdigest()
    assert store.put(signal, 500.0, ["I"]) == expected


@pytest.mark.parametrize(
    ("signal", "fs", "leads", "message"),
    [
        (np.zeros((1, 10), dtype=np.float64), 500.0, ["I"], "float32"),
        ([[0.0] * 10], 500.0, ["I"], "float32"),
        (np.zeros(10, dtype=np.float32), 500.0, ["I"], "shape"),
        (np.zeros((1, 0), dtype=np.float32), 500.0, ["I"], "shape"),
        (np.full((1, 10), np.nan, dtype=np.float32), 500.0, ["I"], "NaN"),
        (np.zeros((1, 10), dtype=np.float32), 0.0, ["I"], "fs must be"),
        (np.zeros((1, 10), dtype=np.float32), float("inf"), ["I"], "fs must be"),
        (np.zeros((1, 10), dtype=np.float32), True, ["I"], "fs must be"),
        (np.zeros((2, 10), dtype=np.float32), 500.0, ["I"], "1 lead names for 2 leads"),
        (np.zeros((2, 10), dtype=np.float32), 500.0, ["I", "I"], "distinct"),
        (np.zeros((1, 10), dtype=np.float32), 500.0, [""], "distinct non-empty"),
    ],
)
def test_put_rejects_bad_input(
    store: EcgStore, signal: object, fs: object, leads: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.put(signal, fs, leads)  # type: ignore[arg-type]
    assert not store.root.exists()


def test_store_ecg_records_one_row_per_content(db_url: str, store: EcgStore, signal: np.ndarray) -> None:
    with session_scope(db_url) as session:
        first = store_ecg(session, store, signal, 500.0, LEADS)
    with session_scope(db_url) as session:
        again = store_ecg(session, store, signal.copy(), 500.0, LEADS)
        assert again.sha256 == first.sha256
    with session_scope(db_url) as session:
        (row,) = session.scalars(sa.select(EcgRecord)).all()
        assert (row.n_leads, row.n_samples, row.fs, row.lead_names) == (3, 5000, 500.0, list(LEADS))
    assert np.array_equal(store.get(row.sha256).signal, signal)


def test_default_root_comes_from_the_settings() -> None:
    from ecg_k.settings import get_settings

    assert EcgStore().root == get_settings().ecg_store


def test_put_fsyncs_the_blob_and_its_directory_entries(store: EcgStore, signal: np.ndarray,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored blob survives a power cut: its bytes, its name in the shard directory and, for a new shard
    directory, that directory's name in the store's root are all fsynced before ``put`` returns."""
    synced: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    sha256 = store.put(signal, 500.0, LEADS)
    shard = store.path_of(sha256).parent.resolve()
    assert [path.parent for path in synced if path.name.endswith(".tmp")] == [shard]
    assert synced[1:] == [shard, store.root.resolve()]
    synced.clear()
    again = store.put(signal * 2, 500.0, LEADS)
    assert store.path_of(again).parent.resolve() in synced[1:]

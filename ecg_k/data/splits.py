"""Subject-level split: a natural-distribution test set, then the balanced val/test draw of the DIR template
(method.md section 8) under a guarantee that training keeps every bin's tail.

Rule, deterministic under ``seed`` (one generator, used in this order):

1. **Share guarantee.** Every 0.1 mmol/L bin with ``n_b >= 3`` pairs keeps at least ``ceil(n_b / 3)`` of them
   in train; a bin with fewer than 3 pairs keeps all of them. A subject is drawn into any held-out split only
   if removing *all* its pairs from train keeps that promise in every bin it touches, so the other pairs of a
   drawn subject (which are discarded: no subject is in two splits) can never empty a bin.
2. ``test_natural``: ``natural_fraction`` of the subjects, in a seeded random order (subjects that would break
   the guarantee are passed over), with all their pairs: clinical metrics at real prevalence.
3. Balanced val/test: per bin, from the rarest to the commonest, ``k_b = min(cap, (r_b - keep_b) // 2)`` pairs
   go to val and ``k_b`` to test, one pair per subject (``r_b`` pairs left after step 2, ``keep_b`` the share
   of step 1; without step 2 this is the template's ``min(n_b // 3, cap)``). Candidates with the fewest other
   pairs come first (seeded order among equals), so the draw discards as little as it can. The per-bin
   ``cap`` is the largest value (at most :data:`MAX_PER_BIN`) that keeps val + test within ``max_fraction`` of
   all pairs, unless ``max_per_bin`` sets it.
4. ``cal``: the val draw split in half by a seeded draw of its subjects within each bin (calibration and the
   retraining gate use it; model selection never sees it).

Every other pair of a val/cal/test subject is ``discarded``; every pair of a subject never drawn is ``train``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

TRAIN, VAL, CAL, TEST, TEST_NATURAL = "train", "val", "cal", "test", "test_natural"
SPLITS = (TRAIN, VAL, CAL, TEST, TEST_NATURAL)
"""Every split of a dataset, in cohort order."""
HELD_OUT = (VAL, CAL, TEST, TEST_NATURAL)
DISCARDED = "discarded"
PER_BIN_COLUMNS = (*SPLITS, DISCARDED)
MAX_PER_BIN = 100
"""Upper bound of the automatic per-bin cap (the template's 100 per bin)."""
TRAIN_SHARE = 1 / 3
"""The share of every bin's pairs that train keeps (bins of at least :data:`MIN_SHARED_BIN` pairs)."""
MIN_SHARED_BIN = 3


@dataclass(frozen=True)
class SplitResult:
    """``split`` per input row (a :data:`SPLITS` name or ``discarded``), the per-bin ``k`` of the balanced draw
    and the per-bin cap it used (``cap_source``: ``"auto"`` from ``max_fraction``, or ``"max_per_bin"``)."""

    split: pd.Series
    k_per_bin: dict[int, int]
    cap: int
    cap_source: str


def train_keep(n_b: np.ndarray) -> np.ndarray:
    """Pairs a bin of ``n_b`` pairs must keep in train: all below 3 pairs, else ``ceil(n_b / 3)``."""
    n_b = np.asarray(n_b, dtype=np.int64)
    return np.where(n_b < MIN_SHARED_BIN, n_b, -(-n_b // 3))


def balanced_k(room: np.ndarray, budget: int, upper: int = MAX_PER_BIN) -> tuple[np.ndarray, int]:
    """Per-bin ``k`` of the balanced draw within ``budget`` val + test pairs, and the uniform cap used.

    The cap is the largest ``c <= upper`` with ``sum(2 * min(room_b, c)) <= budget``; the budget left over
    raises ``k`` by one in bins with room beyond ``c``, evenly spaced over the K+ range (so a small cohort,
    whose budget does not reach one pair in every bin, still gets val/test pairs across the range).
    """
    room = np.maximum(np.asarray(room, dtype=np.int64), 0)
    upper = min(upper, int(room.max(initial=0)))
    cap = 0
    while cap < upper and 2 * int(np.minimum(room, cap + 1).sum()) <= budget:
        cap += 1
    k = np.minimum(room, cap)
    open_bins = np.flatnonzero(room > cap)
    extra = min((budget - 2 * int(k.sum())) // 2, len(open_bins)) if cap < upper else 0
    if extra > 0:
        k[open_bins[np.unique(np.round(np.linspace(0, len(open_bins) - 1, extra)).astype(np.int64))]] += 1
    return k, cap


class _Pool:
    """Pairs still in train per bin, and the test of the share guarantee for removing a subject."""

    def __init__(self, subjects: np.ndarray, bins: np.ndarray) -> None:
        self.bin_values, bin_codes = np.unique(bins, return_inverse=True)
        self.codes = bin_codes
        self.left = np.bincount(bin_codes, minlength=len(self.bin_values)).astype(np.int64)
        self.keep = train_keep(self.left)
        frame = pd.DataFrame({"subject": subjects, "bin": bin_codes, "row": np.arange(len(subjects))})
        per_subject = frame.groupby(["subject", "bin"]).size()
        self.touches: dict[int, tuple[np.ndarray, np.ndarray]] = {
            cast(int, subject): (group.index.get_level_values("bin").to_numpy(), group.to_numpy())
            for subject, group in per_subject.groupby(level="subject")
        }
        self.subject_rows = {subject: np.sort(rows.to_numpy()) for subject, rows in frame.groupby("subject")["row"]}
        self.pairs = {subject: len(rows) for subject, rows in self.subject_rows.items()}

    def rows_in_bin(self, subject: int, code: int) -> np.ndarray:
        rows = self.subject_rows[subject]
        in_bin: np.ndarray = rows[self.codes[rows] == code]
        return in_bin

    def removable(self, subject: int) -> bool:
        codes, counts = self.touches[subject]
        return bool(np.all(self.left[codes] - counts >= self.keep[codes]))

    def remove(self, subject: int) -> None:
        codes, counts = self.touches[subject]
        self.left[codes] -= counts


def subject_split(
    subject_id: pd.Series,
    label_bin: pd.Series,
    seed: int,
    natural_fraction: float = 0.05,
    max_fraction: float = 0.10,
    max_per_bin: int | None = None,
) -> SplitResult:
    """Assign each row (an ECG-K+ pair) to a split; see the module docstring for the rule."""
    if not 0 <= natural_fraction < 1:
        raise ValueError(f"natural_fraction must be in [0, 1), got {natural_fraction}")
    if not 0 <= max_fraction < 1:
        raise ValueError(f"max_fraction must be in [0, 1), got {max_fraction}")
    if max_per_bin is not None and max_per_bin < 0:
        raise ValueError(f"max_per_bin must be >= 0, got {max_per_bin}")
    subjects = subject_id.to_numpy()
    n_pairs = len(subjects)
    rng = np.random.default_rng(seed)
    pool = _Pool(subjects, label_bin.to_numpy())
    split = np.full(n_pairs, TRAIN, dtype=object)
    chosen: set[Any] = set()

    all_subjects = np.array(sorted(pool.touches))
    n_natural = int(round(natural_fraction * len(all_subjects)))
    for subject in rng.permutation(all_subjects):
        if len(chosen) >= n_natural:
            break
        if pool.removable(subject):
            pool.remove(subject)
            chosen.add(subject)
            split[pool.subject_rows[subject]] = TEST_NATURAL

    room = np.maximum((pool.left - pool.keep) // 2, 0)
    if max_per_bin is None:
        k_codes, cap = balanced_k(room, int(math.floor(max_fraction * n_pairs)))
        cap_source = "auto"
    else:
        k_codes, cap, cap_source = np.minimum(room, max_per_bin), max_per_bin, "max_per_bin"
    k_per_bin = {int(pool.bin_values[code]): int(k) for code, k in enumerate(k_codes)}
    candidates = pd.DataFrame({"subject": subjects, "bin": pool.codes})
    by_bin = {int(cast(int, code)): np.unique(group.to_numpy())
              for code, group in candidates.groupby("bin")["subject"]}
    val_picks: dict[int, list[int]] = {}
    for code in sorted(range(len(k_codes)), key=lambda c: (pool.left[c], pool.bin_values[c])):
        k = int(k_codes[code])
        if k == 0:
            continue
        free = rng.permutation(np.array([s for s in by_bin[code] if s not in chosen]))
        others = np.array([pool.pairs[s] for s in free], dtype=np.int64)
        taken = {VAL: 0, TEST: 0}
        for subject in free[np.argsort(others, kind="stable")]:
            if taken[VAL] >= k and taken[TEST] >= k:
                break
            if not pool.removable(subject):
                continue
            target = VAL if taken[VAL] <= taken[TEST] and taken[VAL] < k else TEST
            pool.remove(subject)
            chosen.add(subject)
            split[pool.subject_rows[subject]] = DISCARDED
            row = int(rng.choice(pool.rows_in_bin(subject, code)))
            split[row] = target
            taken[target] += 1
            if target == VAL:
                val_picks.setdefault(code, []).append(row)
    _split_calibration(split, val_picks, rng)
    return SplitResult(pd.Series(split, index=subject_id.index, name="split"), k_per_bin, int(cap), cap_source)


def _split_calibration(split: np.ndarray, val_picks: dict[int, list[int]], rng: np.random.Generator) -> None:
    """Half of each bin's val draw (seeded) becomes ``cal``; odd bins alternate which half is larger."""
    extra_to_val = True
    for code in sorted(val_picks):
        rows = rng.permutation(np.array(val_picks[code]))
        n_val = (len(rows) + (1 if extra_to_val else 0)) // 2
        if len(rows) % 2:
            extra_to_val = not extra_to_val
        split[rows[n_val:]] = CAL


def per_bin_counts(bins: np.ndarray, split: Sequence[str] | np.ndarray, step: float) -> dict[str, dict[str, int]]:
    """``{"4.2": {"train": n, "val": n, ..., "discarded": n}}`` for every bin present (every column named)."""
    frame = pd.DataFrame({"bin": np.asarray(bins, dtype=np.int64), "split": np.asarray(split, dtype=object)})
    unknown = set(frame["split"]) - set(PER_BIN_COLUMNS)
    if unknown:
        raise ValueError(f"unknown split name(s) {sorted(unknown)}")
    table = frame.groupby(["bin", "split"]).size().unstack(fill_value=0)
    return {f"{b * step:.1f}": {column: int(table.loc[b].get(column, 0)) for column in PER_BIN_COLUMNS}
            for b in table.index}


def share_warnings(per_bin: dict[str, dict[str, int]]) -> list[str]:
    """One line per bin of at least 3 pairs whose train share is below a third (e.g. after QC rejections)."""
    lines = []
    for label, counts in per_bin.items():
        total = sum(counts.values())
        if total >= MIN_SHARED_BIN and counts[TRAIN] < TRAIN_SHARE * total:
            lines.append(f"bin {label} mmol/L keeps {counts[TRAIN]} of {total} pairs in train "
                         f"(less than a third)")
    return lines

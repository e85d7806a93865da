"""Subject-level balanced val/test split following the DIR template (method.md section 8).

For each 0.1 mmol/L bin, from the rarest to the commonest, ``k = min(n_b // 3, max_per_bin)`` pairs go to
val and ``k`` to test, one pair per subject, drawn from subjects not yet assigned; every pair of a subject
that was never drawn goes to train; the other pairs of val/test subjects are discarded (so no subject is
in two splits). Deterministic under ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
DISCARDED = "discarded"


@dataclass(frozen=True)
class SplitResult:
    """``split`` per input row (train/val/test/discarded) and the per-bin k used."""

    split: pd.Series
    k_per_bin: dict[int, int]


def balanced_subject_split(
    subject_id: pd.Series, label_bin: pd.Series, max_per_bin: int, seed: int
) -> SplitResult:
    """Assign each row (an ECG-K+ pair) to a split; see the module docstring for the rule."""
    if max_per_bin < 0:
        raise ValueError(f"max_per_bin must be >= 0, got {max_per_bin}")
    frame = pd.DataFrame({"subject": subject_id.to_numpy(), "bin": label_bin.to_numpy()})
    rng = np.random.default_rng(seed)
    counts = frame["bin"].value_counts()
    order = sorted(counts.index, key=lambda b: (counts[b], b))
    rows_by_bin = {b: g for b, g in frame.groupby("bin", sort=True)}
    chosen: dict[int, tuple[str, int]] = {}  # subject -> (split, row position)
    k_per_bin: dict[int, int] = {}
    for b in order:
        k = min(int(counts[b]) // 3, max_per_bin)
        k_per_bin[int(b)] = k
        if k == 0:
            continue
        rows = rows_by_bin[b]
        by_subject = rows.groupby("subject").groups
        free = np.array(sorted(s for s in by_subject if s not in chosen))
        taken = {"val": 0, "test": 0}
        for subject in rng.permutation(free):
            if taken["val"] >= k and taken["test"] >= k:
                break
            target = "val" if taken["val"] <= taken["test"] and taken["val"] < k else "test"
            positions = np.sort(frame.index.get_indexer(by_subject[subject]))
            chosen[int(subject)] = (target, int(rng.choice(positions)))
            taken[target] += 1
    split = np.full(len(frame), "train", dtype=object)
    in_holdout = frame["subject"].isin(list(chosen)).to_numpy()
    split[in_holdout] = DISCARDED
    for target, position in chosen.values():
        split[position] = target
    return SplitResult(split=pd.Series(split, index=subject_id.index, name="split"), k_per_bin=k_per_bin)

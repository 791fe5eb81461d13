"""Subject-disjoint splits: no speaker / patient / call ever on two sides of a split."""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from respira.data.manifest import SPLITS, DataWarning
from respira.errors import ConfigError, DataError


def subject_keys(df: pd.DataFrame) -> np.ndarray:
    """[rows] the unit a split keeps together: `subject`, or the file `path` where subject is empty."""
    subject = df["subject"].fillna("").astype(str).str.strip()
    return np.where(subject != "", subject, df["path"].astype(str)).astype(object)


def split_by_subject(
    df: pd.DataFrame,
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    stratify: str | None = "label",
    overwrite: bool = False,
    method: str = "stratified",
) -> pd.DataFrame:
    """A copy of `df` with empty `split` cells filled with train / val / test, subject-disjoint.

    method "stratified": about `val` and `test` of the rows to fill go to val and test, the rest
    to train; subjects are placed greedily, largest first, each on the side whose per-`stratify`-
    value counts it brings closest to their targets (None: row counts only). method "hash": each
    subject's side follows from a hash of (seed, subject) alone, so a subject lands on the same
    side in every manifest it appears in, whatever else the manifest holds (no stratification).
    Rows of a subject that already has a split join that side. Filled cells are kept unless
    `overwrite`. Deterministic for a given `seed`.
    """
    if method not in ("stratified", "hash"):
        raise ConfigError(f"split method must be 'stratified' or 'hash', got {method!r}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"split fractions must be >= 0 and val + test < 1, got val={val}, test={test}")
    out = df.copy()
    split = np.array(["" if overwrite else s for s in out["split"].fillna("").astype(str).str.strip()], dtype=object)
    subjects = subject_keys(out)
    placed = _existing_sides(subjects, split)
    todo = split == ""
    for i in np.flatnonzero(todo):
        if subjects[i] in placed:
            split[i] = placed[subjects[i]]
    todo = split == ""
    if todo.any() and method == "hash":
        split[todo] = [_hashed_side(str(s), seed=seed, val=val, test=test) for s in subjects[todo]]
    elif todo.any():
        strata = _strata(out, stratify)[todo]
        groups, group_of = np.unique(subjects[todo].astype(str), return_inverse=True)
        labels, label_of = np.unique(strata, return_inverse=True)
        counts = np.zeros((len(groups), len(labels)))
        np.add.at(counts, (group_of, label_of), 1)
        side = _assign(counts, np.array([1 - val - test, val, test]), np.random.default_rng(seed))
        split[todo] = np.array(SPLITS, dtype=object)[side[group_of]]
    out["split"] = split.astype(str)
    return out


def group_kfold(
    df: pd.DataFrame, *, folds: int = 5, seed: int = 0, stratify: str | None = "label"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`folds` (train, val) pairs of positional row indices; subject-disjoint, stratified by `stratify`."""
    from sklearn.model_selection import StratifiedGroupKFold

    subjects = subject_keys(df)
    n_subjects = len(set(subjects))
    if not 2 <= folds <= n_subjects:
        raise ConfigError(f"folds must be between 2 and the number of subjects ({n_subjects}), got {folds}")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than n_splits"
        return list(splitter.split(np.zeros(len(df)), _strata(df, stratify), subjects.astype(str)))


def _hashed_side(subject: str, *, seed: int, val: float, test: float) -> str:
    """test, val or train from a uniform number in [0, 1) that depends on (seed, subject) only."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{subject}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def _strata(df: pd.DataFrame, stratify: str | None) -> np.ndarray:
    if stratify is None:
        return np.zeros(len(df), dtype=int)
    if stratify not in df.columns:
        raise DataError(f"cannot stratify by {stratify!r}: no such column (columns: {', '.join(df.columns)})")
    return df[stratify].fillna("").astype(str).to_numpy()


def _existing_sides(subjects: np.ndarray, split: np.ndarray) -> dict[str, str]:
    """Subject -> the side its filled rows are on (the most common one; a subject on two sides is warned about)."""
    sides: dict[str, Counter] = {}
    for s, side in zip(subjects, split):
        if side:
            sides.setdefault(s, Counter())[side] += 1
    crossing = [s for s, c in sides.items() if len(c) > 1]
    if crossing:
        warnings.warn(
            f"{len(crossing)} subject(s) already on more than one side of the given split, e.g. {crossing[0]}",
            DataWarning,
            stacklevel=3,
        )
    return {s: c.most_common(1)[0][0] for s, c in sides.items()}


def _assign(counts: np.ndarray, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Side index [groups] for groups with per-stratum row counts [groups, strata]; greedy, largest group first."""
    order = rng.permutation(len(counts))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    totals = counts.sum(axis=0)
    target = fractions[:, None] * totals[None, :]
    weight = 1.0 / np.maximum(totals, 1.0)  # rare strata count as much as common ones
    current = np.zeros_like(target)
    open_sides = np.flatnonzero(fractions > 0)
    side = np.zeros(len(counts), dtype=int)
    for g in order:
        before = np.abs(target[open_sides] - current[open_sides])
        after = np.abs(target[open_sides] - current[open_sides] - counts[g])
        gain = ((before - after) * weight).sum(axis=1)
        s = open_sides[int(np.argmax(gain))]
        side[g] = s
        current[s] += counts[g]
    return side

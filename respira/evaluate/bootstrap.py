"""Stratified percentile bootstrap of rows or of subjects, vectorised over resamples.

A statistic is written once as a function of sample multiplicities `W [b, n]` (how often each
sample is drawn in each of `b` resamples): all ones gives the point estimate, random draws give
the resamples, so the interval and the estimate always come from the same code.

When rows name their subject (speaker, patient, call), a resample draws subjects with
replacement and each row takes the multiplicity of its subject: clips of one person move
together, so the interval reflects how many people were tested, not how many clips. A row
without a subject is a subject of its own; with none named, rows are drawn.

Stratification: a subject whose rows all share one stratum (class) is drawn within it, so the
number of subjects per class is held fixed as the row bootstrap holds the number of rows per
class; subjects with rows in several strata form one further stratum and are drawn among
themselves. With one row per subject this is the row bootstrap, draw for draw (same seed, same
resamples). A stratum of one subject (or one row) is held fixed. A class can be missing from a
resample (its rows belonged to mixed subjects): statistics then return NaN or skip the class,
and NaN resamples are left out of that statistic's interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from respira.errors import DataError

#: statistic(W [b, n] float multiplicities) -> {name: [b] values}
Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]

ROW_BOOTSTRAP = "row_bootstrap"
SUBJECT_BOOTSTRAP = "subject_bootstrap"
_CELLS_PER_CHUNK = 4_000_000  # resamples x samples held at once (32 MB of float64)


def bootstrap_metrics(
    stat: Statistic,
    *,
    strata: np.ndarray,
    n_boot: int,
    seed: int,
    subjects: np.ndarray | None = None,
    level: float = 0.95,
) -> dict:
    """Point estimates and percentile intervals of every statistic `stat` returns.

    strata: [n] labels (class for classification); resamples keep each stratum's size (see the
    module docstring). subjects: [n] subject of each row (None, NaN or "" for none), or None.
    Returns {name: float | None} plus {name_ci: [lo, hi] | None} when `n_boot` > 0 (None where a
    value is undefined, NaN), "ci_method" ("subject_bootstrap" when any row names a subject, else
    "row_bootstrap") and "subjects" (units resampled: subjects, a row without one counting as
    one; for the row bootstrap, rows).
    """
    strata = np.asarray(strata)
    units = resampling_units(subjects, n=len(strata))
    method = {
        "ci_method": ROW_BOOTSTRAP if units is None else SUBJECT_BOOTSTRAP,
        "subjects": len(strata) if units is None else int(units.max()) + 1,
    }
    point = {k: _scalar(v[0]) for k, v in stat(np.ones((1, len(strata)))).items()}
    if n_boot <= 0:
        return point | method
    draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for weights in resample_weights(strata, n_boot=n_boot, seed=seed, units=units):
        for k, v in stat(weights).items():
            draws[k].append(v)
    tail = 100 * (1 - level) / 2
    out: dict = {}
    for k, value in point.items():
        values = np.concatenate(draws[k])
        values = values[np.isfinite(values)]
        out[k] = value
        out[f"{k}_ci"] = (
            None if value is None or not len(values) else [float(x) for x in np.percentile(values, [tail, 100 - tail])]
        )
    return out | method


def resampling_units(subjects: np.ndarray | None, *, n: int) -> np.ndarray | None:
    """Unit [n] of each row, numbered 0.. in order of first appearance: rows with the same non-empty
    subject share one, every other row is one of its own; None when no row names a subject."""
    if subjects is None:
        return None
    given = pd.Series(np.asarray(subjects, dtype=object)).fillna("").astype(str).str.strip().to_numpy(dtype=object)
    if len(given) != n:
        raise DataError(f"bootstrap: {len(given)} subjects for {n} rows")
    if not (given != "").any():
        return None
    # rows without a subject get keys no stripped subject can equal (they start with a newline)
    keys = np.where(given != "", given, np.array([f"\n{i}" for i in range(n)], dtype=object))
    return pd.factorize(keys)[0]


def resample_weights(
    strata: np.ndarray, *, n_boot: int, seed: int, units: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Multiplicities [b, n] of `n_boot` stratified resamples of `units` ([n] unit of each row,
    0..m-1; default every row its own), in chunks: a row is drawn as often as its unit."""
    strata = np.asarray(strata)
    n = len(strata)
    units = np.arange(n) if units is None else np.asarray(units)
    unit_strata = _unit_strata(strata, units)
    m = len(unit_strata)
    members = [np.flatnonzero(unit_strata == s) for s in np.unique(unit_strata)]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for first in range(0, n_boot, chunk):
        b = min(chunk, n_boot - first)
        drawn = np.concatenate([s[rng.integers(0, len(s), size=(b, len(s)))] for s in members], axis=1)
        flat = (drawn + m * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * m).reshape(b, m)
        yield counts[:, units].astype(np.float64)


def _unit_strata(strata: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Stratum code [m] of each unit: its rows' stratum when they share one, else one code for all mixed units."""
    levels, codes = np.unique(strata, return_inverse=True)
    codes = codes.ravel()
    m = int(units.max()) + 1
    lo, hi = np.full(m, len(levels)), np.full(m, -1)
    np.minimum.at(lo, units, codes)
    np.maximum.at(hi, units, codes)
    return np.where(lo == hi, lo, len(levels))


def _scalar(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None

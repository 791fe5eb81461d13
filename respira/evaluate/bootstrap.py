"""Stratified percentile bootstrap, vectorised over resamples.

A statistic is written once as a function of sample multiplicities `W [b, n]` (how often each
sample is drawn in each of `b` resamples): all ones gives the point estimate, random draws give
the resamples, so the interval and the estimate always come from the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: statistic(W [b, n] float multiplicities) -> {name: [b] values}
Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]

_CELLS_PER_CHUNK = 4_000_000  # resamples x samples held at once (32 MB of float64)


def bootstrap_metrics(stat: Statistic, *, strata: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> dict:
    """Point estimates and percentile intervals of every statistic `stat` returns.

    strata: [n] labels; each resample draws, with replacement, as many samples from each stratum
    as it holds (class-stratified for classification). Returns {name: float | None} plus
    {name_ci: [lo, hi] | None} when `n_boot` > 0; None where a value is undefined (NaN).
    """
    strata = np.asarray(strata)
    point = {k: _scalar(v[0]) for k, v in stat(np.ones((1, len(strata)))).items()}
    if n_boot <= 0:
        return point
    draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for weights in resample_weights(strata, n_boot=n_boot, seed=seed):
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
    return out


def resample_weights(strata: np.ndarray, *, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Multiplicities of `n_boot` stratified resamples, in chunks of [b, n] float arrays."""
    strata = np.asarray(strata)
    n = len(strata)
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for first in range(0, n_boot, chunk):
        b = min(chunk, n_boot - first)
        drawn = np.concatenate([m[rng.integers(0, len(m), size=(b, len(m)))] for m in members], axis=1)
        flat = (drawn + n * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _scalar(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None

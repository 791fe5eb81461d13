"""Metrics of predictions against targets, each with a 95% stratified bootstrap interval; JSON-ready.

Every statistic is computed from sample weights (see `bootstrap`), so the point value (all
weights 1) equals scikit-learn's and the 1000 resamples cost a few matrix products. Given the
`subjects` of the rows, intervals resample subjects with all their rows, else rows. Macro
averages (balanced accuracy, macro F1, one-vs-rest ROC-AUC) of a resample run over the classes
it holds, as scikit-learn's would on that resample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from respira.errors import DataError
from respira.evaluate.bootstrap import bootstrap_metrics
from respira.evaluate.calibration import N_BINS, confidence_bins
from respira.evaluate.columns import group_values
from respira.tasks import positive_index

ICBHI_CLASSES: tuple[str, ...] = ("normal", "crackle", "wheeze", "both")
TARGET_RATE = 0.95  # for sensitivity at 95% specificity and the reverse
MAX_CURVE_POINTS = 200
MIN_N_CI = 20  # subgroups smaller than this get no interval
_MAX_STRATA = 16  # multilabel resamples are stratified by label combination when there are at most this many
_EPS = np.finfo(np.float64).eps

#: metric_fn(rows [m] positions into the table, *, with_ci) -> {metric: value}
GroupMetrics = Callable[..., dict]


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    classes: list[str],
    positive: str | None = None,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    subjects: np.ndarray | None = None,
) -> dict:
    """Metrics of class probabilities `proba` [n, k] against class indices `y_true` [n].

    Decision: argmax; with two classes `proba[:, positive] >= threshold` (positive defaults to
    classes[1]). Keys: accuracy, balanced_accuracy, macro_f1, roc_auc (binary: of the positive
    class; else macro one-vs-rest over the classes present), ece (top-label, 15 bins), brier,
    log_loss; binary adds sensitivity, specificity, precision, f1, sensitivity_at_95_specificity,
    specificity_at_95_sensitivity; each with `<key>_ci` [lo, hi] over `n_boot` class-stratified
    resamples of the rows, or of `subjects` [n] (see `bootstrap`). Also ci_method, subjects,
    threshold (binary), n, classes, per_class {class: {precision, recall, f1, support}} and
    confusion_matrix [true][predicted] counts.
    """
    y, p = _check_probabilities(y_true, proba, classes)
    n, k = p.shape
    pos = positive_index(classes, positive)
    pred = predicted_classes(p, positive_index=pos, threshold=threshold)
    cells = np.eye(k * k)[y * k + pred]  # [n, k*k]: w @ cells = confusion matrices
    confidence = p.max(1)
    calibration = np.eye(N_BINS)[confidence_bins(confidence)] * ((p.argmax(1) == y) - confidence)[:, None]
    brier = (p[:, pos] - (y == pos)) ** 2 if pos is not None else ((p - np.eye(k)[y]) ** 2).sum(1)
    log_loss = -np.log(np.clip(p[np.arange(n), y], _EPS, 1.0))
    present = np.unique(y)
    if pos is not None:
        rocs = [_Roc.of(y == pos, p[:, pos])]
    else:
        rocs = [_Roc.of(y == c, p[:, c]) for c in present] if len(present) > 1 else []

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(1)
        out = _confusion_stats((w @ cells).reshape(-1, k, k), positive=pos)
        curves = [roc.stats(w, operating_points=pos is not None) for roc in rocs]
        out["roc_auc"] = _defined_mean(np.array([c[0] for c in curves]).reshape(len(curves), len(w)), axis=0)
        if pos is not None:
            out["sensitivity_at_95_specificity"], out["specificity_at_95_sensitivity"] = curves[0][1:]
        out["ece"] = np.abs(w @ calibration).sum(1) / total
        out["brier"] = w @ brier / total
        out["log_loss"] = w @ log_loss / total
        return out

    result = bootstrap_metrics(stat, strata=y, subjects=subjects, n_boot=n_boot, seed=seed)
    if pos is not None:
        result["threshold"] = float(threshold)
    matrix = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    result.update(n=n, classes=list(classes), per_class=_per_class(matrix, classes), confusion_matrix=matrix.tolist())
    return result


def icbhi_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    classes: list[str],
    n_boot: int = 1000,
    seed: int = 0,
    subjects: np.ndarray | None = None,
) -> dict:
    """ICBHI 2017 scores of 4-class (normal, crackle, wheeze, both; any order) probabilities [n, 4]:
    icbhi_sensitivity = abnormal cycles given their exact class / abnormal cycles, icbhi_specificity
    = normal cycles called normal / normal cycles, icbhi_score = their mean; each with `_ci` (rows,
    or `subjects` [n], resampled); ci_method, subjects."""
    y, p = _check_probabilities(y_true, proba, classes)
    if sorted(classes) != sorted(ICBHI_CLASSES):
        raise DataError(f"ICBHI metrics need the classes {', '.join(ICBHI_CLASSES)}; got {', '.join(classes)}")
    return _icbhi(
        y == classes.index("normal"), p.argmax(1) == y, strata=y, subjects=subjects, n_boot=n_boot, seed=seed
    )


def multilabel_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    names: list[str],
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    subjects: np.ndarray | None = None,
) -> dict:
    """Per-label metrics of independent label probabilities [n, k] against 0/1 targets [n, k].

    Keys: `<name>_auc`, `<name>_sensitivity`, `<name>_specificity` (decision `proba >= threshold`),
    macro_auc (over labels with both outcomes present), each with `_ci` (resamples of the rows, or
    of `subjects` [n], stratified by label combination when there are <= 16); ci_method, subjects,
    n, classes. For names {crackle, wheeze} also the icbhi_* scores of the 4-class mapping
    (neither = normal, both = both).
    """
    t, p = _check_multilabel(y_true, proba, names)
    n, k = p.shape
    pred = p >= threshold
    combinations, combination = np.unique(t, axis=0, return_inverse=True)
    strata = combination.ravel() if len(combinations) <= _MAX_STRATA else np.zeros(n, dtype=int)
    positives = t.astype(float)
    hits = np.concatenate([positives * pred, (1 - positives) * ~pred], axis=1)  # [n, 2k]: true positives, negatives
    rocs = {j: _Roc.of(t[:, j] == 1, p[:, j]) for j in range(k) if 0 < t[:, j].sum() < n}

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            counts = w @ positives
            rates = (w @ hits) / np.concatenate([counts, w.sum(1, keepdims=True) - counts], axis=1)
        aucs = {j: roc.stats(w)[0] for j, roc in rocs.items()}
        nan = np.full(len(w), np.nan)
        out: dict[str, np.ndarray] = {}
        for j, name in enumerate(names):
            out[f"{name}_auc"] = aucs.get(j, nan)
            out[f"{name}_sensitivity"] = rates[:, j]
            out[f"{name}_specificity"] = rates[:, k + j]
        out["macro_auc"] = _defined_mean(np.array(list(aucs.values())).reshape(len(aucs), len(w)), axis=0)
        return out

    result = bootstrap_metrics(stat, strata=strata, subjects=subjects, n_boot=n_boot, seed=seed)
    if sorted(names) == ["crackle", "wheeze"]:
        crackle, wheeze = names.index("crackle"), names.index("wheeze")
        true4 = t[:, crackle] + 2 * t[:, wheeze]
        pred4 = pred[:, crackle] + 2 * pred[:, wheeze]
        result.update(_icbhi(true4 == 0, pred4 == true4, strata=strata, subjects=subjects, n_boot=n_boot, seed=seed))
    result.update(n=n, classes=list(names))
    return result


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_boot: int = 1000, seed: int = 0, subjects: np.ndarray | None = None
) -> dict:
    """mae, rmse, r2, pearson, spearman (ties averaged) of predictions [n] against targets [n], each
    with `_ci` (unstratified resamples of the rows, or of `subjects` [n]); ci_method, subjects, n."""
    t = _finite_vector(y_true, "targets")
    v = _finite_vector(y_pred, "predictions")
    if len(t) != len(v):
        raise DataError(f"regression: {len(t)} targets but {len(v)} predictions")
    err = v - t
    rank_t, rank_v = _Ranks.of(t), _Ranks.of(v)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(1)
        squared = w @ err**2
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "mae": w @ np.abs(err) / total,
                "rmse": np.sqrt(squared / total),
                "r2": 1 - squared / _weighted_moments(w, t, t)[2],
                "pearson": _weighted_corr(w, t, v),
                "spearman": _weighted_corr(w, rank_t.ranks(w), rank_v.ranks(w)),
            }

    result = bootstrap_metrics(stat, strata=np.zeros(len(t), dtype=int), subjects=subjects, n_boot=n_boot, seed=seed)
    result["n"] = len(t)
    return result


def binary_curve(y_true01: np.ndarray, score: np.ndarray) -> dict:
    """ROC curve of a score for 0/1 targets: fpr, tpr, thresholds (predict 1 when score >= t), at most
    200 points (first and last kept), and auc; empty lists and auc None without both outcomes."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true01).astype(int)
    score = np.asarray(score, dtype=float)
    if len(np.unique(y)) < 2:
        return {"fpr": [], "tpr": [], "thresholds": [], "auc": None}
    fpr, tpr, thresholds = roc_curve(y, score)
    thresholds[0] = np.nextafter(score.max(), np.inf)  # scikit-learn's inf, made JSON-safe
    keep = np.unique(np.round(np.linspace(0, len(fpr) - 1, min(len(fpr), MAX_CURVE_POINTS))).astype(int))
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "thresholds": thresholds[keep].tolist(),
        "auc": float(roc_auc_score(y, score)),
    }


def group_table(df: pd.DataFrame, *, group_cols: list[str], metric_fn: GroupMetrics, min_n_ci: int = MIN_N_CI) -> dict:
    """Metrics per value of each metadata column: {column: {value: {"n", **metric_fn(rows, with_ci=n >= min_n_ci)}}}.

    `rows` are positions into `df`; values are grouped by `columns.group_values` (age bands,
    quartiles of other numeric columns, "(missing)").
    """
    out: dict[str, dict] = {}
    for col in group_cols:
        if col not in df.columns:
            raise DataError(f"group table: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
        groups = group_values(df[col])
        codes = np.asarray(groups.codes)
        out[col] = {}
        for code, value in enumerate(groups.categories):
            rows = np.flatnonzero(codes == code)
            out[col][str(value)] = {"n": len(rows), **metric_fn(rows, with_ci=len(rows) >= min_n_ci)}
    return out


def predicted_classes(proba: np.ndarray, *, positive_index: int | None = None, threshold: float = 0.5) -> np.ndarray:
    """Decided class index [n]: argmax of `proba` [n, k], or for a positive class `proba[:, i] >= threshold`."""
    if positive_index is None:
        return proba.argmax(1)
    return np.where(proba[:, positive_index] >= threshold, positive_index, 1 - positive_index)


@dataclass(frozen=True)
class _Roc:
    """One score's samples sorted by descending score, for weighted ROC statistics."""

    order: np.ndarray  # [n] sample indices
    ends: np.ndarray | None  # [runs] last sorted position of each run of equal scores; None without ties
    positive: np.ndarray  # [n] bool, in sorted order

    @classmethod
    def of(cls, is_positive: np.ndarray, score: np.ndarray) -> _Roc:
        order = np.argsort(-score, kind="stable")
        ends = _run_ends(score[order])
        return cls(order, ends if len(ends) < len(order) else None, np.asarray(is_positive)[order])

    def stats(self, w: np.ndarray, *, operating_points: bool = False) -> tuple[np.ndarray, ...]:
        """(AUC [b],) with ties counting half; with `operating_points` also sensitivity at >= 95%
        specificity and specificity at >= 95% sensitivity, each [b]."""
        ws = w[:, self.order]
        cum_pos = (ws * self.positive).cumsum(1)  # weight of positives scoring at or above each sample
        cum_neg = ws.cumsum(1) - cum_pos
        if self.ends is not None:
            cum_pos, cum_neg = cum_pos[:, self.ends], cum_neg[:, self.ends]
        n_pos, n_neg = cum_pos[:, -1:], cum_neg[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            tpr, fpr = cum_pos / n_pos, cum_neg / n_neg
        before = ((0, 0), (1, 0))  # the curve starts at (0, 0)
        auc = ((fpr - np.pad(fpr[:, :-1], before)) * (tpr + np.pad(tpr[:, :-1], before))).sum(1) / 2  # trapezoids
        if not operating_points:
            return (auc,)
        defined = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
        sensitivity = np.where(fpr <= 1 - TARGET_RATE + 1e-9, tpr, 0.0).max(1)
        specificity = np.where(tpr >= TARGET_RATE - 1e-9, 1 - fpr, 0.0).max(1)
        return auc, np.where(defined, sensitivity, np.nan), np.where(defined, specificity, np.nan)


@dataclass(frozen=True)
class _Ranks:
    """Sort order of one variable, for its midranks in a weighted resample."""

    order: np.ndarray  # [n] sample indices, ascending
    ends: np.ndarray  # [runs] last sorted position of each run of equal values
    run: np.ndarray  # [n] index of each sample's run

    @classmethod
    def of(cls, x: np.ndarray) -> _Ranks:
        order = np.argsort(x, kind="stable")
        ends = _run_ends(x[order])
        run = np.empty(len(x), dtype=int)
        run[order] = np.searchsorted(ends, np.arange(len(x)))
        return cls(order, ends, run)

    def ranks(self, w: np.ndarray) -> np.ndarray:
        """Midrank [b, n] of each sample in each resample (a sample drawn c times counts as c tied copies)."""
        below_and_in = w[:, self.order].cumsum(1)[:, self.ends]
        counts = np.diff(below_and_in, axis=1, prepend=0.0)
        return (below_and_in - (counts - 1) / 2)[:, self.run]


def _run_ends(sorted_values: np.ndarray) -> np.ndarray:
    """Last position of each run of equal values in a sorted array."""
    return np.flatnonzero(np.r_[sorted_values[1:] != sorted_values[:-1], True])


def _confusion_stats(cm: np.ndarray, *, positive: int | None) -> dict:
    """Threshold metrics [b] of confusion matrices cm [b, k, k] (zero_division = 0, as scikit-learn):
    balanced accuracy over the classes each holds, macro F1 over those in its targets or predictions."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / support
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    out = {
        "accuracy": tp.sum(1) / support.sum(1),
        "balanced_accuracy": _defined_mean(recall, axis=1),
        "macro_f1": _defined_mean(np.where(support + predicted > 0, f1, np.nan), axis=1),
    }
    if positive is not None:
        out.update(
            sensitivity=recall[:, positive],
            specificity=recall[:, 1 - positive],
            precision=precision[:, positive],
            f1=f1[:, positive],
        )
    return out


def _per_class(matrix: np.ndarray, classes: list[str]) -> dict:
    tp = np.diagonal(matrix)
    support, predicted = matrix.sum(1), matrix.sum(0)
    out = {}
    for i, name in enumerate(classes):
        out[name] = {
            "precision": float(tp[i] / predicted[i]) if predicted[i] else 0.0,
            "recall": float(tp[i] / support[i]) if support[i] else 0.0,
            "f1": float(2 * tp[i] / (support[i] + predicted[i])) if support[i] + predicted[i] else 0.0,
            "support": int(support[i]),
        }
    return out


def _icbhi(
    normal: np.ndarray, correct: np.ndarray, *, strata: np.ndarray, subjects: np.ndarray | None, n_boot: int, seed: int
) -> dict:
    normal = normal.astype(float)
    abnormal_hit = (1 - normal) * correct
    normal_hit = normal * correct

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            n_normal = w @ normal
            sensitivity = (w @ abnormal_hit) / (w.sum(1) - n_normal)
            specificity = (w @ normal_hit) / n_normal
        return {
            "icbhi_sensitivity": sensitivity,
            "icbhi_specificity": specificity,
            "icbhi_score": (sensitivity + specificity) / 2,
        }

    return bootstrap_metrics(stat, strata=strata, subjects=subjects, n_boot=n_boot, seed=seed)


def _defined_mean(values: np.ndarray, *, axis: int) -> np.ndarray:
    """Mean of the finite entries of `values` along `axis`; NaN where there are none."""
    finite = np.isfinite(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(finite, values, 0.0).sum(axis) / finite.sum(axis)


def _weighted_moments(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted sums of centred products: (x, y), (x, x), (y, y); x, y [n] or [b, n]; each [b]."""
    total = w.sum(1, keepdims=True)
    dx = x - (w * x).sum(1, keepdims=True) / total
    dy = y - (w * y).sum(1, keepdims=True) / total
    return (w * dx * dy).sum(1), (w * dx * dx).sum(1), (w * dy * dy).sum(1)


def _weighted_corr(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xy, xx, yy = _weighted_moments(w, x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return xy / np.sqrt(xx * yy)


def _check_probabilities(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=float)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise DataError(
            f"probabilities must be [n, {len(classes)}] for classes {', '.join(classes)}; got shape {p.shape}"
        )
    if len(classes) < 2:
        raise DataError(f"classification needs at least 2 classes; got {classes}")
    if y.shape != (len(p),):
        raise DataError(f"{len(p)} probability rows but targets of shape {y.shape}")
    if len(p) == 0:
        raise DataError("no predictions to evaluate (0 rows)")
    if not np.isfinite(p).all():
        raise DataError(f"probabilities contain NaN or inf (row {int(np.flatnonzero(~np.isfinite(p).all(1))[0])})")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(classes):
        raise DataError(f"targets must be class indices 0..{len(classes) - 1}; got {y.dtype} in [{y.min()}, {y.max()}]")
    return y.astype(int), p


def _check_multilabel(y_true: np.ndarray, proba: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=float)
    t = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] != len(names) or t.shape != p.shape:
        raise DataError(
            f"multilabel targets and probabilities must both be [n, {len(names)}]; got {t.shape} and {p.shape}"
        )
    if len(p) == 0:
        raise DataError("no predictions to evaluate (0 rows)")
    if not np.isin(t, (0, 1)).all():
        raise DataError("multilabel targets must be 0 or 1")
    if not np.isfinite(p).all():
        raise DataError("probabilities contain NaN or inf")
    return t.astype(int), p


def _finite_vector(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise DataError(f"regression {what} must be a non-empty vector [n]; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"regression {what} contain NaN or inf (row {int(np.flatnonzero(~np.isfinite(x))[0])})")
    return x

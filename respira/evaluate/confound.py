"""Confound check: can the label be predicted from metadata alone (source, sex, age, ...)?

If it can, a model may learn the metadata (a recording device, a call centre, a codec) rather
than the condition, and its headline score says little. Each column is fitted alone, then all
together, with a one-hot logistic regression (numeric columns binned as in `columns.group_values`)
scored out of fold with subject-grouped, label-stratified cross-validation.

Flag rule: binary labels — ROC-AUC >= 0.65; more classes — balanced accuracy >= chance + 0.10;
and in both cases the excess over chance must be at least 2.5 null standard errors, counted
over subjects, so that small data sets do not flag by luck.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from respira.errors import DataError
from respira.evaluate.columns import group_values, metadata_columns

MIN_AUC = 0.65
MIN_EXCESS = 0.10
MIN_Z = 2.5
MAX_FOLDS = 5
_LABEL_NAMES = ("label", "labels", "target", "targets", "class", "y")


def confound_check(
    df: pd.DataFrame, *, label_col: str = "label", columns: list[str] | None = None, seed: int = 0
) -> dict:
    """How well each metadata column predicts `label_col` on its own, and all of them together.

    columns: default every metadata column (see `columns.metadata_columns`) except label-like
    ones (named label/target/class, ending in `_label`, or named after a label value).
    Returns {"columns": {col: {"balanced_accuracy", "roc_auc" (binary, else None), "chance",
    "flag"}}, "combined": same for all columns together (None with fewer than 2), "flagged":
    [cols], "warning": text naming what predicts the label, or None}.
    """
    if label_col not in df.columns:
        raise DataError(f"confound check: no label column {label_col!r} (columns: {', '.join(map(str, df.columns))})")
    df = df[df[label_col].notna() & (df[label_col].astype(str) != "")].reset_index(drop=True)
    labels = df[label_col].astype(str)
    classes = sorted(labels.unique())
    if columns is None:
        columns = [c for c in metadata_columns(df, exclude=(label_col,)) if not _label_like(str(c), classes)]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"confound check: no column(s) {', '.join(map(str, missing))}")
    result: dict = {"columns": {}, "combined": None, "flagged": [], "warning": None}
    y = np.searchsorted(classes, labels)
    subjects = _subjects(df)
    folds = _folds(y, subjects, seed=seed)
    if not columns or folds is None:
        return result
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    encoded = {c: pd.get_dummies(pd.Series(group_values(df[c])), dtype=float).to_numpy() for c in columns}
    with threadpool_limits(1):  # tiny fits: BLAS threads only add contention
        for c in columns:
            result["columns"][c] = _score(encoded[c], y, subjects, folds)
        if len(columns) > 1:
            result["combined"] = _score(np.hstack(list(encoded.values())), y, subjects, folds)
    result["flagged"] = [c for c, r in result["columns"].items() if r["flag"]]
    result["warning"] = _warning(result)
    return result


def _score(x: np.ndarray, y: np.ndarray, subjects: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    k = int(y.max()) + 1
    proba = np.zeros((len(y), k))
    for train, test in folds:
        seen = np.unique(y[train])
        if len(seen) < 2:
            proba[test] = 1.0 / k
            continue
        model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x[train], y[train])
        proba[np.ix_(test, seen)] = model.predict_proba(x[test])
    chance = 0.5 if k == 2 else 1.0 / k
    balanced = float(balanced_accuracy_score(y, proba.argmax(1)))
    auc = float(roc_auc_score(y, proba[:, 1])) if k == 2 else None
    # null standard errors over subjects: Mann-Whitney AUC, and the mean of k recalls at rate 1/k
    n = np.array([len(np.unique(subjects[y == c])) for c in range(k)], dtype=float)
    if k == 2:
        se = np.sqrt((n.sum() + 1) / (12 * n[0] * n[1]))
        flag = auc >= MIN_AUC and auc - chance >= MIN_Z * se
    else:
        se = np.sqrt(np.sum(chance * (1 - chance) / n)) / k
        flag = balanced >= chance + MIN_EXCESS and balanced - chance >= MIN_Z * se
    return {"balanced_accuracy": balanced, "roc_auc": auc, "chance": chance, "flag": bool(flag)}


def _folds(y: np.ndarray, subjects: np.ndarray, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Subject-grouped, label-stratified folds (2..5); None when a class has fewer than 2 subjects."""
    from sklearn.model_selection import StratifiedGroupKFold

    if len(np.unique(y)) < 2:
        return None
    per_class = min(len(np.unique(subjects[y == c])) for c in np.unique(y))
    n_splits = min(MAX_FOLDS, per_class)
    if n_splits < 2:
        return None
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups=subjects))


def _subjects(df: pd.DataFrame) -> np.ndarray:
    """Subject of each row; a row without one is its own subject."""
    rows = np.array([f"row {i}" for i in range(len(df))], dtype=object)
    if "subject" not in df.columns:
        return rows
    given = df["subject"].fillna("").astype(str).to_numpy(dtype=object)
    return np.where(given != "", given, rows)


def _label_like(name: str, classes: list[str]) -> bool:
    lowered = name.lower()
    return lowered in _LABEL_NAMES or lowered.endswith(("_label", "_labels")) or lowered in {c.lower() for c in classes}


def _warning(result: dict) -> str | None:
    parts = [f"{c} ({_describe(result['columns'][c])})" for c in result["flagged"]]
    combined = result["combined"]
    if combined is not None and combined["flag"] and not parts:
        parts.append(f"the metadata columns together ({_describe(combined)})")
    if not parts:
        return None
    return (
        f"The label can be predicted from metadata alone: {'; '.join(parts)}. A model may learn these "
        "(recording source, device, codec, population) instead of the condition: report results per "
        "group and prefer splits or test sets where the metadata does not predict the label."
    )


def _describe(scores: dict) -> str:
    auc = f"ROC-AUC {scores['roc_auc']:.2f}, " if scores["roc_auc"] is not None else ""
    return f"{auc}balanced accuracy {scores['balanced_accuracy']:.2f} vs chance {scores['chance']:.2f}"

"""Evaluate a model's predictions on a manifest: metrics.json, predictions.csv, figures and report.md.

`evaluate_predictions` is the single entry point (the CLI's `respira evaluate` calls it). Each
task (classification, multilabel, regression) has one function that computes its metrics, its
per-row table, its figures and the inputs of the confidence analysis; what follows — subgroup
tables, confound check, files — is shared. Every interval, subgroups included, resamples the
manifest's subjects with all their rows when it names any (see `bootstrap`), else rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import respira
from respira.errors import DataError
from respira.evaluate import figures
from respira.evaluate.calibration import confidence_summary, reliability_bins
from respira.evaluate.columns import metadata_columns
from respira.evaluate.confound import confound_check
from respira.evaluate.markdown import render_report
from respira.evaluate.metrics import (
    ICBHI_CLASSES,
    binary_curve,
    classification_metrics,
    group_table,
    icbhi_metrics,
    multilabel_metrics,
    predicted_classes,
    regression_metrics,
)
from respira.tasks import MULTILABEL_SEPARATOR, TASKS, positive_index

if TYPE_CHECKING:
    from respira.bundle import BundleMeta

N_LISTED = 10  # most confident mistakes / largest errors listed
_GROUP_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "sensitivity",
    "specificity",
    "macro_auc",
    "icbhi_score",
    "mae",
    "rmse",
)


@dataclass(frozen=True)
class Predictions:
    """What a model produced for the rows of a manifest.

    manifest: the rows evaluated (path, label, start, end, subject, split, source_label + metadata);
    its `subject` column, where present, is what the intervals resample.
    task: "classification" (proba [n, k], targets [n] class indices), "multilabel" (proba [n, k]
    independent probabilities, targets [n, k] 0/1) or "regression" (values [n], targets [n]).
    positive / threshold: the positive class and its decision threshold of a two-class task.
    """

    manifest: pd.DataFrame
    classes: list[str]
    task: str
    proba: np.ndarray | None
    values: np.ndarray | None
    targets: np.ndarray
    positive: str | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        n = len(self.manifest)
        if self.task not in _TASKS:
            raise DataError(f"unknown task {self.task!r} (expected one of {', '.join(_TASKS)})")
        if "path" not in self.manifest.columns:
            raise DataError("predictions: the manifest has no 'path' column")
        values = TASKS[self.task].values
        output = self.values if values else self.proba
        what = "values" if values else "proba"
        if output is None:
            raise DataError(f"{self.task} predictions need {what}")
        if len(output) != n or len(self.targets) != n:
            raise DataError(
                f"predictions: manifest has {n} rows but {what} has {len(output)} and targets {len(self.targets)}"
            )

    @classmethod
    def of(cls, meta: BundleMeta, *, manifest: pd.DataFrame, outputs: np.ndarray, targets: np.ndarray) -> Predictions:
        """The outputs of the model of bundle `meta` for the manifest rows (probabilities [n, classes],
        or values [n]) with their true targets (`Task.truth`)."""
        output = np.asarray(outputs, dtype=float)
        values = TASKS[meta.task].values
        return cls(manifest=manifest, classes=list(meta.classes), task=meta.task,
                   proba=None if values else output, values=output if values else None, targets=targets,
                   positive=meta.positive, threshold=float(meta.thresholds["decision"]))


@dataclass
class _Outcome:
    """One task's results before the shared part: flat metrics, per-row table, figures, confidence inputs."""

    metrics: dict
    table: pd.DataFrame
    figures: list[tuple[str, str]]  # (caption, file name in `out`)
    compute: Callable[[np.ndarray, int], dict]  # metrics of some rows with n_boot resamples of their subjects
    calibration: dict | None = None
    extra: dict = field(default_factory=dict)  # further metrics.json entries (largest_errors)


def evaluate_predictions(
    pred: Predictions, *, out: Path, model_name: str = "", n_boot: int = 1000, seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Evaluate `pred` and write to `out`: metrics.json, predictions.csv, the task's figures
    (confusion_matrix.png, roc.png, calibration.png; scatter.png for regression) and report.md.

    Returns the metrics.json content: the task's flat metrics with `_ci` intervals, "ci_method"
    ("subject_bootstrap" when the manifest names subjects, else "row_bootstrap") and "subjects"
    (the units resampled; rows for the row bootstrap), plus "per_class",
    "confusion_matrix" (classification), "groups" (per metadata column and value), "calibration"
    (reliability bins, confidence of right / wrong answers, most confident mistakes),
    "confound" (`confound_check` of the manifest; None for regression), "data", "params" and
    the entries of `extra` (what the caller knows about the rows, e.g. labels left out).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = pred.manifest.reset_index(drop=True)
    subjects = manifest["subject"].to_numpy() if "subject" in manifest.columns else None
    outcome = _TASKS[pred.task](pred, manifest=manifest, subjects=subjects, out=out, n_boot=n_boot, seed=seed)
    metrics = dict(outcome.metrics)

    def group_metrics(rows: np.ndarray, *, with_ci: bool) -> dict:
        full = outcome.compute(rows, n_boot if with_ci else 0)
        return {
            k: v
            for k, v in full.items()
            if k in _GROUP_KEYS or k == "subjects" or (k.endswith("_ci") and k[:-3] in _GROUP_KEYS)
        }

    metrics["groups"] = group_table(manifest, group_cols=metadata_columns(manifest), metric_fn=group_metrics)
    metrics["calibration"] = outcome.calibration
    metrics.update(outcome.extra)
    categorical = not TASKS[pred.task].values
    labelled = manifest.assign(label=outcome.table["label"].to_numpy())
    metrics["confound"] = confound_check(labelled, seed=seed) if categorical else None
    metrics["data"] = _data_summary(manifest, outcome.table["label"] if categorical else None)
    metrics["params"] = {
        "model": model_name,
        "task": pred.task,
        "classes": list(pred.classes),
        "positive": _positive_name(pred),
        "threshold": pred.threshold,
        "n_boot": n_boot,
        "seed": seed,
        "respira_version": respira.__version__,
    }
    metrics.update(extra or {})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    outcome.table.to_csv(out / "predictions.csv", index=False)
    (out / "report.md").write_text(render_report(metrics, figures=outcome.figures))
    return metrics


def _classification(
    pred: Predictions, *, manifest: pd.DataFrame, subjects: np.ndarray | None, out: Path, n_boot: int, seed: int
) -> _Outcome:
    classes, proba, y = list(pred.classes), np.asarray(pred.proba, dtype=float), np.asarray(pred.targets)
    pos = positive_index(classes, pred.positive)

    def compute(rows: np.ndarray, boot: int) -> dict:
        out = classification_metrics(
            y[rows],
            proba[rows],
            classes=classes,
            positive=pred.positive,
            threshold=pred.threshold,
            n_boot=boot,
            seed=seed,
            subjects=_of_rows(subjects, rows),
        )
        if sorted(classes) == sorted(ICBHI_CLASSES):
            out.update(
                icbhi_metrics(
                    y[rows], proba[rows], classes=classes, n_boot=boot, seed=seed, subjects=_of_rows(subjects, rows)
                )
            )
        return out

    metrics = compute(np.arange(len(y)), n_boot)
    decided = predicted_classes(proba, positive_index=pos, threshold=pred.threshold)
    confidence = proba[np.arange(len(y)), decided]
    table = _table(manifest, label=np.array(classes)[y], predicted=np.array(classes)[decided])
    table["score"] = confidence
    for j, name in enumerate(classes):
        table[f"prob_{name}"] = proba[:, j]
    if pos is not None:
        curves = {classes[pos]: binary_curve(y == pos, proba[:, pos])}
    else:
        curves = {name: binary_curve(y == j, proba[:, j]) for j, name in enumerate(classes)}
    calibration = _calibration(
        table, top_confidence=proba.max(1), top_correct=proba.argmax(1) == y, correct=decided == y
    )
    figures.plot_confusion(
        [("Confusion matrix", np.array(metrics["confusion_matrix"]), classes)], path=out / "confusion_matrix.png"
    )
    figures.plot_roc(curves, path=out / "roc.png", title="ROC" if pos is not None else "ROC, one class vs rest")
    ece = "n/a" if metrics["ece"] is None else f"{metrics['ece']:.3f}"
    figures.plot_reliability(calibration["bins"], path=out / "calibration.png", title=f"Reliability (ECE {ece})")
    return _Outcome(metrics, table, _CLASSIFICATION_FIGURES, compute, calibration)


def _multilabel(
    pred: Predictions, *, manifest: pd.DataFrame, subjects: np.ndarray | None, out: Path, n_boot: int, seed: int
) -> _Outcome:
    names, proba, t = list(pred.classes), np.asarray(pred.proba, dtype=float), np.asarray(pred.targets).astype(int)

    def compute(rows: np.ndarray, boot: int) -> dict:
        return multilabel_metrics(
            t[rows],
            proba[rows],
            names=names,
            threshold=pred.threshold,
            n_boot=boot,
            seed=seed,
            subjects=_of_rows(subjects, rows),
        )

    metrics = compute(np.arange(len(t)), n_boot)
    decided = proba >= pred.threshold
    sure = np.where(decided, proba, 1 - proba)  # confidence of each label decision
    wrong = decided != t
    table = _table(manifest, label=_label_sets(t, names), predicted=_label_sets(decided, names))
    table["score"] = sure.min(1)  # a row is as sure as its least sure label
    for j, name in enumerate(names):
        table[f"prob_{name}"] = proba[:, j]
    panels = [
        (name, np.bincount(2 * t[:, j] + decided[:, j], minlength=4).reshape(2, 2), ["no", "yes"])
        for j, name in enumerate(names)
    ]
    curves = {name: binary_curve(t[:, j], proba[:, j]) for j, name in enumerate(names)}
    calibration = _calibration(table, top_confidence=sure.ravel(), top_correct=~wrong.ravel(), correct=~wrong.any(1))
    figures.plot_confusion(panels, path=out / "confusion_matrix.png")
    figures.plot_roc(curves, path=out / "roc.png", title="ROC per label")
    figures.plot_reliability(
        calibration["bins"], path=out / "calibration.png", title="Reliability of the label decisions"
    )
    return _Outcome(metrics, table, _CLASSIFICATION_FIGURES, compute, calibration)


def _regression(
    pred: Predictions, *, manifest: pd.DataFrame, subjects: np.ndarray | None, out: Path, n_boot: int, seed: int
) -> _Outcome:
    values, t = np.asarray(pred.values, dtype=float), np.asarray(pred.targets, dtype=float)

    def compute(rows: np.ndarray, boot: int) -> dict:
        return regression_metrics(t[rows], values[rows], n_boot=boot, seed=seed, subjects=_of_rows(subjects, rows))

    table = _table(manifest, label=t, predicted=values)
    table["error"] = values - t
    largest = table.reindex(table["error"].abs().sort_values(ascending=False).index).head(N_LISTED)
    figures.plot_regression(t, values, path=out / "scatter.png")
    return _Outcome(
        compute(np.arange(len(t)), n_boot),
        table,
        [("Predicted vs true", "scatter.png")],
        compute,
        extra={"largest_errors": _records(largest)},
    )


_CLASSIFICATION_FIGURES = [
    ("Confusion matrix", "confusion_matrix.png"),
    ("ROC", "roc.png"),
    ("Reliability", "calibration.png"),
]
# task type -> its report builder: here rather than a field of respira.tasks.Task, which stays
# free of the evaluation's metrics, figures and tables
_TASKS: dict[str, Callable[..., _Outcome]] = {
    "classification": _classification,
    "multilabel": _multilabel,
    "regression": _regression,
}


def _of_rows(subjects: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if subjects is None else subjects[rows]


def _positive_name(pred: Predictions) -> str | None:
    """The positive class of a two-class task of exclusive classes (classes[1] unless named); None otherwise."""
    pos = positive_index(list(pred.classes), pred.positive) if TASKS[pred.task].exclusive else None
    return None if pos is None else pred.classes[pos]


def _table(manifest: pd.DataFrame, *, label: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """The per-row table's first columns: path, start, end, label, predicted."""
    times = {c: manifest[c] if c in manifest.columns else np.nan for c in ("start", "end")}
    return pd.DataFrame({"path": manifest["path"], **times, "label": label, "predicted": predicted})


def _calibration(
    table: pd.DataFrame, *, top_confidence: np.ndarray, top_correct: np.ndarray, correct: np.ndarray
) -> dict:
    """Reliability bins (top-label), confidence of right vs wrong rows, and the most confident wrong rows."""
    mistakes = table[~correct].sort_values("score", ascending=False).head(N_LISTED)
    return {
        "bins": reliability_bins(top_confidence, top_correct),
        "confidence": confidence_summary(table["score"].to_numpy(), correct),
        "most_confident_mistakes": _records(
            mistakes[["path", "start", "end", "label", "predicted", "score"]].rename(columns={"score": "confidence"})
        ),
    }


def _data_summary(manifest: pd.DataFrame, labels: pd.Series | None) -> dict:
    """Rows, subjects, rows per split and per label (None for regression)."""
    out: dict = {"n": len(manifest)}
    if "subject" in manifest.columns:
        out["subjects"] = int(manifest["subject"].replace("", np.nan).nunique())
    if "split" in manifest.columns:
        splits = manifest["split"].fillna("").astype(str).replace("", "unassigned")
        out["splits"] = {k: int(v) for k, v in splits.value_counts().sort_index().items()}
    out["labels"] = None if labels is None else {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}
    return out


def _label_sets(matrix: np.ndarray, names: list[str]) -> np.ndarray:
    return np.array(
        [
            MULTILABEL_SEPARATOR.join(n for n, on in zip(names, row, strict=True) if on) or "none"
            for row in np.asarray(matrix, dtype=bool)
        ]
    )


def _records(df: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: NaN -> None, numpy scalars -> Python."""
    return [
        {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in df.to_dict("records")
    ]

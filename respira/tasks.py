"""The task types — classification, multilabel, regression — and everything that differs between them.

One `Task` per type in `TASKS`: targets, output activation, window pooling, prediction records
and their columns, losses, validation metrics, the ONNX output name and evaluation targets.
Every other module looks a task up here; adding a task type is one new entry (plus its tests).
Only `respira.errors` is imported at module level (numpy, pandas, torch and scikit-learn inside
the functions), so the registry sits on the ground floor and is cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from respira.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

MULTILABEL_SEPARATOR = "+"
MULTILABEL_ALL = "both"
POOLINGS: tuple[str, ...] = ("mean", "max")
"""How the window outputs of a clip longer than one window are pooled (`Task.pool`)."""
_EPS = 1e-12
"""Probabilities are clamped to [_EPS, 1 - _EPS] before log / logit: a saturated clip costs a finite loss."""


@dataclass(frozen=True)
class Task:
    """What one task type does differently.

    losses: the training losses it accepts, the default first. metric: the default early-stopping
    metric (one of `metrics`). output: the name of the exported ONNX graph's output. fields: the
    task's fields of a prediction record, after "file"; with_probabilities: whether a record (and
    its CSV) also gives a probability per class. values: one value per clip ([n]) instead of
    probabilities per class ([n, classes]). exclusive: a clip is exactly one of the classes (its
    probabilities sum to 1), so the classes can be read off the labels and a two-class model is a
    binary one with a positive class (`positive_index`; `data.positive`, the decision threshold,
    the detector); else each class is present or not on its own (`independent`), or there are no
    classes (`values`). min_classes: the fewest classes a model has (a `values` model has exactly
    one, its target).
    activate: logits [batch, outputs] (torch) -> probabilities (values). inverse: pooled outputs ->
    what the loss takes in place of logits, so that the validation loss is that of the pooled outputs.
    targets: (labels, or the values of the target column; classes) -> training targets, float32
    [rows, outputs] so that MixUp can blend them. truth: training targets -> evaluation targets
    (class indices [rows] | 0/1 [rows, classes] | values [rows]). manifest_truth: (manifest rows,
    classes, positive, model name) -> evaluation targets; DataError for rows it cannot read.
    pool_max: window outputs [windows, outputs], positive index -> the clip's output under "max".
    record: (one clip's output, classes, positive, thresholds) -> its `fields` (and probabilities).
    metrics: validation metrics of (probabilities or values [rows, outputs], targets [rows, outputs]).
    """

    name: str
    losses: tuple[str, ...]
    metric: str
    output: str
    fields: tuple[str, ...]
    with_probabilities: bool
    values: bool
    exclusive: bool
    min_classes: int
    activate: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]
    targets: Callable[[pd.Series, Sequence[str]], np.ndarray]
    truth: Callable[[np.ndarray], np.ndarray]
    manifest_truth: Callable[..., np.ndarray]
    pool_max: Callable[[np.ndarray, int | None], np.ndarray]
    record: Callable[..., dict]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]

    @property
    def independent(self) -> bool:
        """Each class is present or not on its own (multilabel): the labels name the present ones,
        so the classes must be named and are decided (thresholded) one by one."""
        return not (self.exclusive or self.values)

    def pool(self, p: np.ndarray, *, pooling: str, positive_index: int | None) -> np.ndarray:
        """Window outputs [windows, outputs] -> the clip's output [outputs]: their mean, or `pool_max`."""
        return self.pool_max(p, positive_index) if pooling == "max" else p.mean(axis=0)

    def columns(self, classes: Sequence[str]) -> list[str]:
        """CSV / table columns of predictions: file, the fields, then prob_<class> when it has probabilities."""
        return ["file", *self.fields, *([f"prob_{c}" for c in classes] if self.with_probabilities else [])]


def positive_index(classes: Sequence[str], positive: str | None) -> int | None:
    """Index of the positive class of a two-class task (classes[1] unless named); None otherwise."""
    if positive is not None and positive not in classes:
        raise DataError(f"positive class {positive!r} is not one of the classes {', '.join(classes)}")
    if len(classes) != 2:
        return None
    return 1 if positive is None else list(classes).index(positive)


# --- training targets and evaluation targets ---------------------------------------------------


def _class_targets(labels: pd.Series, classes: Sequence[str]) -> np.ndarray:
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), np.float32)
    for row, label in enumerate(labels):
        if label not in index:
            raise DataError(f"row {row + 1}: label {label!r} is not one of the classes {list(classes)}")
        out[row, index[label]] = 1.0
    return out


def _multilabel_targets(labels: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """'crackle+wheeze' or 'both' -> all named / all classes; a label naming none (e.g. 'normal') -> zeros."""
    import numpy as np

    out = np.zeros((len(labels), len(classes)), np.float32)
    for row, label in enumerate(labels):
        present = set(classes) if label == MULTILABEL_ALL else set(str(label).split(MULTILABEL_SEPARATOR))
        out[row] = [c in present for c in classes]
    return out


def _regression_targets(values: pd.Series, classes: Sequence[str]) -> np.ndarray:
    import numpy as np
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if len(bad):
        raise DataError(f"row {bad[0] + 1}: {classes[0]} value {values.iloc[bad[0]]!r} is not a number")
    return numbers.to_numpy(np.float32)[:, None]


def _labels(rows: pd.DataFrame) -> pd.Series:
    return rows["label"].fillna("").astype(str)


def _class_truth(rows: pd.DataFrame, *, classes: Sequence[str], positive: str | None, model: str) -> np.ndarray:
    """Class indices of the labels; a binary model: its positive label vs all others."""
    import numpy as np

    labels = _labels(rows).to_numpy()
    classes = list(classes)
    if positive is not None:
        k = classes.index(positive)
        return np.where(labels == positive, k, 1 - k)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"label(s) {', '.join(map(repr, unknown))} are not classes of model "
                        f"{model!r} ({', '.join(classes)})")
    return np.array([classes.index(label) for label in labels], dtype=int)


def _multilabel_truth(rows: pd.DataFrame, *, classes: Sequence[str], positive: str | None, model: str) -> np.ndarray:
    """0/1 [rows, classes] from "a+b" / "both" labels."""
    return _multilabel_targets(_labels(rows), classes).astype(int)


def _regression_truth(rows: pd.DataFrame, *, classes: Sequence[str], positive: str | None, model: str) -> np.ndarray:
    """The values of the manifest column named by the model's one class."""
    column = classes[0]
    if column not in rows.columns:
        raise DataError(f"no column {column!r}, the value regression model {model!r} predicts")
    return _regression_targets(rows[column].reset_index(drop=True), classes)[:, 0]


# --- outputs: activation, its inverse, pooling ----------------------------------------------------


def _log_probabilities(p: torch.Tensor) -> torch.Tensor:
    """Probabilities [rows, classes] (each row summing to 1) -> log p: softmax gives p back, so
    cross-entropy of it is the negative log-likelihood of p."""
    return p.double().clamp_min(_EPS).log().float()


def _logit(p: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities -> their logits (the inverse of sigmoid)."""
    return p.double().logit(eps=_EPS).float()


def _identity(x: Any) -> Any:
    return x


def _class_max(p: np.ndarray, positive_index: int | None) -> np.ndarray:
    """The whole row of the window most sure of its class (binary: the highest positive-class
    probability), so that the probabilities still sum to 1."""
    import numpy as np

    key = p[:, positive_index] if positive_index is not None else p.max(axis=1)
    return p[int(np.argmax(key))]


def _output_max(p: np.ndarray, positive_index: int | None) -> np.ndarray:
    return p.max(axis=0)


# --- prediction records --------------------------------------------------------------------------


def _class_record(p: np.ndarray, *, classes: Sequence[str], positive: str | None, thresholds: Mapping) -> dict:
    """label and score: a binary model's positive-class probability (label: the positive class when
    it reaches thresholds["decision"]), else the most probable class and its probability."""
    import numpy as np

    if positive is not None:
        k = list(classes).index(positive)
        score = float(p[k])
        label = positive if score >= thresholds["decision"] else classes[1 - k]
    else:
        best = int(np.argmax(p))
        label, score = classes[best], float(p[best])
    return {"label": label, "score": score, "probabilities": {c: float(v) for c, v in zip(classes, p)}}


def _multilabel_record(p: np.ndarray, *, classes: Sequence[str], positive: str | None, thresholds: Mapping) -> dict:
    """labels: the classes at or above their threshold (thresholds[class], else thresholds["decision"])."""
    labels = [c for c, v in zip(classes, p) if v >= thresholds.get(c, thresholds["decision"])]
    return {"labels": labels, "probabilities": {c: float(v) for c, v in zip(classes, p)}}


def _regression_record(value: float, *, classes: Sequence[str], positive: str | None, thresholds: Mapping) -> dict:
    return {"value": float(value)}


# --- validation metrics --------------------------------------------------------------------------


def _classification_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    truth, guess = y.argmax(axis=1), p.argmax(axis=1)
    out = {
        "accuracy": float(np.mean(truth == guess)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, guess)),
        "macro_f1": float(f1_score(truth, guess, average="macro", labels=np.unique(truth), zero_division=0)),
    }
    if p.shape[1] == 2 and len(np.unique(truth)) == 2:
        out["roc_auc"] = float(roc_auc_score(truth, p[:, 1]))
    return out


def _multilabel_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import f1_score

    guess = p >= 0.5
    truth = y >= 0.5
    return {
        "accuracy": float(np.mean((guess == truth).all(axis=1))),
        "macro_f1": float(f1_score(truth, guess, average="macro", zero_division=0)),
    }


def _regression_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import numpy as np

    error = p[:, 0] - y[:, 0]
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}


TASKS: dict[str, Task] = {
    "classification": Task(
        name="classification", losses=("ce",), metric="balanced_accuracy", output="probabilities",
        fields=("label", "score"), with_probabilities=True, values=False, exclusive=True, min_classes=2,
        activate=lambda z: z.softmax(dim=-1), inverse=_log_probabilities, targets=_class_targets,
        truth=lambda y: y.argmax(axis=1), manifest_truth=_class_truth, pool_max=_class_max,
        record=_class_record, metrics=_classification_metrics,
    ),
    "multilabel": Task(
        name="multilabel", losses=("bce",), metric="macro_f1", output="probabilities",
        fields=("labels",), with_probabilities=True, values=False, exclusive=False, min_classes=1,
        activate=lambda z: z.sigmoid(), inverse=_logit, targets=_multilabel_targets,
        truth=lambda y: y.astype(int), manifest_truth=_multilabel_truth, pool_max=_output_max,
        record=_multilabel_record, metrics=_multilabel_metrics,
    ),
    "regression": Task(
        name="regression", losses=("mae", "mse", "huber"), metric="mae", output="value",
        fields=("value",), with_probabilities=False, values=True, exclusive=False, min_classes=1,
        activate=_identity, inverse=_identity, targets=_regression_targets,
        truth=lambda y: y[:, 0], manifest_truth=_regression_truth, pool_max=_output_max,
        record=_regression_record, metrics=_regression_metrics,
    ),
}
"""task type -> its Task."""
TASK_NAMES: tuple[str, ...] = tuple(TASKS)

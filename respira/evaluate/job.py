"""The evaluate job: a model scored on a manifest's rows -> metrics.json, report.md, predictions.csv, figures.

`respira evaluate` and `respira.evaluate(model, manifest)` both run `evaluate`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from respira.errors import DataError
from respira.evaluate.report import Predictions, evaluate_predictions
from respira.tasks import TASKS

if TYPE_CHECKING:
    from respira.inference import Model

AUTO_SPLIT = "auto"
ALL_SPLITS = "all"


@dataclass(frozen=True)
class Evaluation:
    """metrics: what metrics.json holds (see `evaluate_predictions`), plus "left_out_labels" ({label: rows}
    left out because the model does not know the label). failures: "row N: reason" for each manifest
    row that could not be read and was left out."""

    metrics: dict
    failures: tuple[str, ...]


def evaluate(model: Model | str | os.PathLike, manifest: pd.DataFrame | str | os.PathLike, *,
             out: str | os.PathLike, split: str = AUTO_SPLIT, strict: bool = False, n_boot: int = 1000,
             batch_size: int = 32, progress: bool = False, log: Callable[[str], None] = print) -> Evaluation:
    """Score the rows of `manifest` (a path or a table) through `model` (a Model, a bundle path or a
    built-in name) and write metrics.json, report.md, predictions.csv and figures to `out`.

    split: "auto" (the test rows when the manifest has any, else all), "all", or a split name.
    A binary model scores its positive class against every other label; any other classifier
    leaves out the rows whose label is none of its classes, with one logged warning, and counts
    them in metrics["left_out_labels"]; strict: refuse them instead. n_boot: bootstrap resamples for the 95%
    intervals, of the manifest's subjects with all their rows when it names any, else of rows.
    batch_size: windows scored at once. log gets a line saying which rows are evaluated (and the
    warning). Unreadable rows are left out and listed in `Evaluation.failures`.
    """
    from respira.data import read_manifest
    from respira.inference import Model, load_model

    scorer = model if isinstance(model, Model) else load_model(model)
    where = "manifest" if isinstance(manifest, pd.DataFrame) else str(manifest)
    table = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    rows, note = select_rows(table, split, where=where)
    log(note)
    rows, left_out = known_rows(rows, scorer, strict=strict, where=where)
    if left_out:
        log(_left_out_note(left_out))
    pred, failures = manifest_predictions(scorer, rows, batch_size=batch_size, progress=progress, where=where)
    metrics = evaluate_predictions(pred, out=Path(out), model_name=scorer.name, n_boot=n_boot,
                                   extra={"left_out_labels": left_out})
    return Evaluation(metrics=metrics, failures=tuple(failures))


def select_rows(table: pd.DataFrame, split: str, *, where: str) -> tuple[pd.DataFrame, str]:
    """(rows to evaluate, a note saying which): split "auto" = the test rows if any, else all; "all"; or a split name."""
    splits = table["split"].fillna("").astype(str) if "split" in table.columns else None
    if split == AUTO_SPLIT:
        has_test = splits is not None and (splits == "test").any()
        split = "test" if has_test else ALL_SPLITS
        if not has_test:
            return table, f"{where}: no test split; evaluating all {len(table)} rows"
    if split == ALL_SPLITS:
        return table, f"evaluating all {len(table)} rows of {where}"
    chosen = table[splits == split] if splits is not None else table.iloc[:0]
    if chosen.empty:
        present = sorted(set(splits) - {""}) if splits is not None else []
        raise DataError(f"{where}: no rows with split {split!r} (splits present: {', '.join(present) or 'none'})")
    return chosen, f"evaluating the {len(chosen)} {split} rows of {where} ({len(table)} rows in all)"


def known_rows(rows: pd.DataFrame, model: Model, *, strict: bool = False, where: str = "manifest"
               ) -> tuple[pd.DataFrame, dict[str, int]]:
    """(the rows whose label `model` knows, {label: rows} of those left out, most first).

    Only a classifier of its own classes can meet a label it does not know: a binary model scores
    its positive label against all others, a multilabel model reads a label naming none of its
    classes as all negative, a regression model reads a column. strict: keep every row, so that
    `manifest_predictions` refuses the unknown labels. DataError when no row is left.
    """
    if strict or not TASKS[model.task].exclusive or model.positive is not None:
        return rows, {}
    labels = rows["label"].fillna("").astype(str)
    known = labels.isin(model.classes).to_numpy()
    counts = labels[~known].value_counts()
    left_out = {str(label): int(n) for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
    if not known.any():
        raise DataError(f"{where}: none of the {len(rows)} rows has a label model {model.name!r} knows "
                        f"({', '.join(model.classes)}); labels: {_counts(left_out)}")
    return rows[known], left_out


def _left_out_note(left_out: dict[str, int]) -> str:
    """The warning for rows left out for their labels ({label: rows})."""
    n = sum(left_out.values())
    return (f"left out {n} row{'s' if n != 1 else ''} whose labels the model does not know: "
            f"{_counts(left_out)} (use --strict to refuse)")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{label or '(empty)'} {n}" for label, n in counts.items())


def manifest_predictions(model: Model, rows: pd.DataFrame, *, batch_size: int = 32, progress: bool = False,
                         where: str = "manifest") -> tuple[Predictions, list[str]]:
    """Score `rows` through `model` and pair the outputs with their true targets (`Task.manifest_truth`);
    (Predictions, failures). Rows that fail to load are left out and listed in failures."""
    try:
        targets = TASKS[model.task].manifest_truth(rows, classes=model.classes, positive=model.positive, model=model.name)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    outputs, kept, failures = model.score_rows(rows, batch_size=batch_size, progress=progress)
    if len(kept) == 0:
        raise DataError(f"{where}: none of the {len(rows)} rows could be read (first: {failures[0] if failures else '-'})")
    pred = Predictions.of(model.meta, manifest=rows.iloc[kept].reset_index(drop=True), outputs=outputs,
                          targets=targets[kept])
    return pred, failures

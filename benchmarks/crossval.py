"""Cross-validated test figures of a training config over all of its development subjects.

Every subject (speaker, patient, call) is assigned to one of K folds (subject-disjoint,
stratified by data set and label). For each fold k, `respira train CONFIG` trains on the
other folds, with its own validation subjects carved out of them for early stopping and the
decision threshold, and scores the subjects of fold k once, as its test split. The out-of-fold
predictions of all folds are then pooled and evaluated together, with intervals that resample
subjects: a figure for people the recipe never trained on, over every subject at hand rather
than one small test split.

Rows of manifest sources that name their own split (mined hard negatives) are dropped from the
fold whose test subjects they belong to, so no test call is trained on. Folds already trained
(RUN/foldK/model.respira) are skipped, so an interrupted run continues where it stopped.

    .venv/bin/python benchmarks/crossval.py configs/vocal16.yaml -o runs/cv-vocal16 [--folds 5] [--set train.ensemble=1]

Writes RUN/foldK/ (a training run each), RUN/pooled/ (metrics.json, report.md, predictions.csv)
and prints one JSON line last: the pooled metrics with their subject-bootstrap intervals, and
the mean and standard deviation over folds of each fold's own test metrics.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
_FOLD_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "sensitivity", "specificity",
              "sensitivity_at_95_specificity", "ece", "mae", "rmse")
_POOLED_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "sensitivity_at_95_specificity", "ece",
                "mae", "rmse", "r2")


def fold_tables(table: pd.DataFrame, *, folds: int, seed: int) -> list[pd.DataFrame]:
    """One manifest per fold: its subjects' rows in split `test`, every other row as it came
    (named splits kept, empty ones left for training to fill), named-split rows of test subjects dropped."""
    from respira.data import group_kfold
    from respira.data.splits import subject_keys

    named = table["split"].fillna("").astype(str).str.strip() != ""
    pool = table.loc[~named].assign(_strata=table["dataset"].astype(str) + "|" + table["label"].astype(str))
    subjects = subject_keys(table)
    out = []
    for _, test_rows in group_kfold(pool, folds=folds, seed=seed, stratify="_strata"):
        test_subjects = set(subject_keys(pool.iloc[test_rows]))
        in_test = np.isin(subjects, list(test_subjects))
        fold = table.loc[~(in_test & named)].copy()
        fold.loc[in_test[~(in_test & named)], "split"] = "test"
        out.append(fold)
    return out


def development_table(config: Path, overrides: list[str]) -> tuple[pd.DataFrame, object]:
    """Every row the config's sources give (labels and data-set names applied), and the config."""
    from respira.config import load_config
    from respira.train.dataset import load_sources

    cfg = load_config(config, overrides)
    table = load_sources(cfg.data.sources)
    if "split" not in table.columns:
        table["split"] = ""
    table["path"] = [str(Path(p).resolve()) for p in table["path"]]  # the fold manifests live elsewhere
    return table, cfg


def train_fold(config: Path, manifest: Path, run: Path, overrides: list[str]) -> None:
    if (run / "model.respira").exists():
        print(f"{run}: already trained, skipped", file=sys.stderr)
        return
    respira = str(Path(sys.executable).parent / "respira")
    sets = [f"data.sources=[{{format: manifest, path: {manifest}}}]", "data.split.test=0.0", *overrides]
    subprocess.run([respira, "train", str(config), "-o", str(run), *[a for s in sets for a in ("--set", s)]], check=True)


def pooled(runs: list[Path], out: Path, *, seed: int) -> dict:
    """Evaluate the out-of-fold predictions of `runs` together (subjects from each run's manifest)."""
    from respira.bundle import read_meta
    from respira.data import read_manifest
    from respira.evaluate import Predictions, evaluate_predictions
    from respira.tasks import TASKS

    parts = []
    for run in runs:
        rows = read_manifest(run / "manifest.csv")
        rows = rows[rows["split"] == "test"].reset_index(drop=True)
        pred = pd.read_csv(run / "eval" / "predictions.csv")
        if len(pred) != len(rows) or not (pred["path"].astype(str).to_numpy() == rows["path"].astype(str).to_numpy()).all():
            sys.exit(f"{run}: eval/predictions.csv does not follow the test rows of manifest.csv")
        parts.append((rows, pred))
    meta = read_meta(runs[0] / "model.respira")
    manifest = pd.concat([r for r, _ in parts], ignore_index=True).drop(columns=["task_label"], errors="ignore")
    table = pd.concat([p for _, p in parts], ignore_index=True)
    classes = list(meta.classes)
    if TASKS[meta.task].values:
        values = table["value"].to_numpy(float) if "value" in table.columns else table["predicted"].to_numpy(float)
        pred = Predictions(manifest=manifest, classes=classes, task=meta.task, proba=None, values=values,
                           targets=manifest["label"].to_numpy(float))
    else:
        proba = table[[f"prob_{c}" for c in classes]].to_numpy(float)
        targets = np.array([classes.index(lbl) for lbl in table["label"].astype(str)])
        thresholds = [read_meta(r / "model.respira").thresholds.get("decision", 0.5) for r in runs]
        pred = Predictions(manifest=manifest, classes=classes, task=meta.task, proba=proba, values=None,
                           targets=targets, positive=meta.positive, threshold=float(np.median(thresholds)))
    return evaluate_predictions(pred, out=out, model_name=meta.model["name"], seed=seed)


def fold_spread(runs: list[Path]) -> dict:
    """Mean and standard deviation over folds of each fold's own test metric."""
    per_fold = [json.loads((r / "eval" / "metrics.json").read_text()) for r in runs]
    out = {}
    for key in _FOLD_KEYS:
        values = [m[key] for m in per_fold if isinstance(m.get(key), (int, float))]
        if len(values) == len(runs):
            out[key] = {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values, ddof=1)), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True, help="run folder (foldK/ and pooled/ inside)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every fold")
    args = parser.parse_args()

    table, cfg = development_table(args.config, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for k, fold in enumerate(fold_tables(table, folds=args.folds, seed=args.seed), start=1):
        manifest = (args.out / f"fold{k}.csv").resolve()
        fold.to_csv(manifest, index=False)
        print(f"fold {k}/{args.folds}: {int((fold['split'] == 'test').sum())} test rows", file=sys.stderr)
        train_fold(args.config, manifest, args.out / f"fold{k}", args.overrides)
        runs.append(args.out / f"fold{k}")
    metrics = pooled(runs, args.out / "pooled", seed=cfg.train.seed)
    summary = {"config": str(args.config), "folds": args.folds, "subjects": metrics.get("subjects"),
               "ci_method": metrics.get("ci_method"), "overrides": args.overrides}
    summary |= {k: metrics[k] for k in _POOLED_KEYS if k in metrics}
    summary |= {f"{k}_ci": metrics[f"{k}_ci"] for k in _POOLED_KEYS if f"{k}_ci" in metrics}
    summary["per_fold"] = fold_spread(runs)
    (args.out / "crossval.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

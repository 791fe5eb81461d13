"""One training run, config to bundle: data -> model(s) -> test evaluation -> RUN_DIR/model.respira.

RUN_DIR holds config.yaml (resolved), manifest.csv (the rows used, with their splits),
checkpoint.pt + history.csv (one model; with several, one folder per member and a combined
history.csv), cv.json (group_kfold), eval/ (metrics.json, report.md, figures) and model.respira.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from respira import __version__
from respira.bundle import BundleMeta, save_bundle
from respira.config import Config, save_config
from respira.data import group_kfold, write_manifest
from respira.data.splits import subject_keys
from respira.errors import ConfigError
from respira.tasks import TASKS
from respira.train.dataset import TrainingData, data_summary, prepare
from respira.train.distributed import Dist, setup, teardown
from respira.train.loop import CHECKPOINT, HISTORY, FitResult, Member, build, early_stop_metric, fit, model_spec
from respira.train.losses import is_better

BUNDLE = "model.respira"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class RunResult:
    """Where the bundle went, the test metrics (empty without a test split) and the k-fold summary."""

    bundle: Path
    metrics: dict
    cv: dict | None


def train(cfg: Config, run_dir: str | os.PathLike, *, resume: bool = False, command: str = "",
          on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> RunResult | None:
    """Train what `cfg` describes into `run_dir` (see the module docstring). Under torchrun every
    rank trains; rank 0 alone writes files and gets the RunResult, the others get None.

    resume: continue the run in `run_dir` from its checkpoints. command: the command line,
    kept in the bundle's provenance. on_step(step) runs after every optimizer step.
    Raises loop.Interrupted when stopped by Ctrl-C (after saving a checkpoint).
    """
    run_dir = Path(run_dir)
    if not resume and _holds_run(run_dir):
        raise ConfigError(f"{run_dir} already holds a training run; pass --resume to continue it "
                          "or choose another output folder")
    dist = setup(cfg.train.device)
    try:
        return _train(cfg, run_dir, dist, resume=resume, command=command, on_step=on_step, log=log)
    finally:
        teardown(dist)


def _train(cfg: Config, run_dir: Path, dist: Dist, *, resume: bool, command: str,
           on_step: Callable[[int], None] | None, log: Callable[[str], None]) -> RunResult | None:
    if dist.main:
        save_config(cfg, run_dir / CONFIG)
    data = prepare(cfg, progress=dist.main)
    if dist.main:
        write_manifest(data.table, run_dir / "manifest.csv")
        sizes = ", ".join(f"{split} {counts['n']}" for split, counts in data.counts().items())
        processes = f" x {dist.world} processes" if dist.world > 1 else ""
        extra = f" (+ training-only {', '.join(data.auxiliary)})" if data.auxiliary else ""
        log(f"data: {len(data.table)} clips ({sizes}); outputs {', '.join(data.classes)}{extra}; device {dist.device}{processes}")
    members = plan_members(cfg, data, run_dir)
    results = [fit(cfg, data, m, dist=dist, resume=resume, on_step=on_step, log=log) for m in members]
    cv = cv_summary(results, members) if cfg.validation.strategy == "group_kfold" else None
    if not dist.main:
        return None
    if len(members) > 1:
        pd.concat([pd.DataFrame(r.history).assign(member=m.name) for r, m in zip(results, members)]
                  ).to_csv(run_dir / HISTORY, index=False)
    if cv is not None:
        (run_dir / "cv.json").write_text(json.dumps(cv, indent=2), encoding="utf-8")
    spec = model_spec(cfg, len(data.classes))
    models = chosen_models(cfg, results)
    summary = data_summary(data, cfg.data)
    if data.auxiliary:
        models = [narrowed(m, spec) for m in models]
        data = data.without_auxiliary()
    meta = BundleMeta(
        task=cfg.task.type, classes=data.classes, positive=cfg.data.positive,
        features=cfg.features.to_dict(), model=spec,
        clip_s=cfg.data.clip_s, pooling=cfg.data.pooling, thresholds={"decision": 0.5},
    )
    if meta.positive is not None and len(data.rows("val")):
        decision = tune_threshold(models, meta, data, device=dist.device)
        meta = BundleMeta(**{**meta.to_dict(), "thresholds": {"decision": decision}})
        log(f"decision threshold {decision:.3f} (best balanced accuracy on val)")
    metrics = {}
    if len(data.rows("test")):
        metrics = evaluate_test(models, meta, data, out=run_dir / "eval", seed=cfg.train.seed, device=dist.device)
    provenance = {
        "data": summary,
        "config": cfg.to_dict(),
        "metrics": metrics,
        "training": {"metric": early_stop_metric(cfg), "processes": dist.world, "members": [
            {"name": m.name, "seed": m.seed, "best": r.best, "val": r.val_metrics, "epochs": len(r.history)}
            for m, r in zip(members, results)], "cv": cv},
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    meta = BundleMeta(**{**meta.to_dict(), "provenance": _jsonable(provenance)})
    save_bundle(run_dir / BUNDLE, models, meta)
    return RunResult(bundle=run_dir / BUNDLE, metrics=metrics, cv=cv)


def plan_members(cfg: Config, data: TrainingData, run_dir: Path) -> list[Member]:
    """The models to train: one per ensemble seed on the holdout split, or one per group k-fold
    fold of the non-test rows. A lone model writes straight into run_dir, several into subfolders."""
    seed = cfg.train.seed
    if cfg.validation.strategy == "holdout":
        n = int(cfg.train.ensemble)
        train, val = data.rows("train"), data.rows("val")
        return [Member(name=f"member{i + 1}" if n > 1 else "", seed=seed + i, train=train, val=val,
                       out=run_dir / f"member{i + 1}" if n > 1 else run_dir) for i in range(n)]
    auxiliary = data.auxiliary_rows()
    pool = np.flatnonzero((data.table["split"].to_numpy() != "test") & ~auxiliary)
    stratify = None if TASKS[cfg.task.type].values else "task_label"
    folds = group_kfold(data.table.iloc[pool], folds=cfg.validation.folds, seed=cfg.data.split.seed, stratify=stratify)
    subjects = subject_keys(data.table)
    members = []
    for k, (tr, va) in enumerate(folds):
        extra = np.flatnonzero(auxiliary & ~np.isin(subjects, subjects[pool[va]]))  # never a validation subject
        members.append(Member(name=f"fold{k + 1}", seed=seed + k, train=np.sort(np.concatenate([pool[tr], extra])),
                              val=pool[va], out=run_dir / f"fold{k + 1}"))
    return members


def cv_summary(results: list[FitResult], members: list[Member]) -> dict:
    """Mean and standard deviation over folds of each validation metric at its fold's best epoch."""
    names = sorted(set.intersection(*(set(r.val_metrics) for r in results)))
    values = {k: np.array([r.val_metrics[k] for r in results], dtype=float) for k in names}
    return {
        "metric": results[0].metric,
        "folds": [{"fold": m.name, "rows_train": len(m.train), "rows_val": len(m.val), **r.val_metrics}
                  for m, r in zip(members, results)],
        "mean": {k: float(np.mean(v)) for k, v in values.items()},
        "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
    }


def chosen_models(cfg: Config, results: list[FitResult]) -> list[nn.Module]:
    """What ships: every member (an ensemble, or ensemble "folds"), else the best fold's model."""
    if cfg.validation.strategy == "holdout" or cfg.train.ensemble == "folds":
        return [r.model for r in results]
    best = results[0]
    for r in results[1:]:
        if is_better(r.metric, r.best, best.best):
            best = r
    return [best.model]


def narrowed(model: nn.Module, spec: dict) -> nn.Module:
    """`model` with the fewer outputs of `spec` (auxiliary outputs dropped): the output layer
    keeps its first rows, so the kept classes' probabilities are a softmax over their own logits."""
    out = build(spec).to(next(model.parameters()).device)
    shapes = {k: v.shape for k, v in out.state_dict().items()}
    out.load_state_dict({k: v if v.shape == shapes[k] else v[:shapes[k][0]] for k, v in model.state_dict().items()})
    return out.train(model.training)


def tune_threshold(models: list[nn.Module], meta: BundleMeta, data: TrainingData, *,
                   device: torch.device | str = "cpu") -> float:
    """The positive-class decision threshold with the best balanced accuracy on the validation
    clips, scored through `respira.inference` like every later prediction (midpoint of ties)."""
    from respira.inference import Model

    rows = data.rows("val")
    proba = Model(models, meta, name="val", device=device).predict_proba([data.waves[i] for i in rows])
    k = list(meta.classes).index(meta.positive)
    score, positive = np.asarray(proba, dtype=float)[:, k], data.targets[rows, k] > 0.5
    if positive.all() or not positive.any():
        return 0.5
    candidates = np.unique(np.concatenate([score, [0.5]]))
    sens = np.array([(score[positive] >= t).mean() for t in candidates])
    spec = np.array([(score[~positive] < t).mean() for t in candidates])
    balanced = (sens + spec) / 2
    # "score >= t" gives the same answers for every t in (c[i-1], c[i]]: take the middle of the
    # first run of candidates with the best balanced accuracy.
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    last = best[0]
    while last + 1 < len(candidates) and last + 1 in best:
        last += 1
    lo = candidates[best[0] - 1] if best[0] > 0 else 0.0
    return float((lo + candidates[last]) / 2)


def evaluate_test(models: list[nn.Module], meta: BundleMeta, data: TrainingData, *, out: Path, seed: int,
                  device: torch.device | str = "cpu") -> dict:
    """Score the test clips through `respira.inference` (the path predictions take) and write
    out/metrics.json, report.md and figures; returns the metrics. The rows keep their
    `subject`, so the intervals resample test subjects (rows where none is named)."""
    from respira.evaluate import Predictions, evaluate_predictions
    from respira.inference import Model

    rows = data.rows("test")
    output = Model(models, meta, name="test", device=device).predict_proba([data.waves[i] for i in rows])
    manifest = data.table.iloc[rows].drop(columns=["task_label"]).reset_index(drop=True)
    pred = Predictions.of(meta, manifest=manifest, outputs=output, targets=TASKS[meta.task].truth(data.targets[rows]))
    return evaluate_predictions(pred, out=out, model_name=meta.model["name"], seed=seed)


def _holds_run(run_dir: Path) -> bool:
    """Whether `run_dir` has a checkpoint or a bundle of an earlier run (a config alone does not count)."""
    return (run_dir / BUNDLE).exists() or any(run_dir.glob(CHECKPOINT)) or any(run_dir.glob(f"*/{CHECKPOINT}"))


def _jsonable(value: object) -> object:
    """`value` with numpy scalars / arrays as plain numbers / lists and NaN as None (JSON-ready)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

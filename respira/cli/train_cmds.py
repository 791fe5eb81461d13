"""`respira train CONFIG -o RUN_DIR`: train from one YAML config into a model bundle."""

from __future__ import annotations

import os
import shlex
import sys
import warnings
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console

_SUMMARY_KEYS = (
    "accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "sensitivity", "specificity",
    "icbhi_score", "macro_auc", "mae", "rmse", "r2",
)  # fmt: skip


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Training config (YAML), e.g. configs/vocal5.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: model.respira, config.yaml, history.csv, eval/."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.lr=3e-4 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run folder from its checkpoint."),
) -> None:  # fmt: skip
    """Train a model from a config; writes RUN_DIR/model.respira and prints the test metrics.

    Ctrl-C saves a checkpoint and stops; run the same command with --resume to continue.
    Under torchrun (several processes) it trains with DistributedDataParallel.
    """
    from respira.config import load_config
    from respira.data import DataWarning
    from respira.train import Interrupted, train

    cfg = load_config(config, set_)
    command = shlex.join(["respira", *sys.argv[1:]])
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = lambda message, category, *args, **kwargs: _err(f"warning: {message}")
        try:
            result = train(cfg, out, resume=resume, command=command, log=_err)
        except Interrupted as e:
            if main:
                _err(f"{e}; run the same command with --resume to continue")
            raise typer.Exit(130) from None
    if result is None:
        return
    if result.cv is not None:
        metric, cv = result.cv["metric"], result.cv
        _out(f"cross-validation {metric}: {cv['mean'].get(metric, float('nan')):.4f} "
             f"± {cv['std'].get(metric, float('nan')):.4f} over {len(cv['folds'])} folds")
    if result.metrics:
        shown = [f"{k} {result.metrics[k]:.4f}" for k in _SUMMARY_KEYS if isinstance(result.metrics.get(k), float)]
        _out(f"test: {'  '.join(shown)}")
        _out(f"wrote {result.bundle}; report {out / 'eval' / 'report.md'}")
    else:
        _out(f"wrote {result.bundle} (no test split, so no test evaluation)")


def _out(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _err(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)

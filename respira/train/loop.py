"""The training loop for one model: AdamW, warm-up + cosine, early stopping, checkpoints, resume.

Every random choice of a step (sample order, augmentation, dropout) is drawn from a seed made
of (seed, epoch, batch, rank), so a run resumed from `checkpoint.pt` at step N continues
exactly as the uninterrupted run would have: the checkpoint holds the step, not RNG states.
Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves the checkpoint and raises
`Interrupted`; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from respira.config import Config
from respira.errors import ConfigError, ModelError
from respira.features import features
from respira.inference import feature_inputs, pooled_outputs
from respira.signals import stop_on_signals
from respira.train.augment import Pipeline, build_pipeline, class_weights, sample_weights
from respira.train.dataset import ClipSet, TrainingData
from respira.train.distributed import Dist, any_rank, shard, sync_buffers, wrap
from respira.tasks import TASKS, positive_index
from respira.train.losses import is_better, loss_fn

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"


class Interrupted(Exception):
    """Training was stopped on request after saving its checkpoint; `--resume` continues it."""

    def __init__(self, checkpoint: Path, step: int) -> None:
        super().__init__(f"interrupted after step {step}; checkpoint saved to {checkpoint}")
        self.checkpoint, self.step = checkpoint, step


@dataclass(frozen=True)
class Member:
    """One model to train: its name ("" alone, "member2", "fold3"), seed, train / val rows and folder."""

    name: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    out: Path


@dataclass
class FitResult:
    """The trained model (best validation epoch, eval mode, CPU) and how it got there."""

    model: nn.Module
    metric: str
    best: float
    val_metrics: dict[str, float]
    history: list[dict]


def model_spec(cfg: Config, n_outputs: int) -> dict:
    """{"name", "params"} for `build_model`: cfg.model.params plus n_classes and the input geometry
    (in_channels, n_bins; pairs for "dual" features) measured on one window of features."""
    window = torch.zeros(1, int(round(cfg.data.clip_s * cfg.features.sample_rate)))
    maps = features(window, cfg.features)
    maps = maps if isinstance(maps, tuple) else (maps,)
    channels = [int(m.shape[1]) for m in maps]
    bins = [int(m.shape[2]) for m in maps]
    geometry = {"in_channels": channels[0], "n_bins": bins[0]} if len(maps) == 1 else {"in_channels": channels, "n_bins": bins}
    return {"name": cfg.model.name, "params": {**cfg.model.params, "n_classes": n_outputs, **geometry}}


def build(spec: dict) -> nn.Module:
    """A fresh model from a `model_spec`."""
    from respira.models import build_model

    return build_model(spec["name"], **spec["params"])


def score_clips(model: nn.Module, waves: Sequence[np.ndarray], *, cfg: Config, classes: Sequence[str],
                batch_size: int = 32) -> np.ndarray:
    """What the bundle of `model` (eval mode) gives each clip, as `Model.predict_proba`: waveforms at
    the feature sample rate -> [clips, n_classes] probabilities of its first n_classes outputs
    ([clips, 1] values for regression), each clip's windows scored in float32 and pooled by
    `pooled_outputs`, on the model's device."""
    task = TASKS[cfg.task.type]
    device = next(model.parameters()).device

    def score(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            maps = feature_inputs(torch.from_numpy(windows).to(device), cfg.features)
            return task.activate(model(*maps).float()[:, :len(classes)]).cpu().numpy()

    return pooled_outputs(waves, score=score, length=int(round(cfg.data.clip_s * cfg.features.sample_rate)),
                          pooling=cfg.data.pooling, task=cfg.task.type,
                          positive_index=positive_index(classes, cfg.data.positive), batch_size=batch_size)


def early_stop_metric(cfg: Config) -> str:
    """The metric early stopping watches ("auto" -> the task's default)."""
    metric = cfg.train.early_stop_metric
    return TASKS[cfg.task.type].metric if metric == "auto" else metric


def fit(cfg: Config, data: TrainingData, member: Member, *, dist: Dist, resume: bool = False,
        on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> FitResult:
    """Train one model on member.train, keep the weights of the best member.val epoch.

    Writes member.out / checkpoint.pt (every epoch and on interruption) and history.csv
    (rank 0 only). resume: continue from the checkpoint there (a finished one is just read).
    on_step(step) runs after every optimizer step. Raises Interrupted on Ctrl-C / SIGTERM.
    """
    return _Trainer(cfg, data, member, dist, log).run(resume=resume, on_step=on_step)


class _Trainer:
    """The state of one training run; `run` is the loop."""

    def __init__(self, cfg: Config, data: TrainingData, member: Member, dist: Dist, log: Callable[[str], None]) -> None:
        self.cfg, self.data, self.member, self.dist, self.log = cfg, data, member, dist, log
        self.task = TASKS[cfg.task.type]
        self.metric = early_stop_metric(cfg)
        self.path = member.out / CHECKPOINT
        self.spec = model_spec(cfg, len(data.outputs))
        self.scored = len(data.classes)  # validation scores the classes, not the auxiliary outputs
        eventless = data.classes.index(cfg.data.negative) if cfg.data.positive else None
        self.pipeline: Pipeline = build_pipeline(cfg.augment, cfg.features, clip_s=cfg.data.clip_s,
                                                 device=dist.device, eventless=eventless)
        self.train_set = ClipSet(data, member.train)
        self.batch = max(1, cfg.train.batch_size // dist.world)
        self.weights = sample_weights(data.targets[member.train]) if cfg.augment.balance == "sampler" else None
        self.steps_per_epoch = len(self._batches(0))
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self._check_metric()

        torch.manual_seed(member.seed)
        model = build(self.spec)
        if cfg.model.pretrained:
            self._load_pretrained(model)
        self.model = model.to(dist.device)
        self.net = wrap(self.model, dist)
        self.optimizer = _adamw(self.model, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        warmup = cfg.train.warmup_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _warmup_cosine(warmup, self.total_steps))
        self.amp = cfg.train.amp and dist.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        weights = None
        if cfg.augment.balance == "loss":
            weights = torch.as_tensor(class_weights(data.targets[member.train], task=cfg.task.type),
                                      dtype=torch.float32, device=dist.device)
        self.loss = loss_fn(cfg.loss, label_smoothing=cfg.task.label_smoothing, weights=weights)
        self.val_loss = loss_fn(cfg.loss)
        # progress, saved in the checkpoint
        self.epoch, self.batch_index, self.step = 0, 0, 0
        self.epoch_loss = [0.0, 0]
        self.best: float | None = None
        self.best_state: dict | None = None
        self.best_metrics: dict[str, float] = {}
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.done = False

    # --- the loop -------------------------------------------------------------------------------

    def run(self, *, resume: bool, on_step: Callable[[int], None] | None) -> FitResult:
        if resume and self.path.is_file():
            self._restore()
        if not self.done:
            with stop_on_signals() as stop, _Bar(self.dist.main) as bar:
                while self.epoch < self.cfg.train.epochs and not self.done:
                    self._train_epoch(bar, stop, on_step)
                    self._end_epoch()
        if self.best_state is None:
            raise ModelError(f"training {self.member.name or 'the model'} gave no usable validation {self.metric}")
        self.model.load_state_dict(self.best_state)
        return FitResult(model=self.model.cpu().eval(), metric=self.metric, best=float(self.best),
                         val_metrics=self.best_metrics, history=self.history)

    def _train_epoch(self, bar: _Bar, stop: dict, on_step: Callable[[int], None] | None) -> None:
        batches = self._batches(self.epoch)
        self.net.train()
        bar.begin(self._title(), total=len(batches), done=self.batch_index)
        self.epoch_start = time.perf_counter()
        while self.batch_index < len(batches):
            loss = self._train_step(batches[self.batch_index])
            self.batch_index += 1
            self.step += 1
            self.epoch_loss[0] += loss
            self.epoch_loss[1] += 1
            bar.advance(f"loss {self.epoch_loss[0] / self.epoch_loss[1]:.4f}")
            if on_step is not None:
                on_step(self.step)
            if any_rank(stop.is_set(), self.dist):
                self._save()
                raise Interrupted(self.path, self.step)

    def _train_step(self, rows: np.ndarray) -> float:
        rng = np.random.default_rng([self.member.seed, self.epoch, self.batch_index, self.dist.rank])
        torch.manual_seed(int(rng.integers(0, 2**63 - 1)))  # dropout
        clips, targets = zip(*(self.train_set[i] for i in rows))
        y = torch.from_numpy(np.stack(targets)).to(self.dist.device)
        x, y = self.pipeline(clips, y, train=True, rng=rng)
        with self._autocast():
            logits = self.net(*x)
        loss = self.loss(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def _end_epoch(self) -> None:
        metrics = self._validate()
        seconds = time.perf_counter() - self.epoch_start
        row = {"epoch": self.epoch + 1, "step": self.step,
               "train_loss": self.epoch_loss[0] / max(self.epoch_loss[1], 1), "val_loss": metrics["loss"],
               **{f"val_{k}": v for k, v in metrics.items() if k != "loss"},
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3)}
        self.history.append(row)
        value = metrics.get(self.metric, math.nan)
        if is_better(self.metric, value, self.best):
            self.best, self.best_metrics, self.bad_epochs = value, metrics, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_epochs += 1
        title = self._title()
        self.epoch, self.batch_index, self.epoch_loss = self.epoch + 1, 0, [0.0, 0]
        self.done = self.epoch >= self.cfg.train.epochs or self.bad_epochs >= self.cfg.train.patience
        shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step", "seconds"))
        stopping = "  (early stop)" if self.done and self.epoch < self.cfg.train.epochs else ""
        if self.dist.main:
            self.log(f"{title}  {shown}  {seconds:.1f}s{stopping}")
        self._save()

    def _validate(self) -> dict[str, float]:
        """Loss and task metrics of the validation clips, each scored whole as the bundle will score
        it (`score_clips`; the loss of the pooled outputs). Every rank computes them, with rank 0's
        BatchNorm statistics, so all ranks take the same early-stopping decision."""
        sync_buffers(self.model, self.dist)
        self.model.eval()
        waves = [self.data.waves[i] for i in self.member.val]
        p = score_clips(self.model, waves, cfg=self.cfg, classes=self.data.classes, batch_size=self.batch)
        truth = self.data.targets[self.member.val, :self.scored]
        loss = self.val_loss(self.task.inverse(torch.from_numpy(p)), torch.from_numpy(truth))
        return {"loss": float(loss), **self.task.metrics(p, truth)}

    # --- helpers ----------------------------------------------------------------------------------

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of `epoch`: a seeded shuffle (or class-balanced draw with replacement)
        of the train rows, sharded across ranks; a last batch of one row is dropped (BatchNorm)."""
        rng = np.random.default_rng([self.member.seed, epoch, 1 << 20])
        n = len(self.member.train)
        order = rng.permutation(n) if self.weights is None else rng.choice(n, size=n, p=self.weights)
        mine = shard(order, self.dist)
        batches = [mine[i : i + self.batch] for i in range(0, len(mine), self.batch)]
        return batches[:-1] if len(batches) > 1 and len(batches[-1]) < 2 else batches

    def _check_metric(self) -> None:
        truth = self.data.targets[self.member.val, :self.scored]
        available = ["loss", *self.task.metrics(truth, truth)]
        if self.metric not in available:
            raise ConfigError(f"train.early_stop_metric: {self.metric!r} is not measured for this "
                              f"{self.cfg.task.type} task (choose from {', '.join(available)})")

    def _load_pretrained(self, model: nn.Module) -> None:
        from respira.models import load_pretrained

        report = load_pretrained(model, self.cfg.model.pretrained)
        if self.dist.main:
            self.log(f"pretrained {self.cfg.model.pretrained}: loaded {len(report['loaded'])} tensors, "
                     f"{len(report['skipped_shape'])} skipped (shape), {len(report['missing'])} not in the file")

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def _title(self) -> str:
        name = f"{self.member.name} " if self.member.name else ""
        return f"{name}epoch {self.epoch + 1}/{self.cfg.train.epochs}"

    # --- checkpoint -------------------------------------------------------------------------------

    def _save(self) -> None:
        if not self.dist.main:
            return
        state = {
            "config": _comparable(self.cfg), "member": self.member.name, "spec": self.spec,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "batch": self.batch_index, "step": self.step, "epoch_loss": self.epoch_loss,
            "best": self.best, "best_model": self.best_state, "best_metrics": self.best_metrics,
            "bad_epochs": self.bad_epochs, "history": self.history, "done": self.done,
        }
        self.member.out.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".pt.partial")
        torch.save(state, partial)
        partial.replace(self.path)  # atomic: an interruption mid-write never leaves a broken checkpoint
        if self.history:
            pd.DataFrame(self.history).to_csv(self.member.out / HISTORY, index=False)

    def _restore(self) -> None:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file, in whatever type torch raises
            raise ModelError(f"{self.path}: cannot read the checkpoint: {e}") from None
        if state.get("config") != _comparable(self.cfg):
            raise ConfigError(f"{self.path} was made with a different config; resume with the run's "
                              f"config.yaml or start a new run directory")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch_index, self.step = state["epoch"], state["batch"], state["step"]
        self.epoch_loss, self.best, self.best_state = list(state["epoch_loss"]), state["best"], state["best_model"]
        self.best_metrics, self.bad_epochs = state["best_metrics"], state["bad_epochs"]
        self.history, self.done = list(state["history"]), state["done"]
        if self.dist.main and not self.done:
            self.log(f"resuming {self.member.name or 'training'} at epoch {self.epoch + 1}, step {self.step}")


def _comparable(cfg: Config) -> dict:
    """The config as compared on resume: everything but the device, which may change."""
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k != "device"}
    return d


def _adamw(model: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices / kernels only (not on biases and norms)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    plain = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def _warmup_cosine(warmup: float, total: int) -> Callable[[int], float]:
    """LR factor at a step: linear from 1/warmup to 1 over `warmup` steps, then cosine to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1.0, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class _Bar:
    """A transient rich progress bar on stderr for the batches of an epoch (rank 0, a terminal)."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True, disable=not enabled)
        self.task = None

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, title: str, *, total: int, done: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(title, total=total, completed=done, info="")

    def advance(self, info: str) -> None:
        self.progress.update(self.task, advance=1, info=info)


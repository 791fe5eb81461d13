"""Train/serve parity: validation scores each clip as `respira predict` and `evaluate` do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from respira.bundle import BundleMeta, save_bundle
from respira.config import config_from_dict
from respira.data import read_manifest, write_manifest
from respira.inference import load_model
from respira.testing import clip_dataset
from respira.train import train
from respira.train.dataset import decode
from respira.train.loop import model_spec, score_clips
from respira.tasks import TASKS
from respira.train.losses import loss_fn
from tiny_models import SR, tiny_members, tone_clip, write_clip

CLIP = 1.0  # seconds: the model's window; the clips below are 2.5 windows long
TINY_MODEL = {"name": "compact_cnn", "params": {"channels": [8, 16]}}


def config(manifest: Path, *, task: str = "classification", pooling: str = "mean", **data: object):
    """A tiny config on `manifest` with CLIP-second windows."""
    losses = {"classification": "ce", "multilabel": "bce", "regression": "mse"}
    return config_from_dict({
        "data": {"sources": [{"path": str(manifest)}], "clip_s": CLIP, "pooling": pooling,
                 "split": {"val": 0.25, "test": 0.25}, **data},
        "features": {"n_mels": 32, "n_mfcc": 13}, "model": TINY_MODEL,
        "augment": {"mixup_p": 0.0, "balance": "none" if task == "regression" else "sampler"},
        "train": {"epochs": 1, "batch_size": 8, "ensemble": 1},
        "task": {"type": task, "loss": losses[task]},
    })


def long_clip(rng: np.random.Generator) -> np.ndarray:
    """2.5 windows: quiet noise, then a 1.5-kHz tone in the last window only (so windows differ)."""
    y = 0.01 * rng.standard_normal(int(2.5 * CLIP * SR)).astype(np.float32)
    tone = tone_clip(1500, 0.8 * CLIP, rng=rng)
    y[-len(tone):] += tone
    return y


@pytest.mark.parametrize(("task", "classes", "pooling"), [
    ("classification", ("other", "cough"), "max"),
    ("classification", ("a", "b", "c"), "mean"),
    ("multilabel", ("crackle", "wheeze"), "max"),
    ("regression", ("score",), "mean"),
])
def test_validation_scoring_equals_the_bundle(tmp_path: Path, task: str, classes: tuple, pooling: str) -> None:
    rng = np.random.default_rng(0)
    long = write_clip(tmp_path / "long.wav", np.concatenate([long_clip(rng), long_clip(rng)]))
    rows = pd.DataFrame({"path": [str(long), str(long), str(long)], "start": [np.nan, 0.7, 2.5],
                         "end": [np.nan, 3.2, 3.1]})  # whole file (5 windows), 2.5 windows inside it, a short piece
    cfg = config(long, task=task, pooling=pooling, **({"classes": list(classes)} if task == "multilabel" else {}))
    positive = classes[-1] if task == "classification" and len(classes) == 2 else None
    meta = BundleMeta(task=task, classes=classes, positive=positive, features=cfg.features.to_dict(),
                      model=model_spec(cfg, len(classes)), clip_s=CLIP, pooling=pooling)
    model = tiny_members(meta)[0]  # BatchNorm statistics from tones: outputs follow the audio
    save_bundle(tmp_path / "m.respira", [model], meta)
    bundle = load_model(tmp_path / "m.respira")

    waves, ok, _ = decode(rows, sample_rate=SR, progress=False)  # the training side decodes rows once
    assert ok.all() and len(waves[1]) == int(2.5 * CLIP * SR)
    validation = score_clips(model, waves, cfg=cfg, classes=classes, batch_size=3)
    served, kept, failures = bundle.score_rows(rows)
    assert not failures and list(kept) == [0, 1, 2]
    served = served.reshape(validation.shape)
    np.testing.assert_allclose(validation, served, atol=1e-5)
    np.testing.assert_allclose(validation, bundle.predict_proba(waves).reshape(validation.shape), atol=1e-5)
    loudest = score_clips(model, [w[-int(CLIP * SR):] for w in waves[:2]], cfg=cfg, classes=classes)
    assert np.abs(loudest - validation[:2]).max() > 1e-3  # the window of the tone alone would not pass


@pytest.mark.parametrize("task", ["classification", "multilabel", "regression"])
def test_loss_of_one_window_is_the_loss_of_its_logits(task: str) -> None:
    z = torch.randn(6, 3 if task != "regression" else 1, generator=torch.Generator().manual_seed(0)) * 4
    y = {"classification": torch.eye(3)[[0, 1, 2, 0, 1, 2]], "multilabel": (torch.rand(6, 3) > 0.5).float(),
         "regression": torch.rand(6, 1)}[task]
    loss = loss_fn({"classification": "ce", "multilabel": "bce", "regression": "mse"}[task])
    spec = TASKS[task]
    assert float(loss(spec.inverse(spec.activate(z)), y)) == pytest.approx(float(loss(z, y)), rel=1e-5)


def test_training_history_reports_what_the_bundle_scores(tmp_path: Path) -> None:
    """One epoch, one model: the bundle holds the weights validated, so the val metrics of
    history.csv are those of the bundle's scores of the validation rows (2.5-window clips, and
    rows with start/end inside them)."""
    source = clip_dataset(tmp_path / "clips", per_class=8, duration_s=2.5 * CLIP, subjects=8)
    df = read_manifest(source)
    cut = df.iloc[::3].assign(start=0.4, end=2.3)  # a 1.9-s row inside each third file, same subject
    manifest = tmp_path / "rows.csv"
    write_manifest(pd.concat([df, cut], ignore_index=True), manifest)
    cfg = config(manifest, pooling="max", positive="cough")
    run = tmp_path / "run"
    train(cfg, run, log=lambda line: None)

    used = read_manifest(run / "manifest.csv")
    val = used[used["split"] == "val"].reset_index(drop=True)
    assert val["start"].notna().any() and val["start"].isna().any()
    bundle = load_model(run / "model.respira")
    p, kept, failures = bundle.score_rows(val)
    assert not failures and len(kept) == len(val)
    cough = (val["label"] == "cough").to_numpy()
    truth = np.stack([~cough, cough], axis=1).astype(np.float32)  # classes (other, cough)
    task = TASKS["classification"]
    expected = {"loss": float(loss_fn("ce")(task.inverse(torch.from_numpy(p)), torch.from_numpy(truth))),
                **task.metrics(p, truth)}
    history = pd.read_csv(run / "history.csv").iloc[0]
    for key, value in expected.items():
        assert history[f"val_{key}"] == pytest.approx(value, abs=1e-4), key
